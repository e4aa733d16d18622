//! Decoding: ranked catalogue items from a prompt.

pub mod beam;

pub use beam::{beam_search, Scored, SearchOptions};
