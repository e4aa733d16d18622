//! Scoring a checkpoint by the paper's protocol: for every sample of a split, the top 20
//! of constrained beam search (20 beams); rank = the target's position, 20 if absent.
//!
//! Per-sample results are appended to a JSON-lines file as they are computed, so an
//! interrupted evaluation resumes where it stopped.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::metrics::{rank_of, Metrics};
use crate::catalog::Catalog;
use crate::data::{samples, Dataset, Sample, SampleOptions, Split};
use crate::error::{Error, Result};
use crate::history::{history_tokens, LayoutConfig};
use crate::query::{recommend, QueryOptions};

/// The paper ranks the top 20.
const TOP: usize = 20;

/// How to evaluate ([`evaluate`]): [`EvalOptions::new`] and the `with_*` setters build one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EvalOptions {
    /// The split whose samples are scored.
    pub split: Split,
    /// How each sample's history is laid out, and its truncation K.
    pub layout: LayoutConfig,
    /// Which samples (default: every one, its history truncated to the layout's K).
    pub samples: SampleOptions,
    /// Beam width (default 20, the paper's).
    pub beam_width: usize,
    /// Exact catalogue ranking instead of beam search.
    pub exact: bool,
    /// Per-sample results (JSON lines); existing lines are reused.
    pub results: Option<PathBuf>,
}

impl EvalOptions {
    /// The paper's protocol on `split` with `layout`: every sample (history truncated to
    /// the layout's K), beam width 20, beam search, no per-sample results file.
    pub fn new(split: Split, layout: LayoutConfig) -> Self {
        EvalOptions {
            split,
            layout,
            samples: SampleOptions {
                max_history: layout.max_items,
                ..Default::default()
            },
            beam_width: 20,
            exact: false,
            results: None,
        }
    }
}

setters!(EvalOptions {
    with_split => split: Split,
    with_layout => layout: LayoutConfig,
    with_samples => samples: SampleOptions,
    with_beam_width => beam_width: usize,
    with_exact => exact: bool,
    with_results => opt results: PathBuf,
});

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleResult {
    pub index: usize,
    pub rank: usize,
    /// History tokens as text and compressed (the CR's numerator and denominator).
    pub text_tokens: usize,
    pub compressed_tokens: usize,
    pub prompt_len: usize,
}

/// What [`evaluate`] measured over a split. Serialises as one JSON object, with the
/// metrics' fields at its top level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EvalReport {
    /// The split's name (`train`, `valid` or `test`).
    pub split: String,
    /// The layout, as [`crate::Layout`] prints it (`pft-s:5`, say).
    pub layout: String,
    /// HR@10, HR@20, NDCG@10 and NDCG@20 over the samples.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Total history tokens as text over total compressed, across the split.
    pub compression_ratio: f64,
    /// Mean prompt length in positions (tokens and patches).
    pub mean_prompt_len: f64,
    /// Wall-clock seconds this call took; samples read back from the results file cost none.
    pub wall_seconds: f64,
    /// `beam:W` or `exact` (reports written before this field read as empty).
    #[serde(default)]
    pub decoding: String,
}

impl EvalReport {
    fn from_results(opts: &EvalOptions, results: &[SampleResult], wall: f64) -> Self {
        let ranks: Vec<usize> = results.iter().map(|r| r.rank).collect();
        let text: usize = results.iter().map(|r| r.text_tokens).sum();
        let comp: usize = results.iter().map(|r| r.compressed_tokens).sum();
        let n = results.len().max(1) as f64;
        EvalReport {
            split: opts.split.name().into(),
            layout: opts.layout.layout.to_string(),
            metrics: Metrics::from_ranks(&ranks),
            compression_ratio: if comp == 0 {
                1.0
            } else {
                text as f64 / comp as f64
            },
            mean_prompt_len: results.iter().map(|r| r.prompt_len).sum::<usize>() as f64 / n,
            wall_seconds: wall,
            decoding: if opts.exact {
                "exact".into()
            } else {
                format!("beam:{}", opts.beam_width)
            },
        }
    }

