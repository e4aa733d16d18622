//! Option objects: `patchrec_model_options_t` for loading, `patchrec_query_options_t` for
//! queries. Opaque with setters, so new options never change a layout callers compiled in.

use std::ffi::c_char;

use super::boundary::{arg_mut, arg_slice, arg_str, free_handle, guard, guard_value};
use super::error::patchrec_error_t;
use super::status::patchrec_status_t;
use crate::error::Error;
use crate::history::Layout;
use crate::model::ModelOptions;
use crate::query::QueryOptions;

/// How to load a model. Made by `patchrec_model_options_new`, freed by
/// `patchrec_model_options_free`; `patchrec_model_load` only borrows it. Not synchronised:
/// set it from one thread, then share it `const`. Independent of every other object.
#[derive(Default)]
pub struct patchrec_model_options_t {
    pub(crate) options: ModelOptions,
}

/// A new model options object with the defaults (device `"cpu"`). Never NULL; the caller
/// owns it and frees it with `patchrec_model_options_free`.
#[no_mangle]
pub extern "C" fn patchrec_model_options_new() -> *mut patchrec_model_options_t {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::default()))
}

/// Sets the device the model runs on: `"cpu"` or `"cuda:N"` (a build with the `cuda`
/// feature). Copies `device`; the name is checked by `patchrec_model_load`. On failure the
/// options are unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_model_options_set_device(
    options: *mut patchrec_model_options_t,
    device: *const c_char,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        options.options.device = Some(arg_str(device, "device")?.to_owned());
        Ok(())
    })
}

/// Serves the model from quantized weights: `"q8_0"` or `"q4_0"` (GGML block formats;
/// every projection and the output head whose input width is a multiple of 32), `"bf16"`
/// (every projection and the head), or `""` for none (the default). The projections are
/// quantized as they are read, so the dense weights are never all in memory. `"q8_0"`
/// holds them in about a quarter of f32's memory and, on a CPU with AVX2 or AVX-512,
/// answers faster than f32 (in int8 multiply-adds where it has AVX-512 VNNI); `"q4_0"`
/// likewise, in about a sixth of f32's memory where the CPU has AVX-512 VNNI (a quarter
/// elsewhere); `"bf16"` holds them in half and needs such a CPU (the products use bf16
/// instructions where it has AVX512_BF16). Scores change slightly (measured in docs/PERFORMANCE.md); a
/// quantized model cannot be trained. Copies `quantization`; an unknown name is
/// `PATCHREC_INVALID_ARGUMENT` and leaves the options unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_model_options_set_quantization(
    options: *mut patchrec_model_options_t,
    quantization: *const c_char,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        let name = arg_str(quantization, "quantization")?;
        options.options.quantization = match name {
            "" => None,
            name => Some(name.parse()?),
        };
        Ok(())
    })
}

/// Frees model options; takes ownership of `options`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_model_options_free(options: *mut patchrec_model_options_t) {
    free_handle(options)
}

/// How the history is written into the prompt. Passed to `patchrec_query_options_set_layout`
/// as a `uint32_t`, so an out-of-range number is an error rather than undefined behaviour.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum patchrec_layout_t {
    /// Every history item as its title's text.
    PATCHREC_LAYOUT_VANILLA = 0,
    /// PFT-I: the latest M items as text, older ones as item patches.
    PATCHREC_LAYOUT_PFT_I = 1,
    /// PFT-S: the latest L items as text, the L before as item patches, older groups of L
    /// as session patches.
    PATCHREC_LAYOUT_PFT_S = 2,
    /// Stream-aligned PFT-S: groups of L from the start of the user's stream, so a group
    /// never changes once it holds L items; the newest (open) group as text, the one before
    /// as item patches, older ones as session patches. An append then recomputes only the
    /// prompt's end in the user's cached KV. Needs K >= L.
    PATCHREC_LAYOUT_STREAM_S = 3,
    /// Adaptive: per user, the layout with the most history as text (vanilla, else PFT-I
    /// with the largest M, else PFT-S with the largest L) whose whole prompt fits in the
    /// given number of positions; when none fits, the smallest prompt.
    PATCHREC_LAYOUT_BUDGET = 4,
}

/// How to answer a query. Made by `patchrec_query_options_new`, freed by
/// `patchrec_query_options_free`; queries only borrow it. Not synchronised: set it from
/// one thread, then share it `const` among any number of concurrent queries.
/// Independent of every other object.
#[derive(Default)]
pub struct patchrec_query_options_t {
    /// What the caller did not set stays the checkpoint's: the library resolves the
    /// layout field by field (`LayoutChoice`).
    pub(crate) query: QueryOptions,
}

/// A new query options object with the defaults: k = 10, beam width 20, the checkpoint's
/// layout and history truncation (100 items unless its `patchrec.json` says otherwise),
/// history items not excluded. Never NULL; the caller owns it and frees it with
/// `patchrec_query_options_free`.
#[no_mangle]
pub extern "C" fn patchrec_query_options_new() -> *mut patchrec_query_options_t {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::default()))
}

/// Sets how many items a query returns. `k` = 0 is `PATCHREC_INVALID_ARGUMENT`. On failure
/// the options are unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_k(
    options: *mut patchrec_query_options_t,
    k: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        if k == 0 {
            return Err(Error::invalid("k must be at least 1").into());
        }
        options.query.k = k;
        Ok(())
    })
}

