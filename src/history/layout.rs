//! How a history becomes prompt segments: vanilla (all titles as text), PFT-I and PFT-S.
//!
//! The rules are the paper's (§3.4) as the reference implementation applies them:
//! - PFT-I: the latest `m` items as text, all older items as item patches.
//! - PFT-S: groups of `l` counted back from the latest item; the latest group as text,
//!   the group before it as item patches, every older group as one session patch; the
//!   oldest group holds what is left over (`n % l` items) and may be partial.
//!
//! And one of ours for serving, stream-aligned PFT-S (`stream-s:L`): groups of `l` counted
//! forward from the start of the user's stream, so a session closes once it holds `l`
//! items and never changes after. The newest (open, 1..=l items) group is text, the
//! group before it item patches, older groups session patches. Appending an item then
//! changes only the end of the prompt (or, when a group closes, its last two groups), so
//! a per-user KV cache keeps everything before; with tail-aligned PFT-S every append
//! regroups the whole history. The window of K items starts on a group boundary
//! ([`LayoutConfig::window`]) for the same reason. With a session gap
//! ([`LayoutConfig::session_gap`]) a group also closes at a pause in the stream
//! ([`super::sessions`]); the groups are then passed in ([`stream_segments`]).
//!
//! Segments name ranges of the (truncated) history, oldest first, so laying out a
//! history allocates one small vector and never touches titles or embeddings.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::sessions::{counted_starts, session_starts};
use super::Interaction;
use crate::error::{Error, Result};

/// How a history's items appear in the prompt: as title text, item patches or session
/// patches (the paper's section 3.4). Written `vanilla`, `pft-i:M`, `pft-s:L`, `stream-s:L`
/// or `budget:N` ([`Layout::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Layout {
    /// Every item as its title's text tokens.
    Vanilla,
    /// The latest `m` items as text, older ones as item patches.
    PftI {
        /// Latest items shown as text (M).
        m: usize,
    },
    /// The latest `l` as text, the `l` before as item patches, older groups of `l` as
    /// session patches.
    PftS {
        /// Items per group (L).
        l: usize,
    },
    /// Stream-aligned PFT-S: groups of `l` from the start of the stream; the open (newest)
    /// group as text, the one before as item patches, older ones as session patches.
    StreamS {
        /// Items per session (L), unless a session gap closes it sooner.
        l: usize,
    },
    /// Adaptive: per history, the layout with the most text whose whole prompt fits in
    /// `tokens` positions; resolved per history before it is laid out.
    Budget {
        /// The most positions (tokens and patches) the whole prompt may take.
        tokens: usize,
    },
}

impl Layout {
    /// Fails when a group size L is 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Layout::PftS { l: 0 } | Layout::StreamS { l: 0 } => Err(Error::invalid(format!(
                "{self}: group size L must be at least 1"
            ))),
            _ => Ok(()),
        }
    }

    /// The concrete layout for a history with title lengths `title_lens` in a prompt
    /// whose template takes `fixed` positions: itself, or for `Budget` the fitted one.
    pub fn resolve(self, title_lens: &[usize], fixed: usize) -> Layout {
        match self {
            Layout::Budget { tokens } => {
                super::budget::fit_budget(tokens.saturating_sub(fixed), title_lens)
            }
            concrete => concrete,
        }
    }

    /// How many of a history's oldest items a query leaves out when the history begins at
    /// item `start` of the user's stream (K cut the items before off): for `stream-s:L`,
    /// those before the first session that begins at or after `start`, so the sessions
    /// shown are the stream's own, as [`LayoutConfig::window`] shows them to a served
    /// user whose sessions close every L items; 0 for the other layouts.
    pub fn stream_skip(&self, start: usize) -> usize {
        match *self {
            Layout::StreamS { l } if l > 0 => (l - start % l) % l,
            _ => 0,
        }
    }

    /// Parses `vanilla`, `pft-i:M`, `pft-s:L`, `stream-s:L` or `budget:N` (the CLI's
    /// spelling).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "layout {s:?}: expected vanilla, pft-i:M, pft-s:L, stream-s:L or budget:N"
            ))
        };
        let layout = match s.split_once(':') {
            None if s == "vanilla" => Layout::Vanilla,
            Some(("pft-i", m)) => Layout::PftI {
                m: m.parse().map_err(|_| bad())?,
            },
            Some(("pft-s", l)) => Layout::PftS {
                l: l.parse().map_err(|_| bad())?,
            },
            Some(("stream-s", l)) => Layout::StreamS {
                l: l.parse().map_err(|_| bad())?,
            },
            Some(("budget", n)) => Layout::Budget {
                tokens: n.parse().map_err(|_| bad())?,
            },
            _ => return Err(bad()),
        };
        layout.validate()?;
        Ok(layout)
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layout::Vanilla => write!(f, "vanilla"),
            Layout::PftI { m } => write!(f, "pft-i:{m}"),
            Layout::PftS { l } => write!(f, "pft-s:{l}"),
            Layout::StreamS { l } => write!(f, "stream-s:{l}"),
            Layout::Budget { tokens } => write!(f, "budget:{tokens}"),
        }
    }
}

