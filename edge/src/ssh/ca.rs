//! Per-app SSH certificate authorities (docs/protocol.md 7.6): the key that signs
//! an app's short-lived certificates, and the one line an sshd trusts it by.
//!
//! As with the dashboard's "Generate certificate" button, an app has a CA
//! only once someone asks for one (`access-edge ca generate`,
//! [`crate::Edge::generate_ca`]). It is then kept for good in the state dir:
//! `ssh-ca/<app>.key` (an OpenSSH private key, 0600, so `ssh-keygen -s` can
//! use it too) and `ssh-ca/<app>.pub` (the line for the file named by sshd's
//! `TrustedUserCAKeys`), a wildcard's `*` written as `_`, which no host name
//! holds. Making a CA never replaces one, not even when two commands race:
//! every sshd trusting the old key would refuse the new certificates.
//!
//! The API's `DELETE …/ca` removes a CA ([`remove`]); an operator who
//! does so must also take it out of every sshd's `TrustedUserCAKeys`.
//!
//! A running edge reads the CA from the state dir at each `cert_sign` (a
//! small file and a key parse, against a request that comes once per
//! certificate), so a CA made by the command while the edge runs is used at
//! once, with no reload to ask for.

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::error::EdgeError;
use crate::ops::config::Config;
use crate::ops::state::StateDir;
use crate::site::{named, normalize_app_hostname};

/// The directory of the CAs inside the state dir.
const DIR: &str = "ssh-ca";

/// The key type of a new CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaKeyType {
    /// ECDSA on NIST P-256: what the one real CA on record uses.
    #[default]
    Ecdsa,
    /// Ed25519.
    Ed25519,
}

impl CaKeyType {
    fn algorithm(self) -> Algorithm {
        match self {
            CaKeyType::Ecdsa => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            CaKeyType::Ed25519 => Algorithm::Ed25519,
        }
    }

    fn of(algorithm: &Algorithm) -> Option<CaKeyType> {
        match algorithm {
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            } => Some(CaKeyType::Ecdsa),
            Algorithm::Ed25519 => Some(CaKeyType::Ed25519),
            _ => None,
        }
    }

    /// The name on the command line: `ecdsa` or `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            CaKeyType::Ecdsa => "ecdsa",
            CaKeyType::Ed25519 => "ed25519",
        }
    }

    /// What people call it.
    pub fn description(self) -> &'static str {
        match self {
            CaKeyType::Ecdsa => "ECDSA P-256",
            CaKeyType::Ed25519 => "Ed25519",
        }
    }
}

impl std::fmt::Display for CaKeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CaKeyType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "ecdsa" => Ok(CaKeyType::Ecdsa),
            "ed25519" => Ok(CaKeyType::Ed25519),
            _ => Err(format!("{text:?} is not a CA key type (ecdsa or ed25519)")),
        }
    }
}

/// One app's CA, as read from the state dir.
pub struct SshCa {
    app: String,
    key: PrivateKey,
    key_type: CaKeyType,
    path: PathBuf,
}

impl std::fmt::Debug for SshCa {
    // The private key stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshCa")
            .field("app", &self.app)
            .field("key_type", &self.key_type)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SshCa {
    /// The app's hostname as configured (may start with `*.`).
    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn key_type(&self) -> CaKeyType {
        self.key_type
    }

    /// Where the private key is kept.
    pub fn key_path(&self) -> &Path {
        &self.path
    }

    /// The `authorized_keys`-style line for `TrustedUserCAKeys`, without a
    /// newline: `ecdsa-sha2-nistp256 AAAA… access-edge CA for <app>`.
    pub fn public_line(&self) -> String {
        let public = PublicKey::new(
            self.key.public_key().key_data().clone(),
            format!("access-edge CA for {}", self.app),
        );
        // Encoding a key that was just parsed cannot fail; fall back to the
        // bare key rather than panic.
        public.to_openssh().unwrap_or_default()
    }

    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Generated {
    pub ca: SshCa,
    /// False when the app already had this CA.
    pub created: bool,
}

/// The configured hostname (normalized) of the app of `config` named `app`
/// (as configured, `*.x.test` included) or protecting the host `app`.
pub fn app_hostname(config: &Config, app: &str) -> Option<String> {
    let hostnames: Vec<String> = config
        .apps
        .iter()
        .map(|a| normalize_app_hostname(&a.hostname))
        .collect();
    named(hostnames.iter().map(String::as_str), app).map(|i| hostnames[i].clone())
}

/// The file name of an app's CA key in the state dir.
fn key_path(state_dir: &Path, app: &str) -> PathBuf {
    state_dir
        .join(DIR)
        .join(format!("{}.key", app.replace('*', "_").replace('/', "-")))
}

/// The CA of the app `app` (a configured hostname) kept in `state_dir`, if
/// it has one.
pub fn load(state_dir: &Path, app: &str) -> Result<Option<SshCa>, EdgeError> {
    load_from(&key_path(state_dir, app), app)
}

/// The CA whose key is at `path`, if the file exists.
fn load_from(path: &Path, app: &str) -> Result<Option<SshCa>, EdgeError> {
    let path = path.to_owned();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EdgeError::state(path, format!("cannot read: {e}"))),
    };
    let key = PrivateKey::from_openssh(text.trim())
        .map_err(|e| EdgeError::state(&path, format!("not an OpenSSH private key ({e})")))?;
    if key.is_encrypted() {
        return Err(EdgeError::state(
            path,
            "is encrypted: access-edge needs an SSH CA key without a passphrase",
        ));
    }
    let Some(key_type) = CaKeyType::of(&key.algorithm()) else {
        return Err(EdgeError::state(
            path,
            format!(
                "holds a {} key: access-edge signs with ECDSA P-256 or Ed25519 CAs",
                key.algorithm()
            ),
        ));
    };
    Ok(Some(SshCa {
        app: app.to_owned(),
        key,
        key_type,
        path,
    }))
}

