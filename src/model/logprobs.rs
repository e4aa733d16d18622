//! Next-token log-probabilities of each decoding row.
//!
//! On the CPU, on the host: candle's `log_softmax` and `to_vec2` took 11-13 ms at a beam
//! step (20 rows x 49,152 tokens), against ~20 ms for the output head's whole product
//! (AVX2 machine): several full passes with a temporary each, a scalar `expf` call per
//! element, and a copy into the rows. Here each row is one pass for its maximum and one
//! for the sum of exponentials through a polynomial `exp` that the compiler vectorises,
//! and the log-probabilities are written once. Rows go to threads.
//!
//! On a GPU (or with the generic kernels, `model::host`), the normaliser and the wanted
//! tokens are computed where the logits are, and only those cross to the host: a beam
//! step reads a few hundred numbers, not a million.

use candle_core::{DType, Tensor, D};
use rayon::prelude::*;

use crate::error::Result;
use crate::model::expf::exp_nonpositive;
use crate::model::host::kernels_on;

/// `[rows, 1, vocab]` (or `[rows, vocab]`) logits -> one vector of log-probabilities per
/// row: `x - max - ln Σ exp(x - max)`, as `log_softmax` computes it.
pub fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let vocab = logits.dim(D::Minus1)?;
    if !kernels_on(logits.device()) {
        return rows_on_device(&logits.reshape(((), vocab))?.to_dtype(DType::F32)?);
    }
    let host = logits.flatten_all()?.to_vec1::<f32>()?;
    host.par_chunks(vocab.max(1))
        .map(|row| {
            let lse = finite_log_sum_exp(row)?;
            Ok(row.iter().map(|&x| x - lse).collect())
        })
        .collect()
}

/// [`log_softmax_rows`] where the logits are, then copied to the host.
fn rows_on_device(rows: &Tensor) -> Result<Vec<Vec<f32>>> {
    let lse = checked_log_sum_exp(rows)?;
    Ok(rows.broadcast_sub(&lse.unsqueeze(1)?)?.to_vec2::<f32>()?)
}

/// Each row's `ln Σ exp(x)` of `[rows, vocab]` f32 logits, computed on their device, or an
/// error when one is not finite (a NaN logit makes its row's sum NaN).
fn checked_log_sum_exp(rows: &Tensor) -> Result<Tensor> {
    let max = rows.max_keepdim(D::Minus1)?;
    let lse = (rows.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + max)?;
    let lse = lse.squeeze(1)?;
    let host = lse.to_vec1::<f32>()?;
    match host.iter().find(|v| !v.is_finite()) {
        Some(v) if v.is_nan() => Err(non_finite("a next-token logit is NaN".into())),
        Some(v) => Err(non_finite(format!("the model's next-token scores sum to {v}"))),
        None => Ok(lse),
    }
}

fn non_finite(what: String) -> crate::error::Error {
    crate::error::Error::NonFinite(format!(
        "{what} (the model's weights or the prompt's patches hold NaN or infinity)"
    ))
}

/// [`log_sum_exp`], or an error when the logits hold a NaN or infinity: a model whose
/// weights diverged would otherwise rank nothing and answer with no items at all.
/// NaN is looked for separately: the vector `max` and the clamped vector `exp` may skip a
/// NaN element instead of propagating it (one pass, ~1 % of the head's product).
fn finite_log_sum_exp(row: &[f32]) -> Result<f32> {
    if row.iter().any(|v| v.is_nan()) {
        return Err(non_finite("a next-token logit is NaN".into()));
    }
    let lse = log_sum_exp(row);
    if lse.is_finite() {
        Ok(lse)
    } else {
        Err(non_finite(format!(
            "the model's next-token scores sum to {lse}"
        )))
    }
}

/// `[rows, 1, vocab]` (or `[rows, vocab]`) logits -> for each row, the log-probabilities of
/// the tokens `wanted[row]` only: what a beam step reads, without writing whole rows.
pub fn log_probs_of(logits: &Tensor, wanted: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let vocab = logits.dim(D::Minus1)?.max(1);
    let rows = logits.elem_count() / vocab;
    check_wanted(rows, vocab, wanted)?;
    if !kernels_on(logits.device()) {
        return picked_on_device(&logits.reshape((rows, vocab))?.to_dtype(DType::F32)?, wanted);
    }
    let host = logits.flatten_all()?.to_vec1::<f32>()?;
    host.par_chunks(vocab)
        .zip(wanted)
        .map(|(row, want)| {
            let lse = finite_log_sum_exp(row)?;
            Ok(want.iter().map(|&t| row[t as usize] - lse).collect())
        })
        .collect()
}

