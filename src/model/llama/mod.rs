//! A Llama-family decoder (RMSNorm, RoPE with Llama-3 scaling, grouped-query attention,
//! SwiGLU, tied or untied head) whose forward pass takes *input embeddings*, so that
//! PatchRec's item and session patches can stand where title tokens would.
//!
//! Layout follows candle-transformers' `llama.rs`; unlike it, the KV cache is passed in,
//! and attention can read a second, shared cache (`prefix`) without copying it: the
//! prompt's keys are computed once and every beam attends to them.
//!
//! The files: this one holds the model's parts and its settings; `load.rs` builds it from
//! named tensors and names them back; `finetune.rs` attaches what fine-tuning trains.
//! The passes: `sequence.rs` (a sequence continuing a KV cache: prefill, a padded batch),
//! `tree.rs` (a token tree as one sequence: packed training), `decode.rs` (several
//! searches' answer tokens against their prompts and token trees). `layers.rs` holds what
//! they share; `attention.rs` one layer's attention and which way it goes, the fused op
//! (`model/attend/`) or candle's composition (`composed.rs`).

use candle_core::{Device, Tensor};

use super::config::LlamaConfig;
use super::kv_cache::KvCache;
use super::lora::TrainedRows;
use super::proj::{Proj, Quantization};
use super::rope::Rope;
use super::tree_kv::TreeKv;
use crate::error::{Error, Result};

mod attention;
mod composed;
mod decode;
mod finetune;
mod layers;
mod load;
mod sequence;
mod tree;

pub use decode::DecodeGroup;
pub use finetune::NEW_TOKEN_ROWS;

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

impl Llama {
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
}

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
