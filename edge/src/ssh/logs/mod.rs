//! SSH command logs in the capture format of Cloudflare's `ssh-log-cli`
//! (`docs/protocol.md 12`).
//!
//! A session the edge relays (the browser terminal, the audited ssh of
//! `audit_ssh` apps) is recorded packet by packet with [`SessionLog`]:
//! [`SessionLog::record`] only queues into a bounded buffer, and a writer
//! thread seals the queued packets into HPKE blocks for the app's
//! `ssh_log_public_key` and appends them to `<id>.capture.part`. The capture's
//! header comes first in the file but holds what is known only at the end
//! (`data_size`, `exit_data`, a PTY that came late), so [`SessionLog::finish`]
//! writes `<id>.capture` (header, then the blocks) through a temp file and a
//! rename, removes the `.part`, and appends the session's line to
//! `index.jsonl`. A crash leaves the `.part`, which `ssh-logs list` shows as
//! unfinished.
//!
//! Blocks hold whole packets (a packet larger than a block gets a block of
//! its own): ssh-log-cli's reader reads a packet's 4-byte length with one
//! `read`, which must not straddle more than one block boundary. A block is
//! sealed once [`BLOCK_SIZE`] bytes are queued, or when the oldest queued
//! packet has waited [`FLUSH_AFTER`], so a crash loses at most that much.
//!
//! The rest of the module reads what it writes: [`key`] (the key pair files
//! of `ssh-log-cli generate-key-pair`), [`capture`] (writing and decrypting),
//! [`index`] (`index.jsonl`) and [`replay`] (playback and asciicast v2).

pub mod capture;
pub mod index;
pub mod key;
pub mod replay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use capture::{Capture, Header, Packet};
pub use key::{LogKey, LogSecret, generate_key_pair};

/// The directory of the captures and `index.jsonl`, in a state dir.
pub fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh-logs")
}

/// Bytes of packets sealed together in one block.
pub const BLOCK_SIZE: usize = 64 * 1024;
/// How long a queued packet may wait before its block is sealed anyway.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// Bytes of packets that may wait for the writer; past this `record` fails.
pub const QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// Who sent a packet (its source byte in the capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The ssh client (the user): 0.
    Client,
    /// The origin's sshd: 1.
    Origin,
}

impl Source {
    pub fn byte(self) -> u8 {
        match self {
            Source::Client => 0,
            Source::Origin => 1,
        }
    }

    pub fn from_byte(byte: u8) -> Option<Source> {
        match byte {
            0 => Some(Source::Client),
            1 => Some(Source::Origin),
            _ => None,
        }
    }
}

/// The packet codes access-edge records: SSH message numbers (RFC 4254).
pub mod codes {
    /// SSH_MSG_CHANNEL_DATA: the terminal's bytes either way.
    pub const DATA: u32 = 94;
    /// SSH_MSG_CHANNEL_EXTENDED_DATA: the origin's stderr.
    pub const EXTENDED_DATA: u32 = 95;
    /// SSH_MSG_CHANNEL_REQUEST: recorded once, from the client, for an
    /// `exec` session, its data the command line.
    pub const CHANNEL_REQUEST: u32 = 98;
}

/// What the session runs on the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The user's login shell (`shell` channel request).
    Shell,
    /// One command (`exec` channel request).
    Exec(String),
}

impl Program {
    /// The program type as Cloudflare's logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Program::Shell => "shell",
            Program::Exec(_) => "exec",
        }
    }
}

/// The pseudo-terminal the client asked for (`pty-req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pty {
    pub term: String,
    pub width: u32,
    pub height: u32,
    /// Terminal modes by their RFC 4254 names (`ECHO`, …) and values.
    pub modes: Vec<(String, u32)>,
}

/// Who ran what, where: the index line and the capture's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// The session id, which names the files: letters, digits, `.`, `_`, `-`.
    pub id: String,
    pub email: String,
    /// The app's hostname.
    pub app: String,
    pub client_addr: String,
    pub origin_addr: String,
    pub program: Program,
    pub pty: Option<Pty>,
}

/// How the program ended (`exit-status` / `exit-signal`), or why the
/// session ended without either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitData {
    pub status: Option<u32>,
    pub signal: Option<String>,
    pub core_dumped: bool,
    pub error_msg: Option<String>,
}

/// What went wrong with a log. Every message is one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "ssh_log_public_key is not an HPKE X25519 public key (base64 of 32 bytes, as `access-edge ssh-logs keygen` writes to NAME.pub)"
    )]
    BadPublicKey,
    #[error(
        "{path}: not an HPKE X25519 private key (base64 of 32 bytes, as `access-edge ssh-logs keygen` writes)"
    )]
    BadPrivateKey { path: PathBuf },
    #[error("session id {0:?} cannot name a file: use letters, digits, '.', '_' and '-'")]
    BadId(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the session log's queue is full ({limit} bytes waiting for the disk): ending the session rather than leave it unlogged"
    )]
    QueueFull { limit: usize },
    #[error("writing the session log failed: {0}")]
    Writer(String),
    #[error("the session log is already finished")]
    Finished,
    #[error("packet of {0} bytes is too large for a capture")]
    PacketTooLarge(usize),
    #[error("sealing the session log failed: {0}")]
    Seal(String),
    #[error("{path}: not a capture: {reason}")]
    BadCapture { path: PathBuf, reason: String },
    #[error(
        "{path}: cannot decrypt: the key does not match the capture's public key, or the capture was altered"
    )]
    Decrypt { path: PathBuf },
}

impl LogError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> LogError {
        LogError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

/// One session's capture, open for recording. Cheap to clone; every clone
/// records into the same capture, and the first `finish` seals it.
#[derive(Clone)]
pub struct SessionLog {
    inner: Arc<capture::Recorder>,
}

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLog")
            .field("id", &self.inner.meta().id)
            .finish_non_exhaustive()
    }
}

impl SessionLog {
    /// Creates the capture (fails → the caller refuses the session and says so).
    pub fn start(logs_dir: &Path, meta: SessionMeta, key: &LogKey) -> Result<SessionLog, LogError> {
        SessionLog::start_with(logs_dir, meta, key, capture::Options::default())
    }

    pub(crate) fn start_with(
        logs_dir: &Path,
        meta: SessionMeta,
        key: &LogKey,
        options: capture::Options,
    ) -> Result<SessionLog, LogError> {
        let inner = capture::Recorder::start(logs_dir, meta, key, options)?;
        Ok(SessionLog {
            inner: Arc::new(inner),
        })
    }

    /// Never blocks on the disk: queues into a bounded buffer; Err when the
    /// buffer is full or the writer failed (the caller then ends the
    /// session: an audit log is never skipped).
    pub fn record(&self, source: Source, code: u32, data: &[u8]) -> Result<(), LogError> {
        self.inner.record(source, code, data)
    }

    /// Once the PTY is known (it may come after start).
    pub fn set_pty(&self, pty: Pty) {
        self.inner.set_pty(pty);
    }

    /// Seals the capture, writes the final file and its index.jsonl line.
    pub fn finish(self, exit: Option<ExitData>) -> Result<PathBuf, LogError> {
        self.inner.finish(exit)
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        &self.inner.meta().id
    }

    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes()
    }
}

/// Whether `id` can name a capture file.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The file names of a session's capture.
pub fn capture_name(id: &str) -> String {
    format!("{id}.capture")
}

pub fn part_name(id: &str) -> String {
    format!("{id}.capture.part")
}

#[cfg(test)]
mod tests;
