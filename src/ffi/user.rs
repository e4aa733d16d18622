//! `patchrec_user_t`: one user's history.

use super::boundary::{arg_mut, arg_ref, arg_slice, free_handle, guard, guard_value, new_handle};
use super::catalog::patchrec_catalog_t;
use super::error::patchrec_error_t;
use super::status::patchrec_status_t;
use crate::history::{Interaction, UserHistory};
use crate::prompt::PromptCache;

/// The `timestamp` that means "unknown" (`INT64_MIN`).
pub const PATCHREC_NO_TIMESTAMP: i64 = i64::MIN;

/// One user's interactions, oldest first, and the KV cache of the user's last prompt,
/// which `patchrec_recommend` reuses so that a query after an append prefills only what
/// changed (the same ranking as without it, scores equal to float rounding; the same
/// query asked twice gets a bit-identical answer). Not synchronised: appending, clearing and
/// `patchrec_recommend` need exclusive access; `const` reads may run concurrently. Holds
/// only item ids and its cache (dropped when used with another catalogue), so it may
/// outlive the catalogue it was built with.
pub struct patchrec_user_t {
    pub(crate) history: UserHistory,
    pub(crate) cache: PromptCache,
}

/// Makes an empty history. On success `*out` receives a user the caller owns and frees with
/// `patchrec_user_free`; on failure `*out` is set to NULL.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_new(
    out: *mut *mut patchrec_user_t,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        new_handle(out, || {
            Ok(patchrec_user_t {
                history: UserHistory::new(),
                cache: PromptCache::new(),
            })
        })
    })
}

/// Appends one interaction with item `item_id`, which must be in `catalog`
/// (`PATCHREC_UNKNOWN_ITEM` otherwise). `timestamp` is seconds since the epoch, or
/// `PATCHREC_NO_TIMESTAMP`. Borrows both handles; on failure the history is unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_append(
    user: *mut patchrec_user_t,
    catalog: *const patchrec_catalog_t,
    item_id: u64,
    timestamp: i64,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    patchrec_user_append_batch(user, catalog, &item_id, &timestamp, 1, error)
}

/// Appends `n` interactions, oldest first, all or nothing: every id must be in `catalog`,
/// else `PATCHREC_UNKNOWN_ITEM` and the history is unchanged. `timestamps` may be NULL
/// (none known) or hold `n` values, each possibly `PATCHREC_NO_TIMESTAMP`. The arrays are
/// only read; `ids` may be NULL when `n` is 0.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_append_batch(
    user: *mut patchrec_user_t,
    catalog: *const patchrec_catalog_t,
    ids: *const u64,
    timestamps: *const i64,
    n: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let user = arg_mut(user, "user")?;
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let ids = arg_slice(ids, n, "ids")?;
        let timestamps = (!timestamps.is_null()).then(|| std::slice::from_raw_parts(timestamps, n));
        let interactions: Vec<Interaction> = ids
            .iter()
            .enumerate()
            .map(|(i, &item_id)| Interaction {
                item_id,
                timestamp: timestamps
                    .map(|t| t[i])
                    .filter(|&t| t != PATCHREC_NO_TIMESTAMP),
            })
            .collect();
        catalog.append(&mut user.history, &interactions)?;
        Ok(())
    })
}

/// The number of interactions; 0 when `user` is NULL.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_len(user: *const patchrec_user_t) -> usize {
    guard_value(0, || user.as_ref().map_or(0, |u| u.history.len()))
}

/// Removes every interaction and frees the cached prompt state. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_clear(user: *mut patchrec_user_t) {
    guard_value((), || {
        if let Some(user) = user.as_mut() {
            user.history.clear();
            user.cache.clear();
        }
    })
}

/// Frees a user; takes ownership of `user`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_user_free(user: *mut patchrec_user_t) {
    free_handle(user)
}
