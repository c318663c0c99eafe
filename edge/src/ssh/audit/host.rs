//! The edge's own SSH host identity for audited apps (docs/protocol.md 14):
//! one host CA and one Ed25519 host key, both made on first use and kept in
//! the state dir (`ssh-audit/host-ca.key`, `ssh-audit/host-ca.pub`,
//! `ssh-audit/host.key`, all OpenSSH files), and a host certificate for the
//! name a client dialled, made per session (an Ed25519 signature: cheaper
//! than a file).
//!
//! `ssh` trusts the edge through one known_hosts line,
//! `@cert-authority <app host> <host CA>`, which `cfaccess ssh-config`
//! fetches from `/cdn-cgi/access/ssh/host-ca`. The CA, not the key, is what
//! the client pins, so the host key may be replaced (delete `host.key`)
//! without touching any client.
//!
//! Keys are made with the project's `ssh-key` and read into russh's own
//! fork of it through their OpenSSH encoding, the one both speak.

use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

use crate::error::EdgeError;

/// The directory inside the state dir.
const DIR: &str = "ssh-audit";
const CA_KEY: &str = "host-ca.key";
const HOST_KEY: &str = "host.key";
/// How long a host certificate is valid, back and forth from now: ssh
/// checks it once at each connection, so a day leaves room for clock skew.
const CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The edge's host CA and host key, loaded from the state dir.
pub(crate) struct HostIdentity {
    ca: PrivateKey,
    key: PrivateKey,
}

impl std::fmt::Debug for HostIdentity {
    // The private keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("ca", &self.ca_line())
            .finish_non_exhaustive()
    }
}

impl HostIdentity {
    /// The host CA and host key in `state_dir`, made when absent.
    pub(crate) fn load_or_create(state_dir: &Path) -> Result<HostIdentity, EdgeError> {
        let dir = state_dir.join(DIR);
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            return Err(EdgeError::state(&dir, format!("cannot create: {e}")));
        }
        let ca = load_or_create_key(&dir.join(CA_KEY), "access-edge SSH host CA")?;
        let key = load_or_create_key(&dir.join(HOST_KEY), "access-edge SSH host key")?;
        let pub_path = dir.join("host-ca.pub");
        let line = format!("{}\n", public_line(ca.public_key()));
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(line.as_str()) {
            cfaccess::platform::atomic_file::write(&pub_path, line.as_bytes(), 0o644)
                .map_err(|e| EdgeError::state(&pub_path, format!("cannot write: {e}")))?;
        }
        Ok(HostIdentity { ca, key })
    }

    /// The host CA's public key, as an OpenSSH line without a comment.
    pub(crate) fn ca_line(&self) -> String {
        public_line(self.ca.public_key())
    }

    /// The `known_hosts` line that makes `ssh` trust the edge as `host`.
    pub(crate) fn known_hosts_line(&self, host: &str) -> String {
        format!("@cert-authority {host} {}", self.ca_line())
    }

    /// The host key and its certificate for `host`, in russh's types.
    pub(crate) fn for_host(
        &self,
        host: &str,
    ) -> Result<(russh::keys::PrivateKey, russh::keys::Certificate), EdgeError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let validity = CERT_VALIDITY.as_secs();
        let crypto =
            |e: ssh_key::Error| EdgeError::crypto("cannot sign the SSH host certificate", e);
        let mut builder = Builder::new_with_random_nonce(
            &mut OsRng,
            self.key.public_key().key_data().clone(),
            now.saturating_sub(validity),
            now.saturating_add(validity),
        )
        .map_err(crypto)?;
        builder
            .serial(rand::random::<u64>().max(1))
            .and_then(|b| b.key_id(format!("access-edge host {host}")))
            .and_then(|b| b.cert_type(CertType::Host))
            .and_then(|b| b.valid_principal(host))
            .map_err(crypto)?;
        let cert = builder.sign(&self.ca).map_err(crypto)?;
        let cert_text = cert
            .to_openssh()
            .map_err(|e| EdgeError::crypto("cannot encode the SSH host certificate", e))?;
        let key_pem = self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(|e| EdgeError::crypto("cannot encode the SSH host key", e))?;
        let key = russh::keys::PrivateKey::from_openssh(key_pem.as_bytes())
            .map_err(|e| EdgeError::crypto("cannot read the SSH host key into russh", e))?;
        let cert = russh::keys::Certificate::from_openssh(&cert_text)
            .map_err(|e| EdgeError::crypto("cannot read the SSH host certificate into russh", e))?;
        Ok((key, cert))
    }
}

fn public_line(key: &PublicKey) -> String {
    PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .unwrap_or_default()
}

/// The Ed25519 key at `path`; made first when absent. Two edges (or
/// sessions) racing agree on the first one written: a host CA replaced
/// under a client's known_hosts line would be refused by it.
fn load_or_create_key(path: &Path, comment: &str) -> Result<PrivateKey, EdgeError> {
    if let Some(key) = load(path)? {
        return Ok(key);
    }
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| EdgeError::crypto("cannot generate an SSH key", e))?;
    key.set_comment(comment);
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| EdgeError::crypto("cannot encode an SSH key", e))?;
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let written = tempfile::Builder::new()
        .prefix(".access-edge-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .and_then(|mut file| {
            file.write_all(pem.as_bytes())?;
            file.as_file().sync_all()?;
            Ok(file)
        })
        .map_err(|e| EdgeError::state(&dir, format!("cannot write a key: {e}")))?;
    match written.persist_noclobber(path) {
        Ok(_) => {
            tracing::info!("made the {comment} in {}", path.display());
            Ok(key)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            load(path)?.ok_or_else(|| EdgeError::state(path, "vanished while being made"))
        }
        Err(e) => Err(EdgeError::state(path, format!("cannot write: {}", e.error))),
    }
}

fn load(path: &Path) -> Result<Option<PrivateKey>, EdgeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EdgeError::state(path, format!("cannot read: {e}"))),
    };
    PrivateKey::from_openssh(&text).map(Some).map_err(|e| {
        EdgeError::state(
            path,
            format!("is not an OpenSSH private key ({e}); delete it to make a new one"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_its_certificate_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostIdentity::load_or_create(dir.path()).unwrap();
        let again = HostIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_line(), again.ca_line());
        assert!(first.ca_line().starts_with("ssh-ed25519 AAAA"));
        assert_eq!(
            first.known_hosts_line("ssh.x.test"),
            format!("@cert-authority ssh.x.test {}", first.ca_line())
        );
        let (_, cert) = again.for_host("ssh.x.test").unwrap();
        assert_eq!(cert.valid_principals(), ["ssh.x.test".to_owned()]);
        assert_eq!(
            cert.cert_type(),
            russh::keys::ssh_key::certificate::CertType::Host
        );
        let ca = russh::keys::PublicKey::from_openssh(&first.ca_line()).unwrap();
        assert_eq!(cert.signature_key(), ca.key_data());
        let mode = |name: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.path().join(DIR).join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode(CA_KEY), mode(HOST_KEY)), (0o600, 0o600));
    }

    #[test]
    fn a_damaged_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        std::fs::write(dir.path().join(DIR).join(CA_KEY), "junk").unwrap();
        let err = HostIdentity::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete it to make a new one"), "{err}");
    }
}
