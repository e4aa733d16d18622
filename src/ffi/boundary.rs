//! The boundary every exported function goes through.
//!
//! [`guard`] runs the body of a function that returns a status: a panic becomes
//! `PATCHREC_PANIC` instead of unwinding into C, and the optional `error` out-param
//! receives NULL on success or an owned [`patchrec_error_t`]. [`guard_value`] does the same
//! for the few functions with no status to return (lengths, frees, constants).
//! The `arg_*` helpers turn NULL pointers and invalid UTF-8 into errors that name the
//! parameter, so no argument from C can crash the library.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::null_mut;

use super::error::patchrec_error_t;
use super::status::patchrec_status_t::{self, *};

/// What a body returns: its value, or the error object the caller will receive.
pub(crate) type Outcome<T = ()> = Result<T, patchrec_error_t>;

/// Runs the body of a status-returning export. `error` may be NULL (the caller wants
/// only the status); otherwise it receives NULL on success and an owned error on failure.
pub(crate) unsafe fn guard(
    error: *mut *mut patchrec_error_t,
    body: impl FnOnce() -> Outcome,
) -> patchrec_status_t {
    let (status, failure) = match catch_panic(body) {
        Ok(()) => (PATCHREC_OK, null_mut()),
        Err(e) => (e.status(), Box::into_raw(Box::new(e))),
    };
    match error.as_mut() {
        Some(slot) => *slot = failure,
        None if !failure.is_null() => drop(Box::from_raw(failure)),
        None => {}
    }
    status
}

/// Runs the body of an export that has no status to return; a panic yields `on_panic`.
pub(crate) fn guard_value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_panic(|| Ok(body())).unwrap_or(on_panic)
}

// Unwind safety is asserted: after a panic the handles involved may hold partial state,
// which `PATCHREC_PANIC`'s doc tells the caller (they stay safe to free).
fn catch_panic<T>(body: impl FnOnce() -> Outcome<T>) -> Outcome<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_error(payload)))
}

fn panic_error(payload: Box<dyn Any + Send>) -> patchrec_error_t {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    patchrec_error_t::new(PATCHREC_PANIC, format!("internal error (panic): {text}"))
}

fn null_argument(name: impl Display) -> patchrec_error_t {
    patchrec_error_t::new(PATCHREC_NULL_ARGUMENT, format!("argument `{name}` is NULL"))
}

/// A required pointer argument, borrowed.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, name: impl Display) -> Outcome<&'a T> {
    ptr.as_ref().ok_or_else(|| null_argument(name))
}

/// A required pointer argument, borrowed exclusively (handles and out-params).
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T, name: impl Display) -> Outcome<&'a mut T> {
    ptr.as_mut().ok_or_else(|| null_argument(name))
}

/// A required NUL-terminated UTF-8 string.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: impl Display) -> Outcome<&'a str> {
    if ptr.is_null() {
        return Err(null_argument(name));
    }
    CStr::from_ptr(ptr).to_str().map_err(|e| {
        patchrec_error_t::new(
            PATCHREC_INVALID_UTF8,
            format!("argument `{name}` is not valid UTF-8: {e}"),
        )
    })
}

/// A required NUL-terminated path: any bytes on Unix, where paths need not be UTF-8.
#[cfg(unix)]
pub(crate) unsafe fn arg_path<'a>(ptr: *const c_char, name: impl Display) -> Outcome<&'a Path> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = arg_ref(ptr, name).map(|p| CStr::from_ptr(p).to_bytes())?;
    Ok(Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
pub(crate) unsafe fn arg_path<'a>(ptr: *const c_char, name: impl Display) -> Outcome<&'a Path> {
    arg_str(ptr, name).map(Path::new)
}

/// A required array of `len` elements; NULL is accepted when `len` is 0.
pub(crate) unsafe fn arg_slice<'a, T>(
    ptr: *const T,
    len: usize,
    name: impl Display,
) -> Outcome<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    arg_ref(ptr, name).map(|p| std::slice::from_raw_parts(p, len))
}

/// A required output buffer of `len` elements; NULL is accepted when `len` is 0.
pub(crate) unsafe fn arg_slice_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    name: impl Display,
) -> Outcome<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    arg_mut(ptr, name).map(|p| std::slice::from_raw_parts_mut(p, len))
}

/// Stores a new handle from `make` in the required out-param `out`. `*out` is set to NULL
/// first, so it is NULL whenever `make` fails.
pub(crate) unsafe fn new_handle<T>(out: *mut *mut T, make: impl FnOnce() -> Outcome<T>) -> Outcome {
    let slot = arg_mut(out, "out")?;
    *slot = null_mut();
    *slot = Box::into_raw(Box::new(make()?));
    Ok(())
}

/// Frees a handle made by [`new_handle`] (or any `Box::into_raw`); NULL is a no-op.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    guard_value((), || {
        if !ptr.is_null() {
            drop(Box::from_raw(ptr));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_an_error_naming_it() {
        let mut error = null_mut();
        let status = unsafe { guard(&mut error, || panic!("boom")) };
        assert_eq!(status, PATCHREC_PANIC);
        let error = unsafe { Box::from_raw(error) };
        assert_eq!(error.status(), PATCHREC_PANIC);
        assert!(error.message().to_str().unwrap().contains("boom"));
    }

    #[test]
    fn a_panic_without_an_error_out_param_still_returns_the_status() {
        let status = unsafe { guard(null_mut(), || panic!("{}", String::from("formatted"))) };
        assert_eq!(status, PATCHREC_PANIC);
        assert_eq!(guard_value(7, || panic!("boom")), 7);
    }

    #[test]
    fn success_clears_the_error_out_param() {
        let mut error = std::ptr::NonNull::<patchrec_error_t>::dangling().as_ptr();
        assert_eq!(unsafe { guard(&mut error, || Ok(())) }, PATCHREC_OK);
        assert!(error.is_null());
    }

    #[test]
    fn a_failed_constructor_leaves_out_null() {
        let mut out: *mut u8 = std::ptr::NonNull::dangling().as_ptr();
        let outcome = unsafe {
            new_handle(&mut out, || {
                Err(patchrec_error_t::new(PATCHREC_INVALID_ARGUMENT, "no"))
            })
        };
        assert!(outcome.is_err());
        assert!(out.is_null());
    }
}
