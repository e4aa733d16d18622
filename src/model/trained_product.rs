//! `x W^T` for a weight that trains (full fine-tuning): one autograd node whose backward
//! pass writes the gradients of `x` and `W` each once, on host slices.
//!
//! Why not candle's matmul: `x.matmul(&w.t())` is a transpose node and, for a batch of
//! sequences, a broadcast node before the product; candle's backward pass gives each of
//! them a weight-sized gradient summed into a fresh zero tensor, and sums the broadcast
//! copies back. For SmolLM2 that is three extra weight-sized tensors per projection per
//! micro-batch.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::host::{f32_elements, kernels_on, with_elements};
use super::product::{product, Mat};
use crate::error::Result;

/// `x` `[.., in]` times the transpose of `w` `[out, in]`, differentiable in both.
pub(crate) fn trained_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !kernels_on(x.device()) || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return Ok(x.broadcast_matmul(&w.t()?)?);
    }
    let dims = x.dims().to_vec();
    let input = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / input.max(1);
    let (out, _) = w.dims2()?;
    let flat = x.contiguous()?.reshape((rows, input))?;
    let y = flat.apply_op2(&w.contiguous()?, TrainedProduct)?;
    let mut shape = dims;
    *shape.last_mut().expect("x has a last dimension") = out;
    Ok(y.reshape(shape)?)
}

struct TrainedProduct;

impl TrainedProduct {
    const NAME: &'static str = "trained-product";
}

impl CustomOp2 for TrainedProduct {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, input) = xl.shape().dims2()?;
        let (out, w_in) = wl.shape().dims2()?;
        if w_in != input {
            candle_core::bail!("{}: x has {input} columns, W {w_in}", Self::NAME);
        }
        let x = f32_elements(Self::NAME, xs, xl)?;
        let w = f32_elements(Self::NAME, ws, wl)?;
        let mut y = vec![0f32; rows * out];
        product(&mut y, Mat::new(x, rows, input), Mat::new(w, out, input).t(), false, 1.0);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let [x, w, dy] = [x, w, dy].map(|t| t.detach().contiguous());
        let (x, w, dy) = (x?, w?, dy?);
        let (rows, input) = x.dims2()?;
        let (out, _) = w.dims2()?;
        let (dx, dw) = with_elements(Self::NAME, &x, |xv| {
            with_elements(Self::NAME, &w, |wv| {
                with_elements(Self::NAME, &dy, |dyv| {
                    let dym = Mat::new(dyv, rows, out);
                    let mut dx = vec![0f32; rows * input];
                    product(&mut dx, dym, Mat::new(wv, out, input), false, 1.0);
                    let mut dw = vec![0f32; out * input];
                    product(&mut dw, dym.t(), Mat::new(xv, rows, input), false, 1.0);
                    Ok((dx, dw))
                })
            })
        })?;
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (rows, input), device)?),
            Some(Tensor::from_vec(dw, (out, input), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    /// Values and the gradients of `x` and `W` against candle's broadcast product.
    #[test]
    fn matches_candles_product_and_both_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 33), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (19, 33), &dev)?)?;
        let ours = trained_product(x.as_tensor(), w.as_tensor())?;
        let theirs = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
        assert_eq!(ours.dims(), &[2, 7, 19]);
        assert!(max_diff(&ours, &theirs) < 1e-4);
        let probe = Tensor::randn(0f32, 1.0, (2, 7, 19), &dev)?;
        let g_ours = (&ours * &probe)?.sum_all()?.backward()?;
        let g_theirs = (&theirs * &probe)?.sum_all()?.backward()?;
        for v in [&x, &w] {
            let (p, q) = (
                g_ours.get(v.as_tensor()).expect("a gradient"),
                g_theirs.get(v.as_tensor()).expect("a gradient"),
            );
            assert!(max_diff(p, q) < 1e-3, "gradients differ by {}", max_diff(p, q));
        }
        Ok(())
    }
}
