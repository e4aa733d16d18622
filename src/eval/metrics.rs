//! The paper's ranking metrics. A sample's rank `r` is the 0-based position of the target
//! among the 20 generated items, or 20 when absent.
//! HR@k = mean of [r < k]; NDCG@k = mean of 1 / log2(r + 2) over r < k (0 otherwise).

use serde::{Deserialize, Serialize};

/// The rank of `target` in `ranked`, or `ranked_len` (20 in the paper) when absent.
pub fn rank_of(target: u64, ranked: &[u64], absent: usize) -> usize {
    ranked.iter().position(|&i| i == target).unwrap_or(absent)
}

/// The paper's ranking metrics over a set of samples, each a mean within 0..=1. A
/// sample's rank is its target's 0-based position among the 20 generated items, 20 when
/// absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Samples scored.
    pub samples: usize,
    /// HR@10: the share of samples whose target is in the top 10.
    pub hr10: f64,
    /// HR@20: the share of samples whose target is in the top 20.
    pub hr20: f64,
    /// NDCG@10: the mean of 1 / log2(rank + 2) over the samples, 0 for a target not in the top 10.
    pub ndcg10: f64,
    /// NDCG@20: the mean of 1 / log2(rank + 2) over the samples, 0 for a target not in the top 20.
    pub ndcg20: f64,
}

impl Metrics {
    /// The metrics of these ranks (0-based, 20 for a target not generated); all 0 for none.
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        let hr = |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / n;
        let ndcg = |k: usize| {
            ranks
                .iter()
                .filter(|&&r| r < k)
                .map(|&r| 1.0 / ((r + 2) as f64).log2())
                .sum::<f64>()
                / n
        };
        Metrics {
            samples: ranks.len(),
            hr10: hr(10),
            hr20: hr(20),
            ndcg10: ndcg(10),
            ndcg20: ndcg(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_metrics_on_hand_made_rankings() {
        assert_eq!(rank_of(7, &[3, 7, 9], 20), 1);
        assert_eq!(rank_of(8, &[3, 7, 9], 20), 20);
        // Ranks 0, 1, 9, 10, 19, absent.
        let m = Metrics::from_ranks(&[0, 1, 9, 10, 19, 20]);
        assert_eq!(m.samples, 6);
        assert!((m.hr10 - 3.0 / 6.0).abs() < 1e-12);
        assert!((m.hr20 - 5.0 / 6.0).abs() < 1e-12);
        let g = |r: f64| 1.0 / (r + 2.0).log2();
        let n10 = (1.0 + g(1.0) + g(9.0)) / 6.0;
        let n20 = (1.0 + g(1.0) + g(9.0) + g(10.0) + g(19.0)) / 6.0;
        assert!((m.ndcg10 - n10).abs() < 1e-12);
        assert!((m.ndcg20 - n20).abs() < 1e-12);
        assert_eq!(g(0.0), 1.0);
        assert_eq!(Metrics::from_ranks(&[]).hr20, 0.0);
    }
}
