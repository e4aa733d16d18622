//! The byte-level BPE pipeline shared by tokenizers we build ourselves (from-scratch
//! models, and GGUF conversion): digits split one by one, then GPT-2's byte-level
//! pre-tokenisation, no normaliser, byte-level decoding. This matches llama.cpp's
//! `smollm` pre-tokenizer and Hugging Face's SmolLM2 `tokenizer.json`.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// A tokenizer around `bpe` with the shared pipeline and `special` as special tokens.
pub fn byte_level_tokenizer(bpe: BPE, special: &[&str]) -> Result<Tokenizer> {
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer()));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let added: Vec<AddedToken> = special
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    tok.add_special_tokens(added)
        .map_err(|e| Error::Tokenizer(format!("cannot add special tokens: {e}")))?;
    Ok(tok)
}

pub fn pre_tokenizer() -> PreTokenizerWrapper {
    PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]))
}
