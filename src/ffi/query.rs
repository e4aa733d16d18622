//! Queries: `patchrec_recommend` and `patchrec_user_layout_stats`.

use super::boundary::{arg_mut, arg_ref, arg_slice_mut, guard};
use super::catalog::patchrec_catalog_t;
use super::error::patchrec_error_t;
use super::options::patchrec_query_options_t;
use super::status::patchrec_status_t::{self, PATCHREC_BUFFER_TOO_SMALL};
use super::user::patchrec_user_t;
use crate::query::{layout_stats, QueryOptions};

/// One recommended item. This layout is part of the ABI: it changes only with
/// `PATCHREC_ABI_VERSION`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct patchrec_recommendation_t {
    pub item_id: u64,
    /// Log-probability of the item's title given the prompt; higher is better.
    pub score: f32,
}

/// The options of a query; NULL means the defaults (the checkpoint's layout).
unsafe fn query_options(options: *const patchrec_query_options_t) -> QueryOptions {
    options
        .as_ref()
        .map_or_else(Default::default, |o| o.query.clone())
}

fn too_small(needed: usize, cap: usize) -> patchrec_error_t {
    patchrec_error_t::new(
        PATCHREC_BUFFER_TOO_SMALL,
        format!("{needed} recommendations do not fit the output of {cap}"),
    )
}

/// Recommends the next items for `user` from `catalog`, best first, into `out`, an array of
/// `cap` elements, and sets `*len` to the number written (at most k; fewer only when the
/// catalogue, less any excluded history, is smaller). `options` may be NULL for the
/// defaults. Borrows every argument; `user` needs exclusive access for the call: it keeps
/// the prompt's KV cache, and the next query prefills only the positions after what the
/// two prompts share (with `PATCHREC_LAYOUT_STREAM_S`, an append changes only the end).
/// When `cap` is less than what the answer can hold (k, or the catalogue's size when that
/// is smaller) the result is `PATCHREC_BUFFER_TOO_SMALL` with `*len` set to that number,
/// before any work; on any other
/// failure `*len` is 0. `out` may be NULL when `cap` is 0. An empty catalogue is
/// `PATCHREC_INVALID_ARGUMENT`; a history item missing from `catalog` `PATCHREC_UNKNOWN_ITEM`.
#[no_mangle]
pub unsafe extern "C" fn patchrec_recommend(
    catalog: *const patchrec_catalog_t,
    user: *mut patchrec_user_t,
    options: *const patchrec_query_options_t,
    out: *mut patchrec_recommendation_t,
    cap: usize,
    len: *mut usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let len = arg_mut(len, "len")?;
        *len = 0;
        let handle = arg_ref(catalog, "catalog")?;
        let catalog = handle.catalog();
        let user = arg_mut(user, "user")?;
        let options = query_options(options);
        // What the answer can hold: k, or fewer when the catalogue is smaller. A caller
        // that asks for k = 1e9 from 60 items is told 60, not to allocate 1e9 entries.
        let needed = options.k.min(catalog.len());
        if cap < needed {
            *len = needed;
            return Err(too_small(needed, cap));
        }
        let out = arg_slice_mut(out, cap, "out")?;
        let result = handle
            .recommender
            .recommend_cached(&user.history, &mut user.cache, &options)?;
        // Items registered since the check above may make the answer longer than `cap`.
        if result.items.len() > cap {
            *len = result.items.len();
            return Err(too_small(result.items.len(), cap));
        }
        for (slot, item) in out.iter_mut().zip(&result.items) {
            *slot = patchrec_recommendation_t {
                item_id: item.item_id,
                score: item.score,
            };
        }
        *len = result.items.len();
        Ok(())
    })
}

/// How `user`'s history would be laid out for a query with `options` (NULL for the
/// defaults), without running the model: `*prompt_len` receives the prompt's length in
/// positions (tokens and patches), `*compression_ratio` the paper's compression ratio of
/// the history (1 for vanilla). Either out-param may be NULL; on failure both are
/// untouched. Borrows every argument.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_layout_stats(
    user: *const patchrec_user_t,
    catalog: *const patchrec_catalog_t,
    options: *const patchrec_query_options_t,
    prompt_len: *mut usize,
    compression_ratio: *mut f64,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let history = &arg_ref(user, "user")?.history;
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let options = query_options(options);
        let stats = layout_stats(catalog, history, &options)?;
        if let Some(slot) = prompt_len.as_mut() {
            *slot = stats.prompt_len;
        }
        if let Some(slot) = compression_ratio.as_mut() {
            *slot = stats.compression_ratio;
        }
        Ok(())
    })
}
