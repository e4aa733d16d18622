//! A loaded recommender model: decoder weights, tokenizer and prompt template, plus
//! what every query shares (special token ids, the prompt's fixed head and tail).
//!
//! A checkpoint is a directory transformers can also load: `config.json`,
//! `model.safetensors` (or a sharded index), `tokenizer.json`, and our `patchrec.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::config::LlamaConfig;
use super::kv_cache::KvCache;
use super::llama::Llama;
use super::meta::{PatchrecMeta, VocabRecord};
use super::proj::Quantization;
use super::weights::TensorStore;
use crate::error::{candle_message, Error, Result};
use crate::text::{SpecialIds, TextTokenizer};

/// Where a model runs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ModelOptions {
    /// `cpu` (default) or `cuda:N` (needs the `cuda` feature).
    pub device: Option<String>,
    /// Serve from quantized weights (`Llama::quantize`); such a model cannot be trained
    /// or saved.
    pub quantization: Option<Quantization>,
    /// Hold the f32 projections in the kernel's panel layout (`Llama::pack_panels`):
    /// faster decoding, the same values. Unset: yes, where the CPU runs the panel kernel
    /// (AVX-512). A model loaded to be trained sets `false` to skip the round trip
    /// (training puts the weights back into tensors either way).
    pub panels: Option<bool>,
}

setters!(ModelOptions {
    with_device => opt device: String,
    with_quantization => opt quantization: Quantization,
    with_panels => opt panels: bool,
});

impl ModelOptions {
    /// The device `device` names (`cpu` when unset); an error for an unknown name or a CUDA
    /// device this build or machine lacks.
    pub fn device(&self) -> Result<Device> {
        parse_device(self.device.as_deref().unwrap_or("cpu"))
    }
}

pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::invalid(format!("device {s:?}: bad ordinal")))?,
                None if s == "cuda" => 0,
                None => return Err(Error::invalid(format!("unknown device {s:?}"))),
            };
            cuda_device(ordinal).map_err(|why| {
                Error::Unsupported(format!("device {s:?} is not available: {why}"))
            })
        }
        s => Err(Error::invalid(format!(
            "unknown device {s:?}: expected cpu or cuda:N"
        ))),
    }
}

/// CUDA device `ordinal`, or why not. In the `cuda` build, cudarc opens the driver library
/// at run time and panics where it is missing, so the library is looked for first, and any
/// other panic in the device's setup (a CUDA library missing) is caught and reported.
fn cuda_device(ordinal: usize) -> std::result::Result<Device, String> {
    #[cfg(feature = "cuda")]
    {
        const DRIVER: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
        // SAFETY: loading the CUDA driver runs only its initialisers, which cudarc would
        // run on the same library anyway.
        let found = DRIVER
            .iter()
            .any(|name| unsafe { libloading::Library::new(*name) }.is_ok());
        if !found {
            return Err("no CUDA driver on this machine (libcuda.so.1 not found)".into());
        }
    }
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(device) => device.map_err(|e| candle_message(&e)),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA setup failed".into())),
    }
}

/// A loaded recommender model: the Llama decoder's weights, its tokenizer and the
/// checkpoint's `patchrec.json`, plus the prompt's fixed head and tail that every query
/// shares. Share it between catalogues and threads in an `Arc`.
pub struct Model {
    llama: Llama,
    tokenizer: TextTokenizer,
    meta: PatchrecMeta,
    special: SpecialIds,
    head_ids: Vec<u32>,
    tail_ids: Vec<u32>,
    /// KV cache of `head_ids`, computed on first use and shared by every query.
    head_cache: std::sync::OnceLock<KvCache>,
}

