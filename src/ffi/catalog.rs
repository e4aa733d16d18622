//! `patchrec_catalog_t`: the items a model may recommend.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{
    arg_mut, arg_ref, arg_slice, arg_slice_mut, arg_str, free_handle, guard, guard_value,
    new_handle, Outcome,
};
use super::error::patchrec_error_t;
use super::model::patchrec_model_t;
use super::status::patchrec_status_t::{self, PATCHREC_BUFFER_TOO_SMALL};
use crate::catalog::{Catalog, PatchStorage};
use crate::error::Error;
use crate::serve::{BatcherConfig, Recommender};

/// A catalogue of items `(id, title)` for one model, with each title's tokens and item
/// patch computed once, at registration. Internally synchronised: a
/// `const patchrec_catalog_t *` may be used by many threads at once, registrations
/// included; a query sees the catalogue as it was when the query started. Holds its own
/// reference to the model, so it may outlive the model handle.
pub struct patchrec_catalog_t {
    /// The catalogue, and the batching `patchrec_catalog_set_batching` switches.
    pub(crate) recommender: Recommender,
}

impl patchrec_catalog_t {
    pub(crate) fn catalog(&self) -> &Arc<Catalog> {
        self.recommender.catalog()
    }
}

/// Makes an empty catalogue for `model`, which it borrows (and keeps alive). On success
/// `*out` receives a catalogue the caller owns and frees with `patchrec_catalog_free`; on
/// failure `*out` is set to NULL.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_new(
    model: *const patchrec_model_t,
    out: *mut *mut patchrec_catalog_t,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        new_handle(out, || {
            let model = arg_ref(model, "model")?.model.clone();
            Ok(patchrec_catalog_t {
                recommender: Recommender::new(Arc::new(Catalog::new(model)?)),
            })
        })
    })
}

/// Registers one item; copies `title` (UTF-8, trimmed). A registered id is
/// `PATCHREC_DUPLICATE_ITEM`. A title is `PATCHREC_INVALID_ARGUMENT` when it is longer than
/// 4,096 bytes or than a sixteenth of the model's context in tokens (at most 512), holds
/// a control character or the prompt's special tokens, or has no visible character (only
/// spaces, zero-width or other format characters). On failure the catalogue is unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_add(
    catalog: *const patchrec_catalog_t,
    id: u64,
    title: *const c_char,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        catalog.add(id, arg_str(title, "title")?)?;
        Ok(())
    })
}

/// Registers `n` items, `ids[i]` with `titles[i]`, all or nothing: on any failure (a NULL
/// or invalid title, a duplicate id) the catalogue is unchanged. Copies the titles. The
/// arrays may be NULL when `n` is 0. Faster than `n` calls to `patchrec_catalog_add`.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_add_batch(
    catalog: *const patchrec_catalog_t,
    ids: *const u64,
    titles: *const *const c_char,
    n: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let ids = arg_slice(ids, n, "ids")?;
        let titles = arg_slice(titles, n, "titles")?;
        let items = ids
            .iter()
            .zip(titles)
            .enumerate()
            .map(|(i, (&id, &title))| Ok((id, arg_str(title, format_args!("titles[{i}]"))?)))
            .collect::<Outcome<Vec<_>>>()?;
        catalog.add_batch(&items)?;
        Ok(())
    })
}

/// Removes `n` items, all or nothing: an id that is not registered (or given twice) is
/// `PATCHREC_UNKNOWN_ITEM` and the catalogue is unchanged. A removed item is never
/// recommended or ranked and cannot be appended to a history; a history that already holds
/// it still works, showing its last title; `patchrec_catalog_title` still returns that
/// title. Queries already running keep the catalogue they started with. The id may be
/// registered again. `ids` may be NULL when `n` is 0.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_remove(
    catalog: *const patchrec_catalog_t,
    ids: *const u64,
    n: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        catalog.remove_batch(arg_slice(ids, n, "ids")?)?;
        Ok(())
    })
}

