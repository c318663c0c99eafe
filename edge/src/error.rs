//! The errors an edge reports when it cannot start or cannot do what it was
//! asked. Each message is one line that says what went wrong and, where the
//! operator can act, what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::ops::config::ConfigError;

/// Why an edge could not start, or an operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is not valid (the message names the file and line).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state dir cannot be created, read or written.
    #[error("state dir {path}: {message}")]
    State { path: PathBuf, message: String },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    /// An option is not usable (the message names it).
    #[error("{0}")]
    Usage(String),
    /// Another edge already serves this state dir.
    #[error(
        "another access-edge is already running with the state dir {0} (stop it, or use another --state-dir)"
    )]
    AlreadyRunning(PathBuf),
    /// Keys or certificates could not be made or read.
    #[error("{0}")]
    Crypto(String),
    /// The runtime or another OS resource could not be set up.
    #[error("{0}")]
    Runtime(String),
}

impl EdgeError {
    pub(crate) fn state(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        EdgeError::State {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn crypto(what: &str, err: impl std::fmt::Display) -> Self {
        EdgeError::Crypto(format!("{what}: {err}"))
    }

    /// Whether the error comes from the operator's input (config, arguments),
    /// which the binary reports with exit status 2 like other usage errors.
    pub fn is_usage(&self) -> bool {
        matches!(self, EdgeError::Config(_) | EdgeError::Usage(_))
    }
}
