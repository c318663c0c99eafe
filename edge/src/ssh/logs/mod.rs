//! STUB of the logs API (owned by the "logs" helper): only the shared
//! interface of COMMON14.md, so that `ssh::audit` builds before it lands.
//! Replaced wholesale by the real module at the merge.
#![allow(dead_code, unused_variables)]

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogError(String);

#[derive(Debug, Clone)]
pub struct LogKey(());
impl LogKey {
    pub fn from_base64(text: &str) -> Result<LogKey, LogError> {
        Err(LogError("ssh logs are not built yet".into()))
    }
}
pub enum Source {
    Client,
    Origin,
}
#[derive(Debug, Clone)]
pub enum Program {
    Shell,
    Exec(String),
}
#[derive(Debug, Clone)]
pub struct Pty {
    pub term: String,
    pub width: u32,
    pub height: u32,
    pub modes: Vec<(String, u32)>,
}
pub struct SessionMeta {
    pub id: String,
    pub email: String,
    pub app: String,
    pub client_addr: String,
    pub origin_addr: String,
    pub program: Program,
    pub pty: Option<Pty>,
}
pub struct ExitData {
    pub status: Option<u32>,
    pub signal: Option<String>,
    pub core_dumped: bool,
    pub error_msg: Option<String>,
}
#[derive(Clone)]
pub struct SessionLog(());
impl SessionLog {
    pub fn start(logs_dir: &Path, meta: SessionMeta, key: &LogKey) -> Result<SessionLog, LogError> {
        Err(LogError("ssh logs are not built yet".into()))
    }
    pub fn record(&self, source: Source, code: u32, data: &[u8]) -> Result<(), LogError> {
        Ok(())
    }
    pub fn set_pty(&self, pty: Pty) {}
    pub fn finish(self, exit: Option<ExitData>) -> Result<PathBuf, LogError> {
        Err(LogError("ssh logs are not built yet".into()))
    }
}
pub mod codes {
    pub const DATA: u32 = 94;
    pub const EXTENDED_DATA: u32 = 95;
}
