//! Softmax over the last dimension with a backward pass, for training attention.
//!
//! candle's fused `softmax_last_dim` has no backward pass, and the composed `softmax`
//! (max, sub, exp, sum, div) writes four temporaries the size of the attention scores.
//! This op computes the forward in one pass per row and the backward from its output
//! (`dx = y * (dy - sum(dy * y))`), which is what makes long-sequence training affordable
//! on CPU. Other devices and dtypes use the composed op.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "patchrec-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{}: f32 only", self.name())
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{}: input must be contiguous", self.name())
        };
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(dim)
            .zip(src.par_chunks(dim))
            .for_each(|(dst, row)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (d, &x) in dst.iter_mut().zip(row) {
                    *d = (x - max).exp();
                    sum += *d;
                }
                let inv = 1.0 / sum;
                dst.iter_mut().for_each(|d| *d *= inv);
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let gy = (grad_res * res)?;
        let sum = gy.sum_keepdim(D::Minus1)?;
        Ok(Some((gy - res.broadcast_mul(&sum)?)?))
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if super::host::kernels_on(x.device()) && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_softmax_and_its_gradient() {
        let data: Vec<f32> = (0..60)
            .map(|i| ((i * 37) % 17) as f32 * 0.3 - 2.0)
            .collect();
        let x = Var::from_vec(data, (3, 4, 5), &Device::Cpu).unwrap();
        let w = Tensor::arange(0f32, 60., &Device::Cpu)
            .unwrap()
            .reshape((3, 4, 5))
            .unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (g1, g2) = (
            g1.get(x.as_tensor()).unwrap(),
            g2.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(g1, g2) < 1e-4,
            "gradients differ by {}",
            max_diff(g1, g2)
        );
        // A masked (-inf) entry gets probability 0.
        let m = Tensor::new(&[[0f32, f32::NEG_INFINITY, 1.0]], &Device::Cpu).unwrap();
        assert_eq!(
            softmax_last_dim(&m).unwrap().to_vec2::<f32>().unwrap()[0][1],
            0.0
        );
    }
}
