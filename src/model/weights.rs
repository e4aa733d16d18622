//! Reading a checkpoint's tensors: `model.safetensors` or a sharded
//! `model.safetensors.index.json`. Every failure names the tensor and the file.
//!
//! The files are memory-mapped and each tensor is copied out only when the model asks for
//! it, so loading never holds a second copy of the whole checkpoint in memory. Why this
//! matters: a model quantized while loading (`Llama::load` with a quantization) then keeps
//! only one dense weight at a time, and its resident memory is that of the quantized
//! weights, not of the f32 checkpoint it came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{candle_message, Error, Result};

/// All tensors of a checkpoint, each remembered with the file it came from.
pub struct TensorStore {
    source: Source,
    dir: PathBuf,
    device: Device,
}

enum Source {
    /// Tensors already in memory (a random init, a GGUF conversion).
    Memory(HashMap<String, Tensor>),
    /// Mapped safetensors files, and which of them holds each tensor.
    Files {
        files: Vec<(PathBuf, MmapedSafetensors)>,
        holder: HashMap<String, usize>,
    },
}

impl TensorStore {
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        // `exists`, not `is_file`: a directory or FIFO under either name is reported as
        // what it is, not as a missing model.
        let paths: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            shard_files(&index)?
        } else {
            return Err(Error::format(
                dir,
                "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
            ));
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut holder = HashMap::new();
        for path in paths {
            crate::files::regular_file(&path)?;
            // SAFETY: the map is read while the file is unchanged. Checkpoints are written
            // to a temporary directory that is then renamed into place (`Model::save`),
            // never rewritten in place, and the store (with its maps) lives only while the
            // model loads. The header and every tensor's extent are validated here.
            let mapped = unsafe { MmapedSafetensors::new(&path) }.map_err(|e| {
                Error::format(
                    &path,
                    format!("cannot read safetensors: {}", candle_message(&e)),
                )
            })?;
            for (name, _) in mapped.tensors() {
                // A name in several shards: the last file wins, as when all were loaded.
                holder.insert(name, files.len());
            }
            files.push((path, mapped));
        }
        Ok(TensorStore {
            source: Source::Files { files, holder },
            dir: dir.to_path_buf(),
            device: device.clone(),
        })
    }

    /// A store over tensors already in memory (a random init, a GGUF conversion).
    pub fn from_map(map: HashMap<String, Tensor>) -> Self {
        TensorStore {
            source: Source::Memory(map),
            dir: PathBuf::from("<memory>"),
            device: Device::Cpu,
        }
    }

    /// The tensor `name` as f32 with the expected shape, or an error naming both. A mapped
    /// tensor's shape is checked before its data is copied.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let missing = || {
            Error::format(
                &self.dir,
                format!("missing tensor `{name}` in the checkpoint's safetensors"),
            )
        };
        let wrong_shape = |file: &Path, dims: &[usize]| {
            Error::format(
                file,
                format!("tensor `{name}` has shape {dims:?}, expected {shape:?}"),
            )
        };
        let t = match &self.source {
            Source::Memory(map) => {
                let t = map.get(name).ok_or_else(missing)?;
                if t.dims() != shape {
                    return Err(wrong_shape(&self.dir, t.dims()));
                }
                t.clone()
            }
            Source::Files { files, holder } => {
                let (file, mapped) = &files[*holder.get(name).ok_or_else(missing)?];
                let view = mapped.get(name).map_err(|e| {
                    Error::format(file, format!("tensor `{name}`: {}", candle_message(&e)))
                })?;
                if view.shape() != shape {
                    return Err(wrong_shape(file, view.shape()));
                }
                let t = mapped.load(name, &self.device).map_err(|e| {
                    Error::format(file, format!("tensor `{name}`: {}", candle_message(&e)))
                })?;
                // candle loads F4, F6 and F8_E8M0 tensors but cannot convert them.
                t.to_dtype(DType::F32).map_err(|e| {
                    Error::format(
                        file,
                        format!(
                            "tensor `{name}`: {:?} cannot be read as f32: {}",
                            view.dtype(),
                            candle_message(&e)
                        ),
                    )
                })?
            }
        };
        let t = t.to_dtype(DType::F32)?;
        if let Some(bad) = first_non_finite(&t)? {
            let file = match &self.source {
                Source::Files { files, holder } => files[holder[name]].0.clone(),
                Source::Memory(_) => self.dir.clone(),
            };
            return Err(Error::format(
                file,
                format!("tensor `{name}` holds {bad} (a diverged training?): refusing to load it"),
            ));
        }
        Ok(t)
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Memory(map) => map.contains_key(name),
            Source::Files { holder, .. } => holder.contains_key(name),
        }
    }
}

/// The first NaN or infinity in an f32 tensor. Weights that hold one give NaN scores for
/// every query, which would come back as empty answers; one pass at load is cheap next
/// to reading the file.
fn first_non_finite(t: &Tensor) -> Result<Option<f32>> {
    let t = t.contiguous()?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            let values = super::host::f32_elements("weights", cpu, layout)?;
            return Ok(values.iter().copied().find(|v| !v.is_finite()));
        }
    }
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.into_iter().find(|v| !v.is_finite()))
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = crate::files::read_text(index, crate::files::MAX_JSON_BYTES)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index, format!("malformed index: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "missing `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::format(index, "`weight_map` lists no files"));
    }
    Ok(files)
}
