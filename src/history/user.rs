//! One user's interactions, in the order they happened.

use serde::{Deserialize, Serialize};

use super::layout::{segments, stream_segments, Layout, LayoutConfig, Segment};

/// One entry of a user's history: an item, and when it happened if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// The item's id in the catalogue.
    pub item_id: u64,
    /// Seconds since the epoch, if the caller knows it (kept for time-gap sessions).
    pub timestamp: Option<i64>,
}

/// A user's history. Item ids are checked against a catalogue when appended
/// (`Catalog::append`), so a history never names an unknown item of the catalogue it
/// was built with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserHistory {
    interactions: Vec<Interaction>,
}

impl UserHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interactions held (all of them: truncation to K happens per query).
    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    /// Whether the history holds no interaction.
    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    /// The interactions, oldest first.
    pub fn interactions(&self) -> &[Interaction] {
        &self.interactions
    }

    /// The item ids, oldest first.
    pub fn item_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.interactions.iter().map(|i| i.item_id)
    }

    /// The latest `k` item ids, oldest first (the paper's truncation to K).
    pub fn latest(&self, k: usize) -> Vec<u64> {
        let start = self.interactions.len().saturating_sub(k);
        self.interactions[start..]
            .iter()
            .map(|i| i.item_id)
            .collect()
    }

    /// What a query with `layout` shows: the window of [`LayoutConfig::window`].
    pub fn shown(&self, layout: &LayoutConfig) -> Shown {
        let window = layout.window(&self.interactions);
        Shown {
            items: self.interactions[window.start..]
                .iter()
                .map(|i| i.item_id)
                .collect(),
            sessions: window.sessions,
        }
    }

    pub(crate) fn push_unchecked(&mut self, interaction: Interaction) {
        self.interactions.push(interaction);
    }

    /// Forgets every interaction.
    pub fn clear(&mut self) {
        self.interactions.clear();
    }
}

/// What a query shows of a history ([`UserHistory::shown`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    /// Item ids, oldest first.
    pub items: Vec<u64>,
    /// For `stream-s:L`, where each session begins in `items` (see
    /// [`LayoutConfig::window`]); empty: the layout counts its groups itself.
    pub sessions: Vec<usize>,
}

impl Shown {
    /// Items known only by id (no timestamps): every layout groups them by count.
    pub fn items(items: Vec<u64>) -> Self {
        Shown {
            items,
            sessions: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The shown items laid out in `layout` (a resolved one, not `budget:N`): the
    /// window's own sessions for `stream-s:L`, the layout's rule otherwise.
    pub fn segments(&self, layout: Layout) -> Vec<Segment> {
        match layout {
            Layout::StreamS { .. } if !self.sessions.is_empty() => {
                stream_segments(&self.sessions, self.items.len())
            }
            _ => segments(layout, self.items.len()),
        }
    }
}
