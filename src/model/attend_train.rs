//! Masked attention as one autograd node, for training: `softmax(q k^T + mask) v` whose
//! backward pass returns the gradients of `q`, `k` and `v`, recomputing the probabilities
//! instead of keeping them.
//!
//! Why one node: composed, it is a product, a masked sum, a softmax and a second product,
//! each with a score-sized result (`[batch, kv_heads, rep * t, s]`: 1.4 M values per layer
//! for a packed pass of 400 positions), and candle's backward pass adds each node's
//! gradient into a fresh zero tensor of that size. Here the backward pass computes its
//! score-sized temporaries once, outside the autograd graph.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, D};

use super::host::f32_elements;
use crate::error::Result;

/// `softmax(q k^T + mask) v` for `q` `[b, kvh, r, hd]` (already scaled), `k`, `v`
/// `[b, kvh, s, hd]` and an additive `mask` `[r, s]`; differentiable in `q`, `k` and `v`.
/// Off the CPU or f32, candle's composed ops with `softmax`'s backward pass.
pub(crate) fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    softmax: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let cpu = super::host::kernels_on(q.device()) && [q, k, v, mask].iter().all(|t| t.dtype() == DType::F32);
    if !cpu {
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        return Ok(softmax(&scores)?.matmul(v)?);
    }
    let op = MaskedAttention {
        mask: mask.detach().contiguous()?,
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

struct MaskedAttention {
    /// `[r, s]`, outside the autograd graph.
    mask: Tensor,
}

impl MaskedAttention {
    /// The attention probabilities `softmax(q k^T + mask)`.
    fn probabilities(&self, q: &Tensor, k: &Tensor) -> candle_core::Result<Tensor> {
        let scores = q.matmul(&k.t()?)?.broadcast_add(&self.mask)?;
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

/// A tensor over a copy of `storage`'s elements, outside any autograd graph.
fn tensor_of(name: &str, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    Tensor::from_slice(
        f32_elements(name, storage, layout)?,
        layout.shape(),
        &candle_core::Device::Cpu,
    )
}

impl CustomOp3 for MaskedAttention {
    fn name(&self) -> &'static str {
        "masked-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = tensor_of(self.name(), qs, ql)?;
        let k = tensor_of(self.name(), ks, kl)?;
        let v = tensor_of(self.name(), vs, vl)?;
        let y = self.probabilities(&q, &k)?.matmul(&v)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let dy = dy.detach().contiguous()?;
        let p = self.probabilities(&q, &k)?;
        let dv = p.t()?.matmul(&dy)?;
        let dp = dy.matmul(&v.t()?)?;
        // Softmax's backward pass: ds = p * (dp - sum(dp * p)) along each row.
        let ds = (&p * dp.broadcast_sub(&(&dp * &p)?.sum_keepdim(D::Minus1)?)?)?;
        let dq = ds.matmul(&k)?;
        let dk = ds.t()?.matmul(&q)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{max_diff, probe_backward};
    use candle_core::{Device, Var};

    /// Values and the gradients of `q`, `k` and `v` against the composed ops, under a
    /// causal mask.
    #[test]
    fn matches_the_composed_attention_and_its_gradients() {
        let dev = Device::Cpu;
        let (b, kvh, rep, t, hd) = (1, 2, 3, 5, 8);
        let var = |shape: (usize, usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
        };
        let (q, k, v) = (
            var((b, kvh, rep * t, hd)),
            var((b, kvh, t, hd)),
            var((b, kvh, t, hd)),
        );
        let mut m = vec![0f32; rep * t * t];
        for r in 0..rep {
            for i in 0..t {
                for j in i + 1..t {
                    m[(r * t + i) * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(m, (rep * t, t), &dev).unwrap();
        let soft = |x: &Tensor| super::super::softmax::softmax_last_dim(x);
        let ours =
            masked_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, soft).unwrap();
        let scores = q
            .as_tensor()
            .matmul(&k.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let theirs = soft(&scores).unwrap().matmul(v.as_tensor()).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g1 = probe_backward(&ours, &probe);
        let g2 = probe_backward(&theirs, &probe);
        for x in [&q, &k, &v] {
            let (a, b) = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            assert!(
                max_diff(a, b) < 1e-4,
                "gradients differ by {}",
                max_diff(a, b)
            );
        }
    }
}
