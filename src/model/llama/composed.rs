//! Attention composed from candle's ops: the way of training (ops with backward passes), of
//! other devices, and of the comparison with the fused op.

use candle_core::{Tensor, D};

use super::layers::At;
use super::Llama;
use crate::error::Result;
use crate::model::kv_cache::KvCache;

impl Llama {
    /// candle's fused softmax has no backward pass; training uses ours, which has.
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.differentiable {
            crate::model::softmax::softmax_last_dim(x)?
        } else {
            candle_nn::ops::softmax_last_dim(x)?
        })
    }

    /// Attention after the projections: `q` `[b, heads, t, hd]`, `k`, `v`
    /// `[b, kv_heads, t, hd]` (before RoPE) at positions `at`; returns
    /// `[b, t, heads * hd]` for the output projection.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attend(
        &self,
        layer: usize,
        q: &Tensor,
        k: Tensor,
        v: Tensor,
        at: At,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        let (h, kvh, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_kv_heads(),
            self.cfg.head_dim(),
        );
        let rep = h / kvh;
        let (q, k) = match at {
            At::Span(pos) => (
                self.rope.apply(q, pos, self.differentiable)?,
                self.rope.apply(&k, pos, self.differentiable)?,
            ),
            At::Rows((cos, sin)) => (
                self.rope.rotate(q, cos, sin, self.differentiable)?,
                self.rope.rotate(&k, cos, sin, self.differentiable)?,
            ),
        };
        let (k, v) = cache.extend(layer, k, v)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let q = (q.reshape((b, kvh, rep * t, hd))? * scale)?;
        let pre = prefix.and_then(|p| p.layer(layer));
        Ok(self
            .weigh(&q, &k, &v, mask, pre)?
            .reshape((b, h, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?)
    }

    /// Grouped-query attention without repeating K/V: `q` `[b, kvh, rep * t, hd]`, already
    /// scaled (the `rep` query heads sharing one KV head stacked along the row axis), over
    /// a shared prefix's keys and values `pre` (batch 1 or `b`) and the rows' own `k`, `v`
    /// `[b, kvh, s, hd]`, `mask` added to the own scores. Returns `[b, kvh, rep * t, hd]`.
    pub(super) fn weigh(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        pre: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        if let (true, Some(mask), None) = (self.differentiable, mask, pre) {
            let softmax = |x: &Tensor| crate::model::softmax::softmax_last_dim(x);
            return crate::model::attend_train::masked_attention(q, k, v, mask, softmax);
        }
        let mut own = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            own = own.broadcast_add(mask)?;
        }
        Ok(match pre {
            None => self.softmax(&own)?.matmul(v)?,
            Some((pk, pv)) => {
                let pre_scores = attend_shared(q, pk)?;
                let p_len = pre_scores.dim(D::Minus1)?;
                let all = Tensor::cat(&[&pre_scores, &own], D::Minus1)?;
                let p = self.softmax(&all)?;
                let p_pre = p.narrow(D::Minus1, 0, p_len)?;
                let p_own = p.narrow(D::Minus1, p_len, own.dim(D::Minus1)?)?;
                (weigh_shared(&p_pre, pv)? + p_own.matmul(v)?)?
            }
        })
    }
}

/// Scores of `q` `[b, kvh, r, hd]` against a prefix's keys `[pb, kvh, p, hd]`. When the
/// prefix has one row and `q` several (beams), all query rows go through one matmul
/// against the single copy of the keys instead of broadcasting them `b` times.
fn attend_shared(q: &Tensor, pk: &Tensor) -> Result<Tensor> {
    let (b, kvh, r, hd) = q.dims4()?;
    if pk.dim(0)? == b {
        return Ok(q.matmul(&pk.t()?)?);
    }
    let p = pk.dim(2)?;
    let q1 = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((1, kvh, b * r, hd))?;
    let s = q1.matmul(&pk.t()?)?; // [1, kvh, b*r, p]
    Ok(s.reshape((kvh, b, r, p))?.transpose(0, 1)?.contiguous()?)
}

/// `probs` `[b, kvh, r, p]` times a prefix's values `[pb, kvh, p, hd]`, sharing as above.
fn weigh_shared(probs: &Tensor, pv: &Tensor) -> Result<Tensor> {
    let (b, kvh, r, p) = probs.dims4()?;
    if pv.dim(0)? == b {
        return Ok(probs.matmul(pv)?);
    }
    let hd = pv.dim(3)?;
    let p1 = probs
        .transpose(0, 1)?
        .contiguous()?
        .reshape((1, kvh, b * r, p))?;
    let o = p1.matmul(pv)?; // [1, kvh, b*r, hd]
    Ok(o.reshape((kvh, b, r, hd))?.transpose(0, 1)?.contiguous()?)
}