/// A layout and the history truncation K the paper applies before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LayoutConfig {
    /// How the shown items are laid out.
    #[serde(flatten)]
    pub layout: Layout,
    /// Only the latest `max_items` interactions are used (K; 100 in the paper's main table).
    pub max_items: usize,
    /// For `stream-s:L`: a session also closes when the next interaction comes more than
    /// this many seconds after the one before (the paper's footnote 3), so a session is
    /// one visit of at most L items. `None`: sessions close only when full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_gap: Option<u64>,
}

setters!(LayoutConfig {
    with_layout => layout: Layout,
    with_max_items => max_items: usize,
    with_session_gap => opt session_gap: u64,
});

/// A query's layout, field by field: what is left unset is the checkpoint's
/// (`patchrec.json`). A [`Layout`] or a whole [`LayoutConfig`] converts into one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayoutChoice {
    /// The layout; unset, the checkpoint's.
    pub layout: Option<Layout>,
    /// History truncation K.
    pub max_items: Option<usize>,
    /// `Some(None)`: no session gap, whatever the checkpoint says. Unset, the checkpoint's
    /// gap applies when the layout is its stream-aligned one.
    pub session_gap: Option<Option<u64>>,
}

impl LayoutChoice {
    /// The layout a query on a checkpoint whose default is `checkpoint` uses.
    pub fn resolve(&self, checkpoint: LayoutConfig) -> LayoutConfig {
        let layout = self.layout.unwrap_or(checkpoint.layout);
        let session_gap = match self.session_gap {
            Some(gap) => gap,
            // The checkpoint's gap goes with its stream-aligned layout, not with another
            // layout the caller chose.
            None if matches!(layout, Layout::StreamS { .. }) => checkpoint.session_gap,
            None => None,
        };
        LayoutConfig {
            layout,
            max_items: self.max_items.unwrap_or(checkpoint.max_items),
            session_gap,
        }
    }
}

impl From<Layout> for LayoutChoice {
    fn from(layout: Layout) -> Self {
        LayoutChoice {
            layout: Some(layout),
            ..Default::default()
        }
    }
}

impl From<LayoutConfig> for LayoutChoice {
    fn from(config: LayoutConfig) -> Self {
        LayoutChoice {
            layout: Some(config.layout),
            max_items: Some(config.max_items),
            session_gap: Some(config.session_gap),
        }
    }
}

/// The part of a stream that a query shows ([`LayoutConfig::window`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The first shown item's index in the stream.
    pub start: usize,
    /// For `stream-s:L`, where each shown session begins, counted from `start` (the first
    /// is 0); empty for the other layouts, which group the window themselves.
    pub sessions: Vec<usize>,
}

impl LayoutConfig {
    /// `layout` on the latest `max_items` interactions (K), with no session gap.
    pub fn new(layout: Layout, max_items: usize) -> Self {
        LayoutConfig {
            layout,
            max_items,
            session_gap: None,
        }
    }

    /// Fails when the layout is invalid, when `stream-s:L` has K below L or a session gap
    /// of 0, or when another layout has a session gap.
    pub fn validate(&self) -> Result<()> {
        self.layout.validate()?;
        match (self.layout, self.session_gap) {
            (Layout::StreamS { l }, _) if self.max_items < l => Err(Error::invalid(format!(
                "{}: shows whole groups, so K (max_items = {}) must be at least L",
                self.layout, self.max_items
            ))),
            (Layout::StreamS { .. }, Some(0)) => Err(Error::invalid(
                "session gap 0 s would close a session at every item: use at least 1 s",
            )),
            (Layout::StreamS { .. }, _) | (_, None) => Ok(()),
            (other, Some(gap)) => Err(Error::invalid(format!(
                "a session gap ({gap} s) needs the stream-aligned layout stream-s:L, not {other}"
            ))),
        }
    }

