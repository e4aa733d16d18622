//! Packed training: the examples of a pass as one token tree.
//!
//! Every example is a path of positions: its prompt (template head, history, tail) then
//! the answer tokens it is fed. Paths that begin alike share their first nodes, so the
//! template's head is computed once per pass, and the targets of one user whose prompts
//! only grow at the end (stream-aligned sessions, or any layout while the history fits
//! K) share their history up to where they part. Each node attends only to its ancestors
//! and itself and sits at its depth ([`crate::model::Llama::forward_tree`]), so every
//! path gets the hidden states, loss and gradients of its own unpacked sequence; only
//! the summation order differs.
//!
//! This is the jagged training of sequential recommenders (a user's sequence once, every
//! target trained from it) applied to prompts with a template around the history.

use std::collections::HashMap;

use candle_core::Tensor;

use super::batch::{answer_ids, BatchLoss, Example};
use crate::catalog::CatalogSnapshot;
use crate::error::Result;
use crate::model::Model;
use crate::prompt::{embed_keys, prompt_keys, PatchSource, PositionKey};

/// A token tree holding the paths of several examples.
#[derive(Debug, Default)]
pub struct PackedTree {
    /// What each node holds; a node comes after its parent.
    keys: Vec<PositionKey>,
    parents: Vec<Option<usize>>,
    children: HashMap<(Option<usize>, PositionKey), usize>,
    /// Nodes whose hidden states predict an answer token, and that token.
    rows: Vec<u32>,
    targets: Vec<u32>,
    /// Positions the examples would have taken unpacked (prompt + answer - 1 each).
    unpacked: usize,
    examples: usize,
}

impl PackedTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nodes (positions a forward pass over the tree computes).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn examples(&self) -> usize {
        self.examples
    }

    /// Each node's parent (an earlier node), `None` for a root.
    pub fn parents(&self) -> &[Option<usize>] {
        &self.parents
    }

    /// The nodes whose hidden states predict answer tokens, in the examples' order.
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    /// Positions the same examples take unpacked.
    pub fn unpacked_positions(&self) -> usize {
        self.unpacked
    }

    /// The nodes `path` would add to the tree, without adding them.
    pub fn added_by(&self, path: &[PositionKey]) -> usize {
        let mut parent = None;
        for (i, key) in path.iter().enumerate() {
            match self.children.get(&(parent, key.clone())) {
                Some(&n) => parent = Some(n),
                None => return path.len() - i,
            }
        }
        0
    }

    /// Adds an example's path: its prompt keys followed by the answer tokens it is fed;
    /// `answer` (title tokens then answer-end) is what its last `answer.len()` path
    /// positions predict.
    pub fn add(&mut self, path: &[PositionKey], answer: &[u32]) {
        debug_assert!(answer.len() <= path.len());
        let mut parent = None;
        let mut nodes = Vec::with_capacity(path.len());
        for key in path {
            let node = *self
                .children
                .entry((parent, key.clone()))
                .or_insert_with(|| {
                    self.keys.push(key.clone());
                    self.parents.push(parent);
                    self.keys.len() - 1
                });
            nodes.push(node);
            parent = Some(node);
        }
        let first = path.len() - answer.len();
        self.rows.extend(nodes[first..].iter().map(|&n| n as u32));
        self.targets.extend_from_slice(answer);
        self.unpacked += path.len();
        self.examples += 1;
    }
}

/// An example's path (prompt keys, then the answer tokens fed) and its answer.
pub fn example_path(
    model: &Model,
    catalog: &CatalogSnapshot,
    ex: &Example,
) -> (Vec<PositionKey>, Vec<u32>) {
    let answer = answer_ids(model, catalog, ex.target);
    let mut path = prompt_keys(model, catalog, &ex.history, &ex.segments);
    path.extend(
        answer[..answer.len() - 1]
            .iter()
            .map(|&t| PositionKey::Token(t)),
    );
    (path, answer)
}

/// Splits `batch` into passes of at most `max_positions` tree nodes each, in order (an
/// example that alone exceeds it gets a pass of its own).
pub fn pack(
    model: &Model,
    catalog: &CatalogSnapshot,
    batch: &[Example],
    max_positions: usize,
) -> Vec<PackedTree> {
    let mut out = Vec::new();
    let mut tree = PackedTree::new();
    for ex in batch {
        let (path, answer) = example_path(model, catalog, ex);
        if !tree.is_empty() && tree.len() + tree.added_by(&path) > max_positions {
            out.push(std::mem::take(&mut tree));
        }
        tree.add(&path, &answer);
    }
    if !tree.is_empty() {
        out.push(tree);
    }
    out
}

/// Forward pass over a packed tree, returning the summed answer-token NLL of its
/// examples (patches recomputed from the current embedding table, as unpacked).
pub fn tree_loss(model: &Model, catalog: &CatalogSnapshot, tree: &PackedTree) -> Result<BatchLoss> {
    let llama = model.llama();
    let x = embed_keys(model, catalog, &tree.keys, PatchSource::Live)?.unsqueeze(0)?;
    let hidden = llama.forward_tree(&x, &tree.parents)?.squeeze(0)?;
    let device = x.device();
    let picked = hidden.index_select(&Tensor::new(tree.rows.as_slice(), device)?, 0)?;
    let nll_sum = llama.target_nll_sum(&picked, &tree.targets)?;
    Ok(BatchLoss {
        nll_sum,
        answer_tokens: tree.targets.len(),
        positions: tree.len(),
    })
}
