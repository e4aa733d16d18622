//! The output head and the cross-entropy of its targets as one autograd node, for
//! training: `nll_i = ln Σ_v exp(h_i · T_v) - h_i · T_(target_i)` for hidden rows `h` and
//! the head's table `T` `[vocab, hidden]`, differentiable in `h` and in whatever part of
//! `T` trains (nothing, the whole table, or a block of rows such as the new tokens' rows
//! beside a frozen table).
//!
//! Why one op: composed, the tied head of a LoRA stage copies the whole table into a new
//! one with the trained rows in place on every pass, and its backward pass computes the
//! gradient of that whole table (a product as large as the forward one, ~113 MB for
//! SmolLM2) only to keep the rows that train; `log_softmax` and `gather` add half a dozen
//! `[answer tokens, vocab]` temporaries, each summed into a fresh zero tensor by candle's
//! backward pass. Here the forward pass keeps the softmax probabilities, and the backward
//! pass turns them into the logits' gradient in place and multiplies it out.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::expf::scaled_exp_in_place;
use super::host::{f32_elements, kernels_on, with_elements};
use super::logprobs::log_sum_exp;
use super::product::{product, Mat};
use crate::error::Result;

/// The output head's table and what of it trains.
pub(crate) enum HeadTable<'a> {
    /// Nothing trains.
    Frozen(&'a Tensor),
    /// The whole table trains.
    Whole(&'a Tensor),
    /// `rows` `[n, hidden]` train in place of `base`'s rows `start..start + n`.
    Rows {
        base: &'a Tensor,
        rows: &'a Tensor,
        start: usize,
    },
}

/// The negative log-likelihood of each of `targets` under the head's logits of the rows of
/// `hidden` `[targets.len(), hidden]`: `[targets.len()]`.
pub(crate) fn target_nll(hidden: &Tensor, table: HeadTable, targets: &[u32]) -> Result<Tensor> {
    let (a, _) = hidden.dims2()?;
    if a != targets.len() {
        return Err(crate::error::Error::invalid(format!(
            "{a} hidden rows for {} targets",
            targets.len()
        )));
    }
    let tensors: Vec<&Tensor> = match &table {
        HeadTable::Frozen(t) | HeadTable::Whole(t) => vec![hidden, t],
        HeadTable::Rows { base, rows, .. } => vec![hidden, base, rows],
    };
    let host = kernels_on(hidden.device()) && tensors.iter().all(|t| t.dtype() == DType::F32);
    if !host {
        return composed(hidden, &table, targets);
    }
    let hidden = hidden.contiguous()?;
    let op = |base: Option<&Tensor>, start: usize| -> Result<HeadNll> {
        Ok(HeadNll {
            base: base.map(|b| b.detach().contiguous()).transpose()?,
            start,
            targets: targets.to_vec(),
            probs: Mutex::new(None),
        })
    };
    Ok(match table {
        HeadTable::Frozen(t) => hidden.apply_op1(op(Some(t), 0)?)?,
        HeadTable::Whole(t) => hidden.apply_op2(&t.contiguous()?, op(None, 0)?)?,
        HeadTable::Rows { base, rows, start } => {
            hidden.apply_op2(&rows.contiguous()?, op(Some(base), start)?)?
        }
    })
}

/// The same with candle's ops, for other devices and dtypes (and as the tests' reference).
fn composed(hidden: &Tensor, table: &HeadTable, targets: &[u32]) -> Result<Tensor> {
    let table = match table {
        HeadTable::Frozen(t) => t.detach(),
        HeadTable::Whole(t) => (*t).clone(),
        HeadTable::Rows { base, rows, start } => {
            let (v, _) = base.dims2()?;
            let n = rows.dim(0)?;
            let mut parts = Vec::with_capacity(3);
            if *start > 0 {
                parts.push(base.narrow(0, 0, *start)?);
            }
            parts.push((*rows).clone());
            if start + n < v {
                parts.push(base.narrow(0, start + n, v - start - n)?);
            }
            Tensor::cat(&parts, 0)?
        }
    };
    let logits = hidden.matmul(&table.t()?)?;
    let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
    let targets = Tensor::new(targets, hidden.device())?.unsqueeze(1)?;
    Ok(logp.gather(&targets, 1)?.squeeze(1)?.neg()?)
}

struct HeadNll {
    /// The frozen table `[vocab, hidden]` (`None` when the whole table trains).
    base: Option<Tensor>,
    /// Where the trained rows (the second operand) sit in the table.
    start: usize,
    targets: Vec<u32>,
    /// The forward pass's softmax probabilities `[targets, vocab]`, for the backward pass.
    probs: Mutex<Option<Vec<f32>>>,
}

impl HeadNll {
    const NAME: &'static str = "head-nll";

    /// The trained operand's elements and row count, if there is one.
    fn check(
        &self,
        h: &Layout,
        trained: Option<&Layout>,
    ) -> candle_core::Result<(usize, usize, usize)> {
        let (a, d) = h.shape().dims2()?;
        if a != self.targets.len() {
            candle_core::bail!("{}: {a} rows for {} targets", Self::NAME, self.targets.len());
        }
        let n = match trained {
            Some(l) => {
                let (n, td) = l.shape().dims2()?;
                if td != d {
                    candle_core::bail!("{}: hidden {d}, trained rows {td} wide", Self::NAME);
                }
                n
            }
            None => 0,
        };
        let v = match &self.base {
            Some(b) => {
                let (v, bd) = b.dims2()?;
                if bd != d || self.start + n > v {
                    candle_core::bail!(
                        "{}: table {:?}, hidden {d}, {n} trained rows from {}",
                        Self::NAME,
                        b.dims(),
                        self.start
                    );
                }
                v
            }
            None => n,
        };
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("{}: target {t} is outside the vocabulary ({v})", Self::NAME);
        }
        Ok((a, d, v))
    }

    /// Each row's negative log-likelihood; keeps the softmax probabilities.
    fn forward(
        &self,
        h: &[f32],
        (a, d, v): (usize, usize, usize),
        trained: Option<&[f32]>,
    ) -> candle_core::Result<Vec<f32>> {
        let mut logits = vec![0f32; a * v];
        let hm = Mat::new(h, a, d);
        match &self.base {
            Some(base) => with_elements(Self::NAME, base, |base| {
                product(&mut logits, hm, Mat::new(base, v, d).t(), false, 1.0);
                if let Some(rows) = trained {
                    let n = rows.len() / d;
                    let mut own = vec![0f32; a * n];
                    product(&mut own, hm, Mat::new(rows, n, d).t(), false, 1.0);
                    for (dst, src) in logits.chunks_exact_mut(v).zip(own.chunks_exact(n)) {
                        dst[self.start..self.start + n].copy_from_slice(src);
                    }
                }
                Ok(())
            })?,
            None => {
                let table = trained.expect("a head with no frozen table trains its whole table");
                product(&mut logits, hm, Mat::new(table, v, d).t(), false, 1.0);
            }
        }
        let mut nll = vec![0f32; a];
        logits
            .par_chunks_mut(v)
            .zip(nll.par_iter_mut())
            .zip(self.targets.par_iter())
            .for_each(|((row, nll), &t)| {
                let lse = log_sum_exp(row);
                *nll = lse - row[t as usize];
                scaled_exp_in_place(row, lse, 1.0);
            });
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(logits);
        Ok(nll)
    }

    /// The gradients of `Σ_i g_i nll_i` in `h` and in the trained operand.
    fn backward(
        &self,
        h: &[f32],
        (a, d, v): (usize, usize, usize),
        trained: Option<&[f32]>,
        g: &[f32],
    ) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let cached = self.probs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut dl = match cached {
            Some(p) => p,
            // A second backward pass over the same graph: compute them again.
            None => {
                self.forward(h, (a, d, v), trained)?;
                self.probs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .expect("the forward pass keeps the probabilities")
            }
        };
        // d nll_i / d logit_iv = p_iv - [v = target_i], times the incoming g_i.
        dl.par_chunks_mut(v)
            .zip(g.par_iter())
            .zip(self.targets.par_iter())
            .for_each(|((row, &gi), &t)| {
                row.iter_mut().for_each(|x| *x *= gi);
                row[t as usize] -= gi;
            });
        let dlm = Mat::new(&dl, a, v);
        let hm = Mat::new(h, a, d);
        let mut dh = vec![0f32; a * d];
        let dtrained = match &self.base {
            Some(base) => with_elements(Self::NAME, base, |base| {
                product(&mut dh, dlm, Mat::new(base, v, d), false, 1.0);
                let Some(rows) = trained else { return Ok(None) };
                let n = rows.len() / d;
                let block = Mat::columns(&dl, a, v, self.start, n);
                // The table's own rows went into dh above: add what the trained rows change.
                let diff: Vec<f32> = rows
                    .iter()
                    .zip(&base[self.start * d..(self.start + n) * d])
                    .map(|(r, b)| r - b)
                    .collect();
                product(&mut dh, block, Mat::new(&diff, n, d), true, 1.0);
                let mut drows = vec![0f32; n * d];
                product(&mut drows, block.t(), hm, false, 1.0);
                Ok(Some(drows))
            })?,
            None => {
                let table = trained.expect("a head with no frozen table trains its whole table");
                product(&mut dh, dlm, Mat::new(table, v, d), false, 1.0);
                let mut dtable = vec![0f32; v * d];
                product(&mut dtable, dlm.t(), hm, false, 1.0);
                Some(dtable)
            }
        };
        Ok((dh, dtrained))
    }

    /// The backward pass on tensors: `hidden`, the trained operand, the incoming gradient.
    fn backward_tensors(
        &self,
        hidden: &Tensor,
        trained: Option<&Tensor>,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let hidden = hidden.detach().contiguous()?;
        let trained = trained.map(|t| t.detach().contiguous()).transpose()?;
        let g = grad.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let dims = {
            let (_, hl) = hidden.storage_and_layout();
            match &trained {
                Some(t) => self.check(hl, Some(t.layout()))?,
                None => self.check(hl, None)?,
            }
        };
        let (dh, dt) = with_elements(Self::NAME, &hidden, |h| match &trained {
            Some(t) => with_elements(Self::NAME, t, |t| self.backward(h, dims, Some(t), &g)),
            None => self.backward(h, dims, None, &g),
        })?;
        let device = hidden.device();
        let dh = Tensor::from_vec(dh, hidden.shape(), device)?;
        let dt = match (dt, &trained) {
            (Some(dt), Some(t)) => Some(Tensor::from_vec(dt, t.shape(), device)?),
            _ => None,
        };
        Ok((dh, dt))
    }
}

