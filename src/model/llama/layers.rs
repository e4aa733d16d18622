//! What every pass shares: the decoder blocks and the final norm, the MLP, the norms, the
//! output head.

use candle_core::Tensor;

use super::attention::Via;
use super::{Llama, Mlp};
use crate::error::{Error, Result};
use crate::model::head_loss::{target_nll, HeadTable};
use crate::model::kv_cache::KvCache;
use crate::model::logprobs::log_probs_of;
use crate::model::pool::on_pool;
use crate::model::proj::Proj;
use crate::model::skinny::{self, Weight};
use crate::model::swiglu::swiglu;

impl Llama {
    /// The decoder blocks and the final norm over `embeds`, whose positions are `at`,
    /// attending `via` the fused op or candle's.
    pub(super) fn blocks_here(
        &self,
        embeds: &Tensor,
        at: At,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
        via: Via,
    ) -> Result<Tensor> {
        let len = embeds.dim(1)?;
        let mut x = embeds.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let h = self.rms_norm(&x, &block.input_norm)?;
            let h = self.attention(i, &block.attn, &h, at, prefix, cache, &via)?;
            x = (x + h)?;
            let h = self.rms_norm(&x, &block.post_norm)?;
            x = (x + self.mlp(&block.mlp, &h)?)?;
        }
        cache.set_len(cache.len() + len);
        self.rms_norm(&x, &self.norm)
    }

    /// A sequence of `len` positions must fit the RoPE tables.
    pub(super) fn check_length(&self, len: usize) -> Result<()> {
        if len > self.rope.max_positions() {
            return Err(Error::invalid(format!(
                "sequence of {len} positions exceeds the model's {}",
                self.rope.max_positions()
            )));
        }
        Ok(())
    }

    /// SwiGLU: `down(silu(gate(x)) * up(x))`.
    pub(super) fn mlp(&self, mlp: &Mlp, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = Proj::forward_each([&mlp.gate, &mlp.up], x)?;
        mlp.down.forward(&swiglu(&gate, &up)?)
    }

    /// Output-head logits for hidden states `[.., hidden]` -> `[.., vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        on_pool(|| self.logits_here(hidden))
    }

    /// [`Llama::logits`] on the calling thread.
    fn logits_here(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.head_q {
            Some(q) => q.forward(hidden),
            None => dense_logits(hidden, &self.dense_head()?),
        }
    }

    /// The unquantized head `[vocab, hidden]`: its own weight, or the (trained) embedding
    /// table it is tied to.
    fn dense_head(&self) -> Result<Tensor> {
        Ok(match (&self.lm_head, &self.trained_rows) {
            (Some(head), _) => head.clone(),
            (None, Some(rows)) => rows.table(&self.embed)?,
            (None, None) => self.embed.clone(),
        })
    }

    /// For each row of `hidden` `[rows, .., hidden]`, the next-token log-probabilities of
    /// the tokens `wanted[row]`: what a beam step or a candidate's score reads. Where our
    /// kernel multiplies the head, the logits are reduced as they are made and never
    /// written out (`skinny::head_log_probs`); elsewhere they are, and then picked. An f32
    /// head takes the kernel past its row limits here: fused, it ran 1.6x faster than
    /// candle's product with the logits written out at 160 rows (a batched pass of eight
    /// queries), where the product alone is slower (`cargo bench --bench skinny`).
    pub(crate) fn log_probs_of(
        &self,
        hidden: &Tensor,
        wanted: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        on_pool(|| {
            // A dense head is looked up once, for the fused path and the fallback alike.
            let dense = match self.head_q {
                None => Some(self.dense_head()?),
                Some(_) => None,
            };
            let head = match (&self.head_q, &dense) {
                (Some(Proj::Blocks(b)), _) => Some(Weight::Blocks(b)),
                (Some(Proj::Panels(p)), _) => Some(Weight::Panels(p)),
                (None, Some(d)) => Some(Weight::F32(d)),
                _ => None,
            };
            if let Some(head) = head.filter(|_| skinny::fused_head()) {
                if let Some(logp) = skinny::head_log_probs(hidden, head, wanted, false)? {
                    return Ok(logp);
                }
            }
            let logits = match &dense {
                Some(d) => dense_logits(hidden, d)?,
                None => self.logits_here(hidden)?,
            };
            log_probs_of(&logits, wanted)
        })
    }

    /// `Σ -ln p(target)` over the rows of `hidden` `[targets.len(), hidden]` under the
    /// output head: a training loss, as one node of the autograd graph that trains what of
    /// the head trains (`model::head_loss`).
    pub fn target_nll_sum(&self, hidden: &Tensor, targets: &[u32]) -> Result<Tensor> {
        on_pool(|| {
            if self.head_q.is_some() {
                let logits = self.logits_here(hidden)?;
                let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
                let targets = Tensor::new(targets, hidden.device())?.unsqueeze(1)?;
                return Ok(logp.gather(&targets, 1)?.sum_all()?.neg()?);
            }
            let rows;
            let whole_or_frozen = |t| {
                if Tensor::track_op(t) {
                    HeadTable::Whole(t)
                } else {
                    HeadTable::Frozen(t)
                }
            };
            let table = match (&self.lm_head, &self.trained_rows) {
                (Some(head), _) => whole_or_frozen(head),
                (None, Some(trained)) => {
                    rows = trained.current();
                    HeadTable::Rows {
                        base: &self.embed,
                        rows: &rows,
                        start: trained.start,
                    }
                }
                (None, None) => whole_or_frozen(&self.embed),
            };
            Ok(target_nll(hidden, table, targets)?.sum_all()?)
        })
    }

    pub(super) fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps as f32;
        Ok(if self.differentiable {
            crate::model::norm::rms_norm_trainable(x, w, eps)?
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?
        })
    }
}

/// Where a pass's new positions sit.
#[derive(Clone, Copy)]
pub(super) enum At<'a> {
    /// Consecutive, from this position on.
    Span(usize),
    /// Each row at its own position: the RoPE tables of the rows, `[t, head_dim / 2]`.
    Rows(&'a (Tensor, Tensor)),
}

/// `hidden` `[.., hidden]` times the dense head `[vocab, hidden]` transposed: our kernel
/// where it applies, candle's matmul elsewhere.
fn dense_logits(hidden: &Tensor, head: &Tensor) -> Result<Tensor> {
    if let Some(y) = skinny::matmul_t(hidden, head)? {
        return Ok(y);
    }
    Ok(hidden.broadcast_matmul(&head.t()?)?)
}
