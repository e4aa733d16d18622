//! The decode pass of beam search: several searches' new answer tokens in one pass, each
//! row against its search's prompt cache and the token tree nodes its context names.

use candle_core::Tensor;

use super::Llama;
use crate::error::{Error, Result};
use crate::model::attend::{attend_tensors, KvAxes, Visible};
use crate::model::kv_cache::KvCache;
use crate::model::pool::on_pool;
use crate::model::proj::Proj;
use crate::model::tree_kv::{TreeKv, TreeRows};

/// One search's rows in [`Llama::forward_groups`]: new answer tokens that continue the
/// shared `prefix` (batch 1: the prompt) through nodes of the search's own `tree`.
pub struct DecodeGroup<'a> {
    pub prefix: &'a KvCache,
    /// This pass's rows are appended to it, in order.
    pub tree: &'a mut TreeKv,
    /// Per new row, the tree nodes it attends to: its ancestors first, its own node last,
    /// numbered as if this pass's rows were already appended. Its length is the row's
    /// position after the prefix, plus one.
    pub contexts: &'a [Vec<u32>],
}

impl Llama {
    /// One decode pass for several searches at once (one query's beams, or concurrent
    /// queries'): `embeds` `[rows, 1, hidden]`, the rows of `groups[0]` first, each one new
    /// answer token of its group's token tree (rows may continue rows of the same pass).
    /// The projections, MLPs and norms run once over all rows (the weights are read once
    /// per pass, not once per query); attention runs per group, each row against its
    /// group's prompt (`prefix`) and the tree nodes its context names. Inference only (the
    /// fused RoPE has no backward pass). Returns the final-norm hidden states
    /// `[rows, 1, hidden]`.
    pub fn forward_groups(&self, embeds: &Tensor, groups: &mut [DecodeGroup]) -> Result<Tensor> {
        on_pool(|| self.forward_groups_here(embeds, groups))
    }

    /// [`Llama::forward_groups`] on the calling thread.
    fn forward_groups_here(&self, embeds: &Tensor, groups: &mut [DecodeGroup]) -> Result<Tensor> {
        let (rows, len, _) = embeds.dims3()?;
        let expected: usize = groups.iter().map(|g| g.contexts.len()).sum();
        if len != 1 || rows != expected {
            return Err(Error::invalid(format!(
                "forward_groups: {rows} rows of {len} positions for groups of {expected} rows, 1 position"
            )));
        }
        let (h, kvh, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_kv_heads(),
            self.cfg.head_dim(),
        );
        let rep = h / kvh;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut positions = Vec::with_capacity(rows);
        let mut trees = Vec::with_capacity(groups.len());
        for g in groups.iter() {
            if let Some(r) = g.contexts.iter().position(Vec::is_empty) {
                return Err(Error::invalid(format!(
                    "forward_groups: row {r} attends to no node (not even its own)"
                )));
            }
            positions.extend(g.contexts.iter().map(|c| g.prefix.len() + c.len() - 1));
            trees.push(TreeRows::new(g.contexts, g.tree.len(), &self.device)?);
        }
        if let Some(&p) = positions.iter().max() {
            self.check_length(p + 1)?;
        }
        let (cos, sin) = self.rope.rows(&positions)?;
        let mut x = embeds.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let hn = self.rms_norm(&x, &block.input_norm)?;
            let a = &block.attn;
            let [q, k, v] = Proj::forward_each([&a.q, &a.k, &a.v], &hn)?;
            // [rows, heads, 1, hd]: one position per row, each at its own position.
            let q = q.reshape((rows, h, 1, hd))?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = k.reshape((rows, kvh, 1, hd))?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            let mut outs = Vec::with_capacity(groups.len());
            let mut start = 0;
            for (g, tree) in groups.iter_mut().zip(&trees) {
                let r = tree.rows;
                g.tree.append(
                    i,
                    k.narrow(0, start, r)?.reshape((r, kvh, hd))?,
                    v.narrow(0, start, r)?.reshape((r, kvh, hd))?,
                )?;
                let pre = Some(g.prefix)
                    .filter(|p| !p.is_empty())
                    .and_then(|p| p.layer(i));
                if self.fuses_attention() {
                    let q = q.narrow(0, start, r)?.reshape((r, h * hd))?;
                    let own = g.tree.layer(i)?;
                    let visible = Visible::Listed(g.contexts);
                    if let Some(out) =
                        attend_tensors(&q, self.heads(), pre, own, KvAxes::Tree, visible)?
                    {
                        outs.push(out.reshape((r, 1, h * hd))?);
                        start += r;
                        continue;
                    }
                }
                let (own_k, own_v) = g.tree.gather(i, &tree.ids, r, tree.depth)?;
                let q = (q.narrow(0, start, r)?.reshape((r, kvh, rep, hd))? * scale)?;
                let out = self.weigh(&q, &own_k, &own_v, tree.mask.as_ref(), pre)?;
                outs.push(out.reshape((r, 1, h * hd))?);
                start += r;
            }
            let att = a.o.forward(&Tensor::cat(&outs, 0)?)?;
            x = (x + att)?;
            let hn = self.rms_norm(&x, &block.post_norm)?;
            x = (x + self.mlp(&block.mlp, &hn)?)?;
        }
        for (g, tree) in groups.iter_mut().zip(&trees) {
            let len = g.tree.len();
            g.tree.set_len(len + tree.rows);
        }
        self.rms_norm(&x, &self.norm)
    }
}