/// `wanted` names one list of tokens per row of `rows`, each within `vocab`.
pub(crate) fn check_wanted(rows: usize, vocab: usize, wanted: &[Vec<u32>]) -> Result<()> {
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
    Ok(())
}

/// [`log_probs_of`] where the logits are: each row's normaliser, and the wanted tokens
/// gathered (rows padded to the longest with token 0, dropped again on the host).
fn picked_on_device(rows: &Tensor, wanted: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let lse = checked_log_sum_exp(rows)?.to_vec1::<f32>()?;
    let width = wanted.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return Ok(vec![Vec::new(); wanted.len()]);
    }
    let mut index = vec![0u32; wanted.len() * width];
    for (slot, want) in index.chunks_mut(width).zip(wanted) {
        slot[..want.len()].copy_from_slice(want);
    }
    let index = Tensor::from_vec(index, (wanted.len(), width), rows.device())?;
    let picked = rows.gather(&index, 1)?.to_vec2::<f32>()?;
    Ok(picked
        .into_iter()
        .zip(wanted)
        .zip(lse)
        .map(|((row, want), lse)| row[..want.len()].iter().map(|x| x - lse).collect())
        .collect())
}

/// `ln Σ exp(x)` over `row`, shifted by its maximum so no term overflows; the sum in AVX2
/// where the CPU has it (the crate is built for baseline x86-64, and the compiler did not
/// vectorise the portable loop even inside an AVX2 function).
pub(crate) fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max_of(row);
    if max == f32::NEG_INFINITY {
        // Nothing possible: every `x - lse` is NaN, as in `log_softmax`.
        return max;
    }
    max + sum_exp(row, max).ln()
}

/// `Σ e^(x - max)` over `row` (every `x <= max`).
fn sum_exp(row: &[f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { avx2::sum_exp(row, max) };
    }
    row.iter().map(|&x| exp_nonpositive(x - max)).sum()
}

/// A row's `ln Σ exp(x)` built up a chunk of logits at a time, and merged across the
/// threads that made disjoint chunks of it: the fused output head (`skinny::head`) keeps
/// no row whole. The sum is kept relative to the largest logit so far and rescaled when a
/// larger one arrives, so no term overflows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunningLse {
    max: f32,
    /// `Σ e^(x - max)` over the logits so far.
    sum: f32,
    nan: bool,
}

impl RunningLse {
    /// No logits yet.
    pub(crate) const EMPTY: Self = RunningLse {
        max: f32::NEG_INFINITY,
        sum: 0.0,
        nan: false,
    };

    /// Folds in the logits `chunk`.
    pub(crate) fn add(&mut self, chunk: &[f32]) {
        // NaN is looked for separately, as in `finite_log_sum_exp`.
        if chunk.iter().any(|v| v.is_nan()) {
            self.nan = true;
            return;
        }
        let max = max_of(chunk);
        let sum = match max {
            f32::NEG_INFINITY => 0.0,
            // An infinite logit: the normaliser is infinite, which `finish` reports.
            f32::INFINITY => f32::INFINITY,
            _ => sum_exp(chunk, max),
        };
        self.merge(&RunningLse { max, sum, nan: false });
    }

    /// Folds in another part of the same row.
    pub(crate) fn merge(&mut self, other: &RunningLse) {
        self.nan |= other.nan;
        let max = self.max.max(other.max);
        if max.is_infinite() {
            self.max = max;
            self.sum = self.sum.max(other.sum);
            return;
        }
        let scaled = |p: &RunningLse| {
            if p.sum == 0.0 {
                0.0
            } else {
                p.sum * (p.max - max).exp()
            }
        };
        self.sum = scaled(self) + scaled(other);
        self.max = max;
    }

    /// `ln Σ exp(x)` over every logit folded in, or the error [`log_probs_of`] gives for
    /// such a row (a NaN logit, or a normaliser that is not finite).
    pub(crate) fn finish(&self) -> Result<f32> {
        if self.nan {
            return Err(non_finite("a next-token logit is NaN".into()));
        }
        let lse = if self.max == f32::INFINITY {
            f32::INFINITY
        } else {
            self.max + self.sum.ln()
        };
        if lse.is_finite() {
            Ok(lse)
        } else {
            Err(non_finite(format!(
                "the model's next-token scores sum to {lse}"
            )))
        }
    }
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

