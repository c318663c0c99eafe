//! The config dir and the names of the files in it (docs/protocol.md sections 3
//! and 7): `~/.cloudflared`, shared with the official client so a user can
//! switch between the two without logging in again.

use std::io;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::access::app_info::AppInfo;
use crate::platform::home;
use crate::platform::private_dir::{self, PrivateDirError};

/// Overrides the config dir (tests, or several identities side by side).
pub const ENV: &str = "CFACCESS_DIR";

/// The `--config-dir` of this process, if one was given.
static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Why the config dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDirError {
    #[error(
        "cannot find your home directory, so there is no ~/.cloudflared; set HOME or CFACCESS_DIR"
    )]
    NoHome,
    #[error("cannot create the config dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    /// Whoever owns the dir can read or swap the tokens in it.
    #[error("the config dir {path} is owned by uid {owner}, not by you (uid {me})")]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("cannot use the config dir {path}: {source}")]
    Check { path: PathBuf, source: io::Error },
}

/// Where tokens, key sets, keys and certificates live.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    path: PathBuf,
    is_default: bool,
}

impl ConfigDir {
    /// `--config-dir` (see [`Self::choose`]), else `$CFACCESS_DIR`, else `~/.cloudflared` (the home as the official
    /// client finds it, see [`home::home_dir`]). Nothing is created yet;
    /// if the dir exists, it must be ours and is made 0700 (see [`Self::secure`]).
    pub fn locate() -> Result<Self, ConfigDirError> {
        let chosen = CHOSEN.get().map(|d| d.as_os_str().to_owned());
        let dir =
            if let Some(dir) = chosen.or_else(|| std::env::var_os(ENV).filter(|d| !d.is_empty())) {
                // ssh-config prints this path, so make it absolute now.
                let path = std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir));
                ConfigDir {
                    path,
                    is_default: false,
                }
            } else {
                let home = home::home_dir().ok_or(ConfigDirError::NoHome)?;
                ConfigDir {
                    path: home.join(".cloudflared"),
                    is_default: true,
                }
            };
        match dir.secure() {
            Err(ConfigDirError::Check { source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        Ok(dir)
    }

    /// Makes `dir` the config dir of this process (`--config-dir`), in place
    /// of `CFACCESS_DIR` and the default; the first call wins.
    pub fn choose(dir: PathBuf) {
        let _ = CHOSEN.set(dir);
    }

    /// As OpenSSH does with keys: a dir of another user is refused, and one
    /// that others may enter is made 0700.
    fn secure(&self) -> Result<(), ConfigDirError> {
        match private_dir::secure_dir(&self.path) {
            Ok(true) => {
                debug!(path = %self.path.display(), "made the config dir 0700");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(PrivateDirError::ForeignOwner { owner, me }) => Err(ConfigDirError::ForeignOwner {
                path: self.path.clone(),
                owner,
                me,
            }),
            Err(PrivateDirError::Io(source)) => Err(ConfigDirError::Check {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// A config dir at `path` (tests).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ConfigDir {
            path: path.into(),
            is_default: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is `~/.cloudflared` (so `~/.cloudflared/…` names it in an
    /// ssh config) rather than a directory moved by `CFACCESS_DIR`.
    pub fn is_default(&self) -> bool {
        self.is_default
    }

    /// Creates the dir with mode 0700 when it is missing; its parent must
    /// exist. An existing dir is checked as [`Self::locate`] does.
    pub fn ensure(&self) -> Result<(), ConfigDirError> {
        match private_dir::create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.path.is_dir() => {
                self.secure()
            }
            Err(source) => Err(ConfigDirError::Create {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// `<app_hostname>-<aud>-token`, every `/` and `*` turned into `-`.
    pub fn app_token(&self, app: &AppInfo) -> PathBuf {
        let name = format!("{}-{}-token", app.app_hostname, app.aud);
        self.path.join(name.replace(['/', '*'], "-"))
    }

    /// `<auth domain>-org-token`.
    pub fn org_token(&self, auth_domain: &str) -> PathBuf {
        self.path
            .join(format!("{auth_domain}-org-token").replace('/', "-"))
    }

    /// `<auth domain>-jwks`, the cached key set.
    pub fn jwks(&self, auth_domain: &str) -> PathBuf {
        self.path
            .join(format!("{auth_domain}-jwks").replace('/', "-"))
    }

    /// `<stem>-metadata`: the signed app metadata last verified for a URL
    /// (cfaccess's own file; the official client ignores it).
    pub fn app_metadata(&self, key_stem: &str) -> PathBuf {
        self.path.join(format!("{key_stem}-metadata"))
    }

    /// `<stem>-cf_key`, the ssh private key for a host (see
    /// [`crate::access::host::AppUrl::key_stem`]); `.pub` and `-cert.pub` sit beside it.
    pub fn ssh_key(&self, key_stem: &str) -> PathBuf {
        self.path.join(format!("{key_stem}-cf_key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_files_like_the_official_client() {
        let dir = ConfigDir::at("/c");
        let app = AppInfo {
            auth_domain: "team.cloudflareaccess.com".into(),
            aud: "abc".into(),
            app_hostname: "*.example.com/admin".into(),
        };
        assert_eq!(
            dir.app_token(&app),
            Path::new("/c/-.example.com-admin-abc-token")
        );
        assert_eq!(
            dir.org_token("team.cloudflareaccess.com"),
            Path::new("/c/team.cloudflareaccess.com-org-token")
        );
        assert_eq!(
            dir.jwks("team.cloudflareaccess.com"),
            Path::new("/c/team.cloudflareaccess.com-jwks")
        );
        assert_eq!(
            dir.ssh_key("h.example-x"),
            Path::new("/c/h.example-x-cf_key")
        );
    }
}
