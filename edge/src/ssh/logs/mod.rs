//! PLACEHOLDER until the "logs" branch is merged: only the types of the
//! shared logs API (COMMON14.md) that `ssh::origin` and `ssh::terminal` name.
//! The "logs" helper's module replaces this file whole.

use std::path::{Path, PathBuf};

/// An HPKE X25519 public key.
#[derive(Debug, Clone)]
pub struct LogKey;

impl LogKey {
    pub fn from_base64(text: &str) -> Result<LogKey, LogError> {
        Err(LogError(format!(
            "{} bytes: command logs are not built yet",
            text.len()
        )))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    Shell,
    Exec(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pty {
    pub term: String,
    pub width: u32,
    pub height: u32,
    pub modes: Vec<(String, u32)>,
}

#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub id: String,
    pub email: String,
    pub app: String,
    pub client_addr: String,
    pub origin_addr: String,
    pub program: Program,
    pub pty: Option<Pty>,
}

#[derive(Debug, Clone, Default)]
pub struct ExitData {
    pub status: Option<u32>,
    pub signal: Option<String>,
    pub core_dumped: bool,
    pub error_msg: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionLog;

impl SessionLog {
    pub fn start(
        _logs_dir: &Path,
        _meta: SessionMeta,
        _key: &LogKey,
    ) -> Result<SessionLog, LogError> {
        Err(LogError("command logs are not built yet".into()))
    }
    pub fn record(&self, _source: Source, _code: u32, _data: &[u8]) -> Result<(), LogError> {
        Ok(())
    }
    pub fn set_pty(&self, _pty: Pty) {}
    pub fn finish(self, _exit: Option<ExitData>) -> Result<PathBuf, LogError> {
        Err(LogError("command logs are not built yet".into()))
    }
}

pub mod codes {
    pub const DATA: u32 = 94;
    pub const EXTENDED_DATA: u32 = 95;
}