    use crate::model::expf::avx2::exp8;
    use crate::model::expf::exp_nonpositive;

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
        lanes.iter().sum::<f32>() + tail.map(|&x| exp_nonpositive(x - max)).sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The path a GPU takes gives the host path's numbers (the switch between them is
    /// process-wide, so the device functions are called directly).
    #[test]
    fn the_device_path_matches_the_host_path() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let logits = (Tensor::randn(0f32, 8.0, (3, 1, 517), &dev)? - 5.0)?;
        let rows = logits.reshape((3, 517))?;
        let wanted = vec![vec![0, 516, 7], vec![], vec![3, 3]];
        let close = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
        };
        for (g, w) in rows_on_device(&rows)?.iter().zip(&log_softmax_rows(&logits)?) {
            assert!(close(g, w));
        }
        for (g, w) in picked_on_device(&rows, &wanted)?.iter().zip(&log_probs_of(&logits, &wanted)?) {
            assert!(close(g, w), "{g:?} vs {w:?}");
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut row = vec![0.5f32; 100];
            match bad {
                f32::NEG_INFINITY => row.fill(bad),
                _ => row[50] = bad,
            }
            let rows = Tensor::from_vec(row, (1, 100), &dev)?;
            let e = picked_on_device(&rows, &[vec![7]]).unwrap_err();
            assert!(matches!(e, crate::error::Error::NonFinite(_)), "{bad}: {e}");
            assert!(rows_on_device(&rows).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn non_finite_logits_are_an_error_not_an_empty_answer() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for bad in [f32::NAN, f32::INFINITY] {
            // One bad logit among 100, at a wanted token and elsewhere; and a whole bad row.
            for (at, wanted) in [(7usize, vec![7u32]), (50, vec![7]), (usize::MAX, vec![7])] {
                let mut row = vec![0.5f32; 100];
                match row.get_mut(at) {
                    Some(v) => *v = bad,
                    None => row.fill(bad),
                }
                let logits = Tensor::from_vec(row, (1, 100), &dev)?;
                let e = log_probs_of(&logits, &[wanted]).unwrap_err();
                assert!(
                    matches!(e, crate::error::Error::NonFinite(_)),
                    "{bad} at {at}: {e}"
                );
                assert!(log_softmax_rows(&logits).is_err(), "{bad} at {at}");
            }
        }
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

    /// Chunks folded in one at a time and parts merged in any grouping give the whole
    /// row's normaliser: rising and falling maxima, chunks of `-inf`, a tail shorter than
    /// a vector; a NaN or infinite logit in any chunk is the whole row's error.
    #[test]
    fn a_running_normaliser_matches_the_whole_rows() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let mut row = (Tensor::randn(0f32, 8.0, 1003, &dev)? + 20.0)?.to_vec1::<f32>()?;
        // A rising then falling ramp makes later chunks rescale earlier sums.
        for (i, x) in row.iter_mut().enumerate().take(400) {
            *x += i as f32 * 0.2;
        }
        row[500..540].fill(f32::NEG_INFINITY);
        let want = finite_log_sum_exp(&row)?;
        for chunk in [1, 7, 40, 256, 1003] {
            let mut one = RunningLse::EMPTY;
            let mut parts = [RunningLse::EMPTY; 3];
            for (c, piece) in row.chunks(chunk).enumerate() {
                one.add(piece);
                parts[c % 3].add(piece);
            }
            let mut merged = RunningLse::EMPTY;
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            for got in [one.finish()?, merged.finish()?] {
                assert!((got - want).abs() <= 1e-5 * want.abs(), "chunk {chunk}: {got} vs {want}");
            }
        }
        let mut none = RunningLse::EMPTY;
        none.add(&[f32::NEG_INFINITY; 9]);
        assert!(none.finish().is_err(), "no possible token");
        for bad in [f32::NAN, f32::INFINITY] {
            let mut r = row.clone();
            r[900] = bad;
            let (mut a, mut b) = (RunningLse::EMPTY, RunningLse::EMPTY);
            a.add(&r[..500]);
            b.add(&r[500..]);
            a.merge(&b);
            let e = a.finish().unwrap_err();
            assert!(matches!(e, crate::error::Error::NonFinite(_)), "{bad}: {e}");
        }
        Ok(())
    }
}
