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

/// `dst = (dst if accumulate) + beta * lhs rhs^T` for row-major `lhs` `[m, k]`, `rhs`
/// `[n, k]` and `dst` `[m, n]`.
///
/// Panics unless the slices hold at least `m * k`, `n * k` and `m * n` elements.
#[allow(clippy::too_many_arguments)]
fn product_nt(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    accumulate: bool,
    beta: f32,
) {
    assert!(lhs.len() >= m * k && rhs.len() >= n * k && dst.len() >= m * n);
    let parallelism = match rayon::current_num_threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // SAFETY: the lengths are checked above; every operand is row-major and contiguous,
    // and rhs^T is read through swapped strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            1f32,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
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
        let mut low = vec![0f32; rows * rank];
        product_nt(rows, rank, input, &mut low, x, a, false, 1.0);
        let mut y = vec![0f32; rows * out];
        product_nt(rows, out, input, &mut y, x, w, false, 1.0);
        product_nt(rows, out, rank, &mut y, &low, b, true, self.scale as f32);
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
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let dy = dy.contiguous()?;
        let dy_b = dy.matmul(&b)?; // [rows, r]
        let dx = (dy.matmul(&self.w)? + (dy_b.matmul(&a)? * self.scale)?)?;
        let da = (dy_b.t()?.matmul(&x)? * self.scale)?;
        let low = x.matmul(&a.t()?)?;
        let db = (dy.t()?.matmul(&low)? * self.scale)?;
        Ok((Some(dx), Some(da), Some(db)))
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
