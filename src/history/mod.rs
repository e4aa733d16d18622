//! User histories and the layouts that turn them into prompt segments.

pub mod budget;
pub mod layout;
pub mod user;

pub use budget::{fit_budget, history_positions};
pub use layout::{
    compression_ratio, history_tokens, per_item, segments, Layout, LayoutConfig, Segment,
    SegmentKind,
};
pub use user::{Interaction, UserHistory};
