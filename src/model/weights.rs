//! Reading a checkpoint's tensors: `model.safetensors` or a sharded
//! `model.safetensors.index.json`. Every failure names the tensor and the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// All tensors of a checkpoint, each remembered with the file it came from.
pub struct TensorStore {
    tensors: HashMap<String, (Tensor, PathBuf)>,
    dir: PathBuf,
}

impl TensorStore {
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_files(&index)?
        } else {
            return Err(Error::format(
                dir,
                "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
            ));
        };
        let mut tensors = HashMap::new();
        for file in files {
            let loaded = candle_core::safetensors::load(&file, device)
                .map_err(|e| Error::format(&file, format!("cannot read safetensors: {e}")))?;
            for (name, t) in loaded {
                tensors.insert(name, (t, file.clone()));
            }
        }
        Ok(TensorStore {
            tensors,
            dir: dir.to_path_buf(),
        })
    }

    /// The tensor `name` as f32 with the expected shape, or an error naming both.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (t, file) = self.tensors.get(name).ok_or_else(|| {
            Error::format(
                &self.dir,
                format!("missing tensor `{name}` in the checkpoint's safetensors"),
            )
        })?;
        if t.dims() != shape {
            return Err(Error::format(
                file,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                ),
            ));
        }
        Ok(t.to_dtype(DType::F32)?)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
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

impl TensorStore {
    /// A store over tensors already in memory (a random init, a GGUF conversion).
    pub fn from_map(map: HashMap<String, Tensor>) -> Self {
        TensorStore {
            tensors: map
                .into_iter()
                .map(|(k, v)| (k, (v, PathBuf::from("<memory>"))))
                .collect(),
            dir: PathBuf::from("<memory>"),
        }
    }
}
