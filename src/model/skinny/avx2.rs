//! The kernel's register tiles in AVX2 with FMA (x86 CPUs without AVX-512, such as AMD's
//! before Zen 4): 4 input rows x 3 weight rows, 12 accumulators of 8 lanes. The full tile's
//! loop along `k` is assembly (`tile_4x3` says why); the edge tiles use
//! intrinsics.
//!
//! The walk and the intrinsics tile have `avx512.rs`'s shape line for line; only the
//! intrinsics and the tile sizes differ. They stay separate because the tiles are const
//! generics of each instruction set's own `#[target_feature]` functions, which stable Rust
//! cannot derive from a shared trait's constants.

/// f32 lanes per vector.
pub(super) const LANES: usize = 8;
/// Input rows per register tile.
pub(super) const MR: usize = 4;
/// Weight rows per register tile.
pub(super) const NR: usize = 3;

#[cfg(target_arch = "x86_64")]
pub(super) use imp::block_rows;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NR};

    /// `out[i * ld + j] = x[i] · w[j]` for all `m` rows of `x` (packed) and `n` rows of
    /// `w`.
    #[target_feature(enable = "avx2,fma")]
    pub(in super::super) unsafe fn block_rows(
        packed: &[f32],
        w: &[f32],
        out: *mut f32,
        m: usize,
        k: usize,
        n: usize,
        ld: usize,
    ) {
        let (xp, w) = (packed.as_ptr(), w.as_ptr());
        // SAFETY: the buffers are as `for_each_tile` requires (the caller's contract).
        unsafe {
            let shape = (m, k, n, ld);
            super::super::for_each_tile(xp, w, out, shape, LANES, MR, NR, |xb, wb, ob, mr, nr| {
                match (mr, nr) {
                    (4, 3) => tile_4x3(xb, wb, ob, k, ld),
                    (3, 3) => tile::<3, 3>(xb, wb, ob, k, ld),
                    (2, 3) => tile::<2, 3>(xb, wb, ob, k, ld),
                    (1, 3) => tile::<1, 3>(xb, wb, ob, k, ld),
                    (4, 2) => tile::<4, 2>(xb, wb, ob, k, ld),
                    (4, 1) => tile::<4, 1>(xb, wb, ob, k, ld),
                    (1, 1) => tile::<1, 1>(xb, wb, ob, k, ld),
                    _ => unreachable!("for_each_tile gave a {mr} x {nr} corner tile"),
                }
            })
        }
    }

    /// `R` packed input rows against `C` weight rows (stride `k`); results go to
    /// `o[r * ld + c]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(
        xp: *const f32,
        w: *const f32,
        o: *mut f32,
        k: usize,
        ld: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let full = k - k % LANES;
        let mut p = 0;
        let mut x = xp;
        unsafe {
            while p < full {
                let wv: [__m256; C] = std::array::from_fn(|c| _mm256_loadu_ps(w.add(c * k + p)));
                fma_rows(&mut acc, x, &wv);
                p += LANES;
                x = x.add(MR * LANES);
            }
            finish(acc, x, w, o, k, ld, p);
        }
    }

    /// The full tile, 4 input rows x 3 weight rows, whose loop along `k` is written out in
    /// assembly. Why: 12 accumulators, 3 weight vectors and one input vector take all 16
    /// registers, and LLVM unrolls [`tile`]'s loop twice, which then spills accumulators to
    /// the stack (41 GFLOP/s at `[20, 576] x [1536, 576]ᵀ`, one thread, against candle's
    /// 51). The largest tiles LLVM kept in registers (4 x 2, 3 x 3) reached 68: 8 or 9
    /// accumulators cannot cover a 5-cycle FMA latency on two FMA units, 12 can. This loop
    /// reaches 1.5-1.7x candle's rate where 4 x 2 reached 1.2-1.3x (docs/PERFORMANCE.md).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile_4x3(xp: *const f32, w: *const f32, o: *mut f32, k: usize, ld: usize) {
        let z = _mm256_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
        let (mut a6, mut a7, mut a8, mut a9, mut a10, mut a11) = (z, z, z, z, z, z);
        let steps = k / LANES;
        let mut x = xp;
        if steps > 0 {
            // SAFETY: `steps` vectors of 8 along `k` lie inside each of the three weight
            // rows (`w`, `w + k`, `w + 2k`) and inside the packed block (`MR * LANES`
            // floats per step); the block only reads memory.
            unsafe {
                std::arch::asm!(
                    "2:",
                    "vmovups ymm12, ymmword ptr [{w0} + {off}]",
                    "vmovups ymm13, ymmword ptr [{w1} + {off}]",
                    "vmovups ymm14, ymmword ptr [{w2} + {off}]",
                    "vmovups ymm15, ymmword ptr [{x}]",
                    "vfmadd231ps ymm0, ymm15, ymm12",
                    "vfmadd231ps ymm1, ymm15, ymm13",
                    "vfmadd231ps ymm2, ymm15, ymm14",
                    "vmovups ymm15, ymmword ptr [{x} + 32]",
                    "vfmadd231ps ymm3, ymm15, ymm12",
                    "vfmadd231ps ymm4, ymm15, ymm13",
                    "vfmadd231ps ymm5, ymm15, ymm14",
                    "vmovups ymm15, ymmword ptr [{x} + 64]",
                    "vfmadd231ps ymm6, ymm15, ymm12",
                    "vfmadd231ps ymm7, ymm15, ymm13",
                    "vfmadd231ps ymm8, ymm15, ymm14",
                    "vmovups ymm15, ymmword ptr [{x} + 96]",
                    "vfmadd231ps ymm9, ymm15, ymm12",
                    "vfmadd231ps ymm10, ymm15, ymm13",
                    "vfmadd231ps ymm11, ymm15, ymm14",
                    "add {x}, 128",
                    "add {off}, 32",
                    "dec {n}",
                    "jnz 2b",
                    w0 = in(reg) w,
                    w1 = in(reg) w.add(k),
                    w2 = in(reg) w.add(2 * k),
                    x = inout(reg) x,
                    off = inout(reg) 0usize => _,
                    n = inout(reg) steps => _,
                    inout("ymm0") a0, inout("ymm1") a1, inout("ymm2") a2,
                    inout("ymm3") a3, inout("ymm4") a4, inout("ymm5") a5,
                    inout("ymm6") a6, inout("ymm7") a7, inout("ymm8") a8,
                    inout("ymm9") a9, inout("ymm10") a10, inout("ymm11") a11,
                    out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                    options(nostack, readonly),
                );
            }
        }
        let acc = [[a0, a1, a2], [a3, a4, a5], [a6, a7, a8], [a9, a10, a11]];
        unsafe { finish(acc, x, w, o, k, ld, steps * LANES) };
    }

    /// The rest of a tile after the loop along `k` reached column `p`: the last
    /// `k % LANES` columns, then the sums into `o[r * ld + c]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn finish<const R: usize, const C: usize>(
        mut acc: [[__m256; C]; R],
        x: *const f32,
        w: *const f32,
        o: *mut f32,
        k: usize,
        ld: usize,
        p: usize,
    ) {
        unsafe {
            if p < k {
                // The last `k % LANES` columns: weight lanes past the end masked off (the
                // packed input is zero there).
                let mask = _mm256_cmpgt_epi32(
                    _mm256_set1_epi32((k - p) as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                );
                let wv: [__m256; C] =
                    std::array::from_fn(|c| _mm256_maskload_ps(w.add(c * k + p), mask));
                fma_rows(&mut acc, x, &wv);
            }
            // Row r's (at most four) columns are adjacent in `o`: one reduction each.
            let zero = _mm256_setzero_ps();
            for (r, acc_r) in acc.iter().enumerate() {
                let sums = reduce4(std::array::from_fn(|c| {
                    acc_r.get(c).copied().unwrap_or(zero)
                }));
                let mut lanes = [0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), sums);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), o.add(r * ld), C);
            }
        }
    }

    /// One step along `k`: every packed input row (`LANES` apart) times every weight vector.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn fma_rows<const R: usize, const C: usize>(
        acc: &mut [[__m256; C]; R],
        x: *const f32,
        wv: &[__m256; C],
    ) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xv = unsafe { _mm256_loadu_ps(x.add(r * LANES)) };
            for (a, wc) in acc_r.iter_mut().zip(wv) {
                *a = _mm256_fmadd_ps(xv, *wc, *a);
            }
        }
    }

    /// Lane `i` of the result is the sum of all lanes of `a[i]`: two rounds of pairwise
    /// horizontal adds leave each input's two 128-bit halves' sums side by side, and one
    /// add folds the halves.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn reduce4(a: [__m256; 4]) -> __m128 {
        let ab = _mm256_hadd_ps(a[0], a[1]);
        let cd = _mm256_hadd_ps(a[2], a[3]);
        let abcd = _mm256_hadd_ps(ab, cd);
        _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        )
    }
}
