//! A dataset in the shared format (`../shared/data/README.md`): `items.tsv`,
//! `sequences.jsonl` and `prompt.txt` in one folder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::tsv::read_items_tsv;
use crate::error::{Error, Result};

/// One user's interactions in time order, and which target positions belong to which split.
#[derive(Debug, Clone, Deserialize)]
pub struct UserSequence {
    pub user: u64,
    pub items: Vec<u64>,
    /// Inclusive ranges of target positions in `items`.
    pub train: Option<[usize; 2]>,
    pub valid: Option<[usize; 2]>,
    pub test: Option<[usize; 2]>,
}

/// A dataset's split: which target positions of each user's sequence are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training targets.
    Train,
    /// Validation targets.
    Valid,
    /// Test targets.
    Test,
}

impl Split {
    /// Parses `train`, `valid` or `test`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "valid" => Ok(Split::Valid),
            "test" => Ok(Split::Test),
            _ => Err(Error::invalid(format!(
                "split {s:?}: expected train, valid or test"
            ))),
        }
    }

    /// The split's name, as [`Split::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl UserSequence {
    pub fn range(&self, split: Split) -> Option<[usize; 2]> {
        match split {
            Split::Train => self.train,
            Split::Valid => self.valid,
            Split::Test => self.test,
        }
    }
}

/// A dataset folder in the shared format (`items.tsv`, `sequences.jsonl`, `prompt.txt`),
/// read and checked by [`Dataset::open`].
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// `items.tsv`: every item's id and title, in file order.
    pub items: Vec<(u64, String)>,
    /// `sequences.jsonl`: each user's interactions in time order and split ranges.
    pub users: Vec<UserSequence>,
    /// `prompt.txt`: system message and instruction.
    pub prompt: String,
}

impl Dataset {
    /// Reads and checks a dataset folder. Errors name the file and line: a malformed
    /// line, an empty title, an unknown item id, a split range outside the sequence.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "dataset folder not found"),
            ));
        }
        let items = read_items_tsv(&dir.join("items.tsv"))?;
        let known: HashSet<u64> = items.iter().map(|(id, _)| *id).collect();
        let seq_path = dir.join("sequences.jsonl");
        let text = crate::files::read_text(&seq_path, crate::files::MAX_DATA_BYTES)?;
        let mut users = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |m: String| Error::format(&seq_path, format!("line {}: {m}", n + 1));
            let u: UserSequence =
                serde_json::from_str(line).map_err(|e| bad(format!("malformed: {e}")))?;
            if let Some(id) = u.items.iter().find(|id| !known.contains(id)) {
                return Err(bad(format!("unknown item id {id} (not in items.tsv)")));
            }
            for split in [Split::Train, Split::Valid, Split::Test] {
                if let Some([a, b]) = u.range(split) {
                    if a > b || b >= u.items.len() {
                        return Err(bad(format!(
                            "{} range [{a}, {b}] outside the {} items",
                            split.name(),
                            u.items.len()
                        )));
                    }
                }
            }
            users.push(u);
        }
        let prompt_path = dir.join("prompt.txt");
        let prompt = crate::files::read_text(&prompt_path, crate::files::MAX_JSON_BYTES)?;
        Ok(Dataset {
            dir: dir.to_path_buf(),
            items,
            users,
            prompt,
        })
    }
}
