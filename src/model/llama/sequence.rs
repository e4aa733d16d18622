//! Sequences that continue a KV cache: a prompt's prefill, a step of cached decoding, a
//! padded training batch.

use candle_core::Tensor;

use super::attention::Via;
use super::layers::At;
use super::Llama;
use crate::error::Result;
use crate::model::kv_cache::KvCache;
use crate::model::pool::on_pool;

impl Llama {
    /// Runs the decoder over `embeds` `[batch, len, hidden]`, which continue the sequence in
    /// `prefix` (shared, read-only; batch 1 or `batch`) followed by `cache` (this call's
    /// own, extended in place). Returns the final-norm hidden states `[batch, len, hidden]`.
    pub fn forward(
        &self,
        embeds: &Tensor,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        on_pool(|| self.forward_here(embeds, prefix, cache))
    }

    /// [`Llama::forward`] on the calling thread.
    fn forward_here(
        &self,
        embeds: &Tensor,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (batch, len, _) = embeds.dims3()?;
        let prefix = prefix.filter(|p| !p.is_empty());
        let pos = prefix.map_or(0, |p| p.len()) + cache.len();
        self.check_length(pos + len)?;
        // The fused attention takes one sequence (over a prefix of one).
        let fuse = self.fuses_attention() && batch == 1 && prefix.is_none_or(|p| p.batch() == 1);
        let via = if fuse {
            Via::Fused
        } else if len > 1 {
            Via::Composed(Some(self.causal_mask(len, cache.len())?))
        } else {
            Via::Composed(None)
        };
        self.blocks_here(embeds, At::Span(pos), prefix, cache, via)
    }
}
