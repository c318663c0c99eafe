//! The edge's JWT signing keys and the key set it publishes
//! (`GET https://<auth domain>/cdn-cgi/access/certs`, docs/protocol.md 2.4).
//!
//! Like the real edge, the set holds two RSA 2048 keys: the current one, which
//! signs, and the one rotated out, which still verifies tokens signed before
//! the rotation. Only RSA keys appear (the official client fails on the whole
//! set if it meets a key type it does not know), each with a 64-hex-digit
//! `kid` (the SHA-256 of its public key) and again as an X.509 certificate in
//! `public_cert(s)`. Keys are generated once (slow: about 0.3 s each in a
//! release build, seconds in a debug one) and kept in the state dir.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::EdgeError;
use crate::ops::state::{SECRET, StateDir, files};

/// One RSA signing key, ready to sign and verify.
pub(crate) struct SigningKey {
    /// 64 lower-case hex digits.
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Modulus and exponent, base64url without padding (JWK form).
    n: String,
    e: String,
    /// A self-signed certificate for the key, PEM (`public_cert`).
    cert_pem: String,
}

impl SigningKey {
    fn from_private(key: &RsaPrivateKey, pkcs8_pem: &str) -> Result<SigningKey, EdgeError> {
        let failed = |e: &dyn std::fmt::Display| EdgeError::crypto("cannot use a signing key", e);
        let public_der = key.to_public_key().to_pkcs1_der().map_err(|e| failed(&e))?;
        let kid = hex::encode(Sha256::digest(public_der.as_bytes()));
        let private_der = key.to_pkcs1_der().map_err(|e| failed(&e))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        Ok(SigningKey {
            encoding: EncodingKey::from_rsa_der(private_der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
            cert_pem: self_signed_cert(pkcs8_pem, &kid)?,
            kid,
        })
    }

    /// Reads a kept key (PKCS#8 PEM).
    fn load(pem: &str) -> Result<SigningKey, String> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
        SigningKey::from_private(&key, pem).map_err(|e| e.to_string())
    }

    /// A new key and its PKCS#8 PEM to keep.
    fn generate() -> Result<(SigningKey, String), EdgeError> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| EdgeError::crypto("cannot generate an RSA key", e))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| EdgeError::crypto("cannot encode an RSA key", e))?;
        let signing = SigningKey::from_private(&key, &pem)?;
        Ok((signing, pem.to_string()))
    }

    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "e": self.e,
            "n": self.n,
        })
    }

    fn public_cert(&self) -> serde_json::Value {
        serde_json::json!({ "kid": self.kid, "cert": self.cert_pem })
    }
}

/// A certificate for the signing key, as the real set carries. It depends
/// only on the key, so it is the same after a restart.
fn self_signed_cert(pkcs8_pem: &str, kid: &str) -> Result<String, EdgeError> {
    let failed =
        |e: rcgen::Error| EdgeError::crypto("cannot make the signing key's certificate", e);
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(pkcs8_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(failed)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "access-edge JWT signing key");
    let mut serial = hex::decode(&kid[..16]).unwrap_or_else(|_| vec![1]);
    serial[0] &= 0x7f; // a positive DER integer
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(params.self_signed(&key).map_err(failed)?.pem())
}

/// The current and previous keys.
struct KeySet {
    current: Arc<SigningKey>,
    previous: Option<Arc<SigningKey>>,
}

/// The keys of a running edge.
pub(crate) struct Keys {
    set: RwLock<KeySet>,
}

