//! Attention keys and values of an already-processed prefix, kept apart from the
//! (immutable, shared) weights so one model serves many users and beams at once.

use candle_core::Tensor;

use crate::error::Result;

/// Per-layer `(keys, values)`, each `[batch, kv_heads, len, head_dim]`.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows (sequences) held; 0 when empty.
    pub fn batch(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dims()[0],
            _ => 0,
        }
    }

    pub(crate) fn layer(&self, i: usize) -> Option<&(Tensor, Tensor)> {
        self.layers[i].as_ref()
    }

    /// Appends this step's keys and values to layer `i` and returns the whole layer.
    pub(crate) fn extend(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.layers[i].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.layers[i] = Some(kv.clone());
        Ok(kv)
    }

    /// Puts back layer `i` as it was before an [`KvCache::extend`] whose result went unused.
    pub(crate) fn restore(&mut self, i: usize, layer: Option<(Tensor, Tensor)>) {
        self.layers[i] = layer;
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Keeps the first `len` positions (a no-op when it holds no more).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for layer in self.layers.iter_mut().flatten() {
            layer.0 = layer.0.narrow(2, 0, len)?;
            layer.1 = layer.1.narrow(2, 0, len)?;
        }
        self.len = len;
        Ok(())
    }

    /// Bytes of the keys and values held (the positions kept, not the storage a
    /// truncated view may still share).
    pub fn memory_bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }
}
