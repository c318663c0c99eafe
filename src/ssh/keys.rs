//! The ssh key pair and short-lived certificate of a host (docs/protocol.md 7.2),
//! in the config dir under the official client's names:
//! `<stem>-cf_key` (private, 0600), `<stem>-cf_key.pub` (one
//! `authorized_keys` line, no comment, 0600) and `<stem>-cf_key-cert.pub`.
//!
//! ECDSA P-256 is the default: it is what the real `cert_sign` is known to
//! accept. Private keys are written in OpenSSH's own format, which ssh reads
//! for every key type (the official client writes PEM `EC PRIVATE KEY`; it
//! never reads the private key back, so either client can reuse the pair).

use std::io;
use std::path::{Path, PathBuf};

use ssh_key::certificate::CertType;
use ssh_key::public::{EcdsaPublicKey, KeyData};
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey, PublicKey};

use crate::access::config_dir::ConfigDir;
use crate::limits;
use crate::platform::atomic_file::{self, SECRET};
use crate::platform::private_dir;
use crate::platform::read::read_capped_string;

/// The key types ssh-gen makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (what the real cert_sign is known to sign)
    Ecdsa,
    /// Ed25519
    Ed25519,
}

impl KeyType {
    /// Whether `key` is of this type.
    pub fn matches(self, key: &KeyData) -> bool {
        match self {
            KeyType::Ecdsa => matches!(key, KeyData::Ecdsa(EcdsaPublicKey::NistP256(_))),
            KeyType::Ed25519 => matches!(key, KeyData::Ed25519(_)),
        }
    }
}

/// Why the keys or the certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot make a key pair: {0}")]
    Generate(String),
}

/// Why a certificate is not one to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("it is not an OpenSSH certificate ({0})")]
    Unreadable(String),
    #[error("it is a host certificate, not a user certificate")]
    NotUser,
    #[error("it certifies another key than ours")]
    OtherKey,
    #[error("it is not valid yet")]
    NotYetValid,
    #[error("it has expired")]
    Expired,
}

/// The three files of one host.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
    pub cert: PathBuf,
}

impl KeyFiles {
    pub fn new(dir: &ConfigDir, key_stem: &str) -> Self {
        let private = dir.ssh_key(key_stem);
        KeyFiles {
            public: with_suffix(&private, ".pub"),
            cert: with_suffix(&private, "-cert.pub"),
            private,
        }
    }

    /// The public key line as on disk (what is sent to `cert_sign`
    /// verbatim) and its key, if the pair is there and readable.
    pub fn public_key(&self) -> Option<(String, KeyData)> {
        if !self.private.is_file() {
            return None;
        }
        for path in [&self.private, &self.public, &self.cert] {
            match private_dir::tighten_file(path) {
                Ok(true) => tracing::debug!(path = %path.display(), "made the file 0600"),
                Ok(false) => {}
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot tighten"),
            }
        }
        let line = read_capped_string(&self.public, limits::SSH_FILE).ok()?;
        let key = PublicKey::from_openssh(line.trim()).ok()?;
        Some((line, key.key_data().clone()))
    }

    /// The pair to sign: the existing one (of the asked type, when one is
    /// asked), else a new one written in place of whatever was there.
    pub fn ensure_pair(&self, wanted: Option<KeyType>) -> Result<(String, KeyData), KeyError> {
        if let Some((line, key)) = self.public_key()
            && wanted.is_none_or(|t| t.matches(&key))
        {
            return Ok((line, key));
        }
        let (private_text, public) = generate(wanted.unwrap_or(KeyType::Ecdsa))?;
        let line = public
            .to_openssh()
            .map_err(|e| KeyError::Generate(e.to_string()))?
            + "\n";
        // the private key first: a .pub without its key is never left behind
        self.write(&self.private, private_text.as_bytes())?;
        self.write(&self.public, line.as_bytes())?;
        let _ = std::fs::remove_file(&self.cert); // it certified the old key
        Ok((line, public.key_data().clone()))
    }

    /// Writes `certificate` (as `cert_sign` returned it) atomically, 0600.
    pub fn write_cert(&self, certificate: &str) -> Result<(), KeyError> {
        self.write(&self.cert, certificate.as_bytes())
    }

    /// The certificate on disk, if it is for our key and stays valid for
    /// `margin_s` more seconds at `now`. This is the fast path of `ssh-gen`:
    /// a few file reads, no network, no key operation.
    pub fn usable_cert(&self, now: u64, margin_s: u64) -> Result<Certificate, CertProblem> {
        let (_, key) = self
            .public_key()
            .ok_or_else(|| CertProblem::Unreadable("no key pair".into()))?;
        // over its cap it is a corrupt entry: a new certificate replaces it
        let text = read_capped_string(&self.cert, limits::SSH_FILE)
            .map_err(|e| CertProblem::Unreadable(e.to_string()))?;
        check_cert(&text, &key, now, margin_s)
    }

