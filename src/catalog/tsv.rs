//! Reading a catalogue from `items.tsv` (`item_id<TAB>title`, the shared data format).

use std::path::Path;

use crate::error::{Error, Result};

/// `(id, title)` pairs in file order; a malformed line is an error naming file and line.
pub fn read_items_tsv(path: &Path) -> Result<Vec<(u64, String)>> {
    let text = crate::files::read_text(path, crate::files::MAX_DATA_BYTES)?;
    parse_items_tsv(&text, path)
}

/// [`read_items_tsv`] on text already read, so that the parser can be exercised on bytes
/// (the fuzz targets in `fuzz/`); `path` is only named in errors.
pub fn parse_items_tsv(text: &str, path: &Path) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: &str| Error::format(path, format!("line {}: {m}", n + 1));
        let (id, title) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected item_id<TAB>title"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| bad(&format!("item id {id:?} is not a non-negative integer")))?;
        // The catalogue's own rules, so a bad title is reported with its line here.
        let title = super::registry::check_title(id, title).map_err(|e| match e {
            Error::InvalidArgument(m) => bad(&m),
            e => e,
        })?;
        out.push((id, title.to_string()));
    }
    Ok(out)
}
