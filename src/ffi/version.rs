//! The library version and the C ABI version.

use std::ffi::{c_char, CStr};

use super::boundary::guard_value;

/// The version of this C ABI: bumped on any incompatible change to the header (a changed
/// signature, type layout or meaning), never for additions. A binding checks
/// `patchrec_abi_version() == PATCHREC_ABI_VERSION` at start-up.
pub const PATCHREC_ABI_VERSION: u32 = 2;

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version must not contain NUL"),
    };

/// The library version (the crate's, e.g. `"0.1.0"`), NUL-terminated. A static string:
/// never NULL, never freed.
#[no_mangle]
pub extern "C" fn patchrec_version() -> *const c_char {
    guard_value(VERSION.as_ptr(), || VERSION.as_ptr())
}

/// The C ABI version this library implements; compare with `PATCHREC_ABI_VERSION` from
/// the header the caller was compiled with.
#[no_mangle]
pub extern "C" fn patchrec_abi_version() -> u32 {
    guard_value(PATCHREC_ABI_VERSION, || PATCHREC_ABI_VERSION)
}
