//! Names the shared library after the C ABI it implements: SONAME `libpatchrec.so.<abi>`,
//! so a program linked against one ABI version never loads a library of another, and two
//! ABI versions can be installed side by side.
//!
//! The version is read from `PATCHREC_ABI_VERSION` in src/ffi/version.rs, the constant the
//! header and `patchrec_abi_version()` come from, so bumping it there renames the library
//! too.

use std::env;
use std::fs;

const VERSION_FILE: &str = "src/ffi/version.rs";
const DECLARATION: &str = "pub const PATCHREC_ABI_VERSION: u32 = ";

fn main() {
    println!("cargo:rerun-if-changed={VERSION_FILE}");
    let source = fs::read_to_string(VERSION_FILE)
        .unwrap_or_else(|e| panic!("cannot read {VERSION_FILE}: {e}"));
    let abi = abi_version(&source).unwrap_or_else(|| {
        panic!("{VERSION_FILE} has no line `{DECLARATION}<integer>;`, which build.rs reads")
    });

    // SONAME is an ELF notion; Apple's linker has install names instead, Windows neither.
    let family = env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let vendor = env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    if family.split(',').any(|f| f == "unix") && vendor != "apple" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpatchrec.so.{abi}");
    }
}

/// The value of the `PATCHREC_ABI_VERSION` declaration in `source`.
fn abi_version(source: &str) -> Option<u32> {
    source.lines().find_map(|line| {
        line.trim()
            .strip_prefix(DECLARATION)?
            .strip_suffix(';')?
            .trim()
            .parse()
            .ok()
    })
}
