//! The library version and the C ABI version.

use std::ffi::{c_char, CStr};

use super::boundary::guard_value;

/// The version of this C ABI: bumped on any incompatible change to the header (a changed
/// signature, type layout or meaning), never for additions. A binding checks
/// `patchrec_abi_version() == PATCHREC_ABI_VERSION` at start-up.
pub const PATCHREC_ABI_VERSION: u32 = 2;

/// The library version's major number, as in `patchrec_version()`: a C program can test it
/// at compile time (`#if PATCHREC_VERSION_MINOR >= 2`), which a string does not allow.
pub const PATCHREC_VERSION_MAJOR: u32 = 0;
/// The library version's minor number, as in `patchrec_version()`.
pub const PATCHREC_VERSION_MINOR: u32 = 1;
/// The library version's patch number, as in `patchrec_version()`.
pub const PATCHREC_VERSION_PATCH: u32 = 0;

// cbindgen copies only literal values into the header, so the parts are written out above
// and checked here: bumping Cargo.toml's version without them fails the build.
const _: () = assert!(
    PATCHREC_VERSION_MAJOR == decimal(env!("CARGO_PKG_VERSION_MAJOR"))
        && PATCHREC_VERSION_MINOR == decimal(env!("CARGO_PKG_VERSION_MINOR"))
        && PATCHREC_VERSION_PATCH == decimal(env!("CARGO_PKG_VERSION_PATCH")),
    "PATCHREC_VERSION_MAJOR/MINOR/PATCH in src/ffi/version.rs must match Cargo.toml's version"
);

const fn decimal(digits: &str) -> u32 {
    let digits = digits.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < digits.len() {
        value = value * 10 + (digits[i] - b'0') as u32;
        i += 1;
    }
    value
}

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
