//! `patchrec_error_t`: the owned error object a failed call hands to its caller.

use std::ffi::{c_char, CStr, CString};

use super::boundary::{free_handle, guard_value};
use super::status::patchrec_status_t::{self, PATCHREC_OK, PATCHREC_PANIC};
use crate::error::Error;

/// Why a call failed: its status and a message that names the file, field, tensor, item
/// or parameter at fault. Returned through a function's optional `error` out-param;
/// owned by the caller, who frees it with `patchrec_error_free`. Immutable, so it may be
/// read from many threads; it borrows nothing and may outlive every other object.
pub struct patchrec_error_t {
    status: patchrec_status_t,
    message: CString,
}

impl patchrec_error_t {
    pub(crate) fn new(status: patchrec_status_t, message: impl Into<String>) -> Self {
        // C would cut the message short at a NUL from foreign text; drop NULs instead.
        let mut bytes = message.into().into_bytes();
        bytes.retain(|&b| b != 0);
        patchrec_error_t {
            status,
            message: CString::new(bytes).unwrap_or_default(),
        }
    }

    pub(crate) fn status(&self) -> patchrec_status_t {
        self.status
    }

    pub(crate) fn message(&self) -> &CStr {
        &self.message
    }
}

impl From<Error> for patchrec_error_t {
    fn from(error: Error) -> Self {
        patchrec_error_t::new((&error).into(), error.to_string())
    }
}

/// The error's message, NUL-terminated UTF-8; `""` when `error` is NULL. Borrows `error`:
/// the string is valid until `error` is freed and must not be freed itself.
#[no_mangle]
pub unsafe extern "C" fn patchrec_error_message(error: *const patchrec_error_t) -> *const c_char {
    guard_value(c"".as_ptr(), || {
        error.as_ref().map_or(c"", |e| e.message()).as_ptr()
    })
}

/// The error's status; `PATCHREC_OK` when `error` is NULL (NULL means success).
#[no_mangle]
pub unsafe extern "C" fn patchrec_error_status(
    error: *const patchrec_error_t,
) -> patchrec_status_t {
    guard_value(PATCHREC_PANIC, || {
        error.as_ref().map_or(PATCHREC_OK, |e| e.status())
    })
}

/// Frees an error object; takes ownership of `error`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn patchrec_error_free(error: *mut patchrec_error_t) {
    free_handle(error)
}
