//! The login form's anti-forgery nonce (docs/protocol.md 4.4: the login page).
//!
//! A real identity provider approves a login only from the form it served
//! itself, so a page on another site cannot approve a login (and send tokens
//! to a key of its choosing) by posting to the login path in the person's
//! browser. Each form served carries a fresh nonce twice: in a hidden field
//! and in a cookie (`Secure`, `HttpOnly`, `SameSite=Strict`, scoped to the
//! login path). A post is accepted only when both are there, equal (compared
//! in constant time), issued by this edge for this very login (app and client
//! key) less than [`limits::LOGIN_NONCE_TTL`] ago, and not used before.
//! Another site can neither read the field nor set or send the cookie.
//!
//! The cookie's name is per login (from the client key), so two logins in
//! two tabs of one browser do not spoil each other's form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits;

/// The hidden field's name.
pub(crate) const FIELD: &str = "nonce";
/// The start of the cookie's name; the rest names the login.
pub(crate) const COOKIE_PREFIX: &str = "CF_LoginNonce_";

/// What a nonce was issued for.
#[derive(Debug)]
struct Issued {
    app: usize,
    client_key: String,
    at: Instant,
}

/// Why a post was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the form carries no nonce, or the browser sent no login cookie")]
    Missing,
    #[error("the form's nonce does not match the login cookie")]
    Mismatch,
    #[error("the nonce was not issued for this login, was used already, or expired")]
    Unknown,
}

/// The nonces of the forms served and not yet posted.
#[derive(Debug, Default)]
pub(crate) struct Nonces {
    issued: Mutex<HashMap<String, Issued>>,
}

/// The cookie name for the login of `client_key`.
pub(crate) fn cookie_name(client_key: &str) -> String {
    let digest = Sha256::digest(client_key.as_bytes());
    format!("{COOKIE_PREFIX}{}", hex::encode(&digest[..8]))
}

impl Nonces {
    /// A fresh nonce for the form of the login of `client_key` on `app`.
    pub fn issue(&self, app: usize, client_key: &str) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, i| i.at.elapsed() < limits::LOGIN_NONCE_TTL);
        // A flood of page loads must not grow the map without end: the
        // oldest form loses (its post is refused and says to start again).
        while issued.len() >= limits::LOGIN_NONCES {
            let Some(oldest) = issued
                .iter()
                .min_by_key(|(_, i)| i.at)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            issued.remove(&oldest);
        }
        issued.insert(
            nonce.clone(),
            Issued {
                app,
                client_key: client_key.to_owned(),
                at: Instant::now(),
            },
        );
        nonce
    }

    /// Checks a post's field and cookie and uses the nonce up.
    pub fn redeem(
        &self,
        app: usize,
        client_key: &str,
        field: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<(), Refusal> {
        let (Some(field), Some(cookie)) = (field, cookie) else {
            return Err(Refusal::Missing);
        };
        if field.is_empty() || !bool::from(field.as_bytes().ct_eq(cookie.as_bytes())) {
            return Err(Refusal::Mismatch);
        }
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        // The map is keyed by the nonce itself; a lookup's timing says
        // nothing useful to someone who does not hold one.
        match issued.remove(field) {
            Some(i)
                if i.app == app
                    && i.client_key == client_key
                    && i.at.elapsed() < limits::LOGIN_NONCE_TTL =>
            {
                Ok(())
            }
            _ => Err(Refusal::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_works_once_for_its_own_login_only() {
        let nonces = Nonces::default();
        let n = nonces.issue(0, "key-a");
        assert_eq!(
            nonces.redeem(0, "key-a", Some(&n), None),
            Err(Refusal::Missing)
        );
        assert_eq!(
            nonces.redeem(0, "key-a", Some(&n), Some("other")),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            nonces.redeem(0, "key-b", Some(&n), Some(&n)),
            Err(Refusal::Unknown)
        );
        let n = nonces.issue(0, "key-a");
        assert_eq!(nonces.redeem(0, "key-a", Some(&n), Some(&n)), Ok(()));
        assert_eq!(
            nonces.redeem(0, "key-a", Some(&n), Some(&n)),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn the_store_is_bounded() {
        let nonces = Nonces::default();
        let first = nonces.issue(0, "k");
        for _ in 0..limits::LOGIN_NONCES {
            nonces.issue(0, "k");
        }
        assert!(nonces.issued.lock().unwrap().len() <= limits::LOGIN_NONCES);
        assert_eq!(
            nonces.redeem(0, "k", Some(&first), Some(&first)),
            Err(Refusal::Unknown)
        );
    }
}