/// Makes the CA of the app `app` (a configured hostname) in `state_dir`
/// (created 0700 when missing) unless it has one, and returns it. A
/// `key_type` that differs from an existing CA's is an error, never a new
/// key; `None` takes whatever exists, else ECDSA P-256.
pub fn generate(
    state_dir: &Path,
    app: &str,
    key_type: Option<CaKeyType>,
) -> Result<Generated, EdgeError> {
    let state = StateDir::open(Some(state_dir))?;
    let dir = state.file(DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| EdgeError::state(&dir, format!("cannot create: {e}")))?;
    let state_dir = state.path();
    let created = match load(state_dir, app)? {
        Some(_) => false,
        None => create(state_dir, app, key_type.unwrap_or_default())?,
    };
    // Another process may have won a race to create it: read what is kept.
    let Some(ca) = load(state_dir, app)? else {
        return Err(EdgeError::state(
            key_path(state_dir, app),
            "vanished right after it was made",
        ));
    };
    if let Some(wanted) = key_type
        && wanted != ca.key_type
    {
        return Err(EdgeError::Usage(format!(
            "{app} already has an {} SSH CA ({}), not {}: it stays, since every sshd trusting it would refuse a new one (remove that file to start over, then update TrustedUserCAKeys everywhere)",
            ca.key_type.description(),
            ca.path.display(),
            wanted.description(),
        )));
    }
    // The public line beside it, for `TrustedUserCAKeys`; derived, so it is
    // simply rewritten.
    let pub_path = ca.path.with_extension("pub");
    let line = format!("{}\n", ca.public_line());
    if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(line.as_str()) {
        cfaccess::platform::atomic_file::write(&pub_path, line.as_bytes(), 0o644)
            .map_err(|e| EdgeError::state(&pub_path, format!("cannot write: {e}")))?;
    }
    Ok(Generated { ca, created })
}

