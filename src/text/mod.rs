//! Text: the tokenizer, the prompt template and PatchRec's special tokens.

pub mod bpe;
pub mod special;
pub mod template;
pub mod tokenizer;

pub use special::{SpecialIds, SpecialTokens};
pub use template::{ChatFormat, PromptTemplate, HISTORY_PLACEHOLDER};
pub use tokenizer::TextTokenizer;
