//! `patchrec_status_t`: the stable numeric result of every fallible C call.

use std::ffi::{c_char, CStr};

use super::boundary::guard_value;
use crate::error::Error;

/// The result of a fallible call. The numbers are stable and only ever appended to, so a
/// binding built against an older header may see a code it does not know: treat any
/// unknown non-zero code as a failure and read the error object's message.
///
/// `uint32_t` in C (not a plain `enum`) so its size is the same for every compiler and
/// binding language.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum patchrec_status_t {
    /// Success.
    PATCHREC_OK = 0,
    /// A value is out of range or inconsistent: k = 0, PFT-S group size 0, an unknown
    /// layout kind, a title that cannot be served, an empty catalogue, an unknown device
    /// name, a nonsensical training configuration given as text.
    PATCHREC_INVALID_ARGUMENT = 1,
    /// A required pointer argument was NULL; the message names the parameter.
    PATCHREC_NULL_ARGUMENT = 2,
    /// A string argument was not valid UTF-8; the message names the parameter.
    PATCHREC_INVALID_UTF8 = 3,
    /// A file or directory could not be read or written (a missing checkpoint directory).
    PATCHREC_IO = 4,
    /// A checkpoint, data or configuration file is malformed or nonsensical; the message
    /// names the file and what was wrong.
    PATCHREC_FORMAT = 5,
    /// The checkpoint describes a model this library does not run, or the device is not
    /// available in this build.
    PATCHREC_UNSUPPORTED = 6,
    /// An item id that the catalogue does not hold.
    PATCHREC_UNKNOWN_ITEM = 7,
    /// An item id that the catalogue already holds.
    PATCHREC_DUPLICATE_ITEM = 8,
    /// The caller's buffer is smaller than the result; the out-length says how much is
    /// needed.
    PATCHREC_BUFFER_TOO_SMALL = 9,
    /// The tokenizer failed on some text.
    PATCHREC_TOKENIZER = 10,
    /// A tensor operation failed (shape mismatch, device error, ...).
    PATCHREC_TENSOR = 11,
    /// The library panicked (a bug); the message holds the panic's text. The objects the
    /// call was given remain safe to free but may not be usable.
    PATCHREC_PANIC = 12,
    /// Training stopped because its progress callback asked it to; the resume
    /// state is on disk, and calling it again with `resume` continues the run.
    PATCHREC_STOPPED = 13,
    /// What was asked for needs more memory than the machine has (a model size in a
    /// training configuration); the message names the fields. Nothing was allocated.
    PATCHREC_OUT_OF_MEMORY = 14,
    /// A computation produced NaN or infinity: a training step (the stage stops, and its
    /// last resume state is kept), or a model's scores for a query.
    PATCHREC_NON_FINITE = 15,
}

use patchrec_status_t::*;

const ALL: [patchrec_status_t; 16] = [
    PATCHREC_OK,
    PATCHREC_INVALID_ARGUMENT,
    PATCHREC_NULL_ARGUMENT,
    PATCHREC_INVALID_UTF8,
    PATCHREC_IO,
    PATCHREC_FORMAT,
    PATCHREC_UNSUPPORTED,
    PATCHREC_UNKNOWN_ITEM,
    PATCHREC_DUPLICATE_ITEM,
    PATCHREC_BUFFER_TOO_SMALL,
    PATCHREC_TOKENIZER,
    PATCHREC_TENSOR,
    PATCHREC_PANIC,
    PATCHREC_STOPPED,
    PATCHREC_OUT_OF_MEMORY,
    PATCHREC_NON_FINITE,
];

impl patchrec_status_t {
    /// The status with this number, if this version of the library defines it.
    pub fn from_code(code: u32) -> Option<Self> {
        ALL.into_iter().find(|&s| s as u32 == code)
    }

    /// The constant's name as written in the header.
    pub fn name(self) -> &'static CStr {
        match self {
            PATCHREC_OK => c"PATCHREC_OK",
            PATCHREC_INVALID_ARGUMENT => c"PATCHREC_INVALID_ARGUMENT",
            PATCHREC_NULL_ARGUMENT => c"PATCHREC_NULL_ARGUMENT",
            PATCHREC_INVALID_UTF8 => c"PATCHREC_INVALID_UTF8",
            PATCHREC_IO => c"PATCHREC_IO",
            PATCHREC_FORMAT => c"PATCHREC_FORMAT",
            PATCHREC_UNSUPPORTED => c"PATCHREC_UNSUPPORTED",
            PATCHREC_UNKNOWN_ITEM => c"PATCHREC_UNKNOWN_ITEM",
            PATCHREC_DUPLICATE_ITEM => c"PATCHREC_DUPLICATE_ITEM",
            PATCHREC_BUFFER_TOO_SMALL => c"PATCHREC_BUFFER_TOO_SMALL",
            PATCHREC_TOKENIZER => c"PATCHREC_TOKENIZER",
            PATCHREC_TENSOR => c"PATCHREC_TENSOR",
            PATCHREC_PANIC => c"PATCHREC_PANIC",
            PATCHREC_STOPPED => c"PATCHREC_STOPPED",
            PATCHREC_OUT_OF_MEMORY => c"PATCHREC_OUT_OF_MEMORY",
            PATCHREC_NON_FINITE => c"PATCHREC_NON_FINITE",
        }
    }
}

impl From<&Error> for patchrec_status_t {
    // Exhaustive on purpose: a new error variant must choose its status here.
    fn from(error: &Error) -> Self {
        match error {
            Error::InvalidArgument(_) => PATCHREC_INVALID_ARGUMENT,
            Error::Io { .. } => PATCHREC_IO,
            Error::Format { .. } => PATCHREC_FORMAT,
            Error::Unsupported(_) => PATCHREC_UNSUPPORTED,
            Error::UnknownItem(_) => PATCHREC_UNKNOWN_ITEM,
            Error::DuplicateItem(_) => PATCHREC_DUPLICATE_ITEM,
            Error::Tokenizer(_) => PATCHREC_TOKENIZER,
            Error::Tensor(_) => PATCHREC_TENSOR,
            Error::OutOfMemory(_) => PATCHREC_OUT_OF_MEMORY,
            Error::NonFinite(_) => PATCHREC_NON_FINITE,
        }
    }
}

/// The name of a status code, such as `"PATCHREC_UNKNOWN_ITEM"`, or `"PATCHREC_UNKNOWN_STATUS"`
/// for a number this version does not define. The code is taken as a plain integer so
/// that any value is safe to pass. Returns a static string: never NULL, never freed.
#[no_mangle]
pub extern "C" fn patchrec_status_name(status: u32) -> *const c_char {
    guard_value(c"PATCHREC_PANIC".as_ptr(), || {
        patchrec_status_t::from_code(status)
            .map_or(c"PATCHREC_UNKNOWN_STATUS", patchrec_status_t::name)
            .as_ptr()
    })
}
