//! The state dir: what an edge keeps across restarts.
//!
//! It holds the local CA, the JWT signing keys, the login service's box key,
//! the generated auds, the Cloudflare API's account id and generated token,
//! and a copy of the config, so that a restarted edge is
//! the same edge to its clients (their trusted CA, cached JWKS and cached
//! tokens stay good). Files with private keys are 0600 and the directory
//! 0700; every file is replaced atomically. Without `--state-dir` the edge
//! uses a fresh temporary directory that goes away with it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::EdgeError;

/// File names inside the state dir.
pub(crate) mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca-key.pem";
    pub const SIGNING_CURRENT: &str = "signing-key-current.pem";
    pub const SIGNING_PREVIOUS: &str = "signing-key-previous.pem";
    pub const BOX_KEY: &str = "box-key";
    pub const AUDS: &str = "auds.json";
    pub const CONFIG: &str = "config.toml";
    pub const PROFILE: &str = "profile.json";
    pub const BROWSER: &str = "browser";
    pub const CONTROL: &str = "control.sock";
    /// The Cloudflare API's account id, generated or configured.
    pub const ACCOUNT_ID: &str = "account-id";
    /// The API token the edge made (when the config names none).
    pub const API_TOKEN: &str = "api-token";

    /// The long-lived secrets: what [`super::copy_secrets`] copies.
    pub const SECRETS: [&str; 6] = [
        CA_CERT,
        CA_KEY,
        SIGNING_CURRENT,
        SIGNING_PREVIOUS,
        BOX_KEY,
        API_TOKEN,
    ];
}

/// Mode for files holding private keys or service token secrets.
pub(crate) const SECRET: u32 = 0o600;

/// An open state dir; a temporary one is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl StateDir {
    /// Opens `path` (created with mode 0700 when missing), or a fresh
    /// temporary directory.
    pub fn open(path: Option<&Path>) -> Result<StateDir, EdgeError> {
        let Some(path) = path else {
            let temp = tempfile::Builder::new()
                .prefix("access-edge-")
                .tempdir()
                .map_err(|e| {
                    EdgeError::state(std::env::temp_dir(), format!("cannot create: {e}"))
                })?;
            return Ok(StateDir {
                path: temp.path().to_owned(),
                _temp: Some(temp),
            });
        };
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        "state dir {} can be read by other users; it holds private keys (chmod 700 it)",
                        path.display()
                    );
                }
            }
            Ok(_) => return Err(EdgeError::state(path, "exists and is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| EdgeError::state(path, format!("cannot create: {e}")))?;
            }
            Err(e) => return Err(EdgeError::state(path, format!("cannot open: {e}"))),
        }
        let path = std::fs::canonicalize(path)
            .map_err(|e| EdgeError::state(path, format!("cannot open: {e}")))?;
        // Fail now, with a clear message, rather than at the first key write.
        // (A uniquely named probe: edges and tests may open a dir at once.)
        tempfile::Builder::new()
            .prefix(".access-edge-probe")
            .tempfile_in(&path)
            .map_err(|e| EdgeError::state(&path, format!("cannot write: {e}")))?;
        Ok(StateDir { path, _temp: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory goes away with this edge.
    pub fn is_temporary(&self) -> bool {
        self._temp.is_some()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The content of `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, EdgeError> {
        let path = self.file(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EdgeError::state(path, format!("cannot read: {e}"))),
        }
    }

    /// The content of `name` as text, or `None` when it does not exist.
    pub fn read_string(&self, name: &str) -> Result<Option<String>, EdgeError> {
        match self.read(name)? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| EdgeError::state(self.file(name), "is not text")),
            None => Ok(None),
        }
    }

    /// Replaces `name` atomically with `data`, created with `mode`.
    pub fn write(&self, name: &str, data: &[u8], mode: u32) -> Result<(), EdgeError> {
        let path = self.file(name);
        cfaccess::platform::atomic_file::write(&path, data, mode)
            .map_err(|e| EdgeError::state(path, format!("cannot write: {e}")))
    }

    /// Removes `name` if it exists.
    pub fn remove(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.file(name))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", self.file(name).display());
        }
    }
}

/// Copies the long-lived secrets (local CA, JWT signing keys, box key, the
/// generated API token) of the
/// state dir `from` into the state dir `to` (created when missing).
///
/// RSA key generation is slow in unoptimised builds (about a second per key),
/// so a test suite that starts many edges can make one template state dir and
/// seed each edge's own state dir from it. Edges seeded from one template
/// share their keys and CA; auds, config and everything else stay their own.
pub fn copy_secrets(from: &Path, to: &Path) -> Result<(), EdgeError> {
    let target = StateDir::open(Some(to))?;
    for name in files::SECRETS {
        let source = from.join(name);
        match std::fs::read(&source) {
            Ok(bytes) => target.write(name, &bytes, SECRET)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EdgeError::state(source, format!("cannot read: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_dir_is_private_and_files_keep_their_mode() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("a/b");
        let state = StateDir::open(Some(&path)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        state.write("k", b"secret", SECRET).unwrap();
        let mode = std::fs::metadata(state.file("k"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(state.read("k").unwrap().unwrap(), b"secret");
        assert_eq!(state.read("missing").unwrap(), None);
        state.remove("k");
        state.remove("k");
        assert_eq!(state.read("k").unwrap(), None);
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("f");
        std::fs::write(&path, "").unwrap();
        let err = StateDir::open(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn a_temporary_state_dir_goes_away() {
        let state = StateDir::open(None).unwrap();
        let path = state.path().to_owned();
        assert!(state.is_temporary());
        assert!(path.is_dir());
        drop(state);
        assert!(!path.exists());
    }

    #[test]
    fn secrets_are_copied_and_nothing_else() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join(files::CA_KEY), "key").unwrap();
        std::fs::write(from.path().join(files::AUDS), "{}").unwrap();
        copy_secrets(from.path(), to.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.path().join(files::CA_KEY)).unwrap(),
            "key"
        );
        assert!(!to.path().join(files::AUDS).exists());
    }
}
