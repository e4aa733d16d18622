//! Decoding: ranked catalogue items from a prompt.

pub mod beam;

pub use beam::{
    beam_search, beam_search_timed, search_prefilled, BeamState, BeamStep, Scored, SearchCounts,
    SearchOptions, SearchTiming, DEFAULT_LOOKAHEAD,
};
