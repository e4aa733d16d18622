//! The output head's product reduced, as it is made, to what a beam step reads: for each
//! row, the log-probabilities of its wanted tokens.
//!
//! Why fused: the head is the widest product of a decode pass (49,152 columns for
//! SmolLM2). Written out, its logits are 3.9 MB at 20 rows and 31 MB at a batched pass of
//! 160, which then go through memory three more times (a copy into a host vector, the
//! maximum, the sum of exponentials). Here each thread makes its columns a chunk at a time
//! into a buffer that stays in cache, folds the chunk into each row's running normaliser
//! (`logprobs::RunningLse`), and keeps the wanted tokens' logits; the threads' normalisers
//! are merged at the end.

use std::sync::OnceLock;

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

use super::{isa, takes, Isa, Prepared, Rows, Weight};
use crate::error::Result;
use crate::model::host::f32_elements;
use crate::model::logprobs::{check_wanted, RunningLse};

/// Output columns a thread makes at a time (rounded up to its alignment): a chunk of 160
/// rows is 160 KB, within the L2 of the CPUs measured.
const CHUNK: usize = 256;

/// Whether the model takes the fused head: `PATCHREC_HEAD=logits` makes every head write
/// its logits out first (to compare the two in one build).
pub(crate) fn enabled() -> bool {
    static FUSED: OnceLock<bool> = OnceLock::new();
    *FUSED.get_or_init(|| std::env::var("PATCHREC_HEAD").map_or(true, |v| v != "logits"))
}

