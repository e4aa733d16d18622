//! Adaptive layout (the paper's future work): given a budget of prompt positions, choose
//! per user the layout that shows the most history as text and still fits.
//!
//! Preference order: vanilla; else PFT-I with the largest M that fits (positions grow
//! with M, so a binary search finds it); else PFT-S with the largest L that fits (not
//! monotonic in L, so every L is tried). When nothing fits, the layout with the fewest
//! positions is used and the prompt exceeds the budget.

use super::layout::{Layout, Segment, SegmentKind};

/// Positions the history part of a prompt takes: each segment's title tokens (text) or
/// one patch, plus one delimiter per segment. `title_lens[i]` is history item `i`'s.
pub fn history_positions(segs: &[Segment], title_lens: &[usize]) -> usize {
    segs.iter()
        .map(|s| {
            1 + match s.kind {
                SegmentKind::Text => title_lens[s.items.start],
                SegmentKind::Item | SegmentKind::Session => 1,
            }
        })
        .sum()
}

/// The history positions of each layout in O(1), from prefix sums of the title lengths:
/// what [`history_positions`] of [`segments`] gives, without building the segments.
struct Costs {
    /// `prefix[i]`: title tokens of items `0..i`.
    prefix: Vec<usize>,
}

impl Costs {
    fn new(title_lens: &[usize]) -> Self {
        let mut prefix = Vec::with_capacity(title_lens.len() + 1);
        prefix.push(0);
        let mut sum = 0usize;
        for &len in title_lens {
            sum = sum.saturating_add(len);
            prefix.push(sum);
        }
        Costs { prefix }
    }

    fn n(&self) -> usize {
        self.prefix.len() - 1
    }

    /// Items `first..n` as text: their tokens plus one delimiter each.
    fn text_from(&self, first: usize) -> usize {
        (self.prefix[self.n()] - self.prefix[first]).saturating_add(self.n() - first)
    }

    fn pft_i(&self, m: usize) -> usize {
        let first_text = self.n().saturating_sub(m);
        self.text_from(first_text) + 2 * first_text
    }

    /// Mirrors `segments(PftS { l })`: the latest `l` as text, the `l` before as item
    /// patches, the rest in groups of `l` (the oldest partial) as session patches.
    fn pft_s(&self, l: usize) -> usize {
        let n = self.n();
        let l = l.max(1);
        let first_text = n.saturating_sub(l);
        let first_item = n.saturating_sub(2 * l);
        let sessions = first_item.div_ceil(l);
        self.text_from(first_text) + 2 * (first_text - first_item) + 2 * sessions
    }
}

/// The concrete layout for a history with title lengths `title_lens` whose history part
/// must fit in `budget` positions. O(n log n): each layout's cost is O(1) from prefix
/// sums, PFT-I's M is found by binary search, and PFT-S tries every L once.
pub fn fit_budget(budget: usize, title_lens: &[usize]) -> Layout {
    let n = title_lens.len();
    let costs = Costs::new(title_lens);
    if costs.text_from(0) <= budget {
        return Layout::Vanilla;
    }
    // Largest M in 0..n with cost(PftI { m }) <= budget (cost grows with M).
    if costs.pft_i(0) <= budget {
        let (mut lo, mut hi) = (0, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if costs.pft_i(mid) <= budget {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return Layout::PftI { m: lo };
    }
    // Not monotonic in L: try each, largest first.
    let mut cheapest = (usize::MAX, Layout::PftS { l: 1 });
    for l in (1..=n.max(1)).rev() {
        let c = costs.pft_s(l);
        if c <= budget {
            return Layout::PftS { l };
        }
        if c < cheapest.0 {
            cheapest = (c, Layout::PftS { l });
        }
    }
    cheapest.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::layout::segments;

    #[test]
    fn prefers_text_then_item_patches_then_sessions() {
        let lens = vec![5; 20]; // 20 items of 5 tokens: vanilla costs 20 * 6 = 120
        assert_eq!(fit_budget(120, &lens), Layout::Vanilla);
        // PFT-I, M: 6M + 2(20 - M) = 40 + 4M.
        assert_eq!(fit_budget(119, &lens), Layout::PftI { m: 19 });
        assert_eq!(fit_budget(60, &lens), Layout::PftI { m: 5 });
        assert_eq!(fit_budget(40, &lens), Layout::PftI { m: 0 });
        // Below all item patches: PFT-S with the largest L that fits.
        let layout = fit_budget(39, &lens);
        assert!(matches!(layout, Layout::PftS { .. }), "{layout}");
        let c = history_positions(&segments(layout, 20), &lens);
        assert!(c <= 39, "{layout} costs {c}");
        let Layout::PftS { l } = layout else {
            unreachable!()
        };
        for bigger in l + 1..=20 {
            let c = history_positions(&segments(Layout::PftS { l: bigger }, 20), &lens);
            assert!(c > 39, "L = {bigger} also fits ({c})");
        }
        // Impossible budgets get the cheapest layout.
        let tight = fit_budget(1, &lens);
        let min = (1..=20)
            .map(|l| history_positions(&segments(Layout::PftS { l }, 20), &lens))
            .min()
            .unwrap();
        assert_eq!(history_positions(&segments(tight, 20), &lens), min);
        // An empty history fits anything.
        assert_eq!(fit_budget(0, &[]), Layout::Vanilla);
    }

    /// The O(1) costs against the segments they stand for, for every M and L.
    #[test]
    fn closed_form_costs_equal_the_segments() {
        let mut state = 7u64;
        for n in [0usize, 1, 2, 3, 5, 8, 13, 40, 97] {
            let lens: Vec<usize> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    1 + (state >> 33) as usize % 12
                })
                .collect();
            let costs = Costs::new(&lens);
            let of = |layout| history_positions(&segments(layout, n), &lens);
            assert_eq!(costs.text_from(0), of(Layout::Vanilla), "n = {n}");
            for m in 0..=n + 1 {
                assert_eq!(costs.pft_i(m), of(Layout::PftI { m }), "n = {n}, M = {m}");
            }
            for l in 1..=n + 2 {
                assert_eq!(costs.pft_s(l), of(Layout::PftS { l }), "n = {n}, L = {l}");
            }
        }
    }

    /// A million-item history: the quadratic search took over ten minutes here.
    #[test]
    fn a_million_items_fit_quickly() {
        let lens = vec![6; 1_000_000];
        let Layout::PftS { l } = fit_budget(10_000, &lens) else {
            panic!("a 10,000-position budget for 1M items needs sessions");
        };
        let cost = history_positions(&segments(Layout::PftS { l }, lens.len()), &lens);
        assert!(cost <= 10_000, "L = {l} costs {cost}");
    }
}
