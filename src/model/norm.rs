//! RMSNorm with a backward pass, for training: one pass over each row forward, one back.
//!
//! Why not candle's ops: its fused `rms_norm` has no backward pass, and the composed
//! `rms_norm_slow` (square, sum, divide, add, square root, divide, multiply) writes a
//! temporary per op forward and several per op backward; with two norms per layer that
//! is a large share of a training step's element-wise passes over the hidden states.
//!
//! Forward: `y = x * r * w` with `r = 1 / sqrt(mean(x^2) + eps)` per row.
//! Backward: with `g = dy * w`, `dx = r * g - x * r^3 * sum(g * x) / d`, and
//! `dw = sum over rows of dy * x * r` (computed only when `w` trains).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::host::f32_elements;

/// RMSNorm of `x` `[.., d]` with weight `w` `[d]`, differentiable in both. Contiguous f32
/// on the CPU takes the fused passes; anything else candle's composed op.
pub(crate) fn rms_norm_trainable(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    if !(super::host::kernels_on(x.device()) && x.dtype() == DType::F32 && w.dtype() == DType::F32) {
        return candle_nn::ops::rms_norm_slow(x, w, eps);
    }
    let d = w.dims1()?;
    if x.dims().last() != Some(&d) {
        candle_core::bail!("rms-norm: rows of {:?} against a weight of {d}", x.dims());
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

/// `1 / sqrt(mean(row^2) + eps)`.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "patchrec-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_elements(self.name(), xs, xl)?;
        let w = f32_elements(self.name(), ws, wl)?;
        let d = w.len().max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .for_each(|(y, row)| {
                let r = inv_rms(row, self.eps);
                for ((y, &v), &w) in y.iter_mut().zip(row).zip(w) {
                    *y = v * r * w;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let grad = |of| RmsNormGrad { eps: self.eps, of };
        let dx = x.apply_op3_no_bwd(w, &dy, &grad(Of::Input))?;
        // A frozen weight (LoRA) needs no gradient: skip its pass over every row.
        let dw = if w.track_op() {
            Some(x.apply_op3_no_bwd(w, &dy, &grad(Of::Weight))?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

/// Which gradient of [`RmsNorm`] a [`RmsNormGrad`] computes.
#[derive(Clone, Copy)]
enum Of {
    /// `dx`, shaped like `x`.
    Input,
    /// `dw`, shaped like `w`.
    Weight,
}

/// A gradient of [`RmsNorm`] from `x`, `w` and `dy`.
struct RmsNormGrad {
    eps: f32,
    of: Of,
}

/// Rows per block of the weight gradient's partial sums.
const ROWS_PER_BLOCK: usize = 64;

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        match self.of {
            Of::Input => "patchrec-rms-norm-input-grad",
            Of::Weight => "patchrec-rms-norm-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_elements(self.name(), xs, xl)?;
        let w = f32_elements(self.name(), ws, wl)?;
        let dy = f32_elements(self.name(), gs, gl)?;
        Ok(match self.of {
            Of::Input => (
                CpuStorage::F32(self.input_grad(x, w, dy)),
                xl.shape().clone(),
            ),
            Of::Weight => (
                CpuStorage::F32(self.weight_grad(x, w.len(), dy)),
                wl.shape().clone(),
            ),
        })
    }
}

impl RmsNormGrad {
    /// `dx = r * dy * w - x * r^3 * sum(dy * w * x) / d`, row by row.
    fn input_grad(&self, x: &[f32], w: &[f32], dy: &[f32]) -> Vec<f32> {
        let d = w.len().max(1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
            .for_each(|(dx, (row, dy))| {
                let r = inv_rms(row, self.eps);
                let dot: f32 = row
                    .iter()
                    .zip(dy)
                    .zip(w)
                    .map(|((&v, &g), &w)| v * g * w)
                    .sum();
                let c = r * r * r * dot / d as f32;
                for (((dx, &v), &g), &w) in dx.iter_mut().zip(row).zip(dy).zip(w) {
                    *dx = r * g * w - v * c;
                }
            });
        out
    }

    /// `dw`: `dy * x * r` summed over the rows.
    fn weight_grad(&self, x: &[f32], d: usize, dy: &[f32]) -> Vec<f32> {
        let d = d.max(1);
        // Partial sums over fixed blocks of rows, added in block order: the same sums in
        // the same order whatever the thread count or scheduling, so a training run is
        // reproducible (a resumed run equals an uninterrupted one bit for bit).
        let partials: Vec<Vec<f32>> = x
            .par_chunks(d * ROWS_PER_BLOCK)
            .zip(dy.par_chunks(d * ROWS_PER_BLOCK))
            .map(|(rows, dys)| {
                let mut acc = vec![0f32; d];
                for (row, dy) in rows.chunks(d).zip(dys.chunks(d)) {
                    let r = inv_rms(row, self.eps);
                    for ((a, &v), &g) in acc.iter_mut().zip(row).zip(dy) {
                        *a += g * v * r;
                    }
                }
                acc
            })
            .collect();
        let mut dw = vec![0f32; d];
        for p in &partials {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_diff, probe_backward};
    use super::*;
    use candle_core::{Device, Var};

    /// Values and both gradients against candle's composed `rms_norm_slow`, with a
    /// trainable weight and with a frozen one.
    #[test]
    fn matches_the_composed_norm_and_its_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.5, (2, 5, 24), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 24, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 5, 24), &dev).unwrap();
        let ours = rms_norm_trainable(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let theirs = candle_nn::ops::rms_norm_slow(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let g1 = probe_backward(&ours, &probe);
        let g2 = probe_backward(&theirs, &probe);
        for v in [&x, &w] {
            let (a, b) = (
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert!(
                max_diff(a, b) < 1e-4,
                "gradients differ by {}",
                max_diff(a, b)
            );
        }
        // Frozen weight: the input's gradient alone, the same.
        let frozen = w.as_tensor().detach();
        let ours = rms_norm_trainable(x.as_tensor(), &frozen, 1e-5).unwrap();
        let g3 = probe_backward(&ours, &probe);
        let (a, b) = (
            g3.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(max_diff(a, b) < 1e-4);
        assert!(g3.get(&frozen).is_none());
    }
}