impl Model {
    /// Loads a checkpoint directory. Errors name the file (and tensor or field) at fault.
    pub fn load(dir: &Path, options: &ModelOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "checkpoint directory does not exist",
                ),
            ));
        }
        let device = options.device()?;
        let cfg = LlamaConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let meta_path = dir.join("patchrec.json");
        let meta = if meta_path.exists() {
            PatchrecMeta::from_file(&meta_path)?
        } else {
            PatchrecMeta::default_for(|t| tokenizer.token_id(t).is_some()).ok_or_else(|| {
                Error::format(
                    &meta_path,
                    "missing, and the tokenizer has neither <|eot_id|> nor <|im_end|> to pick a chat format",
                )
            })?
        };
        check_vocabulary(dir, &cfg, &tokenizer, &meta, meta_path.exists())?;
        // The projections are quantized as they are read; the head after `from_parts`,
        // which may grow the vocabulary. Dropping the store unmaps the checkpoint.
        let store = TensorStore::open(dir, &device)?;
        let llama = Llama::load(cfg, &store, &device, options.quantization)?;
        drop(store);
        let mut model = Self::from_parts(llama, tokenizer, meta)?;
        if let Some(q) = options.quantization {
            model.llama.quantize(q)?;
        } else if options.panels != Some(false) {
            model.llama.pack_panels()?;
        }
        Ok(model)
    }

    /// Assembles a model; adds PatchRec's special tokens the tokenizer lacks, growing the
    /// embedding table to match (new rows = mean of the existing rows).
    pub fn from_parts(
        mut llama: Llama,
        mut tokenizer: TextTokenizer,
        meta: PatchrecMeta,
    ) -> Result<Self> {
        meta.template.validate()?;
        tokenizer.add_missing_special(&meta.special_tokens.all())?;
        let needed = tokenizer.vocab_size();
        let have = llama.config().vocab_size;
        if needed > have {
            llama.grow_vocab(needed - have)?;
        }
        let st = &meta.special_tokens;
        let special = SpecialIds {
            start_seq: tokenizer.special_id(&st.start_seq)?,
            end_seq: tokenizer.special_id(&st.end_seq)?,
            item_sep: tokenizer.special_id(&st.item_sep)?,
            answer_end: tokenizer.special_id(&meta.template.answer_end)?,
        };
        let (head, tail) = meta.template.split(st);
        let head_ids = tokenizer.encode(&head)?;
        let tail_ids = tokenizer.encode(&tail)?;
        Ok(Model {
            llama,
            tokenizer,
            meta,
            special,
            head_ids,
            tail_ids,
            head_cache: std::sync::OnceLock::new(),
        })
    }

    /// Writes the checkpoint directory atomically: everything goes into a temporary
    /// sibling directory that replaces `dir` only once complete, so a failed save leaves
    /// any previous checkpoint as it was.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_with(dir, |_| Ok(()))
    }

    /// Like [`Model::save`], with `extra` writing more files (e.g. a trainer's resume
    /// state) into the same directory before it replaces `dir`, so both land together.
    pub fn save_with(&self, dir: &Path, extra: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        write_dir(dir, |tmp| self.write_files(tmp).and_then(|()| extra(tmp)))
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let config_path = dir.join("config.json");
        let json = serde_json::to_string_pretty(self.llama.config()).expect("config serialises");
        std::fs::write(&config_path, json).map_err(|e| Error::io(&config_path, e))?;
        let tensors: HashMap<String, Tensor> = self.llama.named_tensors()?.into_iter().collect();
        let st_path = dir.join("model.safetensors");
        // transformers' `from_pretrained` refuses a file without `format: pt`.
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(&tensors, Some(metadata), &st_path)
            .map_err(|e| Error::format(&st_path, format!("cannot write: {e}")))?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        for (name, json) in self.hf_generation_files() {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(&json).expect("json serialises");
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        let meta_path = dir.join("patchrec.json");
        let mut meta = self.meta.clone();
        meta.vocab = Some(self.vocab_record());
        let json = serde_json::to_string_pretty(&meta).expect("meta serialises");
        std::fs::write(&meta_path, json).map_err(|e| Error::io(&meta_path, e))?;
        Ok(())
    }

    /// `tokenizer_config.json` and `generation_config.json`, so that transformers'
    /// `AutoTokenizer` and `generate` work with their defaults. Without them, AutoTokenizer
    /// picks `LlamaTokenizerFast` from config.json, which prepends a `<s>` these
    /// vocabularies lack, and the model fails on the unknown id.
    fn hf_generation_files(&self) -> [(&'static str, serde_json::Value); 2] {
        let cfg = self.llama.config();
        let token = |id: u32| self.tokenizer.decode(&[id]).ok();
        let eos = self.special.answer_end;
        let bos = cfg.bos_token_id.as_ref().and_then(|v| v.as_u64());
        let bos_text = bos.and_then(|id| u32::try_from(id).ok()).and_then(token);
        let mut tokenizer_config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": false,
            "add_eos_token": false,
            "bos_token": bos_text,
            "eos_token": token(eos),
            "pad_token": token(eos),
            "model_max_length": cfg.max_position_embeddings,
            "clean_up_tokenization_spaces": false,
        });
        if let Some(template) = &self.meta.hf_chat_template {
            tokenizer_config["chat_template"] = template.clone().into();
        }
        let generation_config = serde_json::json!({
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        });
        [
            ("tokenizer_config.json", tokenizer_config),
            ("generation_config.json", generation_config),
        ]
    }

    /// The tokenizer as `patchrec.json` records it, for [`check_vocabulary`] on load.
    fn vocab_record(&self) -> VocabRecord {
        let st = &self.meta.special_tokens;
        let sp = &self.special;
        let special_ids = [
            (&st.start_seq, sp.start_seq),
            (&st.end_seq, sp.end_seq),
            (&st.item_sep, sp.item_sep),
            (&self.meta.template.answer_end, sp.answer_end),
        ]
        .into_iter()
        .map(|(token, id)| (token.clone(), id))
        .collect();
        VocabRecord {
            size: self.tokenizer.vocab_size(),
            special_ids,
        }
    }

    /// The decoder: its configuration, weights and forward passes.
    pub fn llama(&self) -> &Llama {
        &self.llama
    }

    /// The decoder, to change its weights (training, adapters): only before the first query,
    /// whose prompt head's KV is cached with the weights of the time ([`Model::head_cache`]).
    pub fn llama_mut(&mut self) -> &mut Llama {
        &mut self.llama
    }

    /// The checkpoint's tokenizer, with PatchRec's special tokens added.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The checkpoint's `patchrec.json`: prompt template, special tokens, default layout,
    /// training record.
    pub fn meta(&self) -> &PatchrecMeta {
        &self.meta
    }

    /// The checkpoint's `patchrec.json`, to change what queries default to and a save writes
    /// (the default layout, the training record). The prompt's template and special tokens
    /// were resolved at load; changing them here changes no prompt.
    pub fn meta_mut(&mut self) -> &mut PatchrecMeta {
        &mut self.meta
    }

    /// The ids of the tokens prompts are built from: the history delimiters and the answer's end.
    pub fn special(&self) -> &SpecialIds {
        &self.special
    }

    /// The embedding rows spanning PatchRec's history tokens (`<|start_seq|>`,
    /// `<|end_seq|>`, `<|item_sep|>`): the rows a LoRA stage trains. Added together, they
    /// are adjacent in every vocabulary this library builds or extends.
    pub fn prompt_token_rows(&self) -> std::ops::Range<usize> {
        let sp = &self.special;
        let ids = [sp.start_seq, sp.end_seq, sp.item_sep].map(|i| i as usize);
        let (lo, hi) = (ids.iter().min(), ids.iter().max());
        *lo.expect("three ids")..*hi.expect("three ids") + 1
    }

    /// Token ids of the prompt before the history (ends with `<|start_seq|>`).
    pub fn head_ids(&self) -> &[u32] {
        &self.head_ids
    }

    /// The KV cache of the prompt's fixed head (system message and instruction up to the
    /// history), computed once per model: every query continues from it instead of
    /// prefilling the head again. The weights must not change afterwards (training never
    /// calls this; it builds whole prompts).
    pub fn head_cache(&self) -> Result<&KvCache> {
        if let Some(cache) = self.head_cache.get() {
            return Ok(cache);
        }
        let mut cache = self.llama.new_cache();
        let head = self.llama.embed_ids(&self.head_ids)?.unsqueeze(0)?;
        self.llama.forward(&head, None, &mut cache)?;
        // Two threads may race here; both computed the same cache, one is kept.
        Ok(self.head_cache.get_or_init(|| cache))
    }

    /// Token ids of the prompt after the history's closing `<|end_seq|>`.
    pub fn tail_ids(&self) -> &[u32] {
        &self.tail_ids
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        self.llama.device()
    }
}

