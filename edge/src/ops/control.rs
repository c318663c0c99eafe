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
//! → {"cmd":"fault","fault":"cut_after","bytes":4096}
//! ← {"ok":true,"message":"carried connections are cut once they sent 4096 bytes to their client"}
//! ```
//!
//! `fault` sets the faults of `ops::faults` in a running edge, for operators
//! rehearsing failures offline (`access-edge fault …`).

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
use crate::ops::faults::{ApiFault, CertSignFault, Faults, MetadataFault};
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
    /// Set, list or clear a fault.
    Fault(FaultCommand),
}

/// A fault to set in a running edge (see `ops::faults`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultCommand {
    /// Transfer polls answer `status` (`fail`), never answer (`stall`), or
    /// work (`ok`); `count` polls, or every poll until `ok`.
    LoginService {
        mode: LoginServiceMode,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        status: Option<u16>,
    },
    /// Cut carried connections once they sent `bytes` to their client
    /// (`None`: stop).
    CutAfter { bytes: Option<u64> },
    /// Answer websocket upgrades with the 502 of a refused origin.
    Origin { refuse: bool },
    /// Wait before answering each websocket upgrade (0: answer at once).
    HandshakeDelay { millis: u64 },
    /// What `cert_sign` answers instead (`kind`: a name of
    /// `CertSignFault::NAMES`, or `ok`).
    CertSign {
        kind: String,
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        message: Option<String>,
    },
    /// The flaw put into app metadata (`kind`: a name of
    /// `MetadataFault::ALL`, or `ok`).
    Metadata { kind: String },
    /// Seconds added to every `Date` header (negative: behind; 0: none).
    DateSkew { seconds: i64 },
    /// What the Cloudflare API answers instead (`kind`: a name of
    /// `ApiFault::NAMES`, or `off`; `status` for `status`).
    Api {
        kind: String,
        #[serde(default)]
        status: Option<u16>,
    },
    /// The faults in force.
    List,
    /// Every fault off.
    Clear,
}

/// What the login service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginServiceMode {
    Fail,
    Stall,
    Ok,
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
        Command::Fault(fault) => {
            let reply = set_fault(&edge.faults, fault);
            if reply.ok {
                tracing::info!("fault: {}", reply.message);
            }
            reply
        }
    }
}

/// Applies a fault command; the reply says what is now in force.
fn set_fault(faults: &Faults, command: FaultCommand) -> Reply {
    match command {
        FaultCommand::LoginService {
            mode,
            count,
            status,
        } => {
            let count = count.unwrap_or(u32::MAX);
            let polls = if count == u32::MAX {
                "every transfer poll until `fault login-service ok`".to_owned()
            } else {
                format!("the next {count} transfer polls")
            };
            match mode {
                LoginServiceMode::Fail => {
                    let status = status.unwrap_or(503);
                    if !(100..=599).contains(&status) {
                        return Reply::error(format!("{status} is not an HTTP status"));
                    }
                    faults.fail_login_service(count, status);
                    Reply::ok(format!("the login service answers {status} to {polls}"))
                }
                LoginServiceMode::Stall => {
                    faults.stall_login_service(count);
                    Reply::ok(format!("the login service never answers {polls}"))
                }
                LoginServiceMode::Ok => {
                    faults.fail_login_service(0, 0);
                    faults.stall_login_service(0);
                    Reply::ok("the login service answers normally")
                }
            }
        }
        FaultCommand::CutAfter { bytes } => {
            faults.cut_websockets_after(bytes);
            Reply::ok(match bytes {
                Some(n) => {
                    format!("carried connections are cut once they sent {n} bytes to their client")
                }
                None => "carried connections are no longer cut".to_owned(),
            })
        }
        FaultCommand::Origin { refuse } => {
            faults.refuse_origin(refuse);
            Reply::ok(if refuse {
                "websocket upgrades get 502: the origin refuses"
            } else {
                "websocket upgrades reach their origin"
            })
        }
        FaultCommand::HandshakeDelay { millis } => {
            let delay = (millis > 0).then(|| Duration::from_millis(millis));
            faults.delay_handshake(delay);
            Reply::ok(match delay {
                Some(d) => format!(
                    "websocket upgrades are answered after {}",
                    humantime::format_duration(d)
                ),
                None => "websocket upgrades are answered at once".to_owned(),
            })
        }
        FaultCommand::CertSign {
            kind,
            status,
            message,
        } => {
            if kind == "ok" {
                faults.set_cert_sign_fault(None);
                return Reply::ok("cert_sign answers normally");
            }
            let message = message.unwrap_or_else(|| "cert_sign fault".to_owned());
            match CertSignFault::from_name(&kind, status.unwrap_or(500), &message) {
                Some(fault) => {
                    faults.set_cert_sign_fault(Some(fault));
                    Reply::ok(format!("cert_sign answers {kind}"))
                }
                None => Reply::error(format!(
                    "no cert_sign fault {kind:?} (one of: {}, ok)",
                    CertSignFault::NAMES.join(", ")
                )),
            }
        }
        FaultCommand::Metadata { kind } => {
            if kind == "ok" {
                faults.set_metadata_fault(None);
                return Reply::ok("app metadata is signed normally");
            }
            match MetadataFault::from_name(&kind) {
                Some(fault) => {
                    faults.set_metadata_fault(Some(fault));
                    Reply::ok(format!("app metadata carries the fault {kind}"))
                }
                None => Reply::error(format!(
                    "no metadata fault {kind:?} (one of: {}, ok)",
                    MetadataFault::ALL.map(|(_, n)| n).join(", ")
                )),
            }
        }
        FaultCommand::Api { kind, status } => {
            if kind == "off" {
                faults.set_api_fault(None);
                return Reply::ok("the Cloudflare API answers normally");
            }
            let status = status.unwrap_or(502);
            if !(100..=599).contains(&status) {
                return Reply::error(format!("{status} is not an HTTP status"));
            }
            match ApiFault::from_name(&kind, status) {
                Some(fault) => {
                    faults.set_api_fault(Some(fault));
                    Reply::ok(match fault {
                        ApiFault::Garbage => {
                            "the Cloudflare API answers 200 with a body that is not JSON".to_owned()
                        }
                        ApiFault::Status(status) => {
                            format!("the Cloudflare API answers {status} with an HTML page")
                        }
                        _ => "the Cloudflare API never answers".to_owned(),
                    })
                }
                None => Reply::error(format!(
                    "no api fault {kind:?} (one of: {}, off)",
                    ApiFault::NAMES.join(", ")
                )),
            }
        }
        FaultCommand::DateSkew { seconds } => {
            faults.skew_date(seconds);
            Reply::ok(if seconds == 0 {
                "Date headers tell the right time".to_owned()
            } else {
                format!("Date headers are {seconds:+}s off")
            })
        }
        FaultCommand::List => {
            let lines = faults.describe();
            Reply::ok(if lines.is_empty() {
                "no faults".to_owned()
            } else {
                lines.join("\n")
            })
        }
        FaultCommand::Clear => {
            faults.clear();
            Reply::ok("every fault cleared")
        }
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
        assert_eq!(
            serde_json::to_string(&Command::Fault(FaultCommand::CutAfter { bytes: Some(9) }))
                .unwrap(),
            r#"{"cmd":"fault","fault":"cut_after","bytes":9}"#
        );
        let back: Command =
            serde_json::from_str(r#"{"cmd":"fault","fault":"login_service","mode":"stall"}"#)
                .unwrap();
        assert_eq!(
            back,
            Command::Fault(FaultCommand::LoginService {
                mode: LoginServiceMode::Stall,
                count: None,
                status: None
            })
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
