//! The special tokens PatchRec adds to a tokenizer: they mark where the history starts
//! and ends and separate items (and patches) inside it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub start_seq: String,
    pub end_seq: String,
    pub item_sep: String,
}

impl Default for SpecialTokens {
    fn default() -> Self {
        SpecialTokens {
            start_seq: "<|start_seq|>".into(),
            end_seq: "<|end_seq|>".into(),
            item_sep: "<|item_sep|>".into(),
        }
    }
}

impl SpecialTokens {
    pub fn all(&self) -> [&str; 3] {
        [&self.start_seq, &self.end_seq, &self.item_sep]
    }
}

/// Token ids of the special tokens, resolved against one tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub start_seq: u32,
    pub end_seq: u32,
    pub item_sep: u32,
    /// Ends the answer (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama-3): the last token
    /// of every path in the title prefix tree.
    pub answer_end: u32,
}
