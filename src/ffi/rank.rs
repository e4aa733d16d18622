//! Candidate scoring: `patchrec_rank`.

use super::boundary::{arg_mut, arg_ref, arg_slice, arg_slice_mut, guard};
use super::catalog::patchrec_catalog_t;
use super::error::patchrec_error_t;
use super::options::patchrec_query_options_t;
use super::query::patchrec_recommendation_t;
use super::status::patchrec_status_t::{
    self, PATCHREC_BUFFER_TOO_SMALL, PATCHREC_INVALID_ARGUMENT,
};
use super::user::patchrec_user_t;
use crate::rank::{rank_cached, RankOptions, RankOrder, UnknownCandidates};

/// `patchrec_rank` flag: answer in the candidates' order instead of best first.
pub const PATCHREC_RANK_INPUT_ORDER: u32 = 1;
/// `patchrec_rank` flag: leave out candidate ids the catalogue does not hold instead of
/// failing with `PATCHREC_UNKNOWN_ITEM`.
pub const PATCHREC_RANK_SKIP_UNKNOWN: u32 = 2;

/// Scores the `n` item ids at `candidates` for `user`: each one's score is the
/// log-probability of its title given the user's prompt, as in `patchrec_recommend`.
/// Writes one entry per distinct candidate into `out`, an array of `cap` elements, best
/// first (or in the candidates' order with `PATCHREC_RANK_INPUT_ORDER`, a duplicated id
/// at its first occurrence), and sets `*len` to the number written. An id the catalogue
/// does not hold fails the call with `PATCHREC_UNKNOWN_ITEM`, or is left out with
/// `PATCHREC_RANK_SKIP_UNKNOWN`. `options` (NULL for the defaults) gives the layout and
/// history truncation; its k, beam width and exclusions do not apply. `user` needs
/// exclusive access: it keeps the prompt's KV, shared with `patchrec_recommend`. When
/// `cap < n` the result is `PATCHREC_BUFFER_TOO_SMALL` with `*len = n`, before any work;
/// on any other failure `*len` is 0. `candidates` and `out` may be NULL when `n` and
/// `cap` are 0.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn patchrec_rank(
    catalog: *const patchrec_catalog_t,
    user: *mut patchrec_user_t,
    options: *const patchrec_query_options_t,
    candidates: *const u64,
    n: usize,
    flags: u32,
    out: *mut patchrec_recommendation_t,
    cap: usize,
    len: *mut usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let len = arg_mut(len, "len")?;
        *len = 0;
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let user = arg_mut(user, "user")?;
        let known = PATCHREC_RANK_INPUT_ORDER | PATCHREC_RANK_SKIP_UNKNOWN;
        if flags & !known != 0 {
            return Err(patchrec_error_t::new(
                PATCHREC_INVALID_ARGUMENT,
                format!("flags: unknown bits {:#x}", flags & !known),
            ));
        }
        if cap < n {
            *len = n;
            return Err(patchrec_error_t::new(
                PATCHREC_BUFFER_TOO_SMALL,
                format!("{n} candidates do not fit the output of {cap}"),
            ));
        }
        let candidates = arg_slice(candidates, n, "candidates")?;
        let out = arg_slice_mut(out, cap, "out")?;
        let layout = options.as_ref().map(|o| o.query.layout).unwrap_or_default();
        let opts = RankOptions {
            layout,
            order: if flags & PATCHREC_RANK_INPUT_ORDER != 0 {
                RankOrder::Input
            } else {
                RankOrder::Score
            },
            unknown: if flags & PATCHREC_RANK_SKIP_UNKNOWN != 0 {
                UnknownCandidates::Skip
            } else {
                UnknownCandidates::Fail
            },
            ..Default::default()
        };
        let result = rank_cached(catalog, &user.history, &mut user.cache, candidates, &opts)?;
        for (slot, c) in out.iter_mut().zip(&result.items) {
            *slot = patchrec_recommendation_t {
                item_id: c.item_id,
                score: c.score,
            };
        }
        *len = result.items.len();
        Ok(())
    })
}
