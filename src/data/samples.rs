//! Samples by the paper's rule: for a user with more than 3 interactions and a split
//! range `[a, b]`, every target position `t` in `max(3, a) ..= b` is one sample whose
//! history is the latest K items before `t`.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::dataset::{Dataset, Split};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub user: u64,
    /// Item ids, oldest first, at most K.
    pub history: Vec<u64>,
    /// Where `history` begins in the user's stream (0 unless K cut older items off), so
    /// that stream-aligned layouts can group it as the stream does
    /// ([`crate::history::Layout::stream_skip`]).
    pub start: usize,
    pub target: u64,
}

/// How many samples to draw, and how.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SampleOptions {
    /// History truncation K (the paper's main table: 100).
    pub max_history: usize,
    /// Keep only this many users (seeded choice), if set.
    pub max_users: Option<usize>,
    /// Keep only this many samples (seeded choice, order kept), if set.
    pub max_samples: Option<usize>,
    /// Seed of the choices `max_users` and `max_samples` make (default 42).
    pub seed: u64,
}

setters!(SampleOptions {
    with_max_history => max_history: usize,
    with_max_users => opt max_users: usize,
    with_max_samples => opt max_samples: usize,
    with_seed => seed: u64,
});

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            max_history: 100,
            max_users: None,
            max_samples: None,
            seed: 42,
        }
    }
}

pub fn samples(data: &Dataset, split: Split, opts: &SampleOptions) -> Vec<Sample> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut users: Vec<usize> = (0..data.users.len()).collect();
    if let Some(n) = opts.max_users.filter(|&n| n < users.len()) {
        users.shuffle(&mut rng);
        users.truncate(n);
        users.sort_unstable();
    }
    let mut out = Vec::new();
    for &u in &users {
        let seq = &data.users[u];
        if seq.items.len() <= 3 {
            continue;
        }
        let Some([a, b]) = seq.range(split) else {
            continue;
        };
        for t in a.max(3)..=b {
            let start = t.saturating_sub(opts.max_history);
            out.push(Sample {
                user: seq.user,
                history: seq.items[start..t].to_vec(),
                start,
                target: seq.items[t],
            });
        }
    }
    if let Some(n) = opts.max_samples.filter(|&n| n < out.len()) {
        let mut keep: Vec<usize> = (0..out.len()).collect();
        keep.shuffle(&mut rng);
        keep.truncate(n);
        keep.sort_unstable();
        out = keep.into_iter().map(|i| out[i].clone()).collect();
    }
    out
}
