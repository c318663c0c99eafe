//! The edge profile: how `CFACCESS_EDGE` points cfaccess at a local `access-edge`.
//!
//! `access-edge` writes a small JSON file holding its CA certificate and the
//! socket address of every name it serves. With it, cfaccess trusts that CA
//! (alone) for those names and sends them to those addresses; the
//! URLs, the `.cloudflareaccess.com` suffix check and every code path stay the
//! same as against the real edge. This module owns the format, so the writer
//! (the edge) and the reader (the client) cannot drift apart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::platform::atomic_file;

/// The environment variable that names an edge profile.
pub const ENV: &str = "CFACCESS_EDGE";

/// What an edge profile holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeProfile {
    /// The edge's CA certificate, PEM.
    pub ca_cert: String,
    /// Each served host name (lower case; `*.example.com` for a wildcard app)
    /// and the address that answers for it.
    pub hosts: BTreeMap<String, SocketAddr>,
    /// The Cloudflare API the edge serves at `api.cloudflare.com`: the
    /// team's account id and an API token that can read and edit its Access
    /// apps, for scripts (cfaccess itself reads them only from
    /// `CLOUDFLARE_ACCOUNT_ID` and `CLOUDFLARE_API_TOKEN` or its flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ProfileApi>,
    /// The audited apps (docs/protocol.md 14), each hostname with the public
    /// key of the SSH host CA the edge signs its host key with, as OpenSSH
    /// writes it: `cfaccess ssh-config` prints the `@cert-authority` line
    /// from this, with no request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audited_ssh: BTreeMap<String, String>,
}

/// The edge's Cloudflare API, as its profile names it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileApi {
    pub account_id: String,
    /// An API token allowed to read and edit Access apps.
    pub token: String,
}

impl std::fmt::Debug for ProfileApi {
    // The token stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileApi")
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// Why a profile could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the edge profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: crate::platform::read::ReadError,
    },
    #[error("the edge profile {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the edge profile {path} holds no CA certificate")]
    NoCa { path: PathBuf },
    #[error("cannot write the edge profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EdgeProfile {
    /// Reads the profile at `path`.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = crate::platform::read::read_capped_string(path, crate::limits::EDGE_PROFILE)
            .map_err(|source| ProfileError::Read {
                path: path.to_owned(),
                source,
            })?;
        let profile: EdgeProfile =
            serde_json::from_str(&text).map_err(|source| ProfileError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if !profile.ca_cert.contains("BEGIN CERTIFICATE") {
            return Err(ProfileError::NoCa {
                path: path.to_owned(),
            });
        }
        Ok(profile)
    }

    /// Reads the profile named by `CFACCESS_EDGE`, if that is set and not empty.
    pub fn from_env() -> Result<Option<Self>, ProfileError> {
        match std::env::var_os(ENV) {
            Some(path) if !path.is_empty() => Self::load(Path::new(&path)).map(Some),
            _ => Ok(None),
        }
    }

    /// Writes the profile atomically (a temp file in the same directory, then a
    /// rename), so a script waiting for the file never reads half of it; 0600
    /// when it holds an API token, else 0644.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::from);
        if let Ok(json) = &mut json {
            json.push(b'\n');
        }
        let mode = if self.api.is_some() { 0o600 } else { 0o644 };
        json.and_then(|json| atomic_file::write(path, &json, mode))
            .map_err(|source| ProfileError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// The address that answers for `host`: an exact entry first, then the
    /// wildcard entry with the longest matching suffix.
    pub fn address_for(&self, host: &str) -> Option<SocketAddr> {
        by_host(&self.hosts, host).copied()
    }

    /// The host CA key of `host` when it is an audited app, found as
    /// [`EdgeProfile::address_for`] finds addresses.
    pub fn audited_host_ca(&self, host: &str) -> Option<&str> {
        by_host(&self.audited_ssh, host).map(String::as_str)
    }
}

/// The entry of `map` for `host`: its own, else the wildcard with the
/// longest matching suffix.
fn by_host<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<&'a V> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(value) = map.get(&host) {
        return Some(value);
    }
    map.iter()
        .filter(|(pattern, _)| wildcard_matches(pattern, &host))
        .max_by_key(|(pattern, _)| pattern.len())
        .map(|(_, value)| value)
}

/// Whether `host` falls under the wildcard `pattern` (`*.example.com` matches
/// `a.example.com` and `a.b.example.com`, not `example.com`). Both sides are
/// compared case-insensitively; a pattern without a leading `*.` never matches.
pub fn wildcard_matches(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    let host = host.trim_end_matches('.');
    host.len() > suffix.len() + 1
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> EdgeProfile {
        let mut hosts = BTreeMap::new();
        hosts.insert("ssh.demo.test".into(), "127.0.0.1:1".parse().unwrap());
        hosts.insert("*.demo.test".into(), "127.0.0.1:2".parse().unwrap());
        hosts.insert("*.deep.demo.test".into(), "127.0.0.1:3".parse().unwrap());
        EdgeProfile {
            ca_cert: "-----BEGIN CERTIFICATE-----".into(),
            hosts,
            api: None,
            audited_ssh: BTreeMap::new(),
        }
    }

    #[test]
    fn exact_names_win_over_wildcards() {
        let p = profile();
        assert_eq!(
            p.address_for("SSH.demo.test."),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            p.address_for("web.demo.test"),
            Some("127.0.0.1:2".parse().unwrap())
        );
        assert_eq!(
            p.address_for("a.deep.demo.test"),
            Some("127.0.0.1:3".parse().unwrap())
        );
        assert_eq!(p.address_for("demo.test"), None);
        assert_eq!(p.address_for("xdemo.test"), None);
    }

    #[test]
    fn wildcards_need_a_label_before_the_suffix() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(wildcard_matches("*.example.com", "a.b.EXAMPLE.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("*.example.com", "aexample.com"));
        assert!(!wildcard_matches("example.com", "example.com"));
    }
}
