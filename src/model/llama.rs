//! A Llama-family decoder (RMSNorm, RoPE with Llama-3 scaling, grouped-query attention,
//! SwiGLU, tied or untied head) whose forward pass takes *input embeddings*, so that
//! PatchRec's item and session patches can stand where title tokens would.
//!
//! Layout follows candle-transformers' `llama.rs`; unlike it, the KV cache is passed in,
//! and attention can read a second, shared cache (`prefix`) without copying it: the
//! prompt's keys are computed once and every beam attends to them.

use candle_core::{DType, Device, Tensor, D};

use super::attend::{attend_tensors, Heads, KvAxes, Visible};
use super::config::LlamaConfig;
use super::kv_cache::KvCache;
use super::lora::{Adapter, LoraConfig, TrainedRows};
use super::pool::on_pool;
use super::proj::{Proj, Quantization};
use super::rope::Rope;
use super::swiglu::swiglu;
use super::tree_kv::{TreeKv, TreeRows};
use super::weights::TensorStore;
use crate::error::{Error, Result};

struct Attention {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
}

struct Mlp {
    gate: Proj,
    up: Proj,
    down: Proj,
}

struct Block {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

pub struct Llama {
    cfg: LlamaConfig,
    device: Device,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// `None` when the head is tied to the input embeddings.
    lm_head: Option<Tensor>,
    rope: Rope,
    /// Use ops with backward passes (training) rather than fused inference kernels.
    differentiable: bool,
    /// Inference attention through `attend` (one pass per row over the keys in place)
    /// rather than composed from candle's ops; off only to compare the two.
    fused_attention: bool,
    /// Set once the projections (and head) are quantized for serving.
    quantization: Option<Quantization>,
    /// The quantized output head (a quantized copy of the tied table when tied).
    head_q: Option<Proj>,
    /// Embedding rows trained beside a frozen table (LoRA's new tokens).
    trained_rows: Option<TrainedRows>,
}

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
    /// Builds the model from a checkpoint's tensors, named as Hugging Face names them.
    ///
    /// With `quantization`, each projection is quantized as soon as it is read, so at
    /// most one dense weight exists at a time. The output head is not: the vocabulary may
    /// still grow (`grow_vocab`), so [`Llama::quantize`] quantizes it afterwards, and
    /// marks the model quantized.
    pub fn load(
        cfg: LlamaConfig,
        store: &TensorStore,
        device: &Device,
        quantization: Option<Quantization>,
    ) -> Result<Self> {
        let linear = |w: Tensor| -> Result<Proj> {
            let mut p = Proj::dense(w);
            if let Some(q) = quantization {
                p.quantize(q)?;
            }
            Ok(p)
        };
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let (h, kvh, ff, v) = (
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.intermediate_size,
            cfg.vocab_size,
        );
        let embed = store.get("model.embed_tokens.weight", &[v, d])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let get = |n: &str, shape: &[usize]| store.get(&format!("{p}.{n}"), shape);
            blocks.push(Block {
                input_norm: get("input_layernorm.weight", &[d])?,
                attn: Attention {
                    q: linear(get("self_attn.q_proj.weight", &[h * hd, d])?)?,
                    k: linear(get("self_attn.k_proj.weight", &[kvh * hd, d])?)?,
                    v: linear(get("self_attn.v_proj.weight", &[kvh * hd, d])?)?,
                    o: linear(get("self_attn.o_proj.weight", &[d, h * hd])?)?,
                },
                post_norm: get("post_attention_layernorm.weight", &[d])?,
                mlp: Mlp {
                    gate: linear(get("mlp.gate_proj.weight", &[ff, d])?)?,
                    up: linear(get("mlp.up_proj.weight", &[ff, d])?)?,
                    down: linear(get("mlp.down_proj.weight", &[d, ff])?)?,
                },
            });
        }
        let norm = store.get("model.norm.weight", &[d])?;
        // Some tied checkpoints still store lm_head.weight; trust the config's flag.
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(store.get("lm_head.weight", &[v, d])?)
        };
        let rope = Rope::new(&cfg, device)?;
        Ok(Llama {
            cfg,
            device: device.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            rope,
            differentiable: false,
            fused_attention: true,
            quantization: None,
            head_q: None,
            trained_rows: None,
        })
    }

    /// A randomly initialised model (normal(0, 0.02) weights, unit norms), for from-scratch
    /// training and tests.
    pub fn random(cfg: LlamaConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate().map_err(Error::invalid)?;
        // The random values are drawn into vectors, then copied into the model's tensors.
        cfg.check_fits_memory(8)?;
        let tensors = random_tensors(&cfg, seed)?;
        let mut store_map = std::collections::HashMap::new();
        for (name, t) in tensors {
            store_map.insert(name, t);
        }
        Self::from_named(cfg, store_map, device)
    }

    /// Builds the model from an in-memory map of Hugging Face-named tensors.
    pub fn from_named(
        cfg: LlamaConfig,
        tensors: std::collections::HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let store = TensorStore::from_map(tensors);
        Self::load(cfg, &store, device, None)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len())
    }

    /// An empty token tree for one search's answer tokens ([`Llama::forward_groups`]).
    pub fn new_tree(&self) -> TreeKv {
        TreeKv::new(self.blocks.len())
    }

    pub fn set_differentiable(&mut self, on: bool) {
        self.differentiable = on;
        for block in &self.blocks {
            for (_, proj) in block.projections() {
                if let Some(adapter) = proj.adapter() {
                    adapter.set_tracked(on);
                }
            }
        }
        if let Some(rows) = &self.trained_rows {
            rows.tracked.set(on);
        }
    }

    /// Inference attention in one fused pass on the CPU (the default) or composed from
    /// candle's ops, which every other device and training use: for comparing the two
    /// (`patchrec bench --attention`, tests). Results agree to float rounding.
    pub fn set_fused_attention(&mut self, on: bool) {
        self.fused_attention = on;
    }

    /// Whether this pass may take the fused attention (which may still decline the
    /// tensors it is given).
    fn fuses_attention(&self) -> bool {
        self.fused_attention && !self.differentiable && self.device.is_cpu()
    }

    fn heads(&self) -> Heads {
        Heads {
            heads: self.cfg.num_attention_heads,
            kv_heads: self.cfg.num_kv_heads(),
            head_dim: self.cfg.head_dim(),
        }
    }

    /// The input embedding table `[vocab, hidden]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.embed
    }

    /// Input embeddings of `ids`: `[ids.len(), hidden]`.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.cfg.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        if let Some(rows) = &self.trained_rows {
            return rows.lookup(&self.embed, ids);
        }
        let ids = Tensor::new(ids, &self.device)?;
        Ok(self.embed.index_select(&ids, 0)?)
    }

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
        // One mask for all layers; a single new position needs none, nor does the fused
        // attention (which skips masked keys; should it decline a layer's tensors, that
        // layer makes its own).
        let mask = if len > 1 && !fuse {
            Some(self.causal_mask(len, cache.len())?)
        } else {
            None
        };
        self.blocks_here(embeds, At::Span(pos), prefix, cache, fuse, mask.as_ref())
    }

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
                false,
                Some(&mask),
            )
        })
    }

    /// The decoder blocks and the final norm over `embeds`, whose positions are `at`.
    fn blocks_here(
        &self,
        embeds: &Tensor,
        at: At,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
        fuse: bool,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let len = embeds.dim(1)?;
        let mut x = embeds.clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let h = self.rms_norm(&x, &block.input_norm)?;
            let h = self.attention(i, &block.attn, &h, at, prefix, cache, fuse, mask)?;
            x = (x + h)?;
            let h = self.rms_norm(&x, &block.post_norm)?;
            x = (x + self.mlp(&block.mlp, &h)?)?;
        }
        cache.set_len(cache.len() + len);
        self.rms_norm(&x, &self.norm)
    }

    /// A sequence of `len` positions must fit the RoPE tables.
    fn check_length(&self, len: usize) -> Result<()> {
        if len > self.rope.max_positions() {
            return Err(Error::invalid(format!(
                "sequence of {len} positions exceeds the model's {}",
                self.rope.max_positions()
            )));
        }
        Ok(())
    }

    /// SwiGLU: `down(silu(gate(x)) * up(x))`.
    fn mlp(&self, mlp: &Mlp, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = Proj::forward_each([&mlp.gate, &mlp.up], x)?;
        mlp.down.forward(&swiglu(&gate, &up)?)
    }

    /// Output-head logits for hidden states `[.., hidden]` -> `[.., vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        on_pool(|| self.logits_here(hidden))
    }

    /// [`Llama::logits`] on the calling thread.
    fn logits_here(&self, hidden: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.head_q {
            return q.forward(hidden);
        }
        let head = match (&self.lm_head, &self.trained_rows) {
            (Some(head), _) => head.clone(),
            (None, Some(rows)) => rows.table(&self.embed)?,
            (None, None) => self.embed.clone(),
        };
        if let Some(y) = super::skinny::matmul_t(hidden, &head)? {
            return Ok(y);
        }
        Ok(hidden.broadcast_matmul(&head.t()?)?)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps as f32;
        Ok(if self.differentiable {
            super::norm::rms_norm_trainable(x, w, eps)?
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?
        })
    }

    /// candle's fused softmax has no backward pass; training uses ours, which has.
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if self.differentiable {
            super::softmax::softmax_last_dim(x)?
        } else {
            candle_nn::ops::softmax_last_dim(x)?
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: usize,
        attn: &Attention,
        x: &Tensor,
        at: At,
        prefix: Option<&KvCache>,
        cache: &mut KvCache,
        fuse: bool,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_kv_heads(),
            self.cfg.head_dim(),
        );
        let [q, k, v] = Proj::forward_each([&attn.q, &attn.k, &attn.v], x)?;
        let mut own_mask = None;
        if let (true, At::Span(pos)) = (fuse, at) {
            if let Some(out) = self.attend_fused(layer, q.clone(), &k, &v, pos, prefix, cache)? {
                return attn.o.forward(&out);
            }
            // Declined: this layer composes candle's ops, which need the causal mask.
            if t > 1 {
                own_mask = Some(self.causal_mask(t, cache.len())?);
            }
        }
        let q = q.reshape((b, t, h, hd))?.transpose(1, 2)?;
        let k = k.reshape((b, t, kvh, hd))?.transpose(1, 2)?;
        let v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
        let out = self.attend(
            layer,
            &q,
            k,
            v,
            at,
            prefix,
            cache,
            mask.or(own_mask.as_ref()),
        )?;
        attn.o.forward(&out)
    }

    /// The causal mask of `t` new positions after `past` cached ones ([`causal_mask`]).
    fn causal_mask(&self, t: usize, past: usize) -> Result<Tensor> {
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

    /// Attention after the projections: `q` `[b, heads, t, hd]`, `k`, `v`
    /// `[b, kv_heads, t, hd]` (before RoPE) at positions `at`; returns
    /// `[b, t, heads * hd]` for the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
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
    fn weigh(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        pre: Option<&(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        if let (true, Some(mask), None) = (self.differentiable, mask, pre) {
            let softmax = |x: &Tensor| super::softmax::softmax_last_dim(x);
            return super::attend_train::masked_attention(q, k, v, mask, softmax);
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

    /// Hugging Face-named tensors, for saving a checkpoint or training. A quantized model
    /// has no dense weights left to give.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        if let Some(q) = self.quantization {
            return Err(Error::invalid(format!(
                "the model is quantized ({q}) for serving: it cannot be saved or trained; \
                 load the checkpoint without quantization"
            )));
        }
        let embed = match &self.trained_rows {
            Some(rows) => rows.table(&self.embed)?,
            None => self.embed.clone(),
        };
        let mut out = vec![
            ("model.embed_tokens.weight".to_string(), embed),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.clone()));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), b.input_norm.clone()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                b.post_norm.clone(),
            ));
            for (n, proj) in b.projections() {
                let name = format!("{p}.{n}.weight");
                // Adapters are merged: a saved checkpoint serves without them.
                let t = proj
                    .merged_weight()?
                    .ok_or_else(|| Error::invalid(format!("{name} is quantized")))?;
                out.push((name, t));
            }
        }
        Ok(out)
    }

    /// Attaches LoRA adapters to the projections `cfg` targets, and (with `new_tokens`)
    /// trains the embedding rows `new_tokens` beside the frozen table. Adapters found in
    /// `resume` (by [`Llama::lora_tensors`]' names) continue from there; the others start
    /// fresh from `seed`. Returns the variables to optimise, named as they are saved.
    pub fn attach_lora(
        &mut self,
        cfg: &LoraConfig,
        new_tokens: Option<std::ops::Range<usize>>,
        seed: u64,
        resume: Option<&std::collections::HashMap<String, Tensor>>,
    ) -> Result<Vec<(String, candle_core::Var)>> {
        cfg.validate()?;
        if self.quantization.is_some() {
            return Err(Error::invalid(
                "a quantized model cannot take LoRA adapters",
            ));
        }
        let device = self.device.clone();
        let from_resume = |name: &str, shape: &[usize]| -> Result<Option<candle_core::Var>> {
            let Some(t) = resume.and_then(|r| r.get(name)) else {
                return Ok(None);
            };
            if t.dims() != shape {
                return Err(Error::invalid(format!(
                    "LoRA tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(Some(candle_core::Var::from_tensor(t)?))
        };
        let mut vars = Vec::new();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (n, proj) in block.projections_mut() {
                let short = n.rsplit('.').next().unwrap_or(n);
                if !cfg.targets(short) {
                    continue;
                }
                let w = proj
                    .weight()
                    .ok_or_else(|| Error::invalid("quantized projection"))?;
                let (out, input) = w.dims2()?;
                let (na, nb) = lora_names(i, n);
                let (adapter, a, b) = match (
                    from_resume(&na, &[cfg.rank, input])?,
                    from_resume(&nb, &[out, cfg.rank])?,
                ) {
                    (Some(a), Some(b)) => (Adapter::from_vars(&a, &b, cfg.scale()), a, b),
                    _ => {
                        let layer_seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        let salt = super::lora::TARGETS
                            .iter()
                            .position(|t| *t == short)
                            .unwrap_or(0);
                        Adapter::new(
                            out,
                            input,
                            cfg,
                            layer_seed.wrapping_add(salt as u64),
                            &device,
                        )?
                    }
                };
                adapter.set_tracked(self.differentiable);
                proj.adapt(adapter)?;
                vars.push((na, a));
                vars.push((nb, b));
            }
        }
        if let Some(range) = new_tokens.filter(|r| !r.is_empty()) {
            if range.end > self.cfg.vocab_size {
                return Err(Error::invalid(format!(
                    "new token rows {range:?} outside the {}-token vocabulary",
                    self.cfg.vocab_size
                )));
            }
            let shape = [range.len(), self.cfg.hidden_size];
            let rows = match from_resume(NEW_TOKEN_ROWS, &shape)? {
                Some(v) => v,
                None => candle_core::Var::from_tensor(&self.embed.narrow(
                    0,
                    range.start,
                    range.len(),
                )?)?,
            };
            self.trained_rows = Some(TrainedRows {
                start: range.start,
                rows: rows.as_tensor().clone(),
                tracked: Default::default(),
            });
            if let Some(trained) = &self.trained_rows {
                trained.tracked.set(self.differentiable);
            }
            vars.push((NEW_TOKEN_ROWS.to_string(), rows));
        }
        Ok(vars)
    }

    /// The adapters and trained rows alone (empty without LoRA), for saving them apart
    /// from the merged model.
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for (n, proj) in block.projections() {
                if let Some(adapter) = proj.adapter() {
                    let (na, nb) = lora_names(i, n);
                    out.push((na, adapter.a.clone()));
                    out.push((nb, adapter.b.clone()));
                }
            }
        }
        if let Some(rows) = &self.trained_rows {
            out.push((NEW_TOKEN_ROWS.to_string(), rows.rows.clone()));
        }
        out
    }

    /// The first of the trained embedding rows, if any.
    pub fn trained_rows_start(&self) -> Option<usize> {
        self.trained_rows.as_ref().map(|r| r.start)
    }

    /// Quantizes every projection and the output head for serving (the embedding table
    /// stays f32: it feeds patches and inputs). Projections `load` already quantized to
    /// `q` are kept. A weight whose input width is not a multiple of the block size stays
    /// dense; returns how many weights are quantized out of how many.
    pub fn quantize(&mut self, q: Quantization) -> Result<(usize, usize)> {
        if self.quantization.is_some() {
            return Err(Error::invalid("the model is already quantized"));
        }
        let (mut done, mut total) = (0, 0);
        for b in &mut self.blocks {
            for p in [
                &mut b.attn.q,
                &mut b.attn.k,
                &mut b.attn.v,
                &mut b.attn.o,
                &mut b.mlp.gate,
                &mut b.mlp.up,
                &mut b.mlp.down,
            ] {
                total += 1;
                done += usize::from(p.quantize(q)?);
            }
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        self.head_q = Proj::quantized(head, q)?;
        total += 1;
        done += usize::from(self.head_q.is_some());
        // An untied head has no other use: drop the dense copy.
        if self.head_q.is_some() {
            self.lm_head = None;
        }
        self.quantization = Some(q);
        Ok((done, total))
    }

    pub fn quantization(&self) -> Option<Quantization> {
        self.quantization
    }

    /// Adds `n` rows to the vocabulary (new special tokens). Each new row is the mean of
    /// the existing rows, for the input table and for an untied head alike, so a new token
    /// starts as the "average token" rather than as noise.
    pub fn grow_vocab(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if self.quantization.is_some() {
            return Err(Error::invalid(
                "cannot grow the vocabulary of a quantized model",
            ));
        }
        let grow = |t: &Tensor| -> Result<Tensor> {
            let mean = t.mean_keepdim(0)?;
            let rows = mean.broadcast_as((n, t.dim(1)?))?;
            Ok(Tensor::cat(&[t, &rows.contiguous()?], 0)?)
        };
        self.embed = grow(&self.embed)?;
        if let Some(head) = &self.lm_head {
            self.lm_head = Some(grow(head)?);
        }
        self.cfg.vocab_size += n;
        Ok(())
    }
}

/// PEFT's names for one projection's adapter matrices.
fn lora_names(layer: usize, proj: &str) -> (String, String) {
    let base = format!("base_model.model.model.layers.{layer}.{proj}");
    (
        format!("{base}.lora_A.weight"),
        format!("{base}.lora_B.weight"),
    )
}

/// The name the trained new-token rows are saved under.
pub const NEW_TOKEN_ROWS: &str = "base_model.model.model.embed_tokens.new_token_rows";

impl Block {
    /// The projections with their names under the layer (`self_attn.q_proj`, ...).
    fn projections(&self) -> [(&'static str, &Proj); 7] {
        [
            ("self_attn.q_proj", &self.attn.q),
            ("self_attn.k_proj", &self.attn.k),
            ("self_attn.v_proj", &self.attn.v),
            ("self_attn.o_proj", &self.attn.o),
            ("mlp.gate_proj", &self.mlp.gate),
            ("mlp.up_proj", &self.mlp.up),
            ("mlp.down_proj", &self.mlp.down),
        ]
    }

    fn projections_mut(&mut self) -> [(&'static str, &mut Proj); 7] {
        [
            ("self_attn.q_proj", &mut self.attn.q),
            ("self_attn.k_proj", &mut self.attn.k),
            ("self_attn.v_proj", &mut self.attn.v),
            ("self_attn.o_proj", &mut self.attn.o),
            ("mlp.gate_proj", &mut self.mlp.gate),
            ("mlp.up_proj", &mut self.mlp.up),
            ("mlp.down_proj", &mut self.mlp.down),
        ]
    }
}

/// Where a pass's new positions sit.
#[derive(Clone, Copy)]
enum At<'a> {
    /// Consecutive, from this position on.
    Span(usize),
    /// Each row at its own position: the RoPE tables of the rows, `[t, head_dim / 2]`.
    Rows(&'a (Tensor, Tensor)),
}

/// `0` where a node may attend (its ancestors and itself), `-inf` elsewhere; rows are
/// `rep` stacked copies of the nodes, like [`causal_mask`]'s.
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

/// Normal(0, 0.02) matrices and unit norms, named as Hugging Face names them.
fn random_tensors(cfg: &LlamaConfig, seed: u64) -> Result<Vec<(String, Tensor)>> {
    use rand::{rngs::StdRng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 0.02).expect("valid normal");
    let cpu = Device::Cpu;
    let mut mat = |rows: usize, cols: usize| -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
        Ok(Tensor::from_vec(data, (rows, cols), &cpu)?)
    };
    let ones = |n: usize| Tensor::ones(n, DType::F32, &cpu);
    let (d, hd, h, kvh, ff, v) = (
        cfg.hidden_size,
        cfg.head_dim(),
        cfg.num_attention_heads,
        cfg.num_kv_heads(),
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), mat(v, d)?),
        ("model.norm.weight".to_string(), ones(d)?),
    ];
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), mat(v, d)?));
    }
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), ones(d)?));
        out.push((format!("{p}.post_attention_layernorm.weight"), ones(d)?));
        out.push((format!("{p}.self_attn.q_proj.weight"), mat(h * hd, d)?));
        out.push((format!("{p}.self_attn.k_proj.weight"), mat(kvh * hd, d)?));
        out.push((format!("{p}.self_attn.v_proj.weight"), mat(kvh * hd, d)?));
        out.push((format!("{p}.self_attn.o_proj.weight"), mat(d, h * hd)?));
        out.push((format!("{p}.mlp.gate_proj.weight"), mat(ff, d)?));
        out.push((format!("{p}.mlp.up_proj.weight"), mat(ff, d)?));
        out.push((format!("{p}.mlp.down_proj.weight"), mat(d, ff)?));
    }
    Ok(out)
}