/// Changes the title of registered item `id` (`PATCHREC_UNKNOWN_ITEM` otherwise); the
/// title is checked as by `patchrec_catalog_add`. From then on the item is recommended,
/// ranked and shown in histories with the new title; queries already running keep the
/// old one. On failure the catalogue is unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_set_title(
    catalog: *const patchrec_catalog_t,
    id: u64,
    title: *const c_char,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        catalog.set_title(id, arg_str(title, "title")?)?;
        Ok(())
    })
}

/// The catalogue's budget for users' prompt KV, as `patchrec_catalog_kv_stats` reports it.
/// This layout is part of the ABI: it changes only with `PATCHREC_ABI_VERSION`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct patchrec_kv_stats_t {
    /// The budget in bytes; `SIZE_MAX` when none is set (then nothing is counted).
    pub capacity: usize,
    /// Bytes of prompt KV held by the users of this catalogue now.
    pub bytes_held: usize,
    /// Users holding KV now.
    pub users_held: usize,
    /// Queries that found the user's KV cached, and ones that found none (a new user, or
    /// one evicted).
    pub hits: u64,
    pub misses: u64,
    /// Users' KV dropped to stay within the budget.
    pub evictions: u64,
}

/// Bounds the bytes of prompt KV that the users queried against `catalog` hold together
/// (each `patchrec_user_t` keeps its last prompt's KV): beyond `bytes`, the least recently
/// used users' KV is dropped. An evicted user keeps its history, and its next query
/// prefills its whole prompt, with the same answer. `SIZE_MAX` lifts the bound; lowering
/// it evicts at once.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_set_kv_budget(
    catalog: *const patchrec_catalog_t,
    bytes: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        catalog.set_kv_budget((bytes != usize::MAX).then_some(bytes));
        Ok(())
    })
}

/// How a catalogue keeps its items' patches. Passed to
/// `patchrec_catalog_set_patch_storage` as a `uint32_t`, so an out-of-range number is an
/// error rather than undefined behaviour.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum patchrec_patch_storage_t {
    /// Computed at registration and kept in f32 (the model's hidden size x 4 bytes per
    /// item).
    PATCHREC_PATCHES_F32 = 0,
    /// Computed at registration and kept in f16: half the bytes; scores move by f16
    /// rounding of the patches.
    PATCHREC_PATCHES_F16 = 1,
    /// Not kept: computed from the title's tokens when a prompt needs them, with the same
    /// values as `PATCHREC_PATCHES_F32` (answers are identical). The default.
    PATCHREC_PATCHES_ON_DEMAND = 2,
}

/// Sets how `catalog` keeps its items' patches (a `patchrec_patch_storage_t`); the items
/// registered so far are converted once, and queries already running keep the catalogue
/// they started with. docs/PERFORMANCE.md measures the memory and time of each. An
/// unknown kind is `PATCHREC_INVALID_ARGUMENT`, and the catalogue is unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_set_patch_storage(
    catalog: *const patchrec_catalog_t,
    storage: u32,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    use patchrec_patch_storage_t::*;
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let storage = match storage {
            s if s == PATCHREC_PATCHES_F32 as u32 => PatchStorage::F32,
            s if s == PATCHREC_PATCHES_F16 as u32 => PatchStorage::F16,
            s if s == PATCHREC_PATCHES_ON_DEMAND as u32 => PatchStorage::OnDemand,
            other => {
                return Err(Error::invalid(format!(
                    "patch storage {other}: expected PATCHREC_PATCHES_F32, \
                     PATCHREC_PATCHES_F16 or PATCHREC_PATCHES_ON_DEMAND"
                ))
                .into())
            }
        };
        catalog.set_patch_storage(storage)?;
        Ok(())
    })
}

