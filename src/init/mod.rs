//! From-scratch checkpoints (`patchrec init`): a byte-level BPE tokenizer trained on the
//! catalogue's titles and the prompt text, and a randomly initialised Llama. Tests and
//! CPU benchmarks use these; they need no download.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::error::{Error, Result};
use crate::model::{Llama, LlamaConfig, Model, PatchrecMeta};
use crate::text::bpe::byte_level_tokenizer;
use crate::text::{PromptTemplate, SpecialTokens, TextTokenizer};

/// The size of a from-scratch model.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitOptions {
    /// Target vocabulary size of the trained tokenizer (the byte alphabet and special
    /// tokens included).
    pub vocab_size: usize,
    /// Width of the hidden state and embeddings (default 128).
    pub hidden_size: usize,
    /// Decoder layers (default 4).
    pub num_layers: usize,
    /// Attention heads; they divide `hidden_size` evenly (default 4).
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention); they divide `num_heads` evenly (default 2).
    pub num_kv_heads: usize,
    /// SwiGLU width; defaults to about 8/3 of `hidden_size`.
    pub intermediate_size: Option<usize>,
    /// Seed of the random weights (default 42).
    pub seed: u64,
}

setters!(InitOptions {
    with_vocab_size => vocab_size: usize,
    with_hidden_size => hidden_size: usize,
    with_num_layers => num_layers: usize,
    with_num_heads => num_heads: usize,
    with_num_kv_heads => num_kv_heads: usize,
    with_intermediate_size => opt intermediate_size: usize,
    with_seed => seed: u64,
});

/// The defaults of `patchrec init` and of a training configuration's `[model.init]`: the
/// 4-layer, 128-wide model of docs/RESULTS.md's from-scratch rows.
impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            vocab_size: 2048,
            hidden_size: 128,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: None,
            seed: 42,
        }
    }
}

impl InitOptions {
    /// The model these options make, checked: every size positive and within what the
    /// library runs, the heads dividing evenly, and the weights fitting in memory. The
    /// tokenizer's trainer reserves room for `vocab_size` entries up front, so its bound is
    /// checked here, before training it.
    pub fn validate(&self) -> Result<()> {
        let min_vocab = 256 + CHAT_TOKENS.len() + SpecialTokens::default().all().len();
        if self.vocab_size < min_vocab || self.vocab_size > MAX_INIT_VOCAB {
            return Err(Error::invalid(format!(
                "vocab_size {} is outside {min_vocab}..={MAX_INIT_VOCAB} (the byte alphabet and special tokens, up to a large LLM's vocabulary)",
                self.vocab_size
            )));
        }
        let cfg = self.config(self.vocab_size);
        // Memory first: a model too large for the machine is reported as that, even when
        // its sizes are also beyond what `validate` accepts (hidden = 1000000 with 4 heads
        // is a head dimension of 250,000).
        cfg.check_fits_memory(8)?;
        cfg.validate().map_err(Error::invalid)
    }

    fn config(&self, vocab_size: usize) -> LlamaConfig {
        let mut cfg = LlamaConfig::small(
            vocab_size,
            self.hidden_size,
            self.num_layers,
            self.num_heads,
            self.num_kv_heads,
        );
        if let Some(ff) = self.intermediate_size {
            cfg.intermediate_size = ff;
        }
        cfg
    }
}

/// A tokenizer trained from scratch on a catalogue has at most this many tokens (Llama-3
/// has 128,256).
const MAX_INIT_VOCAB: usize = 1 << 18;

/// Chat-format tokens every from-scratch model knows (ChatML).
const CHAT_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Trains the tokenizer on the catalogue's `titles` and `template`'s text, and builds a
/// random model around it with `template` (which must use the ChatML format).
pub fn init_model<T: AsRef<str>>(
    titles: &[T],
    template: PromptTemplate,
    opts: &InitOptions,
) -> Result<Model> {
    if titles.is_empty() {
        return Err(Error::invalid("init needs at least one title"));
    }
    opts.validate()?;
    let mut corpus: Vec<String> = titles.iter().map(|t| t.as_ref().to_string()).collect();
    corpus.push(template.system.clone());
    corpus.push(template.instruction.clone());
    let tokenizer = train_tokenizer(&corpus, opts.vocab_size)?;
    let mut cfg = opts.config(tokenizer.vocab_size());
    cfg.bos_token_id = tokenizer.token_id("<|im_start|>").map(Into::into);
    cfg.eos_token_id = tokenizer.token_id("<|im_end|>").map(Into::into);
    let llama = Llama::random(cfg, opts.seed, &candle_core::Device::Cpu)?;
    Model::from_parts(llama, tokenizer, PatchrecMeta::new(template))
}

/// A byte-level BPE tokenizer trained on `corpus`, with the chat and PatchRec special
/// tokens first in the vocabulary.
pub fn train_tokenizer(corpus: &[String], vocab_size: usize) -> Result<TextTokenizer> {
    let special = SpecialTokens::default();
    let names: Vec<&str> = CHAT_TOKENS.iter().copied().chain(special.all()).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            names
                .iter()
                .map(|s| AddedToken::from(s.to_string(), true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let mut tok = byte_level_tokenizer(BPE::default(), &names)?;
    tok.train(&mut trainer, corpus.iter())
        .map_err(|e| Error::Tokenizer(format!("training failed: {e}")))?;
    Ok(TextTokenizer::from_tokenizer(tok))
}
