//! User histories and the layouts that turn them into prompt segments.

pub mod budget;
pub mod layout;
pub mod sessions;
pub mod user;

pub use budget::{fit_budget, history_positions};
pub use layout::{
    compression_ratio, history_tokens, per_item, segments, stream_segments, Layout, LayoutChoice,
    LayoutConfig,
    Segment, SegmentKind, Window,
};
pub use sessions::session_starts;
pub use user::{Interaction, Shown, UserHistory};
