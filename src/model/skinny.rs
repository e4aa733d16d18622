//! `x · Wᵀ` for a few rows of `x` (beam decoding: 20 rows), reading the weight matrix
//! `W` `[out, in]` where it lies.
//!
//! Why our own kernel: candle's CPU matmul (the `gemm` crate) packs the right-hand side
//! into panels on every call. For prefill (hundreds of rows) that packing is amortised;
//! for a decode step it copies every weight matrix once per step, and profiling a
//! SmolLM2 beam search put half of its time in that packing. Here each output is a dot
//! product of an input row with a weight row (both contiguous along `in`), register-
//! blocked so a block of weight rows is loaded once for every input row, and the output
//! columns are split between threads. It serves inference only (no backward pass) and
//! needs AVX-512; everything else goes through candle. Measured in docs/PERFORMANCE.md.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// Up to this many rows of `x` the kernel is used for every weight. Measured (2 cores,
/// AVX-512) at 8-32 rows it beats candle's matmul on the projections (105-162 GFLOP/s
/// against 26-112), but on the 49,152-row output head only at 8 rows: at 20 and 32 rows
/// it ran at 72-79 against candle's 87-124 (left as is, noted in docs/PERFORMANCE.md).
const ALWAYS_ROWS: usize = 32;
/// Up to this many rows it still wins where the output is no wider than the input
/// (attention's projections, the MLP's down: 87-224 GFLOP/s against 57-136 at 40-120 rows),
/// not for the widening gate, up and output head (82-122 against 127-218), where `gemm`'s
/// packing pays for itself. It covers batched decoding (4 queries: 80 rows) and short
/// prefills.
const MAX_ROWS: usize = 128;

/// `x` `[.., in]` times `w` `[out, in]` transposed, or `None` when the kernel does not
/// apply (too many rows, not contiguous f32 on the CPU, gradients wanted, or no AVX-512), so the
/// caller uses candle's matmul.
pub(crate) fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
    let Ok((out, input)) = w.dims2() else {
        return Ok(None);
    };
    if rows == 0
        || rows > MAX_ROWS
        || (rows > ALWAYS_ROWS && out > input)
        || !x.device().is_cpu()
        || x.dtype() != DType::F32
        || w.dtype() != DType::F32
        || !x.is_contiguous()
        || !w.is_contiguous()
        || x.track_op()
        || w.track_op()
        || !available()
    {
        return Ok(None);
    }
    Ok(Some(x.apply_op2_no_bwd(w, &SkinnyMatmul)?))
}

/// Whether this CPU runs the kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

struct SkinnyMatmul;

impl CustomOp2 for SkinnyMatmul {
    fn name(&self) -> &'static str {
        "skinny-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(xs), CpuStorage::F32(ws)) = (xs, ws) else {
            candle_core::bail!("skinny-matmul: f32 only");
        };
        let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            candle_core::bail!("skinny-matmul: contiguous operands only");
        };
        let dims = xl.dims();
        let k = *dims.last().unwrap_or(&0);
        let &[n, wk] = wl.dims() else {
            candle_core::bail!("skinny-matmul: weight must be 2-D, got {:?}", wl.dims());
        };
        if wk != k {
            candle_core::bail!("skinny-matmul: x has {k} columns, weight {wk}");
        }
        let m = xl.shape().elem_count() / k.max(1);
        let out = rows_times_weights(&xs[x0..x1], &ws[w0..w1], m, k, n);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("x has at least one dim") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// Weight rows per register block.
const NR: usize = 4;
/// Input rows per register block: `MR x NR` accumulators, `NR` weight vectors and one
/// input vector must stay in registers (LLVM spilled a 6 x 4 block's accumulators).
const MR: usize = 4;
/// f32 lanes per vector.
const LANES: usize = 16;

