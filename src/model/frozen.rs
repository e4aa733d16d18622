//! Products with a weight that does not train (LoRA's frozen base): `x W^T`, whose backward
//! pass returns the gradient of `x` alone, and `x W^T + scale x A^T B^T` with the
//! adapter, whose backward pass returns the gradients of `x`, `A` and `B`.
//!
//! Why not candle's matmul: its backward pass computes the gradient of both operands
//! whether or not they train. For a frozen projection that is a product as large as the
//! forward one, and a weight-sized gradient allocated (and summed into a zero tensor)
//! per projection per micro-batch, only to be dropped. With every projection frozen that
//! is a third of a step's products.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor};

use super::host::with_elements;
use super::product::{product, Mat};
use crate::error::Result;

/// `x` `[.., in]` times the transpose of `w` `[out, in]`, differentiable in `x` only.
pub(crate) fn frozen_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !super::host::kernels_on(x.device()) || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
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
        let (out, w_in) = self.w.dims2()?;
        if w_in != input {
            candle_core::bail!("{}: x has {input} columns, W {w_in}", self.name());
        }
        let mut y = vec![0f32; rows * out];
        with_elements(self.name(), &self.w, |w| {
            product(&mut y, Mat::new(x, rows, input), Mat::new(w, out, input).t(), false, 1.0);
            Ok(())
        })?;
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

/// `x W^T + scale x A^T B^T` for a frozen `w` `[out, in]` and a LoRA adapter `a` `[r, in]`,
/// `b` `[out, r]`: one autograd node whose backward pass returns the gradients of `x`,
/// `A` and `B` (none for `W`).
///
/// Why one op: composed, the adapter is four more nodes (two products, the scaling, the
/// sum), and candle's backward pass gives each node's gradient a fresh zero tensor to add
/// into; for the seven projections of every layer that is several passes over
/// `[rows, out]` per projection, and their page faults.
pub(crate) fn lora_product(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let cpu = super::host::kernels_on(x.device()) && [x, w, a, b].iter().all(|t| t.dtype() == DType::F32);
    if !cpu {
        let low = x.broadcast_matmul(&a.t()?)?;
        return Ok((x.broadcast_matmul(&w.t()?)? + (low.broadcast_matmul(&b.t()?)? * scale)?)?);
    }
    let dims = x.dims().to_vec();
    let input = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / input.max(1);
    let (out, _) = w.dims2()?;
    let flat = x.contiguous()?.reshape((rows, input))?;
    let y = flat.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraProduct {
            w: w.detach().contiguous()?,
            scale,
        },
    )?;
    let mut shape = dims;
    *shape.last_mut().expect("x has a last dimension") = out;
    Ok(y.reshape(shape)?)
}

struct LoraProduct {
    /// `[out, in]`, contiguous, outside the autograd graph.
    w: Tensor,
    scale: f64,
}

