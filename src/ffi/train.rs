//! `patchrec_train_file` and `patchrec_train_toml`: the training entry point, with the
//! configuration the CLI reads, from a file or as text.

use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use super::boundary::{arg_str, guard, Outcome};
use super::error::patchrec_error_t;
use super::status::patchrec_status_t::{self, *};
use crate::train::{train, Control, Progress, TrainConfig, TrainOptions};

/// One training step's report, passed to the progress callback. The library owns it and
/// it is valid only during the callback; fields may be appended in later versions, so
/// never allocate one yourself.
#[repr(C)]
pub struct patchrec_train_progress_t {
    /// The stage's name (`sft`, `ppt`, `pft-i5`, `pft-s20`, ...), NUL-terminated.
    pub stage: *const c_char,
    /// 0-based position of the stage in the configuration.
    pub stage_index: u32,
    /// Optimizer steps done in this stage, and its total.
    pub step: u64,
    pub total_steps: u64,
    /// Mean answer-token cross-entropy of the step.
    pub loss: f64,
    pub learning_rate: f64,
    /// Input positions per second over the step.
    pub tokens_per_second: f64,
}

/// Called after every optimizer step with `user_data` as given to the training call.
/// Return `true` to continue, `false` to stop: the trainer then writes its resume state
/// and the training call returns `PATCHREC_STOPPED`.
pub type patchrec_train_callback_t = Option<
    unsafe extern "C" fn(
        progress: *const patchrec_train_progress_t,
        user_data: *mut c_void,
    ) -> bool,
>;

/// Runs the training stages of the TOML file at `path` (the format `patchrec train` reads,
/// docs/TRAINING.md); relative paths in it are taken from the file's folder. With
/// `resume`, an interrupted run in the configuration's output folder continues where it
/// stopped; without it, a non-empty output folder is an error. A second training on an
/// output folder that one is using fails with `PATCHREC_IO`. `progress` may be NULL.
/// Blocks until training ends. Returns `PATCHREC_OK` when every stage finished
/// (checkpoints in the output folder), `PATCHREC_STOPPED` when the callback stopped it
/// (`*error` is NULL for both), or the failure's status with `*error` set: a missing file
/// is `PATCHREC_IO`, a malformed or nonsensical configuration `PATCHREC_FORMAT` naming
/// the field, a model too large for the machine `PATCHREC_OUT_OF_MEMORY`, and a loss that
/// became NaN or infinite `PATCHREC_NON_FINITE` (the last resume state is kept).
#[no_mangle]
pub unsafe extern "C" fn patchrec_train_file(
    path: *const c_char,
    resume: bool,
    progress: patchrec_train_callback_t,
    user_data: *mut c_void,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    train_with(error, resume, progress, user_data, || {
        Ok(TrainConfig::from_file(Path::new(arg_str(path, "path")?))?)
    })
}

/// Like `patchrec_train_file`, with the configuration given as TOML text. Relative paths
/// in it are taken from `base_dir`, or from the working directory when `base_dir` is
/// NULL. A malformed configuration is `PATCHREC_INVALID_ARGUMENT` naming the field.
#[no_mangle]
pub unsafe extern "C" fn patchrec_train_toml(
    toml: *const c_char,
    base_dir: *const c_char,
    resume: bool,
    progress: patchrec_train_callback_t,
    user_data: *mut c_void,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    train_with(error, resume, progress, user_data, || {
        let text = arg_str(toml, "toml")?;
        let base = match base_dir.is_null() {
            true => Path::new("."),
            false => Path::new(arg_str(base_dir, "base_dir")?),
        };
        Ok(TrainConfig::from_toml(text, base)?)
    })
}

/// Both entry points: reads the configuration with `config`, trains inside the boundary,
/// and turns a stop asked for by the callback into `PATCHREC_STOPPED`.
unsafe fn train_with(
    error: *mut *mut patchrec_error_t,
    resume: bool,
    progress: patchrec_train_callback_t,
    user_data: *mut c_void,
    config: impl FnOnce() -> Outcome<TrainConfig>,
) -> patchrec_status_t {
    let mut stopped = false;
    let status = guard(error, || {
        stopped = run(&config()?, resume, progress, user_data)?;
        Ok(())
    });
    if status == PATCHREC_OK && stopped {
        PATCHREC_STOPPED
    } else {
        status
    }
}

/// Trains with the C callback as the progress report; true when the callback stopped it.
unsafe fn run(
    cfg: &TrainConfig,
    resume: bool,
    progress: patchrec_train_callback_t,
    user_data: *mut c_void,
) -> crate::Result<bool> {
    let mut report = |p: &Progress| -> Control {
        let Some(callback) = progress else {
            return Control::Continue;
        };
        // Stage names are ours and never contain NUL.
        let stage = CString::new(p.stage.as_str()).unwrap_or_default();
        let view = patchrec_train_progress_t {
            stage: stage.as_ptr(),
            stage_index: p.stage_index as u32,
            step: p.step,
            total_steps: p.total_steps,
            loss: p.loss,
            learning_rate: p.learning_rate,
            tokens_per_second: p.tokens_per_second,
        };
        if callback(&view, user_data) {
            Control::Continue
        } else {
            Control::Stop
        }
    };
    let outcome = train(
        cfg,
        &TrainOptions {
            resume,
            quiet: true,
        },
        &mut report,
    )?;
    Ok(outcome.stopped)
}
