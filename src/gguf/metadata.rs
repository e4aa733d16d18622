//! GGUF metadata -> `LlamaConfig`, with errors naming the key and the file.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{Error, Result};
use crate::model::LlamaConfig;

pub struct GgufMeta<'a> {
    content: &'a Content,
    path: PathBuf,
}

impl<'a> GgufMeta<'a> {
    pub fn new(content: &'a Content, path: &Path) -> Self {
        GgufMeta {
            content,
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Result<&'a Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| Error::format(&self.path, format!("missing metadata key `{key}`")))
    }

    fn bad(&self, key: &str, e: candle_core::Error) -> Error {
        Error::format(&self.path, format!("metadata key `{key}`: {e}"))
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        // GGUF writers differ in integer widths; accept any.
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| v.to_i32().map(|x| x as u64))
            .map(|x| x as usize)
            .map_err(|e| self.bad(key, e))
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        let v = self.get(key)?;
        v.to_f32()
            .or_else(|_| v.to_f64().map(|x| x as f32))
            .map_err(|e| self.bad(key, e))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.get(key)?
            .to_string()
            .cloned()
            .map_err(|e| self.bad(key, e))
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.get(key)?
            .to_vec()
            .map_err(|e| self.bad(key, e))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| self.bad(key, e)))
            .collect()
    }

    pub fn ints(&self, key: &str) -> Result<Vec<i64>> {
        self.get(key)?
            .to_vec()
            .map_err(|e| self.bad(key, e))?
            .iter()
            .map(|v| {
                v.to_i32()
                    .map(i64::from)
                    .or_else(|_| v.to_u32().map(i64::from))
                    .or_else(|_| v.to_i64())
                    .map_err(|e| self.bad(key, e))
            })
            .collect()
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

pub fn llama_config(meta: &GgufMeta) -> Result<LlamaConfig> {
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        return Err(Error::Unsupported(format!(
            "{}: architecture {arch:?} (key `general.architecture`); only llama converts",
            meta.path().display()
        )));
    }
    if meta.has_tensor("rope_freqs.weight") {
        return Err(Error::Unsupported(format!(
            "{}: tensor `rope_freqs.weight` (Llama-3.1 RoPE scaling stored as frequencies) is not converted yet",
            meta.path().display()
        )));
    }
    let hidden = meta.usize("llama.embedding_length")?;
    let heads = meta.usize("llama.attention.head_count")?;
    let vocab = match meta.usize("llama.vocab_size") {
        Ok(v) => v,
        Err(_) => meta.strings("tokenizer.ggml.tokens")?.len(),
    };
    let mut cfg = LlamaConfig::small(
        vocab,
        hidden,
        meta.usize("llama.block_count")?,
        heads,
        meta.usize("llama.attention.head_count_kv").unwrap_or(heads),
    );
    cfg.intermediate_size = meta.usize("llama.feed_forward_length")?;
    cfg.head_dim = meta.usize("llama.rope.dimension_count").ok();
    cfg.rms_norm_eps = meta
        .f32("llama.attention.layer_norm_rms_epsilon")
        .map(|e| e as f64)
        .unwrap_or(1e-5);
    cfg.rope_theta = meta.f32("llama.rope.freq_base").unwrap_or(10_000.0);
    cfg.max_position_embeddings = meta.usize("llama.context_length").unwrap_or(4096);
    cfg.tie_word_embeddings = !meta.has_tensor("output.weight");
    cfg.bos_token_id = meta
        .usize("tokenizer.ggml.bos_token_id")
        .ok()
        .map(Into::into);
    cfg.eos_token_id = meta
        .usize("tokenizer.ggml.eos_token_id")
        .ok()
        .map(Into::into);
    cfg.validate()
        .map_err(|m| Error::format(meta.path(), format!("derived config: {m}")))?;
    Ok(cfg)
}
