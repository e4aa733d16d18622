//! Decoding: ranked catalogue items from a prompt.

pub mod beam;
pub(crate) mod logprobs;

pub use beam::{
    beam_search, beam_search_timed, prefill, prefill_from, search_prefilled, BeamState, BeamStep,
    Prefilled, Scored, SearchCounts, SearchOptions, SearchTiming, DEFAULT_LOOKAHEAD,
};
