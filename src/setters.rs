//! Chained setters for the public options structs. Those structs are
//! `#[non_exhaustive]`, so a field added later breaks no caller: outside the crate they
//! start from `default()` (or a constructor) and change through these setters, or by
//! assigning a public field.
//!
//! ```
//! use patchrec::{Layout, QueryOptions};
//! let opts = QueryOptions::default()
//!     .with_k(10)
//!     .with_layout(Layout::PftS { l: 5 })
//!     .with_deny(vec![7]);
//! assert_eq!(opts.k, 10);
//! ```

/// `setters!(Type { with_a => a: A, with_b => opt b: B })` writes one `with_*` method per
/// field. A plain field's setter takes the field's type. An `opt` field is an `Option<B>`,
/// and its setter takes anything that converts into one: `x`, `Some(x)` or `None`.
macro_rules! setters {
    ($ty:ty { $($rest:tt)* }) => {
        impl $ty {
            setters!(@fns $($rest)*);
        }
    };
    (@fns) => {};
    (@fns $name:ident => opt $field:ident : $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets `", stringify!($field), "` (`x`, `Some(x)` or `None`).")]
        #[must_use]
        pub fn $name(mut self, $field: impl Into<Option<$t>>) -> Self {
            self.$field = $field.into();
            self
        }
        setters!(@fns $($($rest)*)?);
    };
    (@fns $name:ident => $field:ident : $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets `", stringify!($field), "`.")]
        #[must_use]
        pub fn $name(mut self, $field: $t) -> Self {
            self.$field = $field;
            self
        }
        setters!(@fns $($($rest)*)?);
    };
}
