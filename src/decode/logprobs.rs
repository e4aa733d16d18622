//! Next-token log-probabilities of each decoding row, on the host.
//!
//! Why not candle's `log_softmax` and `to_vec2`: at a beam step (20 rows x 49,152 tokens)
//! they took 11-13 ms, against ~20 ms for the output head's whole product (AVX2 machine,
//! session 5): several full passes with a temporary each, a scalar `expf` call per element,
//! and a copy into the rows. Here each row is one pass for its maximum and one for the sum
//! of exponentials through a polynomial `exp` that the compiler vectorises, and the
//! log-probabilities are written once. Rows go to threads.

use candle_core::{Tensor, D};
use rayon::prelude::*;

use crate::error::Result;

/// `[rows, 1, vocab]` (or `[rows, vocab]`) logits -> one vector of log-probabilities per
/// row: `x - max - ln Σ exp(x - max)`, as `log_softmax` computes it.
pub(crate) fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let vocab = logits.dim(D::Minus1)?;
    let host = logits.flatten_all()?.to_vec1::<f32>()?;
    Ok(host
        .par_chunks(vocab.max(1))
        .map(|row| {
            let lse = log_sum_exp(row);
            row.iter().map(|&x| x - lse).collect()
        })
        .collect())
}

/// `[rows, 1, vocab]` (or `[rows, vocab]`) logits -> for each row, the log-probabilities of
/// the tokens `wanted[row]` only: what a beam step reads, without writing whole rows.
pub(crate) fn log_probs_of(logits: &Tensor, wanted: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let vocab = logits.dim(D::Minus1)?.max(1);
    let host = logits.flatten_all()?.to_vec1::<f32>()?;
    let rows = host.len() / vocab;
    if rows != wanted.len() {
        return Err(crate::error::Error::invalid(format!(
            "log-probabilities: {rows} rows of logits for {} wanted",
            wanted.len()
        )));
    }
    if let Some(&tok) = wanted.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(crate::error::Error::invalid(format!(
            "log-probabilities: token {tok} outside the {vocab}-token vocabulary"
        )));
    }
    Ok(host
        .par_chunks(vocab)
        .zip(wanted)
        .map(|(row, want)| {
            let lse = log_sum_exp(row);
            want.iter().map(|&t| row[t as usize] - lse).collect()
        })
        .collect())
}

/// `ln Σ exp(x)` over `row`, shifted by its maximum so no term overflows; the sum in AVX2
/// where the CPU has it (the crate is built for baseline x86-64, and the compiler did not
/// vectorise the portable loop even inside an AVX2 function).
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max_of(row);
    if max == f32::NEG_INFINITY {
        // Nothing possible: every `x - lse` is NaN, as in `log_softmax`.
        return max;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return max + unsafe { avx2::sum_exp(row, max) }.ln();
    }
    max + row
        .iter()
        .map(|&x| exp_nonpositive(x - max))
        .sum::<f32>()
        .ln()
}

/// The largest element (`-inf` for none), in eight lanes so the loop vectorises.
fn max_of(row: &[f32]) -> f32 {
    const W: usize = 8;
    let chunks = row.chunks_exact(W);
    let tail = chunks.remainder();
    let mut max = [f32::NEG_INFINITY; W];
    for c in chunks {
        for (m, &x) in max.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    tail.iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `Σ e^(x - max)` over `row` (every `x <= max`), eight lanes at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_exp(row: &[f32], max: f32) -> f32 {
        let vmax = _mm256_set1_ps(max);
        let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut pairs = row.chunks_exact(16);
        for c in &mut pairs {
            // SAFETY: each chunk holds 16 floats.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(c.as_ptr()),
                    _mm256_loadu_ps(c.as_ptr().add(8)),
                )
            };
            a = _mm256_add_ps(a, exp8(_mm256_sub_ps(x, vmax)));
            b = _mm256_add_ps(b, exp8(_mm256_sub_ps(y, vmax)));
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a, b)) };
        let tail = pairs.remainder().iter();
        lanes.iter().sum::<f32>() + tail.map(|&x| super::exp_nonpositive(x - max)).sum::<f32>()
    }

    /// [`super::exp_nonpositive`] on eight lanes (with fused multiply-adds).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let c = _mm256_set1_ps;
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, c(-87.0));
        let x = _mm256_max_ps(x, c(-87.0));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(x, c(super::LOG2_E), c(0.5)));
        let r = _mm256_fnmadd_ps(n, c(super::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, c(super::LN2_LO), r);
        let mut p = c(super::P[0]);
        for &q in &super::P[1..] {
            p = _mm256_fmadd_ps(p, r, c(q));
        }
        let e_r = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, c(1.0)));
        let biased = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased));
        _mm256_andnot_ps(under, _mm256_mul_ps(e_r, two_n))
    }
}

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial: `e^r ≈ 1 + r + r² P(r)`, highest power first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
];