/// Removes the CA of the app `app` (a configured hostname) from
/// `state_dir`, and returns it (`None`: it had none). The key is first
/// renamed away in one step, so a `cert_sign` sees the CA or no CA, never
/// half of one, and of two removals racing only one gets the CA.
pub fn remove(state_dir: &Path, app: &str) -> Result<Option<SshCa>, EdgeError> {
    let path = key_path(state_dir, app);
    let dir = path.parent().unwrap_or(state_dir);
    let doomed = dir.join(format!(
        ".access-edge-removed-{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    match std::fs::rename(&path, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EdgeError::state(path, format!("cannot remove: {e}"))),
    }
    let ca = load_from(&doomed, app);
    if let Err(e) = std::fs::remove_file(&doomed) {
        tracing::warn!("cannot remove {}: {e}", doomed.display());
    }
    // The public line goes too, unless a new CA was made meanwhile (its
    // generate rewrites the line anyway).
    if !path.exists() {
        let pub_path = path.with_extension("pub");
        if let Err(e) = std::fs::remove_file(&pub_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", pub_path.display());
        }
    }
    let ca = ca?.map(|mut ca| {
        ca.path = path;
        ca
    });
    if let Some(ca) = &ca {
        tracing::info!(app, "removed the {} SSH CA", ca.key_type.description());
    }
    Ok(ca)
}

/// Writes a new key for `app` unless a key is there by then; whether this
/// call made it.
fn create(state_dir: &Path, app: &str, key_type: CaKeyType) -> Result<bool, EdgeError> {
    let path = key_path(state_dir, app);
    let mut key = PrivateKey::random(&mut OsRng, key_type.algorithm())
        .map_err(|e| EdgeError::crypto("cannot generate an SSH CA key", e))?;
    key.set_comment(format!("access-edge CA for {app}"));
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| EdgeError::crypto("cannot encode an SSH CA key", e))?;
    let dir = path.parent().unwrap_or(state_dir);
    let written = tempfile::Builder::new()
        .prefix(".access-edge-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .and_then(|mut file| {
            file.write_all(pem.as_bytes())?;
            file.as_file().sync_all()?;
            Ok(file)
        })
        .map_err(|e| EdgeError::state(dir, format!("cannot write a key: {e}")))?;
    // tempfile creates it 0600; no-clobber: the first CA made is the one.
    match written.persist_noclobber(&path) {
        Ok(_) => {
            tracing::info!(
                app,
                "made a new {} SSH CA in {}",
                key_type.description(),
                path.display()
            );
            Ok(true)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(EdgeError::state(path, format!("cannot write: {}", e.error))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_ca_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), "ssh.x.test").unwrap().is_none());
        let first = generate(dir.path(), "ssh.x.test", None).unwrap();
        assert!(first.created);
        assert_eq!(first.ca.key_type(), CaKeyType::Ecdsa);
        let line = first.ca.public_line();
        assert!(line.starts_with("ecdsa-sha2-nistp256 AAAA"), "{line}");
        assert!(line.ends_with(" access-edge CA for ssh.x.test"), "{line}");
        let again = generate(dir.path(), "ssh.x.test", Some(CaKeyType::Ecdsa)).unwrap();
        assert!(!again.created);
        assert_eq!(again.ca.public_line(), line);
        let key = dir.path().join("ssh-ca/ssh.x.test.key");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir.path().join("ssh-ca")), 0o700);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ssh-ca/ssh.x.test.pub")).unwrap(),
            format!("{line}\n")
        );
        let err = generate(dir.path(), "ssh.x.test", Some(CaKeyType::Ed25519)).unwrap_err();
        assert!(err.is_usage());
        assert!(
            err.to_string()
                .contains("already has an ECDSA P-256 SSH CA"),
            "{err}"
        );
        assert_eq!(
            load(dir.path(), "ssh.x.test")
                .unwrap()
                .unwrap()
                .public_line(),
            line
        );
    }

    #[test]
    fn a_removed_ca_is_gone_and_a_new_one_differs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(remove(dir.path(), "a.test").unwrap().is_none());
        let made = generate(dir.path(), "a.test", None).unwrap().ca;
        let removed = remove(dir.path(), "a.test").unwrap().unwrap();
        assert_eq!(removed.public_line(), made.public_line());
        assert_eq!(removed.key_path(), made.key_path());
        assert!(load(dir.path(), "a.test").unwrap().is_none());
        assert!(remove(dir.path(), "a.test").unwrap().is_none());
        let names: Vec<_> = std::fs::read_dir(dir.path().join("ssh-ca"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
        let again = generate(dir.path(), "a.test", None).unwrap();
        assert!(again.created);
        assert_ne!(again.ca.public_line(), made.public_line());
    }

    #[test]
    fn wildcards_get_a_file_name_no_host_has() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate(dir.path(), "*.x.test", Some(CaKeyType::Ed25519))
            .unwrap()
            .ca;
        assert_eq!(
            ca.key_path(),
            dir.path().join("ssh-ca/_.x.test.key").as_path()
        );
        assert!(ca.public_line().starts_with("ssh-ed25519 AAAA"));
        assert!(load(dir.path(), "x.test").unwrap().is_none());
    }

    #[test]
    fn racing_generators_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        generate(dir.path(), "a.test", None)
                            .unwrap()
                            .ca
                            .public_line()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(lines.windows(2).all(|w| w[0] == w[1]), "{lines:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("ssh-ca"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn a_damaged_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ssh-ca")).unwrap();
        std::fs::write(dir.path().join("ssh-ca/a.test.key"), "junk").unwrap();
        let err = load(dir.path(), "a.test").unwrap_err().to_string();
        assert!(
            err.contains("a.test.key: not an OpenSSH private key"),
            "{err}"
        );
        let err = generate(dir.path(), "a.test", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an OpenSSH private key"), "{err}");
    }

    #[test]
    fn key_types_parse_by_name() {
        assert_eq!("ECDSA".parse::<CaKeyType>(), Ok(CaKeyType::Ecdsa));
        assert_eq!("ed25519".parse::<CaKeyType>(), Ok(CaKeyType::Ed25519));
        assert!(
            "rsa"
                .parse::<CaKeyType>()
                .unwrap_err()
                .contains("ecdsa or ed25519")
        );
        assert_eq!(CaKeyType::default().to_string(), "ecdsa");
    }

    #[test]
    fn apps_are_found_by_name_or_by_a_host_they_protect() {
        let config = Config::parse(
            "[[apps]]\nhostname = \"SSH.a.test\"\n[[apps]]\nhostname = \"*.b.test\"\n",
        )
        .unwrap();
        assert_eq!(
            app_hostname(&config, "ssh.a.test.").as_deref(),
            Some("ssh.a.test")
        );
        assert_eq!(
            app_hostname(&config, "*.b.test").as_deref(),
            Some("*.b.test")
        );
        assert_eq!(
            app_hostname(&config, "x.b.test").as_deref(),
            Some("*.b.test")
        );
        assert_eq!(app_hostname(&config, "c.test"), None);
    }
}
