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
use super::meta::PatchrecMeta;
use super::proj::Quantization;
use super::weights::TensorStore;
use crate::error::{Error, Result};
use crate::text::{SpecialIds, TextTokenizer};

/// Where a model runs.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// `cpu` (default) or `cuda:N` (needs the `cuda` feature).
    pub device: Option<String>,
    /// Serve from quantized weights (`Llama::quantize`); such a model cannot be trained
    /// or saved.
    pub quantization: Option<Quantization>,
}

impl ModelOptions {
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
            Device::new_cuda(ordinal)
                .map_err(|e| Error::Unsupported(format!("device {s:?} is not available: {e}")))
        }
        s => Err(Error::invalid(format!(
            "unknown device {s:?}: expected cpu or cuda:N"
        ))),
    }
}

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
        let meta = if meta_path.is_file() {
            PatchrecMeta::from_file(&meta_path)?
        } else {
            PatchrecMeta::default_for(|t| tokenizer.token_id(t).is_some()).ok_or_else(|| {
                Error::format(
                    &meta_path,
                    "missing, and the tokenizer has neither <|eot_id|> nor <|im_end|> to pick a chat format",
                )
            })?
        };
        // The projections are quantized as they are read; the head after `from_parts`,
        // which may grow the vocabulary. Dropping the store unmaps the checkpoint.
        let store = TensorStore::open(dir, &device)?;
        let llama = Llama::load(cfg, &store, &device, options.quantization)?;
        drop(store);
        let mut model = Self::from_parts(llama, tokenizer, meta)?;
        if let Some(q) = options.quantization {
            model.llama.quantize(q)?;
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
        let written = self.write_files(&tmp).and_then(|()| extra(&tmp));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        replace_dir(&tmp, dir)
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
        let meta_path = dir.join("patchrec.json");
        let json = serde_json::to_string_pretty(&self.meta).expect("meta serialises");
        std::fs::write(&meta_path, json).map_err(|e| Error::io(&meta_path, e))?;
        Ok(())
    }

    pub fn llama(&self) -> &Llama {
        &self.llama
    }

    pub fn llama_mut(&mut self) -> &mut Llama {
        &mut self.llama
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn meta(&self) -> &PatchrecMeta {
        &self.meta
    }

    pub fn meta_mut(&mut self) -> &mut PatchrecMeta {
        &mut self.meta
    }

    pub fn special(&self) -> &SpecialIds {
        &self.special
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

    pub fn device(&self) -> &Device {
        self.llama.device()
    }
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
