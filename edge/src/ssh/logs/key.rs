//! The key pair of SSH command logs: HPKE X25519 keys in the files of
//! `ssh-log-cli generate-key-pair -o NAME` (`docs/protocol.md 12`): NAME
//! holds base64 of the 32-byte private key, NAME.pub base64 of the public
//! key, neither with a newline.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::{Deserializable, Kem as _, Serializable};

use super::LogError;

pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
pub(crate) type Kdf = hpke::kdf::HkdfSha256;
pub(crate) type Aead = hpke::aead::ChaCha20Poly1305;

/// The public key captures are sealed for (an app's `ssh_log_public_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct LogKey(pub(crate) <Kem as hpke::Kem>::PublicKey);

impl LogKey {
    /// Reads base64 of the 32-byte X25519 public key (surrounding white
    /// space is ignored: a key pasted from a file may end with a newline).
    pub fn from_base64(text: &str) -> Result<LogKey, LogError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| LogError::BadPublicKey)?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(LogKey)
            .map_err(|_| LogError::BadPublicKey)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogKey({})", self.to_base64())
    }
}

/// The private key that opens captures. Never printed.
pub struct LogSecret(pub(crate) <Kem as hpke::Kem>::PrivateKey);

impl std::fmt::Debug for LogSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSecret(..)")
    }
}

impl LogSecret {
    /// Reads a private key file (base64, as ssh-log-cli and `keygen` write).
    pub fn read(path: &Path) -> Result<LogSecret, LogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LogError::io("cannot read the private key", path, e))?;
        let bad = || LogError::BadPrivateKey {
            path: path.to_owned(),
        };
        let bytes = zeroize::Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| bad())?);
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map(LogSecret)
            .map_err(|_| bad())
    }

    /// Its public key.
    pub fn public(&self) -> LogKey {
        LogKey(<Kem as hpke::Kem>::sk_to_pk(&self.0))
    }
}

/// A new key pair.
pub fn generate() -> (LogSecret, LogKey) {
    let (private, public) = Kem::gen_keypair();
    (LogSecret(private), LogKey(public))
}

/// Writes a new key pair to `path` (0600) and `path.pub`, refusing to
/// overwrite an existing private key: losing it loses every log sealed
/// for it. Returns the public key and the `.pub` path.
pub fn generate_key_pair(path: &Path) -> Result<(LogKey, PathBuf), LogError> {
    let pub_path = {
        let mut name = path.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    };
    if path.exists() {
        return Err(LogError::io(
            "will not overwrite the private key",
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists (every log sealed for it needs it): choose another --out",
            ),
        ));
    }
    let (secret, public) = generate();
    let private_b64 = zeroize::Zeroizing::new(STANDARD.encode(secret.0.to_bytes()));
    write_atomic(path, private_b64.as_bytes(), 0o600)?;
    write_atomic(&pub_path, public.to_base64().as_bytes(), 0o644)?;
    Ok((public, pub_path))
}

/// Writes `bytes` to a temp file in `path`'s directory, created with its
/// final mode, then renames it into place.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LogError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ssh-log-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| LogError::io("cannot write", path, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| LogError::io("cannot write", path, e))?;
    tmp.persist(path)
        .map_err(|e| LogError::io("cannot write", path, e.error))?;
    Ok(())
}
