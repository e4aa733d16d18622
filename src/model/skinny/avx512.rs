//! The kernel's register tiles in AVX-512F: 4 input rows x 4 weight rows, 16 accumulators
//! of 16 lanes, one transposing reduction per full tile; the first pass over a block of
//! weight rows prefetches the block after next, and for 5-24 input rows `k` is walked in
//! chunks whose packed rows stay in L1 (each 4-15 % and 16-30 % on a decode step's products
//! streamed from memory, docs/PERFORMANCE.md).

/// f32 lanes per vector.
pub(super) const LANES: usize = 16;
/// Input rows per register tile: `MR x NR` accumulators, `NR` weight vectors and one
/// input vector must stay in registers (LLVM spilled a 6 x 4 tile's accumulators).
pub(super) const MR: usize = 4;
/// Weight rows per register tile.
pub(super) const NR: usize = 4;

#[cfg(target_arch = "x86_64")]
pub(super) use imp::block_rows;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NR};

    /// `out[i * ld + j] = x[i] · w[j]` for all `m` rows of `x` (packed) and `n` rows of
    /// `w`.
    #[target_feature(enable = "avx512f")]
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
        // Weight rows from `prefetch_below` on have no full block `AHEAD` blocks on.
        let prefetch_below = w.wrapping_add(n.saturating_sub((AHEAD + 1) * NR) * k);
        // With more than one tile of input rows, every block of weight rows is passed over
        // once per tile, and the packed rows must come back from L1 each time: 20 rows of
        // 576 (46 KB) do not fit beside the block, 8 rows (18 KB) do, and ran 1.7x faster
        // per multiply-add. So `k` is cut into chunks whose packed rows fit in ~24 KB
        // (at least 128 columns), each chunk's partial sums added to the output. Only for
        // decode-sized products whose output stays in L2: for the 49,152-row head, or from
        // 48 rows on, re-reading the output per chunk and the weights' strided pieces cost
        // more than they save (1.2-2x slower in the hot table); at 32 rows it was mixed.
        let chunks = if m > MR && m <= CHUNK_MAX_ROWS && m * n * 4 <= CHUNK_MAX_OUTPUT {
            let fit = (L1_INPUT_BYTES / (4 * m.next_multiple_of(MR))).max(MIN_CHUNK);
            k.div_ceil(fit)
        } else {
            1
        };
        let kc = k.div_ceil(chunks).next_multiple_of(LANES);
        let mut k0 = 0;
        while k0 < k {
            let klen = kc.min(k - k0);
            let add = k0 > 0;
            // SAFETY: the buffers are as `for_each_tile` requires (the caller's contract);
            // `k0` is a multiple of `LANES`, so the chunk's packed input starts
            // `k0 / LANES` steps into each block.
            unsafe {
                let shape = (m, k, n, ld);
                super::super::for_each_tile(
                    xp,
                    w,
                    out,
                    shape,
                    LANES,
                    MR,
                    NR,
                    |xb, wb, ob, mr, nr| {
                        // The first pass over a block of weight rows (input rows from 0) pulls
                        // a later block towards the core while it computes: the passes that
                        // follow read this block from L1 and would leave the memory bus idle.
                        let first =
                            xb == xp && nr == NR && wb <= prefetch_below && n >= (AHEAD + 1) * NR;
                        let (xb, wb) = (xb.add(k0 / LANES * MR * LANES), wb.add(k0));
                        let t = (k, klen, ld, add);
                        if first {
                            dispatch::<true>(xb, wb, ob, mr, nr, t)
                        } else {
                            dispatch::<false>(xb, wb, ob, mr, nr, t)
                        }
                    },
                )
            }
            k0 += klen;
        }
    }

    /// The tile for an `mr x nr` piece of the walk (the shapes `for_each_tile` gives).
    ///
    /// # Safety
    /// As [`tile`]; with `PREFETCH`, `nr` is `NR` and a full block of weight rows follows.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn dispatch<const PREFETCH: bool>(
        xb: *const f32,
        wb: *const f32,
        ob: *mut f32,
        mr: usize,
        nr: usize,
        t: (usize, usize, usize, bool),
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            match (mr, nr) {
                (4, 4) => tile::<4, 4, PREFETCH>(xb, wb, ob, t),
                (3, 4) => tile::<3, 4, PREFETCH>(xb, wb, ob, t),
                (2, 4) => tile::<2, 4, PREFETCH>(xb, wb, ob, t),
                (1, 4) => tile::<1, 4, PREFETCH>(xb, wb, ob, t),
                (4, 3) => tile::<4, 3, PREFETCH>(xb, wb, ob, t),
                (4, 2) => tile::<4, 2, PREFETCH>(xb, wb, ob, t),
                (4, 1) => tile::<4, 1, PREFETCH>(xb, wb, ob, t),
                (1, 1) => tile::<1, 1, PREFETCH>(xb, wb, ob, t),
                _ => unreachable!("for_each_tile gave a {mr} x {nr} corner tile"),
            }
        }
    }

    /// How many blocks of weight rows ahead the first pass over a block prefetches, into
    /// L2 (`_MM_HINT_T1`). Against prefetching the next block into L1, two blocks ahead
    /// into L2 ran a SmolLM2 query's decode passes 3-5 % faster in four paired runs
    /// (Intel Xeon, timers around each product), four blocks ahead no better than two.
    const AHEAD: usize = 2;

    /// Bytes of packed input rows a chunk of `k` may take (of L1's 32-48 KiB; the block of
    /// weight rows and the output need the rest).
    const L1_INPUT_BYTES: usize = 24 * 1024;
    /// Columns a chunk keeps at least: shorter ones spend more on the reductions.
    const MIN_CHUNK: usize = 128;
    /// Input rows up to which `k` is chunked.
    const CHUNK_MAX_ROWS: usize = 24;
    /// Output bytes (of one thread's columns) up to which `k` is chunked.
    const CHUNK_MAX_OUTPUT: usize = 256 * 1024;

    /// `R` packed input rows against `C` weight rows, over `klen` columns of rows `kw`
    /// apart; results go to `o[r * ld + c]`, or are added there with `add`. With
    /// `PREFETCH`, the `C` weight rows `AHEAD` blocks after these (which must exist) are
    /// prefetched, a cache line of each per step along `k`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize, const PREFETCH: bool>(
        xp: *const f32,
        w: *const f32,
        o: *mut f32,
        (kw, k, ld, add): (usize, usize, usize, bool),
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let full = k - k % LANES;
        let mut p = 0;
        let mut x = xp;
        unsafe {
            while p < full {
                let wv: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(w.add(c * kw + p)));
                if PREFETCH {
                    for c in 0..C {
                        _mm_prefetch::<_MM_HINT_T1>(w.add((AHEAD * C + c) * kw + p).cast());
                    }
                }
                fma_rows(&mut acc, x, &wv);
                p += LANES;
                x = x.add(MR * LANES);
            }
            if p < k {
                // The last `k % LANES` columns: weight lanes past the end masked off (the
                // packed input is zero there).
                let mask: __mmask16 = (1u16 << (k - p)) - 1;
                let wv: [__m512; C] =
                    std::array::from_fn(|c| _mm512_maskz_loadu_ps(mask, w.add(c * kw + p)));
                fma_rows(&mut acc, x, &wv);
            }
            if R == 4 && C == 4 {
                // The full tile: 16 sums in one transposing reduction instead of 16
                // horizontal ones (those cost a third of a tile at k = 576). Input `4r + c`
                // is row r, column c, so row r's four columns are adjacent in `o`.
                let sums = reduce16(std::array::from_fn(|i| acc[i / 4][i % 4]));
                let rows = [
                    _mm512_extractf32x4_ps::<0>(sums),
                    _mm512_extractf32x4_ps::<1>(sums),
                    _mm512_extractf32x4_ps::<2>(sums),
                    _mm512_extractf32x4_ps::<3>(sums),
                ];
                for (r, row) in rows.into_iter().enumerate() {
                    let at = o.add(r * ld);
                    let row = if add {
                        _mm_add_ps(_mm_loadu_ps(at), row)
                    } else {
                        row
                    };
                    _mm_storeu_ps(at, row);
                }
            } else {
                for (r, acc_r) in acc.iter().enumerate() {
                    for (c, a) in acc_r.iter().enumerate() {
                        let sum = _mm512_reduce_add_ps(*a);
                        let at = o.add(r * ld + c);
                        *at = if add { *at + sum } else { sum };
                    }
                }
            }
        }
    }

    /// One step along `k`: every packed input row (`LANES` apart) times every weight vector.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fma_rows<const R: usize, const C: usize>(
        acc: &mut [[__m512; C]; R],
        x: *const f32,
        wv: &[__m512; C],
    ) {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xv = unsafe { _mm512_loadu_ps(x.add(r * LANES)) };
            for (a, wc) in acc_r.iter_mut().zip(wv) {
                *a = _mm512_fmadd_ps(xv, *wc, *a);
            }
        }
    }

    /// Lane `i` of the result is the sum of all lanes of `a[i]`: pairwise interleaves and
    /// adds, halving the vectors at each of four stages.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn reduce16(a: [__m512; 16]) -> __m512 {
        // Stage 1, per 128-bit lane L of each pair: [a02, b02, a13, b13], where a02 sums
        // elements 0 and 2 of L.
        let t: [__m512; 8] = std::array::from_fn(|i| {
            let (x, y) = (a[2 * i], a[2 * i + 1]);
            _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y))
        });
        // Stage 2, per lane: the partial sums of four inputs.
        let u: [__m512; 4] = std::array::from_fn(|i| {
            let (x, y) = (t[2 * i], t[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(x, y),
                _mm512_shuffle_ps::<0xEE>(x, y),
            )
        });
        // Stage 3: lanes 0+2 and 1+3 of two vectors side by side.
        let v: [__m512; 2] = std::array::from_fn(|i| {
            let (x, y) = (u[2 * i], u[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(x, y),
                _mm512_shuffle_f32x4::<0xEE>(x, y),
            )
        });
        // Stage 4: the remaining two partial sums of each input.
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(v[0], v[1]),
            _mm512_shuffle_f32x4::<0xDD>(v[0], v[1]),
        )
    }
}