/// `out[i, j] = Σ_p x[i, p] · w[j, p]` for `x` `[m, k]`, `w` `[n, k]`, row-major.
fn rows_times_weights(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    if m == 0 || n == 0 {
        return vec![0f32; m * n];
    }
    let packed = pack_rows(x, m, k);
    // Threads take disjoint ranges of weight rows and write them transposed (`[n, m]`,
    // contiguous per thread); one pass at the end puts the output back in `[m, n]`.
    let threads = rayon::current_num_threads().max(1);
    // Below ~64k multiply-adds per thread the hand-off costs more than it saves.
    let per_thread = if m * n * k < 65_536 * threads {
        n
    } else {
        n.div_ceil(threads).div_ceil(NR) * NR
    };
    let mut out_t = vec![0f32; n * m];
    out_t
        .par_chunks_mut(per_thread * m)
        .enumerate()
        .for_each(|(c, chunk)| {
            let j0 = c * per_thread;
            let rows = chunk.len() / m;
            let w = &w[j0 * k..(j0 + rows) * k];
            // SAFETY: `matmul_t` only builds this op after `available()` saw AVX-512F;
            // `packed` holds `m.div_ceil(MR)` blocks of `MR * k.div_ceil(LANES) * LANES`,
            // `w` `rows * k` and `chunk` `rows * m` elements.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::block_rows(&packed, w, chunk, m, k, rows)
            };
        });
    let mut out = vec![0f32; m * n];
    for (j, col) in out_t.chunks_exact(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            out[i * n + j] = *v;
        }
    }
    out
}

