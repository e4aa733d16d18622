//! `patchrec_model_t`: a loaded checkpoint.

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{arg_path, free_handle, guard, new_handle};
use super::error::patchrec_error_t;
use super::options::patchrec_model_options_t;
use super::status::patchrec_status_t;
use crate::model::{Model, ModelOptions};

/// A loaded model: decoder weights, tokenizer and prompt template. Immutable and
/// thread-safe: a `const patchrec_model_t *` may serve any number of threads at once.
/// Catalogues keep the model alive, so the handle may be freed while they are in use.
pub struct patchrec_model_t {
    pub(crate) model: Arc<Model>,
}

/// Loads the checkpoint directory `checkpoint_dir` (`config.json`, `model.safetensors`,
/// `tokenizer.json`, `patchrec.json`). `options` may be NULL for the defaults; it is only
/// borrowed. On success `*out` receives a model the caller owns and frees with
/// `patchrec_model_free`; on failure `*out` is set to NULL (a missing directory is
/// `PATCHREC_IO`, a malformed file `PATCHREC_FORMAT`, both naming the file).
#[no_mangle]
pub unsafe extern "C" fn patchrec_model_load(
    checkpoint_dir: *const c_char,
    options: *const patchrec_model_options_t,
    out: *mut *mut patchrec_model_t,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    guard(error, || {
        new_handle(out, || {
            let dir = arg_path(checkpoint_dir, "checkpoint_dir")?;
            let defaults = ModelOptions::default();
            let options = options.as_ref().map_or(&defaults, |o| &o.options);
            let model = Model::load(dir, options)?;
            Ok(patchrec_model_t {
                model: Arc::new(model),
            })
        })
    })
}

/// Releases the caller's reference to a model; takes ownership of `model`. Catalogues made
/// from it keep working. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_model_free(model: *mut patchrec_model_t) {
    free_handle(model)
}
