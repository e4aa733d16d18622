//! The C ABI (`include/patchrec.h`, generated from this module by cbindgen).
//!
//! One file per C type, each a thin layer over the Rust API; every exported function runs
//! its body through [`boundary`], so panics, NULL pointers and invalid UTF-8 become status
//! codes with an error object instead of crashes. The Rust names are the C names, so the
//! header and this code can be searched alike.
//!
//! Safety contract of every `unsafe extern "C" fn` here, stated once rather than per
//! function: each pointer argument is NULL (checked) or valid for the use its doc
//! describes, handles come from this library and are not used after being freed, and a
//! non-const handle is not used by another thread during the call.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod boundary;
mod catalog;
mod error;
mod model;
mod options;
mod query;
mod rank;
mod status;
mod train;
mod user;
mod version;

pub use catalog::*;
pub use error::*;
pub use model::*;
pub use options::*;
pub use query::*;
pub use rank::*;
pub use status::*;
pub use train::*;
pub use user::*;
pub use version::*;

// The thread-safety each type's doc promises.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<patchrec_model_t>();
    shareable::<patchrec_catalog_t>();
    shareable::<patchrec_user_t>();
    shareable::<patchrec_model_options_t>();
    shareable::<patchrec_query_options_t>();
    shareable::<patchrec_error_t>();
};
