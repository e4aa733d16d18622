//! The library's one error type. Every variant maps to a stable C status code
//! (`ffi::status`), so the kind of failure survives the trip across the ABI.

use std::path::PathBuf;

/// `std::result::Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library. Each variant maps to a stable status code
/// of the C ABI, so the kind of failure survives the trip across it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied value is out of range or inconsistent (k = 0, L = 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint, GGUF file or data file is malformed: names the file and what was wrong.
    #[error("{}: {message}", path.display())]
    Format {
        /// The malformed file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },

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
    Tensor(TensorError),

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

/// A failed tensor operation. Opaque, so the tensor library the crate runs on stays out
/// of its API; `Display` says what failed, and `source()` reaches the original error.
#[derive(Debug)]
pub struct TensorError(Box<candle_core::Error>);

impl std::fmt::Display for TensorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&candle_message(&self.0))
    }
}

impl std::error::Error for TensorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl From<candle_core::Error> for Error {
    fn from(error: candle_core::Error) -> Self {
        Error::Tensor(TensorError(Box::new(error)))
    }
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
    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Format`] in the file `path`, saying what was wrong.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::InvalidArgument`] saying what was wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }
}