/// Fills `*out` with the KV budget's figures (see `patchrec_kv_stats_t`).
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_kv_stats(
    catalog: *const patchrec_catalog_t,
    out: *mut patchrec_kv_stats_t,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let catalog = arg_ref(catalog, "catalog")?.catalog();
        let out = arg_mut(out, "out")?;
        *out = match catalog.kv_stats() {
            Some(s) => patchrec_kv_stats_t {
                capacity: s.capacity,
                bytes_held: s.bytes_held,
                users_held: s.users_held,
                hits: s.hits,
                misses: s.misses,
                evictions: s.evictions,
            },
            None => patchrec_kv_stats_t {
                capacity: usize::MAX,
                bytes_held: 0,
                users_held: 0,
                hits: 0,
                misses: 0,
                evictions: 0,
            },
        };
        Ok(())
    })
}

/// The number of items that can be recommended (registered, not removed); 0 when
/// `catalog` is NULL.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_len(catalog: *const patchrec_catalog_t) -> usize {
    guard_value(0, || catalog.as_ref().map_or(0, |c| c.catalog().len()))
}

/// Copies the title of item `id` into `buf` as NUL-terminated UTF-8 and sets `*len` to its
/// length in bytes, excluding the NUL. `buf` may be NULL when `cap` is 0. When `cap` is
/// less than `*len + 1` the result is `PATCHREC_BUFFER_TOO_SMALL`, with `*len` set so the
/// caller can retry and `buf` untouched. An unregistered id is `PATCHREC_UNKNOWN_ITEM`,
/// with `*len` set to 0.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_title(
    catalog: *const patchrec_catalog_t,
    id: u64,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let len = arg_mut(len, "len")?;
        *len = 0;
        let snapshot = arg_ref(catalog, "catalog")?.catalog().snapshot();
        let title = snapshot
            .get(id)
            .ok_or(Error::UnknownItem(id))?
            .title
            .as_bytes();
        *len = title.len();
        if cap <= title.len() {
            return Err(patchrec_error_t::new(
                PATCHREC_BUFFER_TOO_SMALL,
                format!(
                    "the title of item {id} needs {} bytes with its NUL; the buffer holds {cap}",
                    title.len() + 1
                ),
            ));
        }
        let buf = arg_slice_mut(buf.cast::<u8>(), cap, "buf")?;
        buf[..title.len()].copy_from_slice(title);
        buf[title.len()] = 0;
        Ok(())
    })
}

/// Decodes concurrent `patchrec_recommend` calls on this catalogue together: each caller
/// still builds and prefills its own prompt, then one worker thread advances every
/// waiting query's beams in one forward pass per step (the weights are read once per step
/// for all of them). Results equal unbatched ones to float rounding. `max_batch` is the
/// most queries per pass (0 turns batching off again); an idle worker waits up to
/// `max_wait_us` microseconds for more queries before its first step, trading that much
/// latency for fuller batches. Queries already running finish on the worker they started
/// on. Internally synchronised. `max_batch` above 1,024 or `max_wait_us` above 1,000,000
/// (one second) is `PATCHREC_INVALID_ARGUMENT`, and the batching in force is unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_set_batching(
    catalog: *const patchrec_catalog_t,
    max_batch: usize,
    max_wait_us: u64,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let handle = arg_ref(catalog, "catalog")?;
        let config = BatcherConfig {
            max_batch,
            max_wait: Duration::from_micros(max_wait_us),
            ..Default::default()
        };
        if max_batch == 0 {
            // Checked even when turning batching off, so a bad value is never silently
            // kept: only the wait is given then.
            config.with_max_batch(1).validate()?;
            handle.recommender.set_batching(None)?;
        } else {
            handle.recommender.set_batching(Some(config))?;
        }
        Ok(())
    })
}

/// Frees a catalogue; takes ownership of `catalog`. Users' histories stay valid (they hold
/// only ids). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_catalog_free(catalog: *mut patchrec_catalog_t) {
    free_handle(catalog)
}
