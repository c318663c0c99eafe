//! The operator's control socket: `DIR/control.sock` (mode 0600), one JSON
//! object per line each way.
//!
//! `access-edge revoke|rotate-keys|expire-previous-key|stats --state-dir DIR`
//! talk to a running edge through it. The socket also tells a second edge
//! started on the same state dir that the first one still runs.
//!
//! ```text
//! → {"cmd":"revoke","email":"alice@example.com"}
//! ← {"ok":true,"message":"revoked every token issued to alice@example.com so far"}
//! → {"cmd":"stats"}
//! ← {"ok":true,"message":"","counters":{"discovery":1,…},"total":3,"carried":{"total":1,…}}
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::edge::EdgeState;
use crate::error::EdgeError;
use crate::limits;
use crate::ops::counters::{CarrierStats, Endpoint};
use crate::ops::state::{StateDir, files};

/// A request to a running edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Refuse every token issued to `email` so far.
    Revoke { email: String },
    /// A new current signing key.
    RotateKeys,
    /// Drop the previous signing key.
    ExpirePreviousKey,
    /// The request counters.
    Stats,
}

/// A running edge's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<BTreeMap<Endpoint, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// With the counters: the carrier's connections and bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<CarrierStats>,
}

impl Reply {
    fn ok(message: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            message: message.into(),
            counters: None,
            total: None,
            carried: None,
        }
    }

    fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            ..Reply::ok(message)
        }
    }
}

/// Why a command could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "no access-edge is running with the state dir {0} (start one with `access-edge --state-dir {0}`)"
    )]
    NoEdge(PathBuf),
    #[error("cannot talk to the edge at {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Sends `command` to the edge running with the state dir `state_dir` and
/// waits for its reply (key rotation takes a moment).
pub fn send(state_dir: &Path, command: &Command) -> Result<Reply, ControlError> {
    let path = state_dir.join(files::CONTROL);
    let io = |e: &dyn std::fmt::Display| ControlError::Io {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NoEdge(state_dir.to_owned())
            }
            _ => io(&e),
        })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| io(&e))?;
    let mut line = serde_json::to_string(command).map_err(|e| io(&e))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(|e| io(&e))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| io(&e))?;
    serde_json::from_str(&answer).map_err(|e| io(&format!("unexpected answer ({e})")))
}

/// Refuses to start a second edge on a state dir whose edge still answers;
/// a socket left by a dead edge is removed.
pub(crate) fn ensure_not_running(state: &StateDir) -> Result<(), EdgeError> {
    let path = state.file(files::CONTROL);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(EdgeError::AlreadyRunning(state.path().to_owned()));
    }
    state.remove(files::CONTROL);
    Ok(())
}

/// Binds the control socket. An edge without one still serves (a state dir
/// path too long for a socket name, say), so that is a warning.
pub(crate) fn bind(state: &StateDir) -> Result<Option<tokio::net::UnixListener>, EdgeError> {
    let path = state.file(files::CONTROL);
    state.remove(files::CONTROL);
    match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| EdgeError::state(&path, format!("cannot restrict: {e}")))?;
            Ok(Some(listener))
        }
        Err(e) => {
            tracing::warn!(
                "no control socket at {} ({e}); revoke, rotate-keys and stats will not reach this edge",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Serves control connections until `stop` turns true.
pub(crate) async fn serve(
    listener: tokio::net::UnixListener,
    edge: Arc<EdgeState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, edge.clone()));
                }
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn connection(stream: tokio::net::UnixStream, edge: Arc<EdgeState>) {
    let (read, mut write) = stream.into_split();
    // Commands are tiny: a bound keeps a stray client from filling memory,
    // and a deadline per line from holding a task forever.
    let mut lines = tokio::io::BufReader::new(read.take(limits::CONTROL_INPUT)).lines();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(limits::CONTROL_IDLE, lines.next_line()).await
    {
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Command>(&line) {
            Ok(command) => run(&edge, command).await,
            Err(e) => Reply::error(format!("not a command: {e}")),
        };
        let mut out = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn run(edge: &Arc<EdgeState>, command: Command) -> Reply {
    match command {
        Command::Revoke { email } => {
            edge.revoke_user(&email);
            Reply::ok(format!("revoked every token issued to {email} so far"))
        }
        Command::RotateKeys => {
            let edge = edge.clone();
            match tokio::task::spawn_blocking(move || {
                edge.rotate_keys().map(|()| edge.keys.current_kid())
            })
            .await
            {
                Ok(Ok(kid)) => Reply::ok(format!(
                    "rotated the signing keys; the current kid is {kid}"
                )),
                Ok(Err(e)) => Reply::error(e.to_string()),
                Err(e) => Reply::error(format!("key rotation failed: {e}")),
            }
        }
        Command::ExpirePreviousKey => {
            edge.expire_previous_key();
            Reply::ok("dropped the previous signing key")
        }
        Command::Stats => Reply {
            counters: Some(edge.counters.snapshot()),
            total: Some(edge.counters.total()),
            carried: Some(edge.carried.snapshot()),
            ..Reply::ok("")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_a_stable_json_form() {
        assert_eq!(
            serde_json::to_string(&Command::Revoke {
                email: "a@b.c".into()
            })
            .unwrap(),
            r#"{"cmd":"revoke","email":"a@b.c"}"#
        );
        assert_eq!(
            serde_json::to_string(&Command::RotateKeys).unwrap(),
            r#"{"cmd":"rotate_keys"}"#
        );
        assert_eq!(
            serde_json::to_string(&Command::Stats).unwrap(),
            r#"{"cmd":"stats"}"#
        );
    }

    #[test]
    fn no_edge_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = send(dir.path(), &Command::Stats).unwrap_err().to_string();
        assert!(
            err.starts_with("no access-edge is running with the state dir"),
            "{err}"
        );
    }
}