    /// `| name | HR@10 | HR@20 | NDCG@10 | NDCG@20 | CR |`
    pub fn markdown_row(&self, name: &str) -> String {
        let m = &self.metrics;
        format!(
            "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.2} |",
            m.hr10, m.hr20, m.ndcg10, m.ndcg20, self.compression_ratio
        )
    }
}

/// Evaluates the catalogue's model on `data`; `progress(done, total)` after each sample.
pub fn evaluate(
    catalog: &Catalog,
    data: &Dataset,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let started = Instant::now();
    let all = samples(data, opts.split, &opts.samples);
    let mut done = read_results(opts)?;
    let snap = catalog.snapshot();
    let mut sink = match &opts.results {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::io(p, e))?,
        ),
        None => None,
    };
    let query = QueryOptions {
        k: TOP,
        beam_width: opts.beam_width,
        layout: opts.layout.into(),
        exclude_history: false,
        exact: opts.exact,
        ..Default::default()
    };
    let have: HashSet<usize> = done.iter().map(|r| r.index).collect();
    for (index, sample) in all.iter().enumerate() {
        if have.contains(&index) {
            continue;
        }
        // A stream-aligned layout shows whole sessions of the user's stream, as serving
        // does: K may have cut the oldest one short.
        let skip = opts.layout.layout.stream_skip(sample.start);
        let user = catalog.history_of(&sample.history[skip.min(sample.history.len())..])?;
        let result = recommend(catalog, &user, &query)?;
        let ranked: Vec<u64> = result.items.iter().map(|r| r.item_id).collect();
        let shown = user.shown(&opts.layout);
        let segs = shown.segments(result.layout);
        let (text_tokens, compressed_tokens) = history_tokens(&segs, |i| {
            snap.get(shown.items[i]).map_or(0, |it| it.tokens.len())
        });
        let r = SampleResult {
            index,
            rank: rank_of(sample.target, &ranked, TOP),
            text_tokens,
            compressed_tokens,
            prompt_len: result.prompt_len,
        };
        if let (Some(f), Some(p)) = (sink.as_mut(), opts.results.as_ref()) {
            writeln!(f, "{}", serde_json::to_string(&r).expect("serialises"))
                .map_err(|e| Error::io(p, e))?;
        }
        done.push(r);
        progress(done.len(), all.len());
    }
    done.retain(|r| r.index < all.len());
    Ok(EvalReport::from_results(
        opts,
        &done,
        started.elapsed().as_secs_f64(),
    ))
}

fn read_results(opts: &EvalOptions) -> Result<Vec<SampleResult>> {
    let Some(path) = &opts.results else {
        return Ok(Vec::new());
    };
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = crate::files::read_text(path, crate::files::MAX_DATA_BYTES)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| Error::format(path, format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// The popularity baseline: the 20 items most often interacted with in the training
/// part of every sequence, skipping items already in the sample's history.
pub fn popularity(data: &Dataset, opts: &EvalOptions) -> EvalReport {
    let started = Instant::now();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for u in &data.users {
        if let Some([_, end]) = u.train {
            for &id in &u.items[..=end] {
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    let mut by_count: Vec<(u64, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let all: Vec<Sample> = samples(data, opts.split, &opts.samples);
    let results: Vec<SampleResult> = all
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let seen: HashSet<u64> = s.history.iter().copied().collect();
            let ranked: Vec<u64> = by_count
                .iter()
                .map(|&(id, _)| id)
                .filter(|id| !seen.contains(id))
                .take(TOP)
                .collect();
            SampleResult {
                index,
                rank: rank_of(s.target, &ranked, TOP),
                text_tokens: 0,
                compressed_tokens: 0,
                prompt_len: 0,
            }
        })
        .collect();
    let mut report = EvalReport::from_results(opts, &results, started.elapsed().as_secs_f64());
    report.layout = "popularity".into();
    report
}
