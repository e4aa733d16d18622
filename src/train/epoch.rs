//! What a stage trains on: its samples, the order each epoch visits them in, and the
//! examples of each optimizer step. The trainer and the plan (`patchrec train --plan`)
//! read the same steps from here.
//!
//! Determinism: the order of epoch `e` of stage `s` is a permutation seeded by
//! `(seed, s, e)`, and PPT's compression draws are seeded by `(seed, s, step, sample)`, so
//! a resumed run replays exactly what an uninterrupted one would have done.

use std::collections::HashMap;
use std::ops::Range;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::batch::{examples_for, Example};
use super::config::{Order, StageConfig, StageKind, TrainConfig};
use crate::catalog::CatalogSnapshot;
use crate::data::{samples, Dataset, SampleOptions, Split};
use crate::error::{Error, Result};
use crate::history::Layout;

/// A training sample: catalogue indices, and where its history begins in the user's
/// stream.
struct TrainSample {
    user: u64,
    start: usize,
    history: Vec<u32>,
    target: u32,
}

/// A stage's samples and their order, epoch by epoch.
pub struct StageData {
    samples: Vec<TrainSample>,
    /// The runs of samples an epoch's shuffle moves as one.
    units: Vec<Range<usize>>,
    orders: HashMap<u64, Vec<usize>>,
    kind: StageKind,
    layout: Layout,
    seed: u64,
    stage_index: usize,
    batch_size: usize,
    /// Samples over all epochs.
    stream_len: u64,
    total_steps: u64,
}

impl StageData {
    pub fn new(
        cfg: &TrainConfig,
        data: &Dataset,
        snap: &CatalogSnapshot,
        stage_index: usize,
        stage: &StageConfig,
    ) -> Result<Self> {
        let opts = SampleOptions {
            max_history: stage.max_history,
            max_users: cfg.samples.max_users,
            max_samples: cfg.samples.max_samples,
            seed: cfg.seed,
        };
        let layout = stage.layout()?;
        let samples: Vec<TrainSample> = samples(data, Split::Train, &opts)
            .into_iter()
            .map(|s| {
                // Stream-aligned sessions are the stream's own: K may cut the oldest short.
                let skip = layout.stream_skip(s.start).min(s.history.len());
                let history = s.history[skip..]
                    .iter()
                    .map(|&id| snap.index_of(id))
                    .collect::<Result<_>>()?;
                Ok(TrainSample {
                    user: s.user,
                    start: s.start + skip,
                    history,
                    target: snap.index_of(s.target)?,
                })
            })
            .collect::<Result<_>>()?;
        let n = samples.len();
        if n == 0 {
            return Err(Error::invalid(format!(
                "{}: no training samples",
                data.dir.display()
            )));
        }
        let stream_len = (n as f64 * stage.epochs).floor().max(1.0) as u64;
        let mut total_steps = stream_len.div_ceil(stage.batch_size as u64);
        if let Some(cap) = stage.max_steps {
            total_steps = total_steps.min(cap);
        }
        Ok(StageData {
            units: order_units(&samples, stage.order(), stage.pack_targets),
            samples,
            orders: HashMap::new(),
            kind: stage.kind,
            layout,
            seed: cfg.seed,
            stage_index,
            batch_size: stage.batch_size,
            stream_len,
            total_steps,
        })
    }

    /// Samples in one epoch.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// The examples of optimizer step `step` (0-based), and how many samples they come
    /// from (PPT makes two examples of each).
    pub fn step_examples(&mut self, step: u64) -> (Vec<Example>, usize) {
        let n = self.samples.len() as u64;
        let first = step * self.batch_size as u64;
        let last = ((step + 1) * self.batch_size as u64).min(self.stream_len);
        let p = step as f64 / self.total_steps as f64;
        let mut examples = Vec::new();
        for (j, g) in (first..last).enumerate() {
            let i = self.order(g / n)[(g % n) as usize];
            let sample = &self.samples[i];
            let seed = mix(&[self.seed, self.stage_index as u64, step, j as u64]);
            examples.extend(examples_for(
                self.kind,
                self.layout,
                sample.history.clone(),
                sample.target,
                p,
                seed,
            ));
        }
        (examples, (last - first) as usize)
    }

    /// The sample order of `epoch`.
    fn order(&mut self, epoch: u64) -> &[usize] {
        let (units, seed, index) = (&self.units, self.seed, self.stage_index as u64);
        self.orders.entry(epoch).or_insert_with(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(mix(&[seed, index, epoch]));
            let mut v: Vec<&Range<usize>> = units.iter().collect();
            v.shuffle(&mut rng);
            v.into_iter().flat_map(|r| r.clone()).collect()
        })
    }
}

/// Single samples, or for `Order::Users` runs of one user's consecutive samples whose
/// history begins at the same place in the stream (their prompts share it), at most
/// `max_run` long.
fn order_units(samples: &[TrainSample], order: Order, max_run: usize) -> Vec<Range<usize>> {
    let mut units: Vec<Range<usize>> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let joins = order == Order::Users
            && units.last().is_some_and(|u| {
                let first = &samples[u.start];
                u.len() < max_run.max(1) && first.user == s.user && first.start == s.start
            });
        match units.last_mut() {
            Some(u) if joins => u.end = i + 1,
            _ => units.push(i..i + 1),
        }
    }
    units
}

/// A seed from several numbers (splitmix64 over their sequence).
pub(crate) fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(user: u64, start: usize) -> TrainSample {
        TrainSample {
            user,
            start,
            history: Vec::new(),
            target: 0,
        }
    }

    /// Runs hold one user's consecutive samples with the same window start, at most
    /// `max_run` of them; sample order keeps every sample on its own.
    #[test]
    fn runs_break_at_a_new_user_a_moved_window_or_the_cap() {
        let samples = vec![
            sample(1, 0),
            sample(1, 0),
            sample(1, 0),
            sample(1, 5),
            sample(1, 5),
            sample(2, 0),
            sample(2, 0),
        ];
        assert_eq!(
            order_units(&samples, Order::Users, 2),
            vec![0..2, 2..3, 3..5, 5..7]
        );
        assert_eq!(
            order_units(&samples, Order::Users, 16),
            vec![0..3, 3..5, 5..7]
        );
        assert_eq!(
            order_units(&samples, Order::Samples, 16),
            (0..7).map(|i| i..i + 1).collect::<Vec<_>>()
        );
    }
}
