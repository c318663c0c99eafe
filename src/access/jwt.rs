//! Reading a JWT's claims without verifying it.
//!
//! The client never holds the key that signed an app or org token: it reads
//! `exp` and `aud` to decide whether a cached token is worth sending, and `iss`
//! to know where `cert_sign` lives. The edge verifies; we only peek. Like the
//! official client, only compact RS256 tokens count as tokens at all.

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};

/// The claims cfaccess looks at.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default, deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// Why a string is not a token we can read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT: {0}")]
    Malformed(#[from] jsonwebtoken::errors::Error),
    #[error("signed with {0:?}, not RS256")]
    Algorithm(Algorithm),
}

impl Claims {
    /// Whether `exp` has passed at `now` (unix seconds); no `exp` counts as
    /// expired. A token is still good in the second its `exp` names, as in
    /// the official client.
    pub fn is_expired(&self, now: i64) -> bool {
        self.exp.is_none_or(|exp| now > exp)
    }

    /// Whether `aud` names `aud`.
    pub fn has_aud(&self, aud: &str) -> bool {
        self.aud.iter().any(|a| a == aud)
    }
}

/// Reads the claims of a compact RS256 JWT without checking its signature.
pub fn peek(token: &str) -> Result<Claims, JwtError> {
    let data = jsonwebtoken::dangerous::insecure_decode::<Claims>(token.trim())?;
    if data.header.alg != Algorithm::RS256 {
        return Err(JwtError::Algorithm(data.header.alg));
    }
    Ok(data.claims)
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `aud` may be one string or a list of them (serde `deserialize_with`).
pub fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(a)) => vec![a],
        Some(Aud::Many(a)) => a,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// An unsigned-looking token with the given header and claims.
    pub(crate) fn token(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    const RS256: &str = r#"{"alg":"RS256","kid":"k"}"#;

    #[test]
    fn reads_aud_as_string_or_list() {
        let c = peek(&token(RS256, r#"{"aud":"a","exp":5}"#)).unwrap();
        assert_eq!(c.aud, ["a"]);
        let c = peek(&token(RS256, r#"{"aud":["a","b"],"exp":5}"#)).unwrap();
        assert!(c.has_aud("b") && !c.has_aud("c"));
    }

    #[test]
    fn expiry_is_inclusive_and_missing_exp_is_expired() {
        let c = peek(&token(RS256, r#"{"aud":"a","exp":100}"#)).unwrap();
        assert!(!c.is_expired(100));
        assert!(c.is_expired(101));
        let c = peek(&token(RS256, r#"{"aud":"a"}"#)).unwrap();
        assert!(c.is_expired(0));
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        assert!(matches!(
            peek(&token(r#"{"alg":"HS256"}"#, r#"{"exp":1}"#)),
            Err(JwtError::Algorithm(_))
        ));
        assert!(peek("garbage").is_err());
        assert!(peek("a.b.c").is_err());
    }
}