    /// What a query shows of `stream`: the latest K items, and for `stream-s:L` from the
    /// first session start at or after `len - K`, so the sessions stay the stream's own
    /// and the window moves a whole session at a time.
    pub fn window(&self, stream: &[Interaction]) -> Window {
        let from = stream.len().saturating_sub(self.max_items);
        match self.layout {
            Layout::StreamS { l } => {
                let starts = session_starts(stream, l, self.session_gap);
                let first = starts.partition_point(|&s| s < from);
                let start = starts.get(first).copied().unwrap_or(stream.len());
                Window {
                    start,
                    sessions: starts[first..].iter().map(|s| s - start).collect(),
                }
            }
            _ => Window {
                start: from,
                sessions: Vec::new(),
            },
        }
    }
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig::new(Layout::Vanilla, 100)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// One item written as its title.
    Text,
    /// One item as its item patch.
    Item,
    /// Several items as one session patch.
    Session,
}

/// A run of history positions shown one way: `Text` and `Item` cover one item each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub kind: SegmentKind,
    pub items: Range<usize>,
}

impl Segment {
    fn one(kind: SegmentKind, i: usize) -> Self {
        Segment {
            kind,
            items: i..i + 1,
        }
    }
}

/// One segment per item, each shown as `kinds[i]` (`Text` or `Item`): patch
/// pre-training's randomly compressed copies.
pub fn per_item(kinds: &[SegmentKind]) -> Vec<Segment> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| Segment::one(k, i))
        .collect()
}

/// Lays out a history of `n` items (already truncated to K), oldest first.
pub fn segments(layout: Layout, n: usize) -> Vec<Segment> {
    use SegmentKind::*;
    match layout {
        Layout::Vanilla => (0..n).map(|i| Segment::one(Text, i)).collect(),
        Layout::PftI { m } => {
            let first_text = n.saturating_sub(m);
            (0..n)
                .map(|i| Segment::one(if i < first_text { Item } else { Text }, i))
                .collect()
        }
        Layout::PftS { l } => {
            let l = l.max(1);
            let first_text = n.saturating_sub(l);
            let first_item = n.saturating_sub(2 * l);
            let mut out = Vec::new();
            // Sessions: [0, first_item) in groups of l ending at first_item; the oldest
            // group takes the remainder.
            let mut start = 0;
            let rem = first_item % l;
            if rem > 0 {
                out.push(Segment {
                    kind: Session,
                    items: 0..rem,
                });
                start = rem;
            }
            while start < first_item {
                out.push(Segment {
                    kind: Session,
                    items: start..start + l,
                });
                start += l;
            }
            out.extend((first_item..first_text).map(|i| Segment::one(Item, i)));
            out.extend((first_text..n).map(|i| Segment::one(Text, i)));
            out
        }
        Layout::StreamS { l } => stream_segments(&counted_starts(n, l), n),
        Layout::Budget { .. } => {
            // Needs the titles' lengths: callers resolve it first (`Layout::resolve`).
            debug_assert!(false, "{layout} laid out without resolving it");
            segments(Layout::Vanilla, n)
        }
    }
}

/// Lays out `n` items in stream-aligned sessions that begin at `starts` (increasing,
/// the first 0; see [`super::sessions`]): the open (last) session as text, the one
/// before it as item patches, each older one as one session patch.
pub fn stream_segments(starts: &[usize], n: usize) -> Vec<Segment> {
    use SegmentKind::*;
    debug_assert!(
        n == 0 || starts.first() == Some(&0),
        "sessions {starts:?} of {n}"
    );
    debug_assert!(starts.windows(2).all(|w| w[0] < w[1]) && starts.iter().all(|&s| s < n));
    let ends = starts.iter().skip(1).copied().chain([n]);
    let sessions: Vec<Range<usize>> = starts.iter().zip(ends).map(|(&a, b)| a..b).collect();
    let mut out = Vec::with_capacity(n);
    for (j, items) in sessions.iter().enumerate() {
        match sessions.len() - j {
            1 => out.extend(items.clone().map(|i| Segment::one(Text, i))),
            2 => out.extend(items.clone().map(|i| Segment::one(Item, i))),
            _ => out.push(Segment {
                kind: Session,
                items: items.clone(),
            }),
        }
    }
    out
}

