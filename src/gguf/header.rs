//! Checks on a GGUF header that candle's reader (`gguf_file::Content::read`) does not make,
//! run before it reads the file:
//!
//! - `general.alignment = 0` makes candle divide by zero (a panic) when it places the
//!   tensor data;
//! - every metadata value becomes an in-memory `Value` of 32 bytes or more, even a one-byte
//!   array element, so the values a header declares are checked against the machine's
//!   memory first.
//!
//! The walk stops quietly at anything malformed: candle then reports it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Value;

use crate::error::{Error, Result};

/// candle's limit on arrays nested in arrays.
const MAX_DEPTH: usize = 64;
const ALIGNMENT_KEY: [u8; 17] = *b"general.alignment";

pub(super) fn check(file: &mut File, path: &Path) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let scan = {
        let mut walk = Walk {
            r: BufReader::new(&*file),
            left: file_len,
            v1: false,
            values: 0,
        };
        walk.header()
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    let Some(scan) = scan else {
        return Ok(());
    };
    if scan.alignment == Some(0) {
        return Err(Error::format(
            path,
            "metadata key `general.alignment` is 0 (the tensor data's alignment must be at least 1)",
        ));
    }
    crate::memory::check_fits(
        scan.values
            .saturating_mul(std::mem::size_of::<Value>() as u64)
            .saturating_add(file_len),
        &format!(
            "reading the {} metadata values of {}",
            scan.values,
            path.display()
        ),
    )
}

struct Scan {
    /// The last `general.alignment` of an integer type, as candle reads it (`None` when
    /// absent, negative or of another type: candle then uses its default, 32).
    alignment: Option<u64>,
    /// Metadata values, counting each array element.
    values: u64,
}

struct Walk<R> {
    r: R,
    left: u64,
    v1: bool,
    values: u64,
}

impl<R: Read + Seek> Walk<R> {
    fn header(&mut self) -> Option<Scan> {
        let magic = self.bytes::<4>()?;
        if &magic != b"GGUF" && &magic != b"FUGG" {
            return None;
        }
        let version = self.u32()?;
        if !(1..=3).contains(&version) {
            return None;
        }
        self.v1 = version == 1;
        let _tensors = self.len()?;
        let entries = self.len()?;
        let mut alignment = None;
        for _ in 0..entries {
            let is_alignment = self.key_is_alignment()?;
            let ty = self.u32()?;
            if is_alignment {
                // candle keeps the last entry of a key, and reads U8..I32 (0..=5) only.
                self.values = self.values.saturating_add(1);
                // A negative one is ignored (`u64::try_from` fails), as candle does.
                alignment = match ty {
                    0 => Some(u64::from(self.bytes::<1>()?[0])),
                    1 => u64::try_from(i8::from_le_bytes(self.bytes::<1>()?)).ok(),
                    2 => Some(u64::from(u16::from_le_bytes(self.bytes::<2>()?))),
                    3 => u64::try_from(i16::from_le_bytes(self.bytes::<2>()?)).ok(),
                    4 => Some(u64::from(self.u32()?)),
                    5 => u64::try_from(i32::from_le_bytes(self.bytes::<4>()?)).ok(),
                    _ => {
                        self.values -= 1;
                        self.value(ty, 0)?;
                        None
                    }
                };
            } else {
                self.value(ty, 0)?;
            }
        }
        Some(Scan {
            alignment,
            values: self.values,
        })
    }

    /// Reads a key; whether candle reads it as `general.alignment` (it drops trailing NULs).
    fn key_is_alignment(&mut self) -> Option<bool> {
        let len = self.len()?;
        if len < ALIGNMENT_KEY.len() as u64 {
            self.skip(len)?;
            return Some(false);
        }
        let mut same = self.bytes::<17>()? == ALIGNMENT_KEY;
        let mut rest = len - ALIGNMENT_KEY.len() as u64;
        if !same {
            self.skip(rest)?;
            return Some(false);
        }
        let mut chunk = [0u8; 256];
        while rest > 0 {
            let n = rest.min(chunk.len() as u64) as usize;
            if self.left < n as u64 {
                return None;
            }
            self.r.read_exact(&mut chunk[..n]).ok()?;
            self.left -= n as u64;
            same &= chunk[..n].iter().all(|&b| b == 0);
            rest -= n as u64;
        }
        Some(same)
    }

    /// Skips a value of type `ty`, counting it.
    fn value(&mut self, ty: u32, depth: usize) -> Option<()> {
        self.values = self.values.saturating_add(1);
        if let Some(size) = fixed_size(ty) {
            return self.skip(size);
        }
        match ty {
            8 => {
                let len = self.len()?;
                self.skip(len)
            }
            9 if depth < MAX_DEPTH => {
                let inner = self.u32()?;
                let len = self.len()?;
                if let Some(size) = fixed_size(inner) {
                    self.values = self.values.saturating_add(len);
                    self.skip(len.checked_mul(size)?)
                } else {
                    // Each element takes at least a length: the loop ends with the file.
                    for _ in 0..len {
                        self.value(inner, depth + 1)?;
                    }
                    Some(())
                }
            }
            _ => None,
        }
    }

    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.left < N as u64 {
            return None;
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).ok()?;
        self.left -= N as u64;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    /// A length or count: 32 bits in version 1, 64 after.
    fn len(&mut self) -> Option<u64> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.bytes::<8>().map(u64::from_le_bytes)
        }
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        if n > self.left {
            return None;
        }
        self.r.seek_relative(i64::try_from(n).ok()?).ok()?;
        self.left -= n;
        Some(())
    }
}

/// The size on disk of a value of type `ty` that has one (not strings, not arrays).
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}
