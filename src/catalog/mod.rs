//! The item catalogue: titles, their token ids, cached item patches, and the title
//! prefix tree that constrains decoding.

pub mod patch;
pub mod registry;
pub mod snapshot;
pub mod trie;
pub mod tsv;

pub use patch::{item_patches, session_patch};
pub use registry::Catalog;
pub use snapshot::{CatalogItem, CatalogSnapshot, PatchStorage};
pub use trie::TitleTrie;
