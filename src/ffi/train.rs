//! `patchrec_train`: the training entry point, with the configuration the CLI reads.

use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use super::boundary::{arg_str, guard};
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

/// Called after every optimizer step with `user_data` as given to `patchrec_train`.
/// Return `true` to continue, `false` to stop: the trainer then writes its resume state
/// and `patchrec_train` returns `PATCHREC_STOPPED`.
pub type patchrec_train_callback_t = Option<
    unsafe extern "C" fn(
        progress: *const patchrec_train_progress_t,
        user_data: *mut c_void,
    ) -> bool,
>;

/// Runs the training stages of `config`: the path of a TOML file, or the TOML text itself
/// (relative paths in it are then taken from the working directory). The format is the
/// one `patchrec train` reads (docs/TRAINING.md). With `resume`, an interrupted run in the
/// configuration's output folder continues where it stopped; without it, a non-empty
/// output folder is an error. `progress` may be NULL. Blocks until training ends.
/// Returns `PATCHREC_OK` when every stage finished (checkpoints in the output folder),
/// `PATCHREC_STOPPED` when the callback stopped it (`*error` is NULL for both), or the
/// failure's status with `*error` set.
#[no_mangle]
pub unsafe extern "C" fn patchrec_train(
    config: *const c_char,
    resume: bool,
    progress: patchrec_train_callback_t,
    user_data: *mut c_void,
    error: *mut *mut patchrec_error_t,
) -> patchrec_status_t {
    let mut stopped = false;
    let status = guard(error, || {
        let text = arg_str(config, "config")?;
        let as_path = Path::new(text);
        let cfg = if !text.contains('\n') && as_path.is_file() {
            TrainConfig::from_file(as_path)?
        } else {
            TrainConfig::from_toml(text, Path::new("."))?
        };
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
            &cfg,
            &TrainOptions {
                resume,
                quiet: true,
            },
            &mut report,
        )?;
        stopped = outcome.stopped;
        Ok(())
    });
    if status == PATCHREC_OK && stopped {
        PATCHREC_STOPPED
    } else {
        status
    }
}
