//! User histories and the layouts that turn them into prompt segments.

pub mod layout;
pub mod user;

pub use layout::{
    compression_ratio, history_tokens, per_item, segments, Layout, LayoutConfig, Segment,
    SegmentKind,
};
pub use user::{Interaction, UserHistory};
