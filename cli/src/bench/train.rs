//! Training throughput (`patchrec bench-train`): optimizer steps on sequences of a fixed
//! length, full fine-tuning or LoRA, in positions per second. The same shapes go to
//! PyTorch in `bench/peer_train_torch.py`, and `bench/train-speed.sh` prints the ratios.
//!
//! A step is what the trainer runs for a micro-batch: the forward pass over every
//! position, the output head and cross-entropy at the last `answer` positions of each
//! sequence (the answer tokens), the backward pass, gradient clipping and AdamW. The token
//! ids are random: the cost depends only on the shapes.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use patchrec::error::Result;
use patchrec::model::{LoraConfig, Model, ModelOptions};
use patchrec::train::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};

#[derive(Debug, Clone)]
pub struct TrainBenchOptions {
    /// Positions per sequence.
    pub seq_len: usize,
    /// Sequences per step.
    pub micro_batch: usize,
    /// Positions per sequence the loss is taken at (the answer's tokens).
    pub answer: usize,
    /// Timed steps, after one untimed warm-up step.
    pub steps: usize,
    /// LoRA adapters instead of full fine-tuning.
    pub lora: Option<LoraConfig>,
    pub seed: u64,
    /// The device: `cpu` or `cuda:N`.
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainBenchReport {
    pub mode: String,
    pub device: String,
    pub threads: usize,
    pub seq_len: usize,
    pub micro_batch: usize,
    pub answer: usize,
    pub trained_parameters: usize,
    /// Seconds of each timed step.
    pub step_seconds: Vec<f64>,
    /// Positions per second over the timed steps.
    pub positions_per_second: f64,
}

pub fn run_train_bench(checkpoint: &Path, opts: &TrainBenchOptions) -> Result<TrainBenchReport> {
    let options = ModelOptions::default()
        .with_device(Some(opts.device.clone()))
        .with_panels(Some(false));
    let mut model = Model::load(checkpoint, &options)?;
    let params = match &opts.lora {
        None => patchrec::train::trainer::make_trainable(&mut model)?,
        Some(lora) => {
            let rows = lora.train_new_tokens.then(|| model.prompt_token_rows());
            let llama = model.llama_mut();
            let vars = llama.attach_lora(lora, rows, opts.seed, None)?;
            llama.set_differentiable(true);
            vars
        }
    };
    let trained_parameters = params.iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default())?;
    let vocab = model.llama().config().vocab_size as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut step_seconds = Vec::with_capacity(opts.steps);
    for step in 0..=opts.steps {
        let ids: Vec<u32> = (0..opts.micro_batch * opts.seq_len)
            .map(|_| rng.random_range(0..vocab))
            .collect();
        let started = Instant::now();
        let llama = model.llama();
        let x = llama.embed_ids(&ids)?.reshape((
            opts.micro_batch,
            opts.seq_len,
            llama.hidden_size(),
        ))?;
        let hidden = llama.forward(&x, None, &mut llama.new_cache())?;
        let answer = opts.answer.min(opts.seq_len - 1);
        let picked = hidden.narrow(1, opts.seq_len - 1 - answer, answer)?;
        let picked = picked.reshape((opts.micro_batch * answer, llama.hidden_size()))?;
        let logits = llama.logits(&picked)?;
        let targets: Vec<u32> = (0..opts.micro_batch * answer)
            .map(|_| rng.random_range(0..vocab))
            .collect();
        let targets = candle_core::Tensor::new(targets.as_slice(), logits.device())?;
        let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
        let loss = (logp.gather(&targets.unsqueeze(1)?, 1)?.mean_all()?.neg())?;
        let grads = loss.backward()?;
        let scale = clip_scale(grad_norm(&grads, &params)?, 0.3);
        opt.step_scaled(&grads, 1e-4, scale)?;
        // A GPU runs the step's kernels after they are queued: wait for them.
        model.device().synchronize()?;
        if step > 0 {
            step_seconds.push(started.elapsed().as_secs_f64());
        }
    }
    let total: f64 = step_seconds.iter().sum();
    Ok(TrainBenchReport {
        mode: match &opts.lora {
            None => "full".into(),
            Some(l) => format!("lora-r{}", l.rank),
        },
        device: opts.device.clone(),
        threads: rayon::current_num_threads(),
        seq_len: opts.seq_len,
        micro_batch: opts.micro_batch,
        answer: opts.answer,
        trained_parameters,
        positions_per_second: (opts.steps * opts.micro_batch * opts.seq_len) as f64 / total,
        step_seconds,
    })
}