    fn write(&self, path: &Path, data: &[u8]) -> Result<(), KeyError> {
        atomic_file::write(path, data, SECRET).map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// Checks that `text` is a user certificate for `key`, valid at `now` and
/// for `margin_s` seconds more.
pub fn check_cert(
    text: &str,
    key: &KeyData,
    now: u64,
    margin_s: u64,
) -> Result<Certificate, CertProblem> {
    let cert = Certificate::from_openssh(text.trim())
        .map_err(|e| CertProblem::Unreadable(e.to_string()))?;
    if cert.cert_type() != CertType::User {
        return Err(CertProblem::NotUser);
    }
    if cert.public_key() != key {
        return Err(CertProblem::OtherKey);
    }
    if cert.valid_after() > now {
        return Err(CertProblem::NotYetValid);
    }
    if now.saturating_add(margin_s) >= cert.valid_before() {
        return Err(CertProblem::Expired);
    }
    Ok(cert)
}

/// A new private key (as file text) and its public key, with no comment.
fn generate(kind: KeyType) -> Result<(String, PublicKey), KeyError> {
    let err = |e: ssh_key::Error| KeyError::Generate(e.to_string());
    let algorithm = match kind {
        KeyType::Ecdsa => Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        },
        KeyType::Ed25519 => Algorithm::Ed25519,
    };
    let private = PrivateKey::random(&mut rand::rngs::OsRng, algorithm).map_err(err)?;
    let text = private.to_openssh(LineEnding::LF).map_err(err)?;
    let public = PublicKey::new(private.public_key().key_data().clone(), "");
    Ok((text.to_string(), public))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_an_ecdsa_pair_and_reuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&ConfigDir::at(tmp.path()), "h.example");
        let (line, key) = files.ensure_pair(None).unwrap();
        assert!(line.starts_with("ecdsa-sha2-nistp256 AAAA") && line.ends_with('\n'));
        assert_eq!(line.trim().split(' ').count(), 2, "no comment: {line}");
        let private = std::fs::read_to_string(&files.private).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        #[cfg(unix)]
        for path in [&files.private, &files.public] {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            files.ensure_pair(None).unwrap(),
            (line.clone(), key.clone())
        );
        assert_eq!(files.ensure_pair(Some(KeyType::Ecdsa)).unwrap().0, line);
        // asking for another type replaces the pair
        let (ed_line, _) = files.ensure_pair(Some(KeyType::Ed25519)).unwrap();
        assert!(ed_line.starts_with("ssh-ed25519 "));
        assert!(
            std::fs::read_to_string(&files.private)
                .unwrap()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
    }

    /// A certificate for `key` signed by a throwaway CA.
    fn cert(key: &KeyData, kind: CertType, after: u64, before: u64) -> String {
        let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            key.clone(),
            after,
            before,
        )
        .unwrap();
        b.cert_type(kind).unwrap().valid_principal("jdoe").unwrap();
        b.sign(&ca).unwrap().to_openssh().unwrap()
    }

    #[test]
    fn certificates_are_checked_for_type_key_and_validity() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&ConfigDir::at(tmp.path()), "h");
        let (_, key) = files.ensure_pair(None).unwrap();
        let now = 1_000_000;
        let good = cert(&key, CertType::User, now - 10, now + 170);
        assert!(check_cert(&good, &key, now, 30).is_ok());
        assert_eq!(
            check_cert(&good, &key, now + 140, 30).unwrap_err(),
            CertProblem::Expired
        );
        assert_eq!(
            check_cert(&good, &key, now - 11, 0).unwrap_err(),
            CertProblem::NotYetValid
        );
        let host = cert(&key, CertType::Host, now - 10, now + 170);
        assert_eq!(
            check_cert(&host, &key, now, 0).unwrap_err(),
            CertProblem::NotUser
        );
        let (_, other) = generate(KeyType::Ed25519).unwrap();
        let theirs = cert(other.key_data(), CertType::User, now - 10, now + 170);
        assert_eq!(
            check_cert(&theirs, &key, now, 0).unwrap_err(),
            CertProblem::OtherKey
        );
        assert!(matches!(
            check_cert("garbage", &key, now, 0),
            Err(CertProblem::Unreadable(_))
        ));

        // the fast path reads the files
        assert!(files.usable_cert(now, 30).is_err(), "no certificate yet");
        files.write_cert(&good).unwrap();
        assert!(files.usable_cert(now, 30).is_ok());
        std::fs::remove_file(&files.private).unwrap();
        assert!(
            files.usable_cert(now, 30).is_err(),
            "useless without its key"
        );
    }

    #[test]
    fn a_public_key_without_its_private_key_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&ConfigDir::at(tmp.path()), "h");
        let (line, _) = files.ensure_pair(None).unwrap();
        std::fs::remove_file(&files.private).unwrap();
        assert!(files.public_key().is_none());
        let (new_line, _) = files.ensure_pair(None).unwrap();
        assert_ne!(line, new_line);
        assert!(files.private.exists());
    }
}