/// History tokens of a laid-out history, `(as text, compressed)`: title tokens written
/// as text, and each patch counted as one token; delimiters are not counted.
/// `title_tokens(i)` is the title length of history item `i`.
pub fn history_tokens(
    segments: &[Segment],
    title_tokens: impl Fn(usize) -> usize,
) -> (usize, usize) {
    let (mut full, mut compressed) = (0usize, 0usize);
    for s in segments {
        let tokens: usize = s.items.clone().map(&title_tokens).sum();
        full += tokens;
        compressed += match s.kind {
            SegmentKind::Text => tokens,
            SegmentKind::Item | SegmentKind::Session => 1,
        };
    }
    (full, compressed)
}

/// The paper's compression ratio for one laid-out history: [`history_tokens`] as text
/// divided by compressed (this reproduces the paper's Table 2 ratios from the mean title
/// lengths). An empty history has ratio 1.
pub fn compression_ratio(segments: &[Segment], title_tokens: impl Fn(usize) -> usize) -> f64 {
    let (full, compressed) = history_tokens(segments, title_tokens);
    if compressed == 0 {
        1.0
    } else {
        full as f64 / compressed as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SegmentKind::*;

    /// A choice overrides the checkpoint field by field; the checkpoint's session gap goes
    /// with its stream-aligned layout only, and `Some(None)` removes it.
    #[test]
    fn a_layout_choice_resolves_field_by_field() {
        let checkpoint = LayoutConfig::new(Layout::StreamS { l: 5 }, 50).with_session_gap(600);
        assert_eq!(LayoutChoice::default().resolve(checkpoint), checkpoint);
        let k = LayoutChoice {
            max_items: Some(20),
            ..Default::default()
        };
        assert_eq!(k.resolve(checkpoint), checkpoint.with_max_items(20));
        let other = LayoutChoice::from(Layout::PftI { m: 3 });
        assert_eq!(
            other.resolve(checkpoint),
            LayoutConfig::new(Layout::PftI { m: 3 }, 50)
        );
        let no_gap = LayoutChoice {
            session_gap: Some(None),
            ..Default::default()
        };
        assert_eq!(no_gap.resolve(checkpoint).session_gap, None);
        let whole = LayoutConfig::new(Layout::Vanilla, 7);
        assert_eq!(LayoutChoice::from(whole).resolve(checkpoint), whole);
    }

    /// A sample whose history begins at item `from` of its stream (K cut the rest off),
    /// trimmed by `stream_skip`, shows what a served user's window shows of the same
    /// stream: the same first item, for every stream length, K and L.
    #[test]
    fn stream_skip_shows_what_a_served_window_shows() {
        for l in 1..7 {
            for k in l..30 {
                for n in 0..60usize {
                    let stream: Vec<Interaction> = (0..n as u64)
                        .map(|item_id| Interaction {
                            item_id,
                            timestamp: None,
                        })
                        .collect();
                    let layout = Layout::StreamS { l };
                    let window = LayoutConfig::new(layout, k).window(&stream);
                    let from = n.saturating_sub(k);
                    let trimmed = (from + layout.stream_skip(from)).min(n);
                    assert_eq!(window.start, trimmed, "n {n}, K {k}, L {l}");
                    assert_eq!(Layout::PftS { l }.stream_skip(from), 0);
                }
            }
        }
    }

    /// Compact spelling of a layout: "T3" text item 3, "I3" item patch, "S0-2" session
    /// of items 0..=2.
    fn spell(segs: &[Segment]) -> Vec<String> {
        segs.iter()
            .map(|s| match s.kind {
                Text => format!("T{}", s.items.start),
                Item => format!("I{}", s.items.start),
                Session => format!("S{}-{}", s.items.start, s.items.end - 1),
            })
            .collect()
    }

    fn lay(layout: Layout, n: usize) -> Vec<String> {
        let segs = segments(layout, n);
        // Segments always cover the history once, in order.
        let covered: Vec<usize> = segs.iter().flat_map(|s| s.items.clone()).collect();
        assert_eq!(covered, (0..n).collect::<Vec<_>>());
        spell(&segs)
    }

    #[test]
    fn vanilla_is_all_text() {
        assert_eq!(lay(Layout::Vanilla, 0), Vec::<String>::new());
        assert_eq!(lay(Layout::Vanilla, 3), ["T0", "T1", "T2"]);
    }

    #[test]
    fn pft_i_keeps_latest_m_as_text() {
        let m5 = Layout::PftI { m: 5 };
        assert_eq!(lay(m5, 0), Vec::<String>::new());
        assert_eq!(lay(m5, 1), ["T0"]);
        assert_eq!(lay(m5, 5), ["T0", "T1", "T2", "T3", "T4"]);
        assert_eq!(lay(m5, 6), ["I0", "T1", "T2", "T3", "T4", "T5"]);
        assert_eq!(
            lay(Layout::PftI { m: 2 }, 5),
            ["I0", "I1", "I2", "T3", "T4"]
        );
        assert_eq!(lay(Layout::PftI { m: 0 }, 2), ["I0", "I1"]);
    }

    #[test]
    fn pft_s_groups_from_the_latest_item_backwards() {
        let l4 = Layout::PftS { l: 4 };
        assert_eq!(lay(l4, 0), Vec::<String>::new());
        assert_eq!(lay(l4, 1), ["T0"]);
        // L - 1 and L: all text.
        assert_eq!(lay(l4, 3), ["T0", "T1", "T2"]);
        assert_eq!(lay(l4, 4), ["T0", "T1", "T2", "T3"]);
        // Between L and 2L: no sessions yet, the older part as item patches.
        assert_eq!(lay(l4, 6), ["I0", "I1", "T2", "T3", "T4", "T5"]);
        assert_eq!(lay(l4, 8), ["I0", "I1", "I2", "I3", "T4", "T5", "T6", "T7"]);
        // 2L + 3: one partial (oldest) session of 3.
        assert_eq!(
            lay(l4, 11),
            ["S0-2", "I3", "I4", "I5", "I6", "T7", "T8", "T9", "T10"]
        );
        // 3L + 1: a session of 1 (the remainder), then a full one.
        assert_eq!(
            lay(l4, 13),
            ["S0-0", "S1-4", "I5", "I6", "I7", "I8", "T9", "T10", "T11", "T12"]
        );
        // The reference implementation's example: n = 57, L = 20.
        let segs = segments(Layout::PftS { l: 20 }, 57);
        assert_eq!(
            segs[0],
            Segment {
                kind: Session,
                items: 0..17
            }
        );
        assert_eq!(
            segs[1],
            Segment {
                kind: Item,
                items: 17..18
            }
        );
        assert_eq!(
            segs[20],
            Segment {
                kind: Item,
                items: 36..37
            }
        );
        assert_eq!(
            segs[21],
            Segment {
                kind: Text,
                items: 37..38
            }
        );
        assert_eq!(segs.len(), 1 + 20 + 20);
    }

    #[test]
    fn stream_s_groups_from_the_oldest_item_forwards() {
        let l4 = Layout::StreamS { l: 4 };
        assert_eq!(lay(l4, 0), Vec::<String>::new());
        assert_eq!(lay(l4, 1), ["T0"]);
        assert_eq!(lay(l4, 4), ["T0", "T1", "T2", "T3"]);
        // The fifth item opens a new group; the closed one becomes item patches.
        assert_eq!(lay(l4, 5), ["I0", "I1", "I2", "I3", "T4"]);
        assert_eq!(lay(l4, 9), ["S0-3", "I4", "I5", "I6", "I7", "T8"]);
        assert_eq!(
            lay(l4, 12),
            ["S0-3", "I4", "I5", "I6", "I7", "T8", "T9", "T10", "T11"]
        );
        assert_eq!(
            lay(l4, 14),
            ["S0-3", "S4-7", "I8", "I9", "I10", "I11", "T12", "T13"]
        );
        // Appending within the open group only extends the end: every earlier segment
        // is unchanged, which is what lets a per-user cache keep its prefix.
        for n in 1..40 {
            let (a, b) = (segments(l4, n), segments(l4, n + 1));
            if n % 4 != 0 {
                assert_eq!(a[..], b[..a.len()], "n = {n}");
            }
        }
    }

    fn untimed(n: usize) -> Vec<Interaction> {
        (0..n as u64)
            .map(|item_id| Interaction {
                item_id,
                timestamp: None,
            })
            .collect()
    }

    #[test]
    fn stream_s_window_starts_on_a_group_boundary() {
        let s = LayoutConfig::new(Layout::StreamS { l: 4 }, 10);
        let start = |cfg: &LayoutConfig, total| cfg.window(&untimed(total)).start;
        assert_eq!(start(&s, 0), 0);
        assert_eq!(start(&s, 10), 0);
        assert_eq!(start(&s, 11), 4);
        assert_eq!(start(&s, 14), 4);
        assert_eq!(start(&s, 15), 8);
        assert_eq!(s.window(&untimed(15)).sessions, [0, 4]);
        // At most K shown, at least K - L + 1 once the stream is longer than K.
        for total in 0..60 {
            let shown = total - start(&s, total);
            assert!(shown <= 10 && (total < 10 || shown >= 7), "total {total}");
        }
        let pft = LayoutConfig::new(Layout::PftS { l: 4 }, 10);
        assert_eq!(
            pft.window(&untimed(15)),
            Window {
                start: 5,
                sessions: vec![]
            }
        );
        assert!(LayoutConfig::new(Layout::StreamS { l: 4 }, 3)
            .validate()
            .is_err());
        assert!(LayoutConfig::new(Layout::StreamS { l: 4 }, 4)
            .validate()
            .is_ok());
    }

    #[test]
    fn a_session_gap_groups_by_visit() {
        // Visits of 3, 2 and 6 items (L = 4 splits the last into 4 + 2); gap 60 s.
        let times = [0, 10, 20, 1000, 1010, 5000, 5001, 5002, 5003, 5004, 5005];
        let stream: Vec<Interaction> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| Interaction {
                item_id: i as u64,
                timestamp: Some(t),
            })
            .collect();
        let cfg = LayoutConfig {
            session_gap: Some(60),
            ..LayoutConfig::new(Layout::StreamS { l: 4 }, 100)
        };
        let w = cfg.window(&stream);
        assert_eq!(
            w,
            Window {
                start: 0,
                sessions: vec![0, 3, 5, 9]
            }
        );
        let segs = stream_segments(&w.sessions, stream.len());
        assert_eq!(
            spell(&segs),
            ["S0-2", "S3-4", "I5", "I6", "I7", "I8", "T9", "T10"]
        );
        // K = 7: the window starts at the first session start at or after 11 - 7 = 4.
        let w = LayoutConfig {
            max_items: 7,
            ..cfg
        }
        .window(&stream);
        assert_eq!(
            w,
            Window {
                start: 5,
                sessions: vec![0, 4]
            }
        );
        assert_eq!(
            spell(&stream_segments(&w.sessions, 6)),
            ["I0", "I1", "I2", "I3", "T4", "T5"]
        );
        // Without timestamps the gap changes nothing: counted sessions.
        let w = cfg.window(&untimed(11));
        assert_eq!(
            stream_segments(&w.sessions, 11),
            segments(Layout::StreamS { l: 4 }, 11)
        );
        // Only stream-s takes a gap, and a gap of 0 s is refused.
        let with_gap = |layout, gap| LayoutConfig {
            session_gap: Some(gap),
            ..LayoutConfig::new(layout, 100)
        };
        assert!(with_gap(Layout::PftS { l: 4 }, 60).validate().is_err());
        assert!(with_gap(Layout::Vanilla, 60).validate().is_err());
        assert!(with_gap(Layout::StreamS { l: 4 }, 0).validate().is_err());
        assert!(with_gap(Layout::StreamS { l: 4 }, 1).validate().is_ok());
    }

    #[test]
    fn compression_ratio_counts_title_tokens_and_one_per_patch() {
        let lens = [3, 4, 5, 6];
        let len = |i: usize| lens[i];
        // Vanilla: nothing compressed.
        assert_eq!(compression_ratio(&segments(Layout::Vanilla, 4), len), 1.0);
        // PFT-I, M = 2: 18 tokens -> 1 + 1 + 5 + 6.
        let cr = compression_ratio(&segments(Layout::PftI { m: 2 }, 4), len);
        assert!((cr - 18.0 / 13.0).abs() < 1e-12);
        let cr = compression_ratio(&segments(Layout::PftS { l: 1 }, 4), len);
        assert!(
            (cr - 18.0 / 9.0).abs() < 1e-12,
            "L = 1: items 0 and 1 as session patches, item 2 as a patch, item 3 as text"
        );
        let cr = compression_ratio(&segments(Layout::PftS { l: 2 }, 5), |i| [3, 4, 5, 6, 7][i]);
        assert!(
            (cr - 25.0 / 16.0).abs() < 1e-12,
            "L = 2: item 0 as a session patch, items 1-2 as patches, items 3-4 as text"
        );
        assert_eq!(compression_ratio(&[], len), 1.0);
    }

    #[test]
    fn layouts_parse_and_print() {
        for s in [
            "vanilla",
            "pft-i:5",
            "pft-s:20",
            "stream-s:20",
            "budget:300",
        ] {
            assert_eq!(Layout::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "pft-i", "pft-s:0", "stream-s:0", "pft-x:3", "pft-i:-1"] {
            assert!(Layout::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
