//! GGUF tensors -> Hugging Face-named f32 tensors.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so that RoPE
//! rotates interleaved pairs; Hugging Face's Llama rotates halves. We undo it here:
//! for each head, rows `[h, i, 2]` go back to `[h, 2, i]`.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};

use crate::error::{candle_message, Error, Result};
use crate::model::LlamaConfig;

pub fn hf_tensors(
    content: &Content,
    file: &mut File,
    cfg: &LlamaConfig,
    path: &Path,
) -> Result<HashMap<String, Tensor>> {
    let mut read = |gguf_name: &str| -> Result<Tensor> {
        let q = content.tensor(file, gguf_name, &Device::Cpu).map_err(|e| {
            Error::format(
                path,
                format!("tensor `{gguf_name}`: {}", candle_message(&e)),
            )
        })?;
        q.dequantize(&Device::Cpu).map_err(|e| {
            Error::format(
                path,
                format!(
                    "tensor `{gguf_name}`: cannot dequantise: {}",
                    candle_message(&e)
                ),
            )
        })
    };
    let mut out = HashMap::new();
    out.insert(
        "model.embed_tokens.weight".into(),
        read("token_embd.weight")?,
    );
    out.insert("model.norm.weight".into(), read("output_norm.weight")?);
    if !cfg.tie_word_embeddings {
        out.insert("lm_head.weight".into(), read("output.weight")?);
    }
    let hd = cfg.head_dim();
    for i in 0..cfg.num_hidden_layers {
        let g = |n: &str| format!("blk.{i}.{n}.weight");
        let h = |n: &str| format!("model.layers.{i}.{n}.weight");
        out.insert(h("input_layernorm"), read(&g("attn_norm"))?);
        out.insert(h("post_attention_layernorm"), read(&g("ffn_norm"))?);
        let q = read(&g("attn_q"))?;
        out.insert(
            h("self_attn.q_proj"),
            unpermute(&q, cfg.num_attention_heads, hd)?,
        );
        let k = read(&g("attn_k"))?;
        out.insert(
            h("self_attn.k_proj"),
            unpermute(&k, cfg.num_kv_heads(), hd)?,
        );
        out.insert(h("self_attn.v_proj"), read(&g("attn_v"))?);
        out.insert(h("self_attn.o_proj"), read(&g("attn_output"))?);
        out.insert(h("mlp.gate_proj"), read(&g("ffn_gate"))?);
        out.insert(h("mlp.up_proj"), read(&g("ffn_up"))?);
        out.insert(h("mlp.down_proj"), read(&g("ffn_down"))?);
    }
    Ok(out)
}

/// Inverse of llama.cpp's `permute(w, n_head)`: `[heads, hd/2, 2, in] -> [heads, 2, hd/2, in]`.
pub fn unpermute(w: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// llama.cpp's `permute`, for tests: `[heads, 2, hd/2, in] -> [heads, hd/2, 2, in]`.
pub fn permute(w: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, 2, head_dim / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}
