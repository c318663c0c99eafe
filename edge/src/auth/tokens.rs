//! Access tokens: minting, verifying and revoking them.
//!
//! Tokens look like real Access tokens (compact JWS, RS256, `kid` header):
//! an app token has `aud: [<app aud>]`, `type: "app"`; an org token has
//! `aud: [<auth domain>]`, `type: "org"`; both carry `email`, `exp`, `iat`,
//! `nbf`, `iss` (`https://<auth domain>`), `sub` (a UUID stable per email),
//! `identity_nonce` and `country`. Clients read these claims without
//! verifying (docs/protocol.md 3), so their shape matters as much as the signature.
//!
//! Revocation refuses every token issued to an email up to the moment of the
//! revocation, and none issued after it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::signing::{Keys, SignatureError};

/// The claims of an app or org token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// `[<aud>]` for an app token, `[<auth domain>]` for an org token. A
    /// single string is accepted when reading.
    #[serde(deserialize_with = "cfaccess::access::jwt::string_or_list")]
    pub aud: Vec<String>,
    pub email: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    /// `app` or `org`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub identity_nonce: String,
    #[serde(default)]
    pub country: String,
}

/// App token or org token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    App,
    Org,
}

impl Kind {
    fn claim(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Org => "org",
        }
    }
}

/// Why a token is refused. Shown in debug logs only (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("not a token")]
    Malformed,
    #[error("signed by a key not in the key set")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong token type")]
    WrongType,
    #[error("issued for another audience")]
    WrongAudience,
    #[error("issued by another team")]
    WrongIssuer,
    #[error("revoked")]
    Revoked,
}

impl From<SignatureError> for TokenError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Malformed => TokenError::Malformed,
            SignatureError::UnknownKey => TokenError::UnknownKey,
            SignatureError::BadSignature => TokenError::BadSignature,
        }
    }
}

/// Revocations in force for one email.
#[derive(Debug, Default)]
struct Revocation {
    /// Tokens issued before this second are refused…
    before: u64,
    /// …and so are these, issued in that very second before the revocation.
    same_second: HashSet<String>,
}

/// Mints and verifies tokens for one auth domain.
#[derive(Debug)]
pub(crate) struct Tokens {
    issuer: String,
    revocations: Mutex<HashMap<String, Revocation>>,
    /// Per email: the last second a token was issued in, and the nonces of
    /// the tokens issued in it (what a revocation in that second must catch).
    last_issued: Mutex<HashMap<String, (u64, Vec<String>)>>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A UUID that stays the same for an email, as `sub` does for a real user.
fn subject(email: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("mailto:{email}").as_bytes(),
    )
    .to_string()
}

impl Tokens {
    pub fn new(auth_domain: &str) -> Tokens {
        Tokens {
            issuer: format!("https://{auth_domain}"),
            revocations: Mutex::default(),
            last_issued: Mutex::default(),
        }
    }

    /// A signed token of `kind` for `email`, audience `aud`, valid from now
    /// for `lifetime`.
    pub fn mint(
        &self,
        keys: &Keys,
        kind: Kind,
        aud: &str,
        email: &str,
        lifetime: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let email = email.trim().to_ascii_lowercase();
        let iat = now();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let claims = AccessClaims {
            aud: vec![aud.to_owned()],
            email: email.clone(),
            exp: iat.saturating_add(lifetime.as_secs()),
            iat,
            nbf: iat,
            iss: self.issuer.clone(),
            sub: subject(&email),
            kind: kind.claim().to_owned(),
            identity_nonce: nonce.clone(),
            country: "XX".into(),
        };
        let token = keys.sign(&claims)?;
        let mut last = self.last_issued.lock().unwrap_or_else(|p| p.into_inner());
        let entry = last.entry(email).or_insert_with(|| (iat, Vec::new()));
        if entry.0 != iat {
            *entry = (iat, Vec::new());
        }
        entry.1.push(nonce);
        Ok(token)
    }

