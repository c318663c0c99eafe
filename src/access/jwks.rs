//! The team's key set and the checking of edge-signed JWTs (docs/protocol.md 2.4).
//!
//! The key set lives at `https://<auth domain>/cdn-cgi/access/certs` and is
//! cached as `<auth domain>-jwks` in the config dir, fresh for 24 hours by
//! mtime, in a form the official client reads too (the JSON as served). A JWT
//! signed with a key the cached set lacks means the edge rotated its keys:
//! the set is fetched again at once, unless the cache is only seconds old
//! (so a server naming unknown keys cannot make us fetch in a loop). A
//! signature that fails with a known key is refetched for only after a minute.

use std::path::Path;
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::access::config_dir::ConfigDir;
use crate::limits;
use crate::platform::atomic_file;
use crate::platform::read::read_capped;

const CERTS_PATH: &str = "/cdn-cgi/access/certs";
const FRESH_FOR: Duration = Duration::from_secs(24 * 3600);
/// A known key whose signature fails: the set may still have changed, but
/// only a set this old is worth fetching again for it.
const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// Why a JWT could not be checked against the key set.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the key set from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the key set from {url} is not valid: {reason}")]
    Invalid { url: String, reason: String },
    #[error("the signature does not verify: {0}")]
    Signature(String),
    /// `fresh`: the set was fetched for this very check, so the signer is
    /// not a key of the team's; otherwise the cached set may predate a
    /// rotation (and was too new to fetch again).
    #[error("no key {kid} in the team's key set{}", if *fresh { "" } else { " (as cached seconds ago)" })]
    UnknownKey { kid: String, fresh: bool },
}

/// The RSA keys of a key set; other key types are left out, as they would
/// make the official client refuse the whole set.
struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let keys: Vec<Jwk> = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter(|k| matches!(k.algorithm, AlgorithmParameters::RSA(_)))
            .collect();
        if keys.is_empty() {
            return Err("it holds no RSA key".into());
        }
        Ok(KeySet { keys })
    }

    /// Verifies `jwt` (RS256, with a `kid` naming one of our keys) and returns
    /// its claims. Expiry and audience are the caller's business.
    fn verify<T: DeserializeOwned>(&self, jwt: &str) -> Result<T, JwksError> {
        let sig = |e: &dyn std::fmt::Display| JwksError::Signature(e.to_string());
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| sig(&e))?;
        if header.alg != Algorithm::RS256 {
            return Err(sig(&format_args!(
                "signed with {:?}, not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| sig(&"the JWT names no key (kid)"))?;
        let jwk = self
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
            .ok_or_else(|| JwksError::UnknownKey {
                kid: kid.clone(),
                fresh: true,
            })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| sig(&e))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<T>(jwt, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| sig(&e))
    }
}

/// Verifies an edge-signed JWT against the key set of `auth_domain` (a bare,
/// lower-case host name), using and refreshing the cache in `dir`.
pub async fn verify<T: DeserializeOwned>(
    http: &reqwest::Client,
    dir: &ConfigDir,
    auth_domain: &str,
    jwt: &str,
) -> Result<T, JwksError> {
    let cache = dir.jwks(auth_domain);
    let (set, cached_at) = match read_cache(&cache) {
        Some((set, mtime)) if age(mtime) <= FRESH_FOR => (set, Some(mtime)),
        _ => (fetch_and_cache(http, dir, auth_domain).await?, None),
    };
    let err = match set.verify(jwt) {
        Ok(claims) => return Ok(claims),
        Err(JwksError::UnknownKey { kid, .. }) if cached_at.is_some() => {
            JwksError::UnknownKey { kid, fresh: false }
        }
        Err(err) => err,
    };
    // A set fetched just now is as new as it gets; an unknown key is worth
    // an early fetch (a rotation), a failing known key only a late one.
    let wait = match err {
        JwksError::UnknownKey { .. } => limits::JWKS_REFETCH_MIN_AGE,
        _ => REFRESH_AFTER,
    };
    match cached_at {
        Some(mtime) if age(mtime) >= wait => {
            debug!(error = %err, "checking with the cached key set failed; fetching it again");
            fetch_and_cache(http, dir, auth_domain).await?.verify(jwt)
        }
        _ => Err(err),
    }
}

/// Verifies `jwt` against the cached key set alone: no request is made, and
/// `None` means "cannot tell offline" (no fresh cache, or no matching key),
/// not "forged". The fast paths (`token`, a ProxyCommand with a cached token)
/// use this to trust app info they verified earlier.
pub fn verify_offline<T: DeserializeOwned>(
    dir: &ConfigDir,
    auth_domain: &str,
    jwt: &str,
) -> Option<T> {
    match read_cache(&dir.jwks(auth_domain)) {
        Some((set, mtime)) if age(mtime) <= FRESH_FOR => set.verify(jwt).ok(),
        _ => None,
    }
}

fn age(mtime: SystemTime) -> Duration {
    SystemTime::now().duration_since(mtime).unwrap_or_default()
}

/// The cached set and its mtime; a missing or unreadable cache is a miss,
/// and so is one over [`limits::JWKS_BODY`] (the next fetch replaces it).
fn read_cache(path: &Path) -> Option<(KeySet, SystemTime)> {
    let bytes = match read_capped(path, limits::JWKS_BODY) {
        Ok(bytes) => bytes,
        Err(e) => {
            if !e.is_not_found() {
                debug!(path = %path.display(), error = %e, "ignoring the cached key set");
            }
            return None;
        }
    };
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    match KeySet::parse(&bytes) {
        Ok(set) => Some((set, mtime)),
        Err(reason) => {
            debug!(path = %path.display(), %reason, "ignoring the cached key set");
            None
        }
    }
}

async fn fetch_and_cache(
    http: &reqwest::Client,
    dir: &ConfigDir,
    auth_domain: &str,
) -> Result<KeySet, JwksError> {
    let url = format!("https://{auth_domain}{CERTS_PATH}");
    let fetch = |reason: String| JwksError::Fetch {
        url: url.clone(),
        reason,
    };
    let mut response = http
        .get(&url)
        .timeout(limits::JWKS)
        .send()
        .await
        .map_err(|e| fetch(crate::error::describe_reqwest(&e)))?;
    if !response.status().is_success() {
        return Err(fetch(format!("the server answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch(crate::error::describe_reqwest(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > limits::JWKS_BODY {
            return Err(fetch("it is larger than 1 MiB".into()));
        }
    }
    let set = KeySet::parse(&body).map_err(|reason| JwksError::Invalid {
        url: url.clone(),
        reason,
    })?;
    if let Err(e) = dir.ensure().map_err(|e| e.to_string()).and_then(|()| {
        atomic_file::write(&dir.jwks(auth_domain), &body, atomic_file::SECRET)
            .map_err(|e| e.to_string())
    }) {
        debug!(error = %e, "cannot cache the key set; going on without");
    }
    Ok(set)
}
