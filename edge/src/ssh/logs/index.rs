//! `index.jsonl`: one JSON object per finished session, beside the
//! captures, so an operator finds a session without any key.
//!
//! It holds who, where and when, in the clear; what was typed or shown stays
//! sealed in the capture. That is why `program` is only `shell` or `exec`:
//! an exec command line can carry secrets (`mysql -pPASSWORD`), so it is
//! recorded inside the capture (code 98, from the client) and not here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{ExitData, LogError, SessionMeta, is_valid_id, part_name};

pub const INDEX_FILE: &str = "index.jsonl";

/// One line of `index.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub email: String,
    pub app: String,
    pub client_addr: String,
    pub origin_addr: String,
    /// RFC 3339, UTC, to the second.
    pub started_at: String,
    pub ended_at: String,
    /// `shell` or `exec`.
    pub program: String,
    /// The program's exit status, when it sent one.
    pub exit_status: Option<u32>,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    /// The capture's file name, in the same dir.
    pub capture: String,
}

impl Entry {
    pub(crate) fn new(
        meta: &SessionMeta,
        started: SystemTime,
        ended: SystemTime,
        exit: Option<&ExitData>,
        capture: &str,
    ) -> Entry {
        Entry {
            id: meta.id.clone(),
            email: meta.email.clone(),
            app: meta.app.clone(),
            client_addr: meta.client_addr.clone(),
            origin_addr: meta.origin_addr.clone(),
            started_at: humantime::format_rfc3339_seconds(started).to_string(),
            ended_at: humantime::format_rfc3339_seconds(ended).to_string(),
            program: meta.program.kind().to_owned(),
            exit_status: exit.and_then(|e| e.status),
            exit_signal: exit.and_then(|e| e.signal.clone()),
            capture: capture.to_owned(),
        }
    }
}

/// Appends one line, in one `write` on a file opened with O_APPEND, so
/// lines of sessions ending at once never interleave.
pub(crate) fn append(dir: &Path, entry: &Entry) -> Result<(), LogError> {
    let path = dir.join(INDEX_FILE);
    let mut line = serde_json::to_vec(entry).map_err(|e| LogError::Writer(e.to_string()))?;
    line.push(b'\n');
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| LogError::io("cannot open", &path, e))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::io("cannot append to", &path, e))
}

/// What a logs dir holds: the index's sessions, the captures left
/// unfinished, and the lines of the index that did not parse.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Session ids of `.capture.part` files (a crash or a kill mid-session).
    pub unfinished: Vec<String>,
    pub bad_lines: usize,
}

/// Reads `index.jsonl` and looks for `.part` files. A missing dir or index
/// is an empty listing.
pub fn list(dir: &Path) -> Result<Listing, LogError> {
    let mut listing = Listing::default();
    let path = dir.join(INDEX_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Entry>(line) {
                    Ok(entry) => listing.entries.push(entry),
                    Err(_) => listing.bad_lines += 1,
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io("cannot read", &path, e)),
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(id) = name.strip_suffix(".capture.part")
                    && is_valid_id(id)
                {
                    listing.unfinished.push(id.to_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io("cannot read", dir, e)),
    }
    listing.unfinished.sort();
    Ok(listing)
}

/// The capture file of session `id`: its index entry's, else `<id>.capture`;
/// an error says when only an unfinished `.part` exists.
pub fn find_capture(dir: &Path, id: &str) -> Result<PathBuf, LogError> {
    if !is_valid_id(id) {
        return Err(LogError::BadId(id.to_owned()));
    }
    let listing = list(dir)?;
    let name = listing
        .entries
        .iter()
        .rev()
        .find(|e| e.id == id)
        .map(|e| e.capture.clone())
        .unwrap_or_else(|| super::capture_name(id));
    let path = dir.join(&name);
    if path.is_file() && Path::new(&name).file_name() == Some(name.as_ref()) {
        return Ok(path);
    }
    let part = dir.join(part_name(id));
    let why = if part.exists() {
        "the session never finished (only its .part is there, with no header)"
    } else {
        "no such session: `access-edge ssh-logs list` shows the sessions"
    };
    Err(LogError::io(
        "no capture",
        &path,
        std::io::Error::new(std::io::ErrorKind::NotFound, why),
    ))
}
