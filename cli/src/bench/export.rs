//! Prompts for the peer benchmarks (`bench/peer_transformers.py`): the exact input
//! embeddings of a set of queries (patches included, which no tokenizer can reproduce),
//! the catalogue's title token ids for the peers' constrained decoding, and our own
//! answers and timings on the same prompts, so one run compares the stacks side by side.
//!
//! Layout of the output folder:
//! - `prompts.safetensors`: `prompt.{i}` `[len, hidden]` f32 input embeddings, and
//!   `logits.{i}` `[vocab]` f32, our logits at the prompt's last position (parity).
//! - `prompts.json`: [`ExportManifest`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use patchrec::catalog::Catalog;
use patchrec::decode::{search_prefilled, SearchOptions};
use patchrec::error::{Error, Result};
use patchrec::history::Layout;
use patchrec::prompt::build_prompt;
use patchrec::prompt::prefill;

#[derive(Debug, Clone, Serialize)]
pub struct ExportedPrompt {
    pub len: usize,
    pub history: Vec<u64>,
    /// Our top-k, best first: item ids and log-probability scores.
    pub item_ids: Vec<u64>,
    pub scores: Vec<f32>,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// Beam-search steps (answer tokens decoded): the floor's batch-1 steps.
    pub decode_steps: usize,
    /// Forward passes those steps ran (fewer, with lookahead).
    pub forward_passes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportManifest {
    pub layout: String,
    pub history_length: usize,
    pub k: usize,
    pub beam_width: usize,
    /// The token that ends an answer (after the title).
    pub answer_end: u32,
    /// Catalogue items in registration order, with their titles' token ids.
    pub item_ids: Vec<u64>,
    pub title_tokens: Vec<Vec<u32>>,
    pub prompts: Vec<ExportedPrompt>,
    /// Threads our side used.
    pub threads: usize,
    /// The weights' format on our side: "f32", or the quantization (`q8_0`, `q4_0`).
    pub precision: String,
}

pub struct ExportOptions {
    pub layout: Layout,
    pub history_length: usize,
    pub users: usize,
    pub k: usize,
    pub beam_width: usize,
    pub seed: u64,
}

/// Writes `users` random histories' prompts and our answers into `out`.
pub fn export_prompts(
    catalog: &Catalog,
    opts: &ExportOptions,
    out: &Path,
) -> Result<ExportManifest> {
    let model = catalog.model();
    let snap = catalog.snapshot();
    if snap.is_empty() || opts.history_length == 0 || opts.users == 0 {
        return Err(Error::invalid(
            "export needs a non-empty catalogue, a history length and users of at least 1",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let search = SearchOptions {
        k: opts.k,
        beam_width: opts.beam_width,
        exclude: vec![],
        allow: None,
        exact: false,
        lookahead: patchrec::decode::DEFAULT_LOOKAHEAD,
        prune: true,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let ids: Vec<u64> = snap.items().map(|i| i.id).collect();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut prompts = Vec::new();
    for u in 0..opts.users {
        let history: Vec<u64> = (0..opts.history_length)
            .map(|_| ids[rng.random_range(0..ids.len())])
            .collect();
        if u == 0 {
            // Warm-up (head cache, allocator) outside the timings.
            let p = build_prompt(model, &snap, &history, opts.layout)?;
            search_prefilled(model, &snap, &prefill(model, &p)?, &search)?;
        }
        let started = Instant::now();
        let prompt = build_prompt(model, &snap, &history, opts.layout)?;
        let prefilled = prefill(model, &prompt)?;
        let prefill_ms = started.elapsed().as_secs_f64() * 1e3;
        let (ranked, counts) = search_prefilled(model, &snap, &prefilled, &search)?;
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        // Raw logits at the last position (log-probabilities would hide a constant shift),
        // by one plain forward pass over the whole prompt, untimed.
        let embeds = prompt.embeds.squeeze(0)?;
        let mut cache = model.llama().new_cache();
        let hidden = model.llama().forward(&prompt.embeds, None, &mut cache)?;
        let logits = model
            .llama()
            .logits(&hidden.narrow(1, prompt.len - 1, 1)?)?
            .flatten_all()?;
        tensors.insert(format!("prompt.{u}"), embeds);
        tensors.insert(format!("logits.{u}"), logits);
        prompts.push(ExportedPrompt {
            len: prompt.len,
            history,
            item_ids: ranked.iter().map(|s| snap.item(s.index).id).collect(),
            scores: ranked.iter().map(|s| s.score).collect(),
            prefill_ms,
            decode_ms: total_ms - prefill_ms,
            total_ms,
            decode_steps: counts.steps,
            forward_passes: counts.passes,
        });
    }
    let manifest = ExportManifest {
        layout: opts.layout.to_string(),
        history_length: opts.history_length,
        k: opts.k,
        beam_width: opts.beam_width,
        answer_end: model.special().answer_end,
        item_ids: ids,
        title_tokens: snap.items().map(|i| i.tokens.clone()).collect(),
        prompts,
        threads: rayon::current_num_threads(),
        precision: model
            .llama()
            .quantization()
            .map_or_else(|| "f32".to_string(), |q| q.to_string()),
    };
    let st = out.join("prompts.safetensors");
    candle_core::safetensors::save(&tensors, &st)
        .map_err(|e| Error::format(&st, format!("cannot write: {e}")))?;
    let js = out.join("prompts.json");
    let text = serde_json::to_string(&manifest).expect("manifest serialises");
    std::fs::write(&js, text).map_err(|e| Error::io(&js, e))?;
    Ok(manifest)
}