/// Sets the beam width of the constrained search; a width below k is raised to k.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_beam_width(
    options: *mut patchrec_query_options_t,
    beam_width: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        arg_mut(options, "options")?.query.beam_width = beam_width;
        Ok(())
    })
}

/// Sets the layout: `kind` is a `patchrec_layout_t`; `param` is M for
/// `PATCHREC_LAYOUT_PFT_I`, L (at least 1) for `PATCHREC_LAYOUT_PFT_S` and
/// `PATCHREC_LAYOUT_STREAM_S`, the prompt's budget in positions for
/// `PATCHREC_LAYOUT_BUDGET`, and ignored for
/// `PATCHREC_LAYOUT_VANILLA`. An unknown kind or L = 0 is `PATCHREC_INVALID_ARGUMENT`. On
/// failure the options are unchanged.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_layout(
    options: *mut patchrec_query_options_t,
    kind: u32,
    param: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    use patchrec_layout_t::*;
    guard(error, || {
        let options = arg_mut(options, "options")?;
        let layout = match kind {
            k if k == PATCHREC_LAYOUT_VANILLA as u32 => Layout::Vanilla,
            k if k == PATCHREC_LAYOUT_PFT_I as u32 => Layout::PftI { m: param },
            k if k == PATCHREC_LAYOUT_PFT_S as u32 => Layout::PftS { l: param },
            k if k == PATCHREC_LAYOUT_STREAM_S as u32 => Layout::StreamS { l: param },
            k if k == PATCHREC_LAYOUT_BUDGET as u32 => Layout::Budget { tokens: param },
            other => {
                return Err(Error::invalid(format!(
                    "layout kind {other}: expected PATCHREC_LAYOUT_VANILLA, \
                     PATCHREC_LAYOUT_PFT_I, PATCHREC_LAYOUT_PFT_S, \
                     PATCHREC_LAYOUT_STREAM_S or PATCHREC_LAYOUT_BUDGET"
                ))
                .into())
            }
        };
        layout.validate()?;
        options.query.layout.layout = Some(layout);
        Ok(())
    })
}

/// Sets the history truncation K: only the latest `max_items` interactions are shown.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_max_items(
    options: *mut patchrec_query_options_t,
    max_items: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        arg_mut(options, "options")?.query.layout.max_items = Some(max_items);
        Ok(())
    })
}

/// Sets the session gap of `PATCHREC_LAYOUT_STREAM_S` in seconds: a session then also
/// closes when an interaction comes more than `seconds` after the one before it (as
/// passed to `patchrec_user_append`; a pair with an unknown timestamp is never split), so
/// a session is one visit of at most L items. Appending still prefills only the prompt's
/// end. 0 turns the gap off (sessions close only when they hold L items), also where the
/// checkpoint sets one. While a gap is set, a query whose layout is not
/// `PATCHREC_LAYOUT_STREAM_S` fails with `PATCHREC_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_session_gap(
    options: *mut patchrec_query_options_t,
    seconds: u64,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        // 0 is "no gap", overriding the checkpoint's.
        arg_mut(options, "options")?.query.layout.session_gap = Some((seconds > 0).then_some(seconds));
        Ok(())
    })
}

/// With `exclude_history` true, a query never returns an item already in the user's
/// history. Default false, as in the paper's protocol.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_exclude_history(
    options: *mut patchrec_query_options_t,
    exclude_history: bool,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        arg_mut(options, "options")?.query.exclude_history = exclude_history;
        Ok(())
    })
}

/// With `exact` true, a query ranks the whole catalogue exactly instead of by beam search:
/// every title prefix that can still reach the top k is expanded, so no beam can miss the
/// best item (the beam width is then unused). Slower on large catalogues. Default false.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_exact(
    options: *mut patchrec_query_options_t,
    exact: bool,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        arg_mut(options, "options")?.query.exact = exact;
        Ok(())
    })
}

/// Recommends only the `n` items at `ids` (ids the catalogue does not hold are ignored):
/// the answer is that of a catalogue holding only them, and the search never expands a
/// branch of the title tree that leads to none of them; the catalogue is not rebuilt.
/// `n` = 0 allows nothing (an empty answer). Copies the ids; replaces an earlier list.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_allow(
    options: *mut patchrec_query_options_t,
    ids: *const u64,
    n: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        options.query.allow = Some(arg_slice(ids, n, "ids")?.to_vec());
        Ok(())
    })
}

/// Never recommends the `n` items at `ids` (ids the catalogue does not hold are ignored);
/// a denied item is left out even when allowed. Copies the ids; replaces an earlier list.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_set_deny(
    options: *mut patchrec_query_options_t,
    ids: *const u64,
    n: usize,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        options.query.deny = arg_slice(ids, n, "ids")?.to_vec();
        Ok(())
    })
}

/// Removes the allow- and deny-lists: every item may be recommended again.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_clear_filters(
    options: *mut patchrec_query_options_t,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        let options = arg_mut(options, "options")?;
        options.query.allow = None;
        options.query.deny.clear();
        Ok(())
    })
}

/// Frees query options; takes ownership of `options`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_query_options_free(options: *mut patchrec_query_options_t) {
    free_handle(options)
}
