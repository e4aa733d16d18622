//! Checking that a requested model fits in memory before allocating it.
//!
//! Rust aborts the process when an allocation fails: no `Result`, no panic to catch at
//! the C boundary. A library linked into a service must never do that because a
//! configuration asked for `hidden = 1000000`, so every allocation whose size comes from
//! a caller's numbers (a from-scratch model, a training run) is checked against the
//! machine's memory first.

use crate::error::{Error, Result};

/// This machine's physical memory in bytes, or `None` where it cannot be read (then no
/// check is made).
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `Ok` when `bytes` fit in this machine's memory, else `OutOfMemory` saying what needed
/// them (`what` names the fields that set the size).
pub fn check_fits(bytes: u64, what: &str) -> Result<()> {
    match physical_memory() {
        Some(total) if bytes > total => Err(Error::OutOfMemory(format!(
            "{what} needs {:.1} GiB, more than this machine's {:.1} GiB",
            bytes as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_machine_are_refused_by_name() {
        assert!(physical_memory().is_some_and(|m| m > 1 << 20));
        check_fits(1 << 20, "a small model").unwrap();
        let e = check_fits(u64::MAX, "a model of hidden = 1000000").unwrap_err();
        assert!(matches!(e, Error::OutOfMemory(_)), "{e}");
        assert!(e.to_string().contains("hidden = 1000000"), "{e}");
    }
}
