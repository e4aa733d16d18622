//! `x W^T` for a weight that does not train (LoRA's frozen base), whose backward pass
//! returns the gradient of `x` alone.
//!
//! Why not candle's matmul: its backward pass computes the gradient of both operands
//! whether or not they train. For a frozen projection that is a product as large as the
//! forward one, and a weight-sized gradient allocated (and summed into a zero tensor)
//! per projection per micro-batch, only to be dropped. With every projection frozen that
//! is a third of a step's products.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::error::Result;

/// `x` `[.., in]` times the transpose of `w` `[out, in]`, differentiable in `x` only.
pub(crate) fn frozen_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return Ok(x.broadcast_matmul(&w.t()?)?);
    }
    let dims = x.dims().to_vec();
    let input = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / input.max(1);
    let (out, _) = w.dims2()?;
    let flat = x.contiguous()?.reshape((rows, input))?;
    let y = flat.apply_op1(FrozenProduct {
        w: w.detach().contiguous()?,
    })?;
    let mut shape = dims;
    *shape.last_mut().expect("x has a last dimension") = out;
    Ok(y.reshape(shape)?)
}

struct FrozenProduct {
    /// `[out, in]`, contiguous, outside the autograd graph.
    w: Tensor,
}

impl CustomOp1 for FrozenProduct {
    fn name(&self) -> &'static str {
        "frozen-product"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, input) = layout.shape().dims2()?;
        let x = super::host::f32_elements(self.name(), storage, layout)?;
        let (w_storage, w_layout) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(w_cpu) = &*w_storage else {
            candle_core::bail!("{}: the weight is not on the CPU", self.name());
        };
        let w = super::host::f32_elements(self.name(), w_cpu, w_layout)?;
        let (out, w_in) = w_layout.shape().dims2()?;
        if w_in != input {
            candle_core::bail!("{}: x has {input} columns, W {w_in}", self.name());
        }
        let mut y = vec![0f32; rows * out];
        let threads = rayon::current_num_threads();
        let parallelism = match threads {
            1 => gemm::Parallelism::None,
            n => gemm::Parallelism::Rayon(n),
        };
        // SAFETY: `x` holds rows x input, `w` out x input, `y` rows x out elements, each
        // row-major and contiguous, as the strides below read and write them; W^T is read
        // through swapped strides (rows of W are W^T's columns).
        unsafe {
            gemm::gemm(
                rows,
                out,
                input,
                y.as_mut_ptr(),
                1,
                out as isize,
                false,
                x.as_ptr(),
                1,
                input as isize,
                w.as_ptr(),
                input as isize,
                1,
                0f32,
                1f32,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values and the gradient of `x` against candle's matmul; no gradient for `W`.
    #[test]
    fn matches_candles_product_and_its_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 33), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (19, 33), &dev)?)?;
        let ours = frozen_product(x.as_tensor(), w.as_tensor())?;
        let theirs = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
        let close = |a: &Tensor, b: &Tensor| -> Result<f32> {
            Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
        };
        assert_eq!(ours.dims(), &[2, 7, 19]);
        assert!(close(&ours, &theirs)? < 1e-4);
        let weights = Tensor::randn(0f32, 1.0, (2, 7, 19), &dev)?;
        let g_ours = (&ours * &weights)?.sum_all()?.backward()?;
        let g_theirs = (&theirs * &weights)?.sum_all()?.backward()?;
        let (a, b) = (
            g_ours.get(x.as_tensor()).expect("x's gradient"),
            g_theirs.get(x.as_tensor()).expect("x's gradient"),
        );
        assert!(close(a, b)? < 1e-4);
        assert!(g_ours.get(w.as_tensor()).is_none(), "W is frozen");
        assert!(g_theirs.get(w.as_tensor()).is_some());
        Ok(())
    }
}
