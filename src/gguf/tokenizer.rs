//! GGUF vocabulary -> Hugging Face tokenizer (byte-level BPE).
//!
//! Only `tokenizer.ggml.model = "gpt2"` (byte-level BPE) is rebuilt. Tokens of type
//! CONTROL (3) become special added tokens, USER_DEFINED (4) plain added tokens, so that
//! `<|im_start|>` in a prompt is one token, as llama.cpp treats it.

use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::metadata::GgufMeta;
use crate::error::{Error, Result};
use crate::text::bpe::byte_level_tokenizer;
use crate::text::TextTokenizer;

const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Llama-3's pre-tokenizer regex (llama.cpp `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub fn rebuild(meta: &GgufMeta) -> Result<TextTokenizer> {
    let bad = |m: String| Error::format(meta.path(), m);
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::Unsupported(format!(
            "{}: tokenizer model {model:?} (key `tokenizer.ggml.model`); only byte-level BPE (\"gpt2\") converts",
            meta.path().display()
        )));
    }
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let types = meta
        .ints("tokenizer.ggml.token_type")
        .unwrap_or_else(|_| vec![1; tokens.len()]);
    if types.len() != tokens.len() {
        return Err(bad(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let merges: Merges = meta
        .strings("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("tokenizer.ggml.merges[{i}] = {m:?} is not \"a b\"")))
        })
        .collect::<Result<_>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(format!("cannot build BPE from the vocabulary: {e}")))?;
    let mut tok = byte_level_tokenizer(bpe, &[])?;
    let pre = meta.string("tokenizer.ggml.pre").unwrap_or_default();
    match pre.as_str() {
        // The shared pipeline: digits one by one, then GPT-2 byte-level.
        "smollm" | "" | "default" | "gpt-2" => {}
        "llama-bpe" | "llama3" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| bad(format!("pre-tokenizer regex: {e}")))?;
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(
                tokenizers::pre_tokenizers::sequence::Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
                ]),
            )));
        }
        other => {
            return Err(Error::Unsupported(format!(
                "{}: pre-tokenizer {other:?} (key `tokenizer.ggml.pre`) is not supported",
                meta.path().display()
            )))
        }
    }
    let of_type = |wanted: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == wanted)
            .map(|(t, _)| AddedToken::from(t.clone(), special))
            .collect()
    };
    let added = |r: std::result::Result<usize, _>| {
        r.map_err(|e| bad(format!("cannot add the vocabulary's special tokens: {e}")))
    };
    added(tok.add_special_tokens(of_type(TYPE_CONTROL, true)))?;
    added(tok.add_tokens(of_type(TYPE_USER_DEFINED, false)))?;
    Ok(TextTokenizer::from_tokenizer(tok))
}