/// For each row of `x` `[.., k]` times the head `w` `[vocab, k]` transposed, the
/// log-probabilities of the tokens `wanted[row]` (as `logprobs::log_probs_of` gives them
/// from the whole logits), or `None` where the kernel does not apply (as `matmul_t`).
/// An f32 head keeps the kernel's row limits where `row_limits` asks for them.
pub(crate) fn log_probs_of(
    x: &Tensor,
    w: Weight,
    wanted: &[Vec<u32>],
    row_limits: bool,
) -> Result<Option<Vec<Vec<f32>>>> {
    let k = x.dims().last().copied().unwrap_or(0);
    let Some((n, input)) = w.dims() else {
        return Ok(None);
    };
    let Some(isa) = isa().filter(|&isa| takes(isa, x, w, row_limits)) else {
        return Ok(None);
    };
    if input != k || k == 0 {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    check_wanted(m, n, wanted)?;
    let (x_storage, xl) = x.storage_and_layout();
    let Storage::Cpu(xs) = &*x_storage else {
        return Ok(None);
    };
    let lock = w.lock();
    let Some(rows) = w.rows(&lock)? else {
        return Ok(None);
    };
    let x = f32_elements("output-head", xs, xl)?;
    reduce(isa, x, rows, m, k, n, wanted, true).map(Some)
}

/// What a thread made of its columns: each row's normaliser over them, and the wanted
/// tokens among them as (row, slot in its answer, logit).
type Part = (Vec<RunningLse>, Vec<(usize, usize, f32)>);

/// [`log_probs_of`] on the elements: `x` `[m, k]`, `w` `[n, k]`; panel weights take their
/// kernel where `panel_kernel` allows it (as `rows_times_each`).
#[allow(clippy::too_many_arguments)]
fn reduce(
    isa: Isa,
    x: &[f32],
    w: Rows,
    m: usize,
    k: usize,
    n: usize,
    wanted: &[Vec<u32>],
    panel_kernel: bool,
) -> Result<Vec<Vec<f32>>> {
    let input = Prepared::new(isa, x, &[w], m, k, panel_kernel);
    let align = input.align();
    let chunk = CHUNK.div_ceil(align) * align;
    let per_thread = input.per_thread(n);
    // Each row's wanted tokens in column order, with where each goes in the answer: a
    // thread walks them alongside its chunks.
    let order: Vec<Vec<(u32, usize)>> = wanted
        .iter()
        .map(|want| {
            let mut o: Vec<(u32, usize)> = want.iter().copied().zip(0..).collect();
            o.sort_unstable();
            o
        })
        .collect();
    let parts: Vec<Part> = (0..n.div_ceil(per_thread))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * per_thread, ((c + 1) * per_thread).min(n));
            let mut lse = vec![RunningLse::EMPTY; m];
            let mut picked = Vec::new();
            let mut next: Vec<usize> = order
                .iter()
                .map(|o| o.partition_point(|&(t, _)| (t as usize) < lo))
                .collect();
            let mut logits = vec![0f32; m * chunk];
            let mut scratch = Vec::new();
            let mut a = lo;
            while a < hi {
                let cols = chunk.min(hi - a);
                // SAFETY: `w` is what `input` was prepared for and has `n >= a + cols`
                // rows; `logits` holds `m` rows of `chunk >= cols` columns, this thread's.
                unsafe { input.columns(&w, a, cols, logits.as_mut_ptr(), chunk, &mut scratch) };
                for (i, row) in logits.chunks(chunk).enumerate() {
                    let row = &row[..cols];
                    lse[i].add(row);
                    let o = &order[i];
                    let end = o[next[i]..].partition_point(|&(t, _)| (t as usize) < a + cols);
                    for &(t, slot) in &o[next[i]..][..end] {
                        picked.push((i, slot, row[t as usize - a]));
                    }
                    next[i] += end;
                }
                a += cols;
            }
            (lse, picked)
        })
        .collect();
    let mut total = vec![RunningLse::EMPTY; m];
    for (lse, _) in &parts {
        for (t, part) in total.iter_mut().zip(lse) {
            t.merge(part);
        }
    }
    let lse = total.iter().map(RunningLse::finish).collect::<Result<Vec<f32>>>()?;
    let mut out: Vec<Vec<f32>> = wanted.iter().map(|want| vec![0.0; want.len()]).collect();
    for (_, picked) in parts {
        for (i, slot, logit) in picked {
            out[i][slot] = logit - lse[i];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::super::{rows_times_each, BlockFormat, BlockLayout, BlockWeight, PanelFormat, Panels};
    use super::*;
    use crate::model::logprobs;

    /// The fused head gives what the whole logits give, for every weight format and
    /// kernel this CPU runs, at row counts from one to a batched pass, a vocabulary that
    /// leaves a partial chunk, and wanted lists with the first and last tokens, repeats
    /// and none. The reference is the same kernel's logits written out, so only the
    /// normaliser's order of summation differs.
    #[test]
    fn fused_log_probs_match_the_whole_logits() -> Result<()> {
        let Some(isa) = isa() else {
            eprintln!("neither AVX-512 nor AVX2: fused head not exercised");
            return Ok(());
        };
        let dev = Device::Cpu;
        let (n, k) = (1_000, 64);
        // Logits of a few units, as a trained head gives.
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.5)?;
        let dense = w.flatten_all()?.to_vec1::<f32>()?;
        let mut weights: Vec<(String, Rows, bool)> = vec![("f32".into(), Rows::F32(&dense), true)];
        let blocks: Vec<(BlockFormat, BlockLayout, BlockWeight)> =
            [BlockFormat::Q8_0, BlockFormat::Q4_0]
                .into_iter()
                .flat_map(|f| [BlockLayout::Rows, BlockLayout::Interleaved].map(|l| (f, l)))
                .map(|(f, l)| {
                    let q = BlockWeight::quantize_as(&w, f, l)?.expect("whole blocks");
                    Ok((f, l, q))
                })
                .collect::<Result<_>>()?;
        for (f, l, b) in &blocks {
            weights.push((format!("{f:?} {l:?}"), Rows::Blocks(b), true));
        }
        let panels: Vec<Panels> = [PanelFormat::F32, PanelFormat::Bf16]
            .into_iter()
            .map(|f| Panels::pack(&w, f))
            .collect::<Result<_>>()?;
        for p in &panels {
            for kernel in [true, false] {
                let name = format!("{:?} panels, kernel {kernel}", p.format());
                weights.push((name, Rows::Panels(p), kernel));
            }
        }
        for m in [1, 5, 20, 37] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.to_dtype(DType::F32)?;
            let x = x.flatten_all()?.to_vec1::<f32>()?;
            let wanted: Vec<Vec<u32>> = (0..m)
                .map(|i| match i % 4 {
                    0 => vec![0, n as u32 - 1, 255, 256, 257],
                    1 => vec![],
                    2 => vec![700, 3, 700],
                    _ => (0..n as u32).step_by(7 + i).collect(),
                })
                .collect();
            for (name, rows, kernel) in &weights {
                let got = reduce(isa, &x, *rows, m, k, n, &wanted, *kernel)?;
                let logits = rows_times_each(isa, &x, &[*rows], m, k, &[n], *kernel).remove(0);
                let logits = Tensor::from_vec(logits, (m, n), &dev)?;
                let want = logprobs::log_probs_of(&logits, &wanted)?;
                for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.len(), w.len(), "{name}, {m} rows, row {r}");
                    for (a, b) in g.iter().zip(w) {
                        let close = (a - b).abs() <= 1e-5 * (1.0 + b.abs());
                        assert!(close, "{name}, {m} rows, row {r}: {a} vs {b}");
                    }
                }
            }
        }
        Ok(())
    }

    /// A NaN in the head is the error the whole logits give, not an answer; so is a
    /// wanted token outside the vocabulary, or a list of them per row that does not fit.
    #[test]
    fn bad_heads_and_wanted_tokens_are_errors() -> Result<()> {
        let Some(isa) = isa() else {
            return Ok(());
        };
        let dev = Device::Cpu;
        let (m, n, k) = (20, 1_000, 64);
        let mut w = Tensor::randn(0f32, 1.0, (n, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        let wanted = vec![vec![1u32]; m];
        w[777 * k + 5] = f32::NAN;
        let e = reduce(isa, &x, Rows::F32(&w), m, k, n, &wanted, true).unwrap_err();
        assert!(matches!(e, crate::error::Error::NonFinite(_)), "{e}");
        let xt = Tensor::from_vec(x.clone(), (m, k), &dev)?;
        let wt = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        let e = log_probs_of(&xt, Weight::F32(&wt), &vec![vec![n as u32]; m], true).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let e = log_probs_of(&xt, Weight::F32(&wt), &wanted[1..], true).unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
        Ok(())
    }
}
