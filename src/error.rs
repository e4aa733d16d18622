//! The library's one error type. Every variant maps to a stable C status code
//! (`ffi::status`), so the kind of failure survives the trip across the ABI.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied value is out of range or inconsistent (k = 0, L = 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint, GGUF file or data file is malformed: names the file and what was wrong.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// The checkpoint describes a model this library does not run.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// An item id that the catalogue does not hold.
    #[error("unknown item id {0}")]
    UnknownItem(u64),

    /// An item id registered twice in one catalogue.
    #[error("item id {0} is already in the catalogue")]
    DuplicateItem(u64),

    /// The tokenizer failed on some text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
