//! One layer's attention, and which way it goes: the fused op (`model/attend/`) over the
//! caches in place, on the CPU at inference; candle's composition (`composed.rs`) otherwise,
//! or for a layer whose tensors the op declines.

use candle_core::{Device, Tensor};

use super::layers::At;
use super::{Attention, Llama};
use crate::error::Result;
use crate::model::attend::{attend_tensors, Heads, KvAxes, Visible};
use crate::model::kv_cache::KvCache;
use crate::model::proj::Proj;

/// How a pass's layers attend, chosen once per pass.
pub(super) enum Via {
    /// The fused op, over the caches in place; it skips the keys a row does not see rather
    /// than masking them. Should it decline a layer's tensors, that layer composes candle's
    /// ops with a causal mask of its own. Consecutive positions only (`At::Span`).
    Fused,
    /// candle's ops, the mask (if any) added to the scores of the pass's own keys: one mask
    /// for all layers, none for a single new position.
    Composed(Option<Tensor>),
}

impl Llama {
    /// Whether this pass may take the fused attention (which may still decline the
    /// tensors it is given).
    pub(super) fn fuses_attention(&self) -> bool {
        self.fused_attention && !self.differentiable && crate::model::host::kernels_on(&self.device)
    }

    pub(super) fn heads(&self) -> Heads {
        Heads {
            heads: self.cfg.num_attention_heads,
            kv_heads: self.cfg.num_kv_heads(),
            head_dim: self.cfg.head_dim(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention(
        &self,
        layer: usize,
        attn: &Attention,
        x: &Tensor,
        at: At,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
        via: &Via,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_kv_heads(),
            self.cfg.head_dim(),
        );
        let [q, k, v] = Proj::forward_each([&attn.q, &attn.k, &attn.v], x)?;
        let mut own_mask = None;
        let mask = match via {
            Via::Composed(mask) => mask.as_ref(),
            Via::Fused => {
                if let At::Span(pos) = at {
                    let out = self.attend_fused(layer, q.clone(), &k, &v, pos, prefix, cache)?;
                    if let Some(out) = out {
                        return attn.o.forward(&out);
                    }
                    // Declined: this layer composes candle's ops, which need the causal mask.
                    if t > 1 {
                        own_mask = Some(self.causal_mask(t, cache.len())?);
                    }
                }
                own_mask.as_ref()
            }
        };
        let q = q.reshape((b, t, h, hd))?.transpose(1, 2)?;
        let k = k.reshape((b, t, kvh, hd))?.transpose(1, 2)?;
        let v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
        let out = self.attend(layer, &q, k, v, at, prefix, cache, mask)?;
        attn.o.forward(&out)
    }

    /// The causal mask of `t` new positions after `past` cached ones ([`causal_mask`]).
    pub(super) fn causal_mask(&self, t: usize, past: usize) -> Result<Tensor> {
        let rep = self.cfg.num_attention_heads / self.cfg.num_kv_heads();
        causal_mask(rep, t, past, &self.device)
    }

    /// [`Llama::attention`] after the projections of one sequence (`q`, `k`, `v`
    /// `[1, t, heads * hd]` and `[1, t, kv_heads * hd]`) through the fused op: RoPE on the
    /// projections' own layout, no transposes of `q` or the output, no mask. `None` (the
    /// cache untouched) when the op declines the tensors.
    #[allow(clippy::too_many_arguments)]
    fn attend_fused(
        &self,
        layer: usize,
        q: Tensor,
        k: &Tensor,
        v: &Tensor,
        pos: usize,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
    ) -> Result<Option<Tensor>> {
        let (_, t, _) = q.dims3()?;
        let shape = self.heads();
        let Heads {
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
        } = shape;
        let q = self.rope.apply_thd(&q.reshape((1, t, h, hd))?, pos)?;
        let k = k.reshape((1, t, kvh, hd))?.transpose(1, 2)?;
        let k = self.rope.apply(&k, pos, false)?;
        let v = v.reshape((1, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
        let past = cache.len();
        let before = cache.layer(layer).cloned();
        let (k, v) = cache.extend(layer, k, v)?;
        let pre = prefix.and_then(|p| p.layer(layer));
        let q = q.reshape((t, h * hd))?;
        let visible = Visible::Causal { past };
        match attend_tensors(&q, shape, pre, (&k, &v), KvAxes::Cache, visible)? {
            Some(out) => Ok(Some(out.reshape((1, t, h * hd))?)),
            None => {
                cache.restore(layer, before);
                Ok(None)
            }
        }
    }
}

/// `-inf` above the diagonal of the new block; all earlier positions are visible.
/// Rows are `rep` stacked copies of the `t` query positions.
fn causal_mask(rep: usize, t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let s = past + t;
    let mut m = vec![0f32; rep * t * s];
    for r in 0..rep {
        for i in 0..t {
            for j in (past + i + 1)..s {
                m[(r * t + i) * s + j] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (rep * t, s), device)?)
}
