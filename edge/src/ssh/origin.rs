//! STUB of the origin API (owned by the "term" helper): only the shared
//! interface of COMMON14.md, so that `ssh::audit` builds before it lands.
//! Replaced wholesale by the real module at the merge.
#![allow(dead_code, unused_variables)]

use std::path::Path;
use std::time::Duration;

use super::logs;

pub(crate) struct OriginTarget<'a> {
    pub app_hostname: &'a str,
    pub origin: &'a str,
    pub email: &'a str,
    pub state_dir: &'a Path,
    pub cert_validity: Duration,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OriginError {
    #[error("the origin is down: {0}")]
    Down(String),
    #[error("the host key of {origin} changed")]
    HostKeyChanged {
        origin: String,
        pinned: String,
        offered: String,
    },
    #[error("no user {user} on the server")]
    NoUser { user: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Ssh(String),
}

pub(crate) struct Origin(());
pub(crate) struct OriginChannel(());
pub(crate) enum OriginEvent {
    Data(Vec<u8>),
    ExtendedData(Vec<u8>),
    ExitStatus(u32),
    ExitSignal {
        name: String,
        core_dumped: bool,
        message: String,
    },
    Eof,
}

pub(crate) async fn connect(target: OriginTarget<'_>) -> Result<Origin, OriginError> {
    Err(OriginError::Ssh("the origin API is not merged yet".into()))
}

impl Origin {
    pub async fn open(
        &self,
        pty: Option<&logs::Pty>,
        program: &logs::Program,
    ) -> Result<OriginChannel, OriginError> {
        Err(OriginError::Ssh("the origin API is not merged yet".into()))
    }
}

impl OriginChannel {
    pub async fn send(&self, data: &[u8]) -> Result<(), OriginError> {
        Ok(())
    }
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), OriginError> {
        Ok(())
    }
    pub async fn next(&mut self) -> Option<OriginEvent> {
        None
    }
    pub async fn close(&self) {}
}
