//! Reaching the running ssh-agent, as `ssh-add` does: the Unix socket named
//! by `SSH_AUTH_SOCK`; on Windows the named pipe it names, else
//! `\\.\pipe\openssh-ssh-agent`, where Win32-OpenSSH's agent service
//! listens. The stream is blocking: ssh-gen asks the agent one or two
//! things and exits, so a runtime would only cost start-up time.

use std::io::{self, Read, Write};
use std::time::Duration;

/// Names the agent's socket (or pipe).
pub const ENV: &str = "SSH_AUTH_SOCK";

/// A connection to the agent.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Why no agent could be reached.
#[derive(Debug, thiserror::Error)]
pub enum AgentSocketError {
    #[error("no ssh-agent is running here ({ENV} is not set)")]
    NotSet,
    #[error("cannot reach the ssh-agent at {path}: {source}")]
    Connect { path: String, source: io::Error },
}

/// Connects to the agent; every read and write waits `deadline` at most
/// (on Unix; a Windows pipe has no such timeout, and its agent is a local
/// service that answers at once).
pub fn connect(deadline: Duration) -> Result<Box<dyn Stream>, AgentSocketError> {
    let path = std::env::var_os(ENV).filter(|p| !p.is_empty());
    imp::connect(path, deadline)
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::net::UnixStream;

    pub(super) fn connect(
        path: Option<std::ffi::OsString>,
        deadline: Duration,
    ) -> Result<Box<dyn Stream>, AgentSocketError> {
        let path = path.ok_or(AgentSocketError::NotSet)?;
        let err = |source| AgentSocketError::Connect {
            path: path.to_string_lossy().into_owned(),
            source,
        };
        let stream = UnixStream::connect(&path).map_err(err)?;
        stream.set_read_timeout(Some(deadline)).map_err(err)?;
        stream.set_write_timeout(Some(deadline)).map_err(err)?;
        Ok(Box::new(stream))
    }
}

#[cfg(windows)]
mod imp {
    use super::*;

    /// Where Win32-OpenSSH's ssh-agent service listens when `SSH_AUTH_SOCK` is unset.
    const DEFAULT_PIPE: &str = r"\\.\pipe\openssh-ssh-agent";

    pub(super) fn connect(
        path: Option<std::ffi::OsString>,
        _deadline: Duration,
    ) -> Result<Box<dyn Stream>, AgentSocketError> {
        let path = path.unwrap_or_else(|| DEFAULT_PIPE.into());
        // a named pipe opens as a file, read and write, as ssh-add opens it
        let pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| AgentSocketError::Connect {
                path: path.to_string_lossy().into_owned(),
                source,
            })?;
        Ok(Box::new(pipe))
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    use super::*;

    pub(super) fn connect(
        _path: Option<std::ffi::OsString>,
        _deadline: Duration,
    ) -> Result<Box<dyn Stream>, AgentSocketError> {
        Err(AgentSocketError::NotSet)
    }
}