/// `e^x` for `x <= 0` to within 2 ulp (the standard library's `exp` is a call per
/// element; [`avx2::exp8`] is the same on eight lanes). Cephes' `expf`: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2` (ln 2 split in two for exactness), a degree-7 polynomial for
/// `e^r`, and `2^n` built in the exponent bits. Below -87 (where `e^x` leaves f32's normal
/// range) it returns 0; `-inf` gives 0.
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    if x < -87.0 {
        return 0.0;
    }
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = P[1..].iter().fold(P[0], |p, &q| p * r + q);
    let e_r = p * r * r + r + 1.0;
    // n is in [-126, 0]: a normal power of two.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalar and (where the CPU has AVX2) vector `exp` against f64 over `[-87, 0]`.
    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        let xs: Vec<f32> = (0..=2_000_000)
            .map(|i| -87.0 * i as f32 / 2_000_000.0)
            .collect();
        let worst = |got: &[f32]| {
            xs.iter().zip(got).fold(0f64, |w, (&x, &g)| {
                let want = (x as f64).exp();
                w.max((g as f64 - want).abs() / want)
            })
        };
        let scalar: Vec<f32> = xs.iter().map(|&x| exp_nonpositive(x)).collect();
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst(&scalar) < 2.4e-7, "scalar: {:e}", worst(&scalar));
        assert_eq!(exp_nonpositive(0.0), 1.0);
        // Subnormal results are flushed: 0, as for -inf.
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            use std::arch::x86_64::*;
            let mut vector = vec![0f32; xs.len() + 8];
            for (x, out) in xs.chunks(8).zip(vector.chunks_mut(8)) {
                let mut lanes = [f32::NEG_INFINITY; 8];
                lanes[..x.len()].copy_from_slice(x);
                // SAFETY: the CPU has AVX2 and FMA; `lanes` and `out` hold 8 floats.
                unsafe {
                    let e = avx2::exp8(_mm256_loadu_ps(lanes.as_ptr()));
                    _mm256_storeu_ps(out.as_mut_ptr(), e);
                }
            }
            let vector = &vector[..xs.len()];
            assert!(worst(vector) < 2.4e-7, "AVX2: {:e}", worst(vector));
        }
    }

    #[test]
    fn picked_tokens_match_whole_rows() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let logits = (Tensor::randn(0f32, 8.0, (3, 1, 517), &dev)? - 5.0)?;
        let whole = log_softmax_rows(&logits)?;
        let wanted = vec![vec![0, 516, 7], vec![], vec![3, 3]];
        let got = log_probs_of(&logits, &wanted)?;
        for (r, want) in wanted.iter().enumerate() {
            let expect: Vec<f32> = want.iter().map(|&t| whole[r][t as usize]).collect();
            assert_eq!(got[r], expect, "row {r}");
        }
        assert!(log_probs_of(&logits, &wanted[..2]).is_err());
        assert!(log_probs_of(&logits, &[vec![517], vec![], vec![]]).is_err());
        Ok(())
    }

    #[test]
    fn rows_match_candles_log_softmax() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // Odd vocabulary (a tail after the 8-wide chunks), large and negative logits.
        let logits = (Tensor::randn(0f32, 8.0, (5, 1, 1003), &dev)? + 40.0)?;
        let got = log_softmax_rows(&logits)?;
        let want = candle_nn::ops::log_softmax(&logits.squeeze(1)?, D::Minus1)?.to_vec2::<f32>()?;
        assert_eq!(got.len(), 5);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), 1003);
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
        // A row where only one token is possible: 0 there, -inf elsewhere.
        let one = Tensor::new(&[[f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY]], &dev)?;
        assert_eq!(
            log_softmax_rows(&one)?,
            [[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]]
        );
        Ok(())
    }
}
