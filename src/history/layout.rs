//! How a history becomes prompt segments: vanilla (all titles as text), PFT-I and PFT-S.
//!
//! The rules are the paper's (§3.4) as the reference implementation applies them:
//! - PFT-I: the latest `m` items as text, all older items as item patches.
//! - PFT-S: groups of `l` counted back from the latest item; the latest group as text,
//!   the group before it as item patches, every older group as one session patch; the
//!   oldest group holds what is left over (`n % l` items) and may be partial.
//!
//! Segments name ranges of the (truncated) history, oldest first, so laying out a
//! history allocates one small vector and never touches titles or embeddings.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Layout {
    /// Every item as its title's text tokens.
    Vanilla,
    /// The latest `m` items as text, older ones as item patches.
    PftI { m: usize },
    /// The latest `l` as text, the `l` before as item patches, older groups of `l` as
    /// session patches.
    PftS { l: usize },
}

impl Layout {
    pub fn validate(&self) -> Result<()> {
        match *self {
            Layout::PftS { l: 0 } => Err(Error::invalid("PFT-S group size L must be at least 1")),
            _ => Ok(()),
        }
    }

    /// Parses `vanilla`, `pft-i:M` or `pft-s:L` (the CLI's spelling).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("layout {s:?}: expected vanilla, pft-i:M or pft-s:L"));
        let layout = match s.split_once(':') {
            None if s == "vanilla" => Layout::Vanilla,
            Some(("pft-i", m)) => Layout::PftI {
                m: m.parse().map_err(|_| bad())?,
            },
            Some(("pft-s", l)) => Layout::PftS {
                l: l.parse().map_err(|_| bad())?,
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
        }
    }
}

/// A layout and the history truncation K the paper applies before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutConfig {
    #[serde(flatten)]
    pub layout: Layout,
    /// Only the latest `max_items` interactions are used (K; 100 in the paper's main table).
    pub max_items: usize,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig {
            layout: Layout::Vanilla,
            max_items: 100,
        }
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
    }
}

/// The paper's compression ratio for one laid-out history: tokens of the history written
/// as text divided by tokens of the compressed history, where each patch is one token and
/// delimiters are not counted (this reproduces the paper's Table 2 ratios from the mean
/// title lengths). `title_tokens(i)` is the title length of history item `i`.
/// An empty history has ratio 1.
pub fn compression_ratio(segments: &[Segment], title_tokens: impl Fn(usize) -> usize) -> f64 {
    let (mut full, mut compressed) = (0usize, 0usize);
    for s in segments {
        let tokens: usize = s.items.clone().map(&title_tokens).sum();
        full += tokens;
        compressed += match s.kind {
            SegmentKind::Text => tokens,
            SegmentKind::Item | SegmentKind::Session => 1,
        };
    }
    if compressed == 0 {
        1.0
    } else {
        full as f64 / compressed as f64
    }
}