impl CustomOp3 for LoraProduct {
    fn name(&self) -> &'static str {
        "lora-product"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, input) = xl.shape().dims2()?;
        let x = super::host::f32_elements(self.name(), xs, xl)?;
        let a = super::host::f32_elements(self.name(), as_, al)?;
        let b = super::host::f32_elements(self.name(), bs, bl)?;
        let (w_storage, w_layout) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(w_cpu) = &*w_storage else {
            candle_core::bail!("{}: the weight is not on the CPU", self.name());
        };
        let w = super::host::f32_elements(self.name(), w_cpu, w_layout)?;
        let (out, w_in) = w_layout.shape().dims2()?;
        let (rank, a_in) = al.shape().dims2()?;
        if w_in != input || a_in != input || bl.shape().dims2()? != (out, rank) {
            candle_core::bail!(
                "{}: x {:?}, W {:?}, A {:?}, B {:?}",
                self.name(),
                xl.dims(),
                w_layout.dims(),
                al.dims(),
                bl.dims()
            );
        }
        let xm = Mat::new(x, rows, input);
        let mut low = vec![0f32; rows * rank];
        product(&mut low, xm, Mat::new(a, rank, input).t(), false, 1.0);
        let mut y = vec![0f32; rows * out];
        product(&mut y, xm, Mat::new(w, out, input).t(), false, 1.0);
        let low = Mat::new(&low, rows, rank);
        product(&mut y, low, Mat::new(b, out, rank).t(), true, self.scale as f32);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [x, a, b, dy] = [x, a, b, dy].map(|t| t.detach().contiguous());
        let (x, a, b, dy) = (x?, a?, b?, dy?);
        let (rows, input) = x.dims2()?;
        let (out, rank) = b.dims2()?;
        let scale = self.scale as f32;
        let name = self.name();
        // Each gradient written once into its own buffer, the adapter's share of dx
        // accumulated into it (composed, that was four tensors of dx's size).
        let (dx, da, db) = with_elements(name, &x, |xv| {
            with_elements(name, &a, |av| {
                with_elements(name, &b, |bv| {
                    with_elements(name, &dy, |dyv| {
                        with_elements(name, &self.w, |wv| {
                            let (xm, am) = (Mat::new(xv, rows, input), Mat::new(av, rank, input));
                            let dym = Mat::new(dyv, rows, out);
                            let mut dy_b = vec![0f32; rows * rank];
                            product(&mut dy_b, dym, Mat::new(bv, out, rank), false, 1.0);
                            let dy_b = Mat::new(&dy_b, rows, rank);
                            let mut dx = vec![0f32; rows * input];
                            product(&mut dx, dym, Mat::new(wv, out, input), false, 1.0);
                            product(&mut dx, dy_b, am, true, scale);
                            let mut da = vec![0f32; rank * input];
                            product(&mut da, dy_b.t(), xm, false, scale);
                            let mut low = vec![0f32; rows * rank];
                            product(&mut low, xm, am.t(), false, 1.0);
                            let mut db = vec![0f32; out * rank];
                            product(&mut db, dym.t(), Mat::new(&low, rows, rank), false, scale);
                            Ok((dx, da, db))
                        })
                    })
                })
            })
        })?;
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (rows, input), device)?),
            Some(Tensor::from_vec(da, (rank, input), device)?),
            Some(Tensor::from_vec(db, (out, rank), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::max_diff;
    use candle_core::{Device, Var};

    /// Values and the gradient of `x` against candle's matmul; no gradient for `W`.
    #[test]
    fn matches_candles_product_and_its_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 33), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (19, 33), &dev)?)?;
        let ours = frozen_product(x.as_tensor(), w.as_tensor())?;
        let theirs = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
        assert_eq!(ours.dims(), &[2, 7, 19]);
        assert!(max_diff(&ours, &theirs) < 1e-4);
        let weights = Tensor::randn(0f32, 1.0, (2, 7, 19), &dev)?;
        let g_ours = (&ours * &weights)?.sum_all()?.backward()?;
        let g_theirs = (&theirs * &weights)?.sum_all()?.backward()?;
        let (a, b) = (
            g_ours.get(x.as_tensor()).expect("x's gradient"),
            g_theirs.get(x.as_tensor()).expect("x's gradient"),
        );
        assert!(max_diff(a, b) < 1e-4);
        assert!(g_ours.get(w.as_tensor()).is_none(), "W is frozen");
        assert!(g_theirs.get(w.as_tensor()).is_some());
        Ok(())
    }

    /// Values and the gradients of `x`, `A` and `B` against candle's composed products;
    /// no gradient for `W`.
    #[test]
    fn the_lora_product_matches_the_composed_one_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 7, 33), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (19, 33), &dev)?)?;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 33), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (19, 4), &dev)?)?;
        let ours = lora_product(
            x.as_tensor(),
            w.as_tensor(),
            a.as_tensor(),
            b.as_tensor(),
            2.0,
        )?;
        let low = x.as_tensor().broadcast_matmul(&a.as_tensor().t()?)?;
        let theirs = (frozen_product(x.as_tensor(), w.as_tensor())?
            + (low.broadcast_matmul(&b.as_tensor().t()?)? * 2.0)?)?;
        assert_eq!(ours.dims(), &[2, 7, 19]);
        assert!(max_diff(&ours, &theirs) < 1e-3);
        let probe = Tensor::randn(0f32, 1.0, (2, 7, 19), &dev)?;
        let g_ours = (&ours * &probe)?.sum_all()?.backward()?;
        let g_theirs = (&theirs * &probe)?.sum_all()?.backward()?;
        for v in [&x, &a, &b] {
            let (p, q) = (
                g_ours.get(v.as_tensor()).expect("a gradient"),
                g_theirs.get(v.as_tensor()).expect("a gradient"),
            );
            assert!(
                max_diff(p, q) < 1e-3,
                "gradients differ by {}",
                max_diff(p, q)
            );
        }
        assert!(g_ours.get(w.as_tensor()).is_none(), "W is frozen");
        Ok(())
    }
}