/// Writes a directory atomically: `fill` writes into a temporary sibling directory that
/// replaces `dir` only once complete, so a failure leaves any previous `dir` as it was.
pub(crate) fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a directory name", dir.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    replace_dir(&tmp, dir)
}

/// Refuses a `tokenizer.json` that does not belong to the weights: one with more tokens
/// than the embedding table has rows, one that differs from the tokenizer `patchrec.json`
/// records, or, for a checkpoint we trained, one whose PatchRec tokens were removed.
/// Loading it anyway would read other tokens' embeddings (or grow the table with new
/// rows) and answer with nonsense.
fn check_vocabulary(
    dir: &Path,
    cfg: &LlamaConfig,
    tokenizer: &TextTokenizer,
    meta: &PatchrecMeta,
    has_meta_file: bool,
) -> Result<()> {
    let tokenizer_path = dir.join("tokenizer.json");
    let mismatch = |what: String| {
        Error::format(
            &tokenizer_path,
            format!("{what}: this tokenizer does not belong to these weights"),
        )
    };
    let size = tokenizer.vocab_size();
    if size > cfg.vocab_size {
        return Err(mismatch(format!(
            "{size} tokens, but the embedding table has {} rows (vocab_size in {})",
            cfg.vocab_size,
            dir.join("config.json").display()
        )));
    }
    if let Some(record) = &meta.vocab {
        if record.size != size {
            return Err(mismatch(format!(
                "{size} tokens, but {} records {} for the tokenizer the weights were saved with",
                dir.join("patchrec.json").display(),
                record.size
            )));
        }
        for (token, &id) in &record.special_ids {
            let found = tokenizer.token_id(token);
            if found != Some(id) {
                return Err(mismatch(format!(
                    "token {token:?} is {} here, but id {id} in {}",
                    found.map_or("missing".to_string(), |f| format!("id {f}")),
                    dir.join("patchrec.json").display()
                )));
            }
        }
    } else if has_meta_file && !meta.training.is_empty() {
        if let Some(token) = meta
            .special_tokens
            .all()
            .into_iter()
            .find(|t| tokenizer.token_id(t).is_none())
        {
            return Err(mismatch(format!(
                "it lacks {token:?}, which the checkpoint was trained with"
            )));
        }
    }
    Ok(())
}

/// Moves `new` into place at `dir`. An existing `dir` is first renamed aside and removed
/// only after the new one is in place.
fn replace_dir(new: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let old: PathBuf = {
            let mut s = dir.as_os_str().to_owned();
            s.push(format!(".old-{}", std::process::id()));
            s.into()
        };
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
        if let Err(e) = std::fs::rename(new, dir) {
            let _ = std::fs::rename(&old, dir);
            return Err(Error::io(dir, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(new, dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}
