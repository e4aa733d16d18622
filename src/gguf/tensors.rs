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
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // Every tensor's extent is checked before any is read, and what they take as f32
    // against the machine's memory: tensors may share bytes, so a small file can declare
    // far more weights than it holds.
    let mut wanted = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    if !cfg.tie_word_embeddings {
        wanted.push("output.weight".into());
    }
    for i in 0..cfg.num_hidden_layers {
        for n in [
            "attn_norm",
            "ffn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            wanted.push(format!("blk.{i}.{n}.weight"));
        }
    }
    let mut f32_bytes = 0u64;
    for name in &wanted {
        let elements = extent(content, name, file_len)
            .map_err(|m| Error::format(path, format!("tensor `{name}`: {m}")))?;
        f32_bytes = f32_bytes.saturating_add(elements.saturating_mul(4));
    }
    crate::memory::check_fits(
        f32_bytes,
        &format!("converting {} (its tensors as f32)", path.display()),
    )?;
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

/// The number of elements of tensor `name` (0 if the file has no such tensor, which
/// reading it reports), once its extent is known to lie within the file's `file_len`
/// bytes. Checked here because candle's reader does not: it multiplies the header's
/// dimensions unchecked (an overflow panics, or in a build without overflow checks wraps
/// to a wrong size), and reinterprets an empty tensor's dangling byte pointer as one to
/// f32 or to quantized blocks (undefined behaviour, an abort where checked). No Llama
/// weight is empty.
fn extent(content: &Content, name: &str, file_len: u64) -> std::result::Result<u64, String> {
    let Some(info) = content.tensor_infos.get(name) else {
        return Ok(0);
    };
    let dims = info.shape.dims();
    let elements = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    if elements == 0 {
        return Err(format!("dimensions {dims:?} hold no elements"));
    }
    let (block, block_bytes) = (
        info.ggml_dtype.block_size() as u64,
        info.ggml_dtype.type_size() as u64,
    );
    let bytes = (elements / block).saturating_mul(block_bytes);
    let start = content.tensor_data_offset.saturating_add(info.offset);
    if start > file_len || bytes > file_len - start {
        return Err(format!(
            "{bytes} bytes of {:?} data at offset {start}, past the end of the {file_len}-byte file",
            info.ggml_dtype
        ));
    }
    Ok(elements)
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