    /// The claims of `token` if it is a valid, unrevoked token of `kind` for
    /// `aud`: signature (current or previous key), `nbf <= now < exp`, type,
    /// audience, issuer, revocation.
    pub fn verify(
        &self,
        keys: &Keys,
        token: &str,
        kind: Kind,
        aud: &str,
    ) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = keys.verify(token.trim())?;
        let now = now();
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if claims.kind != kind.claim() {
            return Err(TokenError::WrongType);
        }
        if !claims.aud.iter().any(|a| a == aud) {
            return Err(TokenError::WrongAudience);
        }
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if self.is_revoked(&claims) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let revocations = self.revocations.lock().unwrap_or_else(|p| p.into_inner());
        revocations
            .get(&claims.email.to_ascii_lowercase())
            .is_some_and(|r| {
                claims.iat < r.before
                    || (claims.iat == r.before && r.same_second.contains(&claims.identity_nonce))
            })
    }

    /// Refuses every token issued to `email` so far; later ones are fine.
    pub fn revoke(&self, email: &str) {
        let email = email.trim().to_ascii_lowercase();
        let now = now();
        let same_second = {
            let last = self.last_issued.lock().unwrap_or_else(|p| p.into_inner());
            match last.get(&email) {
                Some((second, nonces)) if *second == now => nonces.iter().cloned().collect(),
                _ => HashSet::new(),
            }
        };
        let mut revocations = self.revocations.lock().unwrap_or_else(|p| p.into_inner());
        revocations.insert(
            email,
            Revocation {
                before: now,
                same_second,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::state::StateDir;

    #[test]
    fn tokens_verify_and_are_refused_for_each_reason() {
        let state = StateDir::open(None).unwrap();
        let keys = Keys::load_or_create(&state).unwrap();
        let tokens = Tokens::new("t.cloudflareaccess.com");
        let day = Duration::from_secs(86400);

        let app = tokens
            .mint(&keys, Kind::App, "aud1", "Alice@X.com", day)
            .unwrap();
        let claims = tokens.verify(&keys, &app, Kind::App, "aud1").unwrap();
        assert_eq!(claims.email, "alice@x.com");
        assert_eq!(claims.aud, vec!["aud1"]);
        assert_eq!(claims.iss, "https://t.cloudflareaccess.com");
        assert_eq!(claims.kind, "app");
        assert_eq!(claims.exp, claims.iat + 86400);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.sub, subject("alice@x.com"));
        assert_eq!(claims.sub.len(), 36);
        assert_eq!(claims.identity_nonce.len(), 32);
        assert_eq!(claims.country, "XX");

        assert_eq!(
            tokens.verify(&keys, &app, Kind::Org, "aud1"),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            tokens.verify(&keys, &app, Kind::App, "aud2"),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            tokens.verify(&keys, "x.y.z", Kind::App, "aud1"),
            Err(TokenError::Malformed)
        );
        let other_team = Tokens::new("u.cloudflareaccess.com");
        assert_eq!(
            other_team.verify(&keys, &app, Kind::App, "aud1"),
            Err(TokenError::WrongIssuer)
        );

        let expired = tokens
            .mint(&keys, Kind::App, "aud1", "bob@x.com", Duration::ZERO)
            .unwrap();
        assert_eq!(
            tokens.verify(&keys, &expired, Kind::App, "aud1"),
            Err(TokenError::Expired)
        );

        let org = tokens
            .mint(
                &keys,
                Kind::Org,
                "t.cloudflareaccess.com",
                "alice@x.com",
                day,
            )
            .unwrap();
        tokens
            .verify(&keys, &org, Kind::Org, "t.cloudflareaccess.com")
            .unwrap();

        tokens.revoke("ALICE@x.com");
        assert_eq!(
            tokens.verify(&keys, &app, Kind::App, "aud1"),
            Err(TokenError::Revoked)
        );
        assert_eq!(
            tokens.verify(&keys, &org, Kind::Org, "t.cloudflareaccess.com"),
            Err(TokenError::Revoked)
        );
        let later = tokens
            .mint(&keys, Kind::App, "aud1", "alice@x.com", day)
            .unwrap();
        tokens.verify(&keys, &later, Kind::App, "aud1").unwrap();
    }

    #[test]
    fn aud_may_be_a_string() {
        let claims: AccessClaims = serde_json::from_str(
            r#"{"aud":"a","email":"e","exp":1,"iat":1,"nbf":1,"iss":"i","type":"app"}"#,
        )
        .unwrap();
        assert_eq!(claims.aud, vec!["a"]);
    }
}
