//! Masked attention as one autograd node, for training: `softmax(q k^T + mask) v` whose
//! backward pass returns the gradients of `q`, `k` and `v`, recomputing the probabilities
//! instead of keeping them. Products, masking and softmax run on host slices, block by
//! block (`[batch, kv heads]`), rows in parallel.
//!
//! Why one node: composed, it is a product, a masked sum, a softmax and a second product,
//! each with a score-sized result (`[batch, kv_heads, rep * t, s]`: 1.4 M values per layer
//! for a packed pass of 400 positions), and candle's backward pass adds each node's
//! gradient into a fresh zero tensor of that size. Here the backward pass computes its
//! score-sized temporaries once, outside the autograd graph.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::expf::scaled_exp_in_place;
use super::host::{f32_elements, with_elements};
use super::logprobs::log_sum_exp;
use super::product::{product, Mat};
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

/// `[batch, kv heads, rows, width]` of a contiguous operand, as its host elements.
struct Blocks<'a> {
    data: &'a [f32],
    count: usize,
    rows: usize,
    width: usize,
}

impl<'a> Blocks<'a> {
    fn of(name: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<Self> {
        let (b, h, rows, width) = layout.shape().dims4()?;
        Ok(Self {
            data: f32_elements(name, storage, layout)?,
            count: b * h,
            rows,
            width,
        })
    }

    fn block(&self, i: usize) -> Mat<'a> {
        let n = self.rows * self.width;
        Mat::new(&self.data[i * n..(i + 1) * n], self.rows, self.width)
    }
}

impl MaskedAttention {
    const NAME: &'static str = "masked-attention";

    /// The attention probabilities `softmax(q k^T + mask)` of every block, `[blocks, r, s]`.
    fn probabilities(&self, q: &Blocks, k: &Blocks) -> candle_core::Result<Vec<f32>> {
        let (r, s) = (q.rows, k.rows);
        if q.count != k.count || q.width != k.width || self.mask.dims2()? != (r, s) {
            candle_core::bail!(
                "{}: q {}x{}x{}, k {}x{}x{}, mask {:?}",
                Self::NAME,
                q.count,
                r,
                q.width,
                k.count,
                s,
                k.width,
                self.mask.dims()
            );
        }
        let mut p = vec![0f32; q.count * r * s];
        for (i, dst) in p.chunks_exact_mut(r * s).enumerate() {
            product(dst, q.block(i), k.block(i).t(), false, 1.0);
        }
        with_elements(Self::NAME, &self.mask, |mask| {
            p.par_chunks_mut(s).enumerate().for_each(|(row, x)| {
                let m = &mask[(row % r) * s..(row % r + 1) * s];
                x.iter_mut().zip(m).for_each(|(x, m)| *x += m);
                let lse = log_sum_exp(x);
                scaled_exp_in_place(x, lse, 1.0);
            });
            Ok(())
        })?;
        Ok(p)
    }
}

impl CustomOp3 for MaskedAttention {
    fn name(&self) -> &'static str {
        Self::NAME
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
        let q = Blocks::of(Self::NAME, qs, ql)?;
        let k = Blocks::of(Self::NAME, ks, kl)?;
        let v = Blocks::of(Self::NAME, vs, vl)?;
        if v.count != k.count || v.rows != k.rows {
            candle_core::bail!("{}: k {:?}, v {:?}", Self::NAME, kl.dims(), vl.dims());
        }
        let p = self.probabilities(&q, &k)?;
        let (r, s) = (q.rows, k.rows);
        let mut y = vec![0f32; q.count * r * v.width];
        for (i, dst) in y.chunks_exact_mut(r * v.width).enumerate() {
            let pi = Mat::new(&p[i * r * s..(i + 1) * r * s], r, s);
            product(dst, pi, v.block(i), false, 1.0);
        }
        let (b, h, _, _) = ql.shape().dims4()?;
        Ok((CpuStorage::F32(y), Shape::from((b, h, r, v.width))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [q, k, v, dy] = [q, k, v, dy].map(|t| t.detach().contiguous());
        let (q, k, v, dy) = (q?, k?, v?, dy?);
        let blocks = |t: &Tensor, f: &mut dyn FnMut(Blocks) -> candle_core::Result<()>| {
            let (storage, layout) = t.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("{}: a tensor is not on the CPU", Self::NAME);
            };
            f(Blocks::of(Self::NAME, cpu, layout)?)
        };
        let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        blocks(&q, &mut |qb| {
            blocks(&k, &mut |kb| {
                blocks(&v, &mut |vb| {
                    blocks(&dy, &mut |dyb| {
                        let (r, s, hd) = (qb.rows, kb.rows, qb.width);
                        let mut p = self.probabilities(&qb, &kb)?;
                        let mut dp = vec![0f32; p.len()];
                        dv = vec![0f32; vb.data.len()];
                        for i in 0..qb.count {
                            let pi = Mat::new(&p[i * r * s..(i + 1) * r * s], r, s);
                            let dvi = &mut dv[i * s * vb.width..(i + 1) * s * vb.width];
                            product(dvi, pi.t(), dyb.block(i), false, 1.0);
                            let dpi = &mut dp[i * r * s..(i + 1) * r * s];
                            product(dpi, dyb.block(i), vb.block(i).t(), false, 1.0);
                        }
                        // Softmax's backward pass, in place: ds = p * (dp - sum(dp * p)).
                        p.par_chunks_mut(s).zip(dp.par_chunks(s)).for_each(|(p, dp)| {
                            let dot: f32 = p.iter().zip(dp).map(|(p, d)| p * d).sum();
                            p.iter_mut().zip(dp).for_each(|(p, d)| *p *= d - dot);
                        });
                        let ds = p;
                        dq = vec![0f32; qb.data.len()];
                        dk = vec![0f32; kb.data.len()];
                        for i in 0..qb.count {
                            let dsi = Mat::new(&ds[i * r * s..(i + 1) * r * s], r, s);
                            product(&mut dq[i * r * hd..(i + 1) * r * hd], dsi, kb.block(i), false, 1.0);
                            product(&mut dk[i * s * hd..(i + 1) * s * hd], dsi.t(), qb.block(i), false, 1.0);
                        }
                        Ok(())
                    })
                })
            })
        })?;
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
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
        for (b, kvh) in [(1, 2), (2, 3)] {
            matches_for(b, kvh);
        }
    }

    /// One shape: `b` sequences of `kvh` key/value heads.
    fn matches_for(b: usize, kvh: usize) {
        let dev = Device::Cpu;
        let (rep, t, hd) = (3, 5, 8);
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
