//! The one error type of framestream.

use std::path::PathBuf;

/// Everything that can go wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable compute device, or the device failed.
    #[error("device: {0}")]
    Device(String),

    /// A parameter outside its domain (chunk size 0, scale ≤ 0, …).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// Frames of the wrong shape: zero-size, mismatched sizes, wrong buffer length.
    #[error("invalid shape: {0}")]
    InvalidShape(String),

    /// Frame values that break the contract (NaN, infinities, outside [0, 1]).
    #[error("invalid frame {frame}: {message}")]
    InvalidFrame { frame: u64, message: String },

    /// A stage or source broke the stream contract (an empty or oversized chunk, a gap).
    #[error("stream contract broken by `{stage}`: {message}")]
    Contract { stage: String, message: String },

    /// The stream has more frames than the sink accepts.
    #[error("more than {limit} frames: raise the limit or stream to a file instead")]
    FrameLimit { limit: u64 },

    /// The output exists and overwriting was not asked for.
    #[error("{} already exists (pass overwrite to replace it)", .0.display())]
    OutputExists(PathBuf),

    /// A weight file that cannot be used (unknown format or model, a missing or mis-shaped
    /// tensor).
    #[error("{}: {message}", .path.display())]
    Weights { path: PathBuf, message: String },

    /// A latent file that cannot be decoded (wrong rank, no latent, non-finite values).
    #[error("{}: {message}", .path.display())]
    Latent { path: PathBuf, message: String },

    /// A video file that cannot be read or written, with the frame where known.
    #[error("{}{}: {message}", .path.display(), .frame.map(|f| format!(", frame {f}")).unwrap_or_default())]
    Video { path: PathBuf, frame: Option<u64>, message: String },

    /// An I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The error that ended a stream several consumers share (a [`Tee`](crate::stage::Tee)):
    /// each receives it.
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),

    /// The work was stopped because its consumer dropped the stream (seen only by code that
    /// runs on after the drop, such as a stage's own cleanup).
    #[error("cancelled")]
    Cancelled,

    /// An error raised by user code inside a stage (`map`, a custom stage).
    #[error("stage `{stage}`: {source}")]
    Stage {
        stage: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::InvalidConfig(message.into())
    }

    #[cfg(feature = "video")]
    pub(crate) fn video(path: &std::path::Path, frame: Option<u64>, message: impl Into<String>) -> Self {
        Error::Video { path: path.to_path_buf(), frame, message: message.into() }
    }

    pub(crate) fn shape(message: impl Into<String>) -> Self {
        Error::InvalidShape(message.into())
    }

    /// Wraps an error raised by user code in stage `stage`.
    pub fn stage(
        stage: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Stage { stage: stage.into(), source: source.into() }
    }
}
