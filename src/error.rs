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
    #[error("tensor: {}", candle_message(.0))]
    Tensor(#[from] candle_core::Error),

    /// What was asked for needs more memory than this machine has (a model's size in a
    /// training config, say); names the fields that set it. Checked before allocating,
    /// because a failed allocation aborts the process instead of returning.
    #[error("out of memory: {0}")]
    OutOfMemory(String),

    /// A computation produced NaN or infinity: a training step's loss or gradient norm, or
    /// a model's scores. Nothing was written from it.
    #[error("non-finite value: {0}")]
    NonFinite(String),
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE`
/// is set: a user sees one line that says what was wrong, not the library's stack.
pub(crate) fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        other => other.to_string(),
    }
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
