//! Reports: a Markdown table on stdout and, when asked, the JSON beside it.

use std::path::Path;

/// Prints a report's table and writes the report as JSON to `out`, when one is given.
pub fn emit<T: serde::Serialize>(
    markdown: &str,
    report: &T,
    out: Option<&Path>,
) -> patchrec::Result<()> {
    print!("{markdown}");
    write_json(report, out)
}

/// Writes a report as JSON to `out`, when one is given.
pub fn write_json<T: serde::Serialize>(report: &T, out: Option<&Path>) -> patchrec::Result<()> {
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(report).expect("report serialises");
        std::fs::write(out, json).map_err(|e| patchrec::Error::io(out, e))?;
    }
    Ok(())
}
