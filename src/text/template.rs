//! The prompt template: system message, instruction with a history placeholder, and the
//! model's chat format around them. Stored in the checkpoint's `patchrec.json`.
//!
//! The history is written as the reference implementation (`ljy0ustc/PatchRec`) writes
//! it: `<|start_seq|>T1<|item_sep|>T2 ... <|item_sep|>Tn<|end_seq|>`: bare titles, one
//! delimiter after each item (the separator, or `<|end_seq|>` after the last). A patch
//! keeps the delimiter of the item (or last item of the session) it replaces.

use serde::{Deserialize, Serialize};

use super::special::SpecialTokens;
use crate::error::{Error, Result};

/// Where the history goes inside `instruction`.
pub const HISTORY_PLACEHOLDER: &str = "[HISTORY_SEQUENCE]";

/// The prompt around a history: system message, instruction with the history's
/// placeholder, and the model's chat format. Stored in the checkpoint's `patchrec.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate {
    /// The system message.
    pub system: String,
    /// Contains `[HISTORY_SEQUENCE]` (where the history goes) exactly once.
    pub instruction: String,
    /// The chat format with `{system}` and `{user}`, ending where the answer begins.
    pub chat: String,
    /// The token that ends the answer; must be a single token of the tokenizer.
    pub answer_end: String,
}

impl PromptTemplate {
    /// The paper's MovieLens prompt (`shared/data/*/prompt.txt`) in the given chat format.
    pub fn movielens(chat: ChatFormat) -> Self {
        let (chat, answer_end) = chat.strings();
        PromptTemplate {
            system: "You are a helpful assistant in movie recommendations.".into(),
            instruction: format!(
                "A user has watched {HISTORY_PLACEHOLDER}. Please recommend one movie for this user to watch next with its title only and without any explanation."
            ),
            chat: chat.into(),
            answer_end: answer_end.into(),
        }
    }

    /// A template from a `prompt.txt` (line 1 system message, line 2 instruction).
    pub fn from_prompt_text(text: &str, chat: ChatFormat) -> Result<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (system, instruction) = match (lines.next(), lines.next()) {
            (Some(s), Some(i)) => (s.to_string(), i.to_string()),
            _ => {
                return Err(Error::invalid(
                    "prompt text needs two lines: the system message and the instruction",
                ))
            }
        };
        let (chat, answer_end) = chat.strings();
        let t = PromptTemplate {
            system,
            instruction,
            chat: chat.into(),
            answer_end: answer_end.into(),
        };
        t.validate()?;
        Ok(t)
    }

    /// Fails unless the instruction holds `[HISTORY_SEQUENCE]` exactly once and the chat
    /// format holds `{system}` and `{user}` once each, in that order.
    pub fn validate(&self) -> Result<()> {
        if self.instruction.matches(HISTORY_PLACEHOLDER).count() != 1 {
            return Err(Error::invalid(format!(
                "template instruction must contain {HISTORY_PLACEHOLDER} exactly once"
            )));
        }
        for key in ["{system}", "{user}"] {
            if self.chat.matches(key).count() != 1 {
                return Err(Error::invalid(format!(
                    "template chat format must contain {key} exactly once"
                )));
            }
        }
        if self.chat.find("{system}") > self.chat.find("{user}") {
            return Err(Error::invalid(
                "template chat format must place {system} before {user}",
            ));
        }
        Ok(())
    }

    /// The prompt text before and after the history: `head` ends with `<|start_seq|>`;
    /// `tail` starts right after `<|end_seq|>`, which is the last item's delimiter.
    pub fn split(&self, special: &SpecialTokens) -> (String, String) {
        let user_at = self.chat.find("{user}").expect("validated");
        let before_user = self.chat[..user_at].replace("{system}", &self.system);
        let after_user = &self.chat[user_at + "{user}".len()..];
        let hist_at = self
            .instruction
            .find(HISTORY_PLACEHOLDER)
            .expect("validated");
        let head = format!(
            "{before_user}{}{}",
            &self.instruction[..hist_at],
            special.start_seq
        );
        let tail = format!(
            "{}{after_user}",
            &self.instruction[hist_at + HISTORY_PLACEHOLDER.len()..]
        );
        (head, tail)
    }

    /// The whole prompt as one string, for a history of titles: the reference rendering
    /// that the embedding-level prompt builder must reproduce token for token.
    pub fn render(&self, special: &SpecialTokens, titles: &[&str]) -> String {
        let (head, tail) = self.split(special);
        let mut s = head;
        for (i, t) in titles.iter().enumerate() {
            s.push_str(t);
            s.push_str(if i + 1 == titles.len() {
                &special.end_seq
            } else {
                &special.item_sep
            });
        }
        if titles.is_empty() {
            s.push_str(&special.end_seq);
        }
        s.push_str(&tail);
        s
    }
}

/// Chat formats we know how to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\n...<|im_end|>\n` (SmolLM2, Qwen, from-scratch models).
    ChatMl,
    /// Llama-3 Instruct, with the knowledge/today date lines pinned (the reference run
    /// used the run's date; pinning keeps prompts reproducible).
    Llama3,
}

impl ChatFormat {
    fn strings(self) -> (&'static str, &'static str) {
        match self {
            ChatFormat::ChatMl => (
                "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
                "<|im_end|>",
            ),
            ChatFormat::Llama3 => (
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|eot_id|>",
            ),
        }
    }
}
