//! Resident memory of this process, for the benchmark's memory report (Linux:
//! `/proc/self/statm`; elsewhere unknown).

/// Resident set size in bytes, if the platform tells.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Memory the benchmark measured: resident growth while loading the model and while
/// registering the catalogue.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MemoryReport {
    pub model_bytes: u64,
    pub catalogue_bytes: u64,
    pub catalogue_items: usize,
}

impl MemoryReport {
    /// Catalogue memory scaled to `items` items (it grows linearly: one patch row, the
    /// title's tokens and its prefix-tree path per item).
    pub fn catalogue_bytes_for(&self, items: usize) -> f64 {
        self.catalogue_bytes as f64 / self.catalogue_items.max(1) as f64 * items as f64
    }
}
