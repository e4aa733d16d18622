//! One user's interactions, in the order they happened.

use serde::{Deserialize, Serialize};

use super::LayoutConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
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
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    pub fn interactions(&self) -> &[Interaction] {
        &self.interactions
    }

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

    /// The item ids a query with `layout` shows, oldest first: the window of
    /// [`LayoutConfig::window_start`].
    pub fn shown(&self, layout: &LayoutConfig) -> Vec<u64> {
        self.interactions[layout.window_start(self.len())..]
            .iter()
            .map(|i| i.item_id)
            .collect()
    }

    pub(crate) fn push_unchecked(&mut self, interaction: Interaction) {
        self.interactions.push(interaction);
    }

    pub fn clear(&mut self) {
        self.interactions.clear();
    }
}