/// `x` `[m, k]` regrouped so the kernel reads one stream: blocks of `MR` rows, each
/// `[k / LANES][MR][LANES]`, zero-padded past `m` and `k` (`x` is small; the weights are
/// what must not be copied).
fn pack_rows(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let kq = k.div_ceil(LANES);
    let block = MR * kq * LANES;
    let mut packed = vec![0f32; m.div_ceil(MR) * block];
    for (i, row) in x.chunks_exact(k).take(m).enumerate() {
        let base = (i / MR) * block + (i % MR) * LANES;
        for (q, piece) in row.chunks(LANES).enumerate() {
            let at = base + q * MR * LANES;
            packed[at..at + piece.len()].copy_from_slice(piece);
        }
    }
    packed
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NR};

    /// `out_t[j, i] = x[i] · w[j]` for all `m` rows of `x` (packed) and `n` rows of `w`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_rows(
        packed: &[f32],
        w: &[f32],
        out_t: &mut [f32],
        m: usize,
        k: usize,
        n: usize,
    ) {
        let block = MR * k.div_ceil(LANES) * LANES;
        let (xp, w, o) = (packed.as_ptr(), w.as_ptr(), out_t.as_mut_ptr());
        let mut j = 0;
        while j < n {
            let nr = (n - j).min(NR);
            // The weight block (NR rows) stays in L1 while every input row passes by.
            let mut i = 0;
            while i < m {
                let mr = (m - i).min(MR);
                unsafe {
                    let (xb, wb, ob) = (xp.add((i / MR) * block), w.add(j * k), o.add(j * m + i));
                    match (mr, nr) {
                        (4, 4) => tile::<4, 4>(xb, wb, ob, k, m),
                        (3, 4) => tile::<3, 4>(xb, wb, ob, k, m),
                        (2, 4) => tile::<2, 4>(xb, wb, ob, k, m),
                        (1, 4) => tile::<1, 4>(xb, wb, ob, k, m),
                        (4, 3) => tile::<4, 3>(xb, wb, ob, k, m),
                        (4, 2) => tile::<4, 2>(xb, wb, ob, k, m),
                        (4, 1) => tile::<4, 1>(xb, wb, ob, k, m),
                        (r, c) => {
                            // A corner of the output: few rows and few columns.
                            for rr in 0..r {
                                for cc in 0..c {
                                    tile::<1, 1>(
                                        xb.add(rr * LANES),
                                        wb.add(cc * k),
                                        ob.add(cc * m + rr),
                                        k,
                                        m,
                                    );
                                }
                            }
                        }
                    }
                }
                i += mr;
            }
            j += nr;
        }
    }

    /// `R` packed input rows against `C` weight rows (stride `k`); results go to
    /// `o[c * m + r]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(
        xp: *const f32,
        w: *const f32,
        o: *mut f32,
        k: usize,
        m: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let full = k - k % LANES;
        let mut p = 0;
        let mut x = xp;
        unsafe {
            while p < full {
                let wv: [__m512; C] = std::array::from_fn(|c| _mm512_loadu_ps(w.add(c * k + p)));
                fma_rows(&mut acc, x, &wv);
                p += LANES;
                x = x.add(MR * LANES);
            }
            if p < k {
                // The last `k % LANES` columns: weight lanes past the end masked off (the
                // packed input is zero there).
                let mask: __mmask16 = (1u16 << (k - p)) - 1;
                let wv: [__m512; C] =
                    std::array::from_fn(|c| _mm512_maskz_loadu_ps(mask, w.add(c * k + p)));
                fma_rows(&mut acc, x, &wv);
            }
            if R == 4 && C == 4 {
                // The full tile: 16 sums in one transposing reduction instead of 16
                // horizontal ones (those cost a third of a tile at k = 576). Input `4c + r`
                // is row r, column c, so column c's four rows are adjacent in `o`.
                let sums = reduce16(std::array::from_fn(|i| acc[i % 4][i / 4]));
                _mm_storeu_ps(o, _mm512_extractf32x4_ps::<0>(sums));
                _mm_storeu_ps(o.add(m), _mm512_extractf32x4_ps::<1>(sums));
                _mm_storeu_ps(o.add(2 * m), _mm512_extractf32x4_ps::<2>(sums));
                _mm_storeu_ps(o.add(3 * m), _mm512_extractf32x4_ps::<3>(sums));
            } else {
                for (r, acc_r) in acc.iter().enumerate() {
                    for (c, a) in acc_r.iter().enumerate() {
                        *o.add(c * m + r) = _mm512_reduce_add_ps(*a);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain triple loop, over shapes that exercise every tile remainder
    /// (rows 1..=13, weight rows not a multiple of 4, `k` not a multiple of 16).
    #[test]
    fn matches_reference_product() {
        if !available() {
            eprintln!("no AVX-512: skinny kernel not exercised");
            return;
        }
        for &(m, k, n) in &[
            (1, 16, 4),
            (7, 33, 9),
            (13, 576, 130),
            (20, 64, 1),
            (6, 5, 7),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 31.0)
                .collect();
            let got = rows_times_weights(&x, &w, m, k, n);
            assert_eq!(got.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                        .sum();
                    let g = got[i * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "[{m},{k}]x[{n},{k}] at ({i},{j}): {g} vs {want}"
                    );
                }
            }
        }
    }

    /// Through the tensor entry point: batch dims kept, same values as candle's matmul; a
    /// trainable weight or too many rows falls back to candle (`None`).
    #[test]
    fn tensor_entry_matches_candle_and_declines() -> Result<()> {
        if !available() {
            return Ok(());
        }
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (7, 40), &dev)?;
        let got = matmul_t(&x, &w)?.expect("kernel applies");
        assert_eq!(got.dims(), &[2, 5, 7]);
        let want = x.broadcast_matmul(&w.t()?)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max difference {diff}");

        let var = candle_core::Var::from_tensor(&w)?;
        assert!(matmul_t(&x, var.as_tensor())?.is_none());
        let many = Tensor::zeros((MAX_ROWS + 1, 40), DType::F32, &dev)?;
        assert!(matmul_t(&many, &w)?.is_none());
        let wide = Tensor::zeros((41, 40), DType::F32, &dev)?;
        assert!(matmul_t(&many.narrow(0, 0, ALWAYS_ROWS + 1)?, &wide)?.is_none());
        assert!(matmul_t(&many.narrow(0, 0, ALWAYS_ROWS)?, &wide)?.is_some());
        Ok(())
    }
}
