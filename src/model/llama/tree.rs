//! A token tree laid out as one sequence, each node attending to its ancestors: packed
//! training's samples, each shared prefix computed once.

use candle_core::{Device, Tensor};

use super::attention::Via;
use super::layers::At;
use super::Llama;
use crate::error::{Error, Result};
use crate::model::pool::on_pool;

impl Llama {
    /// Runs the decoder over a token tree laid out as one sequence, `embeds`
    /// `[1, nodes, hidden]`: node `i` continues `parents[i]` (an earlier node; `None` for
    /// a root), attends to its ancestors and itself only, and sits at its depth in the
    /// tree, so every root-to-node path gets exactly the hidden states it would get as a
    /// sequence of its own. Packed training lays many samples out this way, each shared
    /// prefix computed once. Differentiable when the model is. Returns the final-norm
    /// hidden states `[1, nodes, hidden]`.
    pub fn forward_tree(&self, embeds: &Tensor, parents: &[Option<usize>]) -> Result<Tensor> {
        on_pool(|| {
            let (batch, len, _) = embeds.dims3()?;
            if batch != 1 || len != parents.len() {
                return Err(Error::invalid(format!(
                    "forward_tree: {batch} sequences of {len} positions for a tree of {} nodes",
                    parents.len()
                )));
            }
            let mut depth = Vec::with_capacity(len);
            for (i, p) in parents.iter().enumerate() {
                depth.push(match *p {
                    None => 0,
                    Some(p) if p < i => depth[p] + 1,
                    Some(p) => {
                        return Err(Error::invalid(format!(
                        "forward_tree: node {i} continues node {p}, which does not come before it"
                    )))
                    }
                });
            }
            if let Some(&d) = depth.iter().max() {
                self.check_length(d + 1)?;
            }
            let tables = self.rope.tables(&depth)?;
            let rep = self.cfg.num_attention_heads / self.cfg.num_kv_heads();
            let mask = tree_mask(rep, parents, &self.device)?;
            let mut cache = self.new_cache();
            self.blocks_here(
                embeds,
                At::Rows(&tables),
                None,
                &mut cache,
                Via::Composed(Some(mask)),
            )
        })
    }
}

/// `0` where a node may attend (its ancestors and itself), `-inf` elsewhere; rows are
/// `rep` stacked copies of the nodes, like [`Llama::causal_mask`]'s.
fn tree_mask(rep: usize, parents: &[Option<usize>], device: &Device) -> Result<Tensor> {
    let t = parents.len();
    let mut row = vec![f32::NEG_INFINITY; t * t];
    for i in 0..t {
        let mut j = Some(i);
        while let Some(a) = j {
            row[i * t + a] = 0.0;
            j = parents[a];
        }
    }
    let mut m = Vec::with_capacity(rep * t * t);
    for _ in 0..rep {
        m.extend_from_slice(&row);
    }
    Ok(Tensor::from_vec(m, (rep * t, t), device)?)
}
