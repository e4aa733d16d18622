//! Where the sessions of a stream-aligned PFT-S layout (`stream-s:L`) begin.
//!
//! A session closes once it holds `l` items, or, with a session gap, when the next
//! interaction comes more than `gap` seconds after the one before it (the paper's
//! footnote 3: a session as the items of one visit). Either way the decision is made when
//! an item arrives and never revisited, so appending to a stream changes only its last
//! two sessions: the prefix a per-user KV cache keeps stays valid.

use super::Interaction;

/// The index of every session's first item in `stream` (oldest first), in order; empty
/// for an empty stream. A pair of items with an unknown timestamp on either side, or
/// with time running backwards, is never split by the gap rule.
pub fn session_starts(stream: &[Interaction], l: usize, gap: Option<u64>) -> Vec<usize> {
    let l = l.max(1);
    let mut starts = Vec::new();
    let mut open = 0; // items in the open session
    for (i, item) in stream.iter().enumerate() {
        let after_gap = i > 0
            && gap.is_some_and(|gap| {
                match (stream[i - 1].timestamp, item.timestamp) {
                    // i128: a difference of two i64 seconds can overflow i64.
                    (Some(a), Some(b)) => i128::from(b) - i128::from(a) > i128::from(gap),
                    _ => false,
                }
            });
        if i == 0 || open == l || after_gap {
            starts.push(i);
            open = 0;
        }
        open += 1;
    }
    starts
}

/// [`session_starts`] without timestamps: every `l`-th item of `n`.
pub fn counted_starts(n: usize, l: usize) -> Vec<usize> {
    (0..n).step_by(l.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(times: &[Option<i64>]) -> Vec<Interaction> {
        times
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Interaction {
                item_id: i as u64,
                timestamp,
            })
            .collect()
    }

    #[test]
    fn without_a_gap_sessions_are_counted() {
        let s = stream(&[Some(0); 11]);
        assert_eq!(session_starts(&s, 4, None), [0, 4, 8]);
        assert_eq!(session_starts(&s, 4, None), counted_starts(11, 4));
        assert_eq!(session_starts(&[], 4, Some(10)), Vec::<usize>::new());
        assert_eq!(counted_starts(0, 4), Vec::<usize>::new());
    }

    #[test]
    fn a_gap_closes_the_open_session_early() {
        // Visits at t = 0..2, 100..101, 500..; gap 30 s; L = 4.
        let t = [0, 1, 2, 100, 101, 500, 501, 502, 503, 504, 505];
        let s = stream(&t.map(Some));
        assert_eq!(session_starts(&s, 4, Some(30)), [0, 3, 5, 9]);
        // A gap equal to the limit does not close (strictly more than `gap`).
        let s = stream(&[Some(0), Some(30), Some(61)]);
        assert_eq!(session_starts(&s, 4, Some(30)), [0, 2]);
    }

    #[test]
    fn unknown_or_backward_times_never_split() {
        let s = stream(&[Some(0), None, Some(1000), Some(-1000), Some(i64::MAX)]);
        // 1 -> 2 and 0 -> 1 have an unknown side; 2 -> 3 runs backwards; 3 -> 4 is a
        // (huge) gap and splits, without overflowing.
        assert_eq!(session_starts(&s, 10, Some(60)), [0, 4]);
        let s = stream(&[Some(i64::MIN), Some(i64::MAX)]);
        assert_eq!(session_starts(&s, 10, Some(u64::MAX)), [0]);
    }

    #[test]
    fn appending_never_moves_an_earlier_start() {
        let t: Vec<i64> = (0..60).map(|i| i * i % 97 * 10).collect();
        let s = stream(&t.iter().map(|&x| Some(x)).collect::<Vec<_>>());
        for n in 1..s.len() {
            let (a, b) = (
                session_starts(&s[..n], 5, Some(200)),
                session_starts(&s[..n + 1], 5, Some(200)),
            );
            assert_eq!(a[..], b[..a.len()], "n = {n}");
            assert!(b.len() <= a.len() + 1);
            // Sessions hold 1..=L items.
            let mut bounds = b.clone();
            bounds.push(n + 1);
            assert!(bounds.windows(2).all(|w| (1..=5).contains(&(w[1] - w[0]))));
        }
    }
}
