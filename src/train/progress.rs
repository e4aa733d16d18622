//! Progress reporting: the callback's view of a step, plain lines on stderr, and a
//! JSON-lines metrics file per run. A host that wants a progress bar draws it from the
//! callback (the command line does), so the library links no terminal code.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// One optimizer step, as the training callback sees it and `metrics.jsonl` records it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// Stage name, e.g. `pft-i5`.
    pub stage: String,
    /// 0-based position of the stage in the run.
    pub stage_index: usize,
    /// Optimizer steps done in this stage (1-based after the first step).
    pub step: u64,
    /// Optimizer steps this stage runs in all.
    pub total_steps: u64,
    /// Mean answer-token cross-entropy of the step's batch.
    pub loss: f64,
    /// The step's learning rate (after warm-up and cosine decay).
    pub learning_rate: f64,
    /// The gradients' global L2 norm, before clipping.
    pub grad_norm: f64,
    /// Input positions per second over the step (packed: the tree's nodes).
    pub tokens_per_second: f64,
    /// Samples per second over the step: what packing speeds up.
    pub samples_per_second: f64,
}

/// What the callback asks for after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on training.
    Continue,
    /// Write resume state and stop cleanly.
    Stop,
}

/// Shows progress on stderr (a line every few seconds) and appends every step to
/// `metrics.jsonl`.
pub struct Reporter {
    metrics: std::fs::File,
    metrics_path: std::path::PathBuf,
    last_line: std::time::Instant,
    quiet: bool,
}

impl Reporter {
    pub fn new(metrics_path: &Path, quiet: bool) -> Result<Self> {
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(metrics_path)
            .map_err(|e| Error::io(metrics_path, e))?;
        Ok(Reporter {
            metrics,
            metrics_path: metrics_path.to_path_buf(),
            last_line: std::time::Instant::now(),
            quiet,
        })
    }

    /// Drops the rows of `metrics.jsonl` after step `step` of stage `stage_index` (and all
    /// rows of later stages): a run resumed from that step writes them again, and the
    /// file should say what the finished run did, once. A torn last line from a killed
    /// run goes too. The file is replaced atomically.
    pub fn rewind(&mut self, stage_index: usize, step: u64) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Row {
            stage_index: usize,
            step: u64,
        }
        let path = &self.metrics_path;
        let text = crate::files::read_text(path, crate::files::MAX_DATA_BYTES)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Row>(line).is_ok_and(|r| {
                    r.stage_index < stage_index || r.stage_index == stage_index && r.step <= step
                })
            })
            .collect();
        if kept.len() == text.lines().count() && (text.is_empty() || text.ends_with('\n')) {
            return Ok(());
        }
        let tmp = path.with_extension("jsonl.tmp");
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        self.metrics = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    pub fn stage_started(&mut self, name: &str, done: u64, total: u64) {
        if !self.quiet {
            eprintln!("stage {name}: {total} steps (starting at {done})");
        }
    }

    pub fn step(&mut self, p: &Progress) -> Result<()> {
        let line = serde_json::to_string(p).expect("progress serialises");
        writeln!(self.metrics, "{line}").map_err(|e| Error::io(&self.metrics_path, e))?;
        if self.quiet {
            return Ok(());
        }
        let msg = format!(
            "loss {:.4} lr {:.2e} {:.0} tok/s",
            p.loss, p.learning_rate, p.tokens_per_second
        );
        if self.last_line.elapsed().as_secs() >= 10 || p.step == p.total_steps {
            eprintln!("{} step {}/{}: {msg}", p.stage, p.step, p.total_steps);
            self.last_line = std::time::Instant::now();
        }
        Ok(())
    }
}
