//! Keys and values of a search's answer tokens, stored as the nodes of a token tree that
//! continues a shared prompt.
//!
//! Beam search used to keep one cache row per beam and copy (reorder) all of them on every
//! step. Here every computed token is a node, appended once and never copied: a new row
//! names the nodes it attends to (its ancestors, then itself) and each layer gathers them.
//! Beams that share a parent share its node, and rows of one pass may continue each other,
//! which is what lets a search feed a title's forced tokens ahead of time
//! ([`crate::decode::BeamState`]).

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Per-layer `(keys, values)` of every node, each `[nodes, kv_heads, head_dim]`.
#[derive(Debug)]
pub struct TreeKv {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl TreeKv {
    pub fn new(num_layers: usize) -> Self {
        TreeKv {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Nodes held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `k`, `v` `[rows, kv_heads, head_dim]` to layer `i` as the next nodes.
    pub(crate) fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<()> {
        self.layers[i] = Some(match self.layers[i].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 0)?, Tensor::cat(&[&pv, &v], 0)?),
        });
        Ok(())
    }

    /// Layer `i`'s keys and values of every node, `[nodes, kv_heads, head_dim]` each.
    pub(crate) fn layer(&self, i: usize) -> Result<(&Tensor, &Tensor)> {
        self.layers[i]
            .as_ref()
            .map(|(k, v)| (k, v))
            .ok_or_else(|| Error::invalid(format!("tree cache: layer {i} holds no nodes")))
    }

    /// Layer `i`'s keys and values of the nodes `ids` (`[rows * depth]`, row-major), as
    /// `[rows, kv_heads, depth, head_dim]` each: every row's own cache, as attention reads it.
    pub(crate) fn gather(
        &self,
        i: usize,
        ids: &Tensor,
        rows: usize,
        depth: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.layer(i)?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            let (_, kvh, hd) = t.dims3()?;
            Ok(t.index_select(ids, 0)?
                .reshape((rows, depth, kvh, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        Ok((pick(k)?, pick(v)?))
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Bytes of the keys and values held.
    pub fn memory_bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }
}

/// What one pass's new rows attend to within a [`TreeKv`], as the tensors attention takes:
/// the node ids each row gathers (padded to the deepest row) and the mask that hides the
/// padding.
pub(crate) struct TreeRows {
    pub rows: usize,
    /// Nodes per row after padding: the deepest row's context.
    pub depth: usize,
    /// `[rows * depth]` node ids; padding repeats the row's own node.
    pub ids: Tensor,
    /// `[rows, 1, 1, depth]`: 0 where a row attends, `-inf` on its padding; `None` when
    /// every row has the same depth.
    pub mask: Option<Tensor>,
}

impl TreeRows {
    /// `contexts[r]`: the nodes row `r` attends to, ancestors first and its own node last,
    /// numbered as if this pass's rows were already appended after the `held` nodes.
    pub fn new(contexts: &[Vec<u32>], held: usize, device: &Device) -> Result<Self> {
        let rows = contexts.len();
        let limit = held + rows;
        let depth = contexts.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * depth);
        let mut mask = Vec::with_capacity(rows * depth);
        for (r, ctx) in contexts.iter().enumerate() {
            let own = (held + r) as u32;
            if ctx.last() != Some(&own) {
                return Err(Error::invalid(format!(
                    "tree rows: row {r} must end its context with its own node {own}, got {ctx:?}"
                )));
            }
            if let Some(&bad) = ctx.iter().find(|&&n| n as usize >= limit) {
                return Err(Error::invalid(format!(
                    "tree rows: row {r} attends to node {bad} of {limit}"
                )));
            }
            ids.extend_from_slice(ctx);
            ids.extend(std::iter::repeat_n(own, depth - ctx.len()));
            mask.extend(std::iter::repeat_n(0f32, ctx.len()));
            mask.extend(std::iter::repeat_n(f32::NEG_INFINITY, depth - ctx.len()));
        }
        let ragged = contexts.iter().any(|c| c.len() != depth);
        Ok(TreeRows {
            rows,
            depth,
            ids: Tensor::from_vec(ids, rows * depth, device)?,
            mask: if ragged {
                Some(Tensor::from_vec(mask, (rows, 1, 1, depth), device)?)
            } else {
                None
            },
        })
    }
}
