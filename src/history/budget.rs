//! Adaptive layout (the paper's future work): given a budget of prompt positions, choose
//! per user the layout that shows the most history as text and still fits.
//!
//! Preference order: vanilla; else PFT-I with the largest M that fits (positions grow
//! with M, so a binary search finds it); else PFT-S with the largest L that fits (not
//! monotonic in L, so every L is tried: O(n^2) segment counts, under a millisecond at
//! n = 1,000). When nothing fits, the layout with the fewest positions is used and the
//! prompt exceeds the budget.

use super::layout::{segments, Layout, Segment, SegmentKind};

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

/// The concrete layout for a history with title lengths `title_lens` whose history part
/// must fit in `budget` positions.
pub fn fit_budget(budget: usize, title_lens: &[usize]) -> Layout {
    let n = title_lens.len();
    let cost = |layout| history_positions(&segments(layout, n), title_lens);
    if cost(Layout::Vanilla) <= budget {
        return Layout::Vanilla;
    }
    // Largest M in 0..n with cost(PftI { m }) <= budget.
    if cost(Layout::PftI { m: 0 }) <= budget {
        let (mut lo, mut hi) = (0, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if cost(Layout::PftI { m: mid }) <= budget {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return Layout::PftI { m: lo };
    }
    let mut cheapest = (usize::MAX, Layout::PftS { l: 1 });
    for l in (1..=n.max(1)).rev() {
        let layout = Layout::PftS { l };
        let c = cost(layout);
        if c <= budget {
            return layout;
        }
        if c < cheapest.0 {
            cheapest = (c, layout);
        }
    }
    cheapest.1
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
