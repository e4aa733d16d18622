//! The checkpoint's tokenizer (`tokenizer.json`, Hugging Face tokenizers).

use std::path::Path;

use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::files::read_bytes(path, crate::files::MAX_TOKENIZER_BYTES)?;
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::format(path, format!("cannot read tokenizer: {e}")))?;
        Ok(TextTokenizer { inner })
    }

    pub fn from_tokenizer(inner: Tokenizer) -> Self {
        TextTokenizer { inner }
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Token ids of `text`, without BOS/EOS; special tokens written in the text are
    /// recognised as such.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of a token that must be a single special token of this tokenizer.
    pub fn special_id(&self, token: &str) -> Result<u32> {
        self.token_id(token)
            .ok_or_else(|| Error::Tokenizer(format!("token {token:?} is not in the vocabulary")))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Adds the special tokens that are missing; returns how many were added. Their ids
    /// follow the current vocabulary, so the model's embedding table grows by as many rows.
    pub fn add_missing_special(&mut self, tokens: &[&str]) -> Result<usize> {
        let missing: Vec<AddedToken> = tokens
            .iter()
            .filter(|t| self.inner.token_to_id(t).is_none())
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        if missing.is_empty() {
            return Ok(0);
        }
        self.inner
            .add_special_tokens(missing)
            .map_err(|e| Error::Tokenizer(format!("cannot add special tokens: {e}")))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::format(path, format!("cannot write tokenizer: {e}")))
    }
}