impl Keys {
    /// Loads the kept keys; on first start, makes the current and a previous
    /// key (in parallel: it is the slow part of a first start).
    pub fn load_or_create(state: &StateDir) -> Result<Keys, EdgeError> {
        let load = |name: &str| -> Result<Option<Arc<SigningKey>>, EdgeError> {
            match state.read_string(name)? {
                Some(pem) => SigningKey::load(&pem)
                    .map(|k| Some(Arc::new(k)))
                    .map_err(|e| {
                        EdgeError::state(state.file(name), format!("not a usable RSA key: {e}"))
                    }),
                None => Ok(None),
            }
        };
        let current = load(files::SIGNING_CURRENT)?;
        let previous = load(files::SIGNING_PREVIOUS)?;
        let set = match (current, previous) {
            (Some(current), previous) => KeySet { current, previous },
            (None, Some(previous)) => {
                let (current, pem) = SigningKey::generate()?;
                state.write(files::SIGNING_CURRENT, pem.as_bytes(), SECRET)?;
                KeySet {
                    current: Arc::new(current),
                    previous: Some(previous),
                }
            }
            (None, None) => {
                let (a, b) = std::thread::scope(|s| {
                    let other = s.spawn(SigningKey::generate);
                    let mine = SigningKey::generate();
                    (mine, other.join())
                });
                let (previous, previous_pem) = a?;
                let (current, current_pem) =
                    b.map_err(|_| EdgeError::Crypto("RSA key generation failed".into()))??;
                state.write(files::SIGNING_PREVIOUS, previous_pem.as_bytes(), SECRET)?;
                state.write(files::SIGNING_CURRENT, current_pem.as_bytes(), SECRET)?;
                tracing::info!("made new JWT signing keys in {}", state.path().display());
                KeySet {
                    current: Arc::new(current),
                    previous: Some(Arc::new(previous)),
                }
            }
        };
        Ok(Keys {
            set: RwLock::new(set),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        // A panic while holding the lock cannot leave a half-updated set:
        // every write replaces whole fields.
        self.set.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The current key's id.
    pub fn current_kid(&self) -> String {
        self.read().current.kid.clone()
    }

    /// The ids of the keys in the set, current first.
    #[cfg(test)]
    pub fn kids(&self) -> Vec<String> {
        let set = self.read();
        std::iter::once(&set.current)
            .chain(set.previous.as_ref())
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Signs `claims` as a compact JWS, RS256, with the current key's `kid`.
    ///
    /// The header is exactly `{"alg":"RS256","kid":"…","typ":"JWT"}`: the
    /// official client re-serializes a cached token's header with sorted keys
    /// before sending it (go-jose `CompactSerialize`), so any other order or
    /// spacing would break the signature of the token it sends back.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        #[derive(Serialize)]
        struct JwsHeader<'a> {
            alg: &'static str,
            kid: &'a str,
            typ: &'static str,
        }
        let key = self.read().current.clone();
        let header = JwsHeader {
            alg: "RS256",
            kid: &key.kid,
            typ: "JWT",
        };
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, Algorithm::RS256)?;
        Ok(format!("{message}.{signature}"))
    }

    /// Checks the signature of `token` against the key its `kid` names (the
    /// current or the previous one) and returns its claims, unchecked.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, SignatureError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SignatureError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(SignatureError::Malformed);
        }
        let kid = header.kid.ok_or(SignatureError::UnknownKey)?;
        let key = {
            let set = self.read();
            std::iter::once(&set.current)
                .chain(set.previous.as_ref())
                .find(|k| k.kid == kid)
                .cloned()
                .ok_or(SignatureError::UnknownKey)?
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => SignatureError::BadSignature,
                _ => SignatureError::Malformed,
            })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let set = self.read();
        let keys: Vec<&Arc<SigningKey>> = std::iter::once(&set.current)
            .chain(set.previous.as_ref())
            .collect();
        serde_json::json!({
            "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>(),
            "public_cert": set.current.public_cert(),
            "public_certs": keys.iter().map(|k| k.public_cert()).collect::<Vec<_>>(),
        })
    }

    /// A new current key; the current one becomes the previous one and the
    /// previous one is dropped. Blocks while the key is generated.
    pub fn rotate(&self, state: &StateDir) -> Result<(), EdgeError> {
        let (fresh, pem) = SigningKey::generate()?;
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        let current_path = state.file(files::SIGNING_CURRENT);
        if current_path.exists() {
            std::fs::rename(&current_path, state.file(files::SIGNING_PREVIOUS))
                .map_err(|e| EdgeError::state(&current_path, format!("cannot rotate: {e}")))?;
        }
        state.write(files::SIGNING_CURRENT, pem.as_bytes(), SECRET)?;
        let old = std::mem::replace(&mut set.current, Arc::new(fresh));
        set.previous = Some(old);
        tracing::info!(kid = %set.current.kid, "rotated the JWT signing keys");
        Ok(())
    }

    /// Drops the previous key: tokens it signed no longer verify.
    pub fn expire_previous(&self, state: &StateDir) {
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        set.previous = None;
        state.remove(files::SIGNING_PREVIOUS);
        tracing::info!("dropped the previous JWT signing key");
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// Not a compact RS256 JWS, or claims of the wrong shape.
    Malformed,
    /// No key in the set has its `kid`.
    UnknownKey,
    /// The signature does not match.
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_verify_rotate_and_expire() {
        let state = StateDir::open(None).unwrap();
        let keys = Keys::load_or_create(&state).unwrap();
        let kids = keys.kids();
        assert_eq!(kids.len(), 2);
        assert!(
            kids.iter()
                .all(|k| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()))
        );

        let token = keys.sign(&serde_json::json!({"x": 1})).unwrap();
        let claims: serde_json::Value = keys.verify(&token).unwrap();
        assert_eq!(claims["x"], 1);
        // the header as go-jose re-serializes it: sorted keys, no spaces
        let header = URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#, kids[0])
        );

        let jwks = keys.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], kids[0]);
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["public_cert"]["kid"], kids[0]);
        assert_eq!(jwks["public_certs"].as_array().unwrap().len(), 2);

        // a restart loads the same keys
        let again = Keys::load_or_create(&state).unwrap();
        assert_eq!(again.kids(), kids);
        assert_eq!(again.jwks(), jwks);

        keys.rotate(&state).unwrap();
        let rotated = keys.kids();
        assert_eq!(rotated[1], kids[0]);
        assert_ne!(rotated[0], kids[0]);
        let _: serde_json::Value = keys.verify(&token).unwrap();

        keys.expire_previous(&state);
        assert_eq!(keys.kids(), vec![rotated[0].clone()]);
        assert_eq!(
            keys.verify::<serde_json::Value>(&token).unwrap_err(),
            SignatureError::UnknownKey
        );
        assert_eq!(
            Keys::load_or_create(&state).unwrap().kids(),
            vec![rotated[0].clone()]
        );

        let mut parts: Vec<String> = keys
            .sign(&serde_json::json!({"x": 1}))
            .unwrap()
            .split('.')
            .map(str::to_owned)
            .collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"x":2}"#);
        assert_eq!(
            keys.verify::<serde_json::Value>(&parts.join("."))
                .unwrap_err(),
            SignatureError::BadSignature
        );
        assert_eq!(
            keys.verify::<serde_json::Value>("nope").unwrap_err(),
            SignatureError::Malformed
        );
    }
}