impl CustomOp1 for HeadNll {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.check(l, None)?;
        let nll = self.forward(f32_elements(Self::NAME, s, l)?, dims, None)?;
        Ok((CpuStorage::F32(nll), Shape::from(dims.0)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.backward_tensors(arg, None, grad)?.0))
    }
}

impl CustomOp2 for HeadNll {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.check(l1, Some(l2))?;
        let h = f32_elements(Self::NAME, s1, l1)?;
        let trained = f32_elements(Self::NAME, s2, l2)?;
        let nll = self.forward(h, dims, Some(trained))?;
        Ok((CpuStorage::F32(nll), Shape::from(dims.0)))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dh, dt) = self.backward_tensors(arg1, Some(arg2), grad)?;
        Ok((Some(dh), dt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    /// Values and gradients of the fused op against the composed one, for each way the
    /// table trains, with a repeated target and weights on the rows' losses.
    #[test]
    fn the_fused_loss_matches_the_composed_one_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let (a, d, v) = (6, 24, 53);
        let targets = [0u32, 52, 17, 17, 40, 3];
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (a, d), &dev)?)?;
        let table = Var::from_tensor(&Tensor::randn(0f32, 0.5, (v, d), &dev)?)?;
        let base = Tensor::randn(0f32, 0.5, (v, d), &dev)?;
        let rows = Var::from_tensor(&Tensor::randn(0f32, 0.5, (4, d), &dev)?)?;
        let weights = Tensor::new(&[1f32, 0.5, -2.0, 1.0, 3.0, 0.25], &dev)?;
        let cases: [(&str, HeadTable, Option<&Var>); 4] = [
            ("frozen", HeadTable::Frozen(&base), None),
            ("whole", HeadTable::Whole(table.as_tensor()), Some(&table)),
            (
                "rows inside",
                HeadTable::Rows { base: &base, rows: rows.as_tensor(), start: 15 },
                Some(&rows),
            ),
            (
                "rows at the end",
                HeadTable::Rows { base: &base, rows: rows.as_tensor(), start: v - 4 },
                Some(&rows),
            ),
        ];
        for (name, table, trained) in cases {
            let ours = target_nll(h.as_tensor(), table_ref(&table), &targets)?;
            let theirs = composed(h.as_tensor(), &table, &targets)?;
            assert_eq!(ours.dims(), &[a]);
            assert!(max_diff(&ours, &theirs) < 1e-4, "{name}: {}", max_diff(&ours, &theirs));
            let g_ours = (&ours * &weights)?.sum_all()?.backward()?;
            let g_theirs = (&theirs * &weights)?.sum_all()?.backward()?;
            let mut checked = vec![h.as_tensor()];
            checked.extend(trained.map(|t| t.as_tensor()));
            for t in checked {
                let (p, q) = (g_ours.get(t).expect("a gradient"), g_theirs.get(t).expect("a gradient"));
                let scale = q.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
                assert!(max_diff(p, q) / scale < 1e-5, "{name}: gradients differ by {}", max_diff(p, q));
            }
            assert!(g_ours.get(&base).is_none(), "{name}: the base table is frozen");
        }
        Ok(())
    }

    fn table_ref<'a>(t: &HeadTable<'a>) -> HeadTable<'a> {
        match *t {
            HeadTable::Frozen(x) => HeadTable::Frozen(x),
            HeadTable::Whole(x) => HeadTable::Whole(x),
            HeadTable::Rows { base, rows, start } => HeadTable::Rows { base, rows, start },
        }
    }

    /// A target outside the table is an error that names it, not a read past a row.
    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let h = Tensor::randn(0f32, 1.0, (2, 8), &dev)?;
        let table = Tensor::randn(0f32, 1.0, (10, 8), &dev)?;
        let err = target_nll(&h, HeadTable::Frozen(&table), &[3, 10]).unwrap_err();
        assert!(err.to_string().contains("target 10"), "{err}");
        Ok(())
    }

    /// A second backward pass over the same graph gives the same gradients.
    #[test]
    fn a_second_backward_pass_recomputes_the_probabilities() -> Result<()> {
        let dev = Device::Cpu;
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 8), &dev)?)?;
        let table = Tensor::randn(0f32, 1.0, (11, 8), &dev)?;
        let loss = target_nll(h.as_tensor(), HeadTable::Frozen(&table), &[1, 2, 3])?.sum_all()?;
        let first = loss.backward()?;
        let second = loss.backward()?;
        let (p, q) = (first.get(h.as_tensor()).unwrap(), second.get(h.as_tensor()).unwrap());
        assert_eq!(max_diff(p, q), 0.0);
        Ok(())
    }
}
