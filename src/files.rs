//! Reading the files a caller points the library at: checkpoints, configurations, data.
//!
//! A service passes paths it got from its own configuration, so a path may name anything:
//! a directory, a FIFO (opening it for reading blocks until a writer appears, forever in
//! practice), `/dev/zero` (endless), or a file far larger than what it claims to be.
//! Every file is therefore checked to be a regular file before it is opened, and read
//! no further than its size and the cap its kind allows. Each cause has one status:
//! reaching the file (missing, no permission, not a regular file) is `Io`; what is in it
//! (too large, not UTF-8, malformed) is `Format`.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Caps on what one file of each kind may hold; a larger one is malformed, not read.
/// Configurations and metadata (JSON and TOML).
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// `tokenizer.json` of large vocabularies runs to ~20 MB.
pub const MAX_TOKENIZER_BYTES: u64 = 512 << 20;
/// Data files: `items.tsv`, `sequences.jsonl`, evaluation results.
pub const MAX_DATA_BYTES: u64 = 8 << 30;

/// Checks that `path` is a regular file (after following symlinks) without opening it,
/// and returns its size. Used before handing a path to a reader that opens it itself
/// (memory maps, GGUF).
pub fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let what = if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file (a FIFO, socket or device)"
    };
    Err(Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {what}; expected a regular file"),
        ),
    ))
}

/// The whole of a regular file of at most `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>> {
    let size = regular_file(path)?;
    if size > max {
        return Err(too_large(path, size, max));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // One byte past the size tells a file that grew while we read it from one that did not.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max.min(size) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// The whole of a regular UTF-8 text file of at most `max` bytes.
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_bytes(path, max)?)
        .map_err(|e| Error::format(path, format!("not UTF-8 text: {e}")))
}

fn too_large(path: &Path, size: u64, max: u64) -> Error {
    Error::format(
        path,
        format!("{size} bytes, more than the {max} bytes a file of this kind may hold"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::patchrec_status_t::{self, *};

    fn status(e: &Error) -> patchrec_status_t {
        e.into()
    }

    #[test]
    fn odd_files_are_refused_before_they_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("config.json");
        std::fs::write(&text, "{}").unwrap();
        assert_eq!(read_text(&text, 10).unwrap(), "{}");

        let e = read_text(&text, 1).unwrap_err();
        assert_eq!(status(&e), PATCHREC_FORMAT, "{e}");
        assert!(e.to_string().contains("more than the 1 bytes"), "{e}");

        let e = read_text(dir.path(), 10).unwrap_err();
        assert_eq!(status(&e), PATCHREC_IO, "{e}");
        assert!(e.to_string().contains("is a directory"), "{e}");

        let e = read_text(&dir.path().join("missing"), 10).unwrap_err();
        assert_eq!(status(&e), PATCHREC_IO, "{e}");

        // /dev/zero would never end; it is a device, so it is never read.
        let e = read_bytes(Path::new("/dev/zero"), 1 << 30).unwrap_err();
        assert_eq!(status(&e), PATCHREC_IO, "{e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");

        let bad = dir.path().join("latin1.txt");
        std::fs::write(&bad, [0xe9u8, b'x']).unwrap();
        let e = read_text(&bad, 10).unwrap_err();
        assert_eq!(status(&e), PATCHREC_FORMAT, "{e}");
    }

    #[test]
    fn a_fifo_is_refused_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("tokenizer.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Opening it would block this thread forever; the test ending at all is the check.
        let e = read_bytes(&fifo, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
}
