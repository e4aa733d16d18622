//! `patchrec.json`: what a checkpoint adds to a plain Hugging Face directory, namely the
//! prompt template, the special tokens, the default layout and how it was trained.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::LayoutConfig;
use crate::text::{ChatFormat, PromptTemplate, SpecialTokens};

/// The `format_version` this library writes and the newest it reads (crate-visible only:
/// public constants end up in the generated C header).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A checkpoint's `patchrec.json`: what it adds to a Hugging Face directory, namely the
/// prompt template, the special tokens, the default layout and how it was trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchrecMeta {
    /// The file's format version; a file newer than this library reads is refused.
    pub format_version: u32,
    /// The prompt template of queries and training.
    pub template: PromptTemplate,
    /// The history delimiters' token strings (default `<|start_seq|>`, `<|end_seq|>`,
    /// `<|item_sep|>`).
    #[serde(default)]
    pub special_tokens: SpecialTokens,
    /// The layout and truncation K a query uses unless it chooses another: by default, the
    /// one the checkpoint was trained with.
    #[serde(default)]
    pub layout: LayoutConfig,
    /// The original Jinja chat template (from a GGUF or tokenizer_config.json), kept so
    /// transformers can format chats with the saved checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_chat_template: Option<String>,
    /// Training history (stages, data, steps, metrics), appended to by the trainer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub training: Vec<serde_json::Value>,
    /// The tokenizer the weights were saved with, written by every save so that loading
    /// can tell a `tokenizer.json` that does not belong to them (absent in checkpoints
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<VocabRecord>,
}

/// What identifies a checkpoint's tokenizer: its size, and the id of each token the
/// prompt is built from (the history delimiters and the answer's end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VocabRecord {
    pub size: usize,
    pub special_ids: std::collections::BTreeMap<String, u32>,
}

impl PatchrecMeta {
    /// The metadata of a checkpoint with `template`, the default special tokens and layout,
    /// and no training record.
    pub fn new(template: PromptTemplate) -> Self {
        PatchrecMeta {
            format_version: FORMAT_VERSION,
            template,
            special_tokens: SpecialTokens::default(),
            layout: LayoutConfig::default(),
            hf_chat_template: None,
            training: Vec::new(),
            vocab: None,
        }
    }

    /// Reads and checks a `patchrec.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, crate::files::MAX_JSON_BYTES)?;
        Self::from_json(&text, path)
    }

    /// [`Self::from_file`] on text already read, so that the parser can be exercised on
    /// bytes (the fuzz targets in `fuzz/`); `path` is only named in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let meta: PatchrecMeta = serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("malformed patchrec.json: {e}")))?;
        if meta.format_version > FORMAT_VERSION {
            return Err(Error::format(
                path,
                format!(
                    "format_version {} is newer than this library reads ({})",
                    meta.format_version, FORMAT_VERSION
                ),
            ));
        }
        meta.template
            .validate()
            .map_err(|e| Error::format(path, e.to_string()))?;
        meta.layout
            .layout
            .validate()
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(meta)
    }

    /// For a checkpoint without `patchrec.json`: the chat format its tokenizer speaks
    /// (Llama-3 if it knows `<|eot_id|>`, ChatML if `<|im_end|>`), with the paper's
    /// MovieLens prompt.
    pub fn default_for(has_token: impl Fn(&str) -> bool) -> Option<Self> {
        let chat = if has_token("<|eot_id|>") {
            ChatFormat::Llama3
        } else if has_token("<|im_end|>") {
            ChatFormat::ChatMl
        } else {
            return None;
        };
        Some(Self::new(PromptTemplate::movielens(chat)))
    }
}
