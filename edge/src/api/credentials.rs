//! Who may call the Cloudflare API (docs/protocol.md 11): the account id the
//! edge answers for, and the API tokens and legacy API keys it accepts.
//!
//! The account id is configured or generated once; either way it is written
//! to `DIR/account-id`, so a script finds it and a restart keeps it. With no
//! `api_tokens` and no `api_keys` in the config, the edge makes one token
//! that may edit, shaped like Cloudflare's (40 of `A-Za-z0-9_-`), kept in
//! `DIR/api-token` (0600) and reused by every later start. Token values are
//! compared in constant time and never logged; a token past its `expires`
//! is refused exactly like an unknown one.

use std::time::SystemTime;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::EdgeError;
use crate::ops::config::{ApiPermission, Config, is_hex_id};
use crate::ops::state::{SECRET, StateDir, files};

/// The length of a generated API token (Cloudflare's are 40 characters).
const TOKEN_LEN: usize = 40;
/// The characters of a generated token: 64 of them, so a random byte's low
/// six bits pick one without bias.
const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One accepted API token.
struct Token {
    name: String,
    value: String,
    permission: ApiPermission,
    expires: Option<SystemTime>,
}

/// One accepted legacy key pair.
struct Key {
    email: String,
    key: String,
}

/// The account and the credentials of the API.
pub(crate) struct Credentials {
    pub account_id: String,
    tokens: Vec<Token>,
    keys: Vec<Key>,
    /// The token the edge made, when the config names no credentials.
    generated: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // Token and key values stay out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field(
                "tokens",
                &self.tokens.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.email).collect::<Vec<_>>(),
            )
            .field("generated", &self.generated.is_some())
            .finish()
    }
}

impl Credentials {
    /// The account id and credentials of `config`, generating (and keeping)
    /// what it leaves out.
    pub fn resolve(config: &Config, state: &StateDir) -> Result<Credentials, EdgeError> {
        let account_id = match &config.account_id {
            Some(id) => id.trim().to_ascii_lowercase(),
            None => match state.read_string(files::ACCOUNT_ID)? {
                Some(kept) => {
                    let kept = kept.trim().to_ascii_lowercase();
                    if !is_hex_id(&kept, 32) {
                        return Err(EdgeError::state(
                            state.file(files::ACCOUNT_ID),
                            "is not 32 hex digits (remove it to have a new account id made)",
                        ));
                    }
                    kept
                }
                None => hex::encode(rand::random::<[u8; 16]>()),
            },
        };
        if state
            .read_string(files::ACCOUNT_ID)?
            .as_deref()
            .map(str::trim)
            != Some(account_id.as_str())
        {
            state.write(
                files::ACCOUNT_ID,
                format!("{account_id}\n").as_bytes(),
                0o644,
            )?;
        }
        let tokens = config
            .api_tokens
            .iter()
            .map(|t| Token {
                name: t.name.clone(),
                value: t.token.clone(),
                permission: t.permission,
                // Checked when the config was validated.
                expires: t
                    .expires
                    .as_deref()
                    .and_then(|e| humantime::parse_rfc3339(e.trim()).ok()),
            })
            .collect();
        let keys = config
            .api_keys
            .iter()
            .map(|k| Key {
                email: k.email.clone(),
                key: k.key.clone(),
            })
            .collect();
        let generated = if config.api_tokens.is_empty() && config.api_keys.is_empty() {
            Some(generated_token(state)?)
        } else {
            None
        };
        Ok(Credentials {
            account_id,
            tokens,
            keys,
            generated,
        })
    }

    /// The token a script can use to edit: the generated one, else the
    /// config's first `edit` token (expired or not: the config says so).
    pub fn edit_token(&self) -> Option<&str> {
        self.generated.as_deref().or_else(|| {
            self.tokens
                .iter()
                .find(|t| t.permission == ApiPermission::Edit)
                .map(|t| t.value.as_str())
        })
    }

    /// What the request's credentials may do: `Authorization: Bearer`, else
    /// `X-Auth-Email` with `X-Auth-Key`; `None` when they are missing, unknown
    /// or expired.
    pub fn check(&self, headers: &HeaderMap) -> Option<ApiPermission> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(authorization) = header("authorization") {
            let (scheme, token) = authorization.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            return self.token(token.trim());
        }
        match (header("x-auth-email"), header("x-auth-key")) {
            (Some(email), Some(key)) => {
                let email = email.trim();
                let key = key.trim();
                let mut found = false;
                for k in &self.keys {
                    found |= k.email.eq_ignore_ascii_case(email)
                        & bool::from(k.key.as_bytes().ct_eq(key.as_bytes()));
                }
                found.then_some(ApiPermission::Edit)
            }
            _ => None,
        }
    }

    fn token(&self, value: &str) -> Option<ApiPermission> {
        if let Some(generated) = &self.generated
            && bool::from(generated.as_bytes().ct_eq(value.as_bytes()))
        {
            return Some(ApiPermission::Edit);
        }
        let token = self
            .tokens
            .iter()
            .find(|t| bool::from(t.value.as_bytes().ct_eq(value.as_bytes())))?;
        if token.expires.is_some_and(|at| at <= SystemTime::now()) {
            tracing::info!(token = %token.name, "an expired API token was refused");
            return None;
        }
        Some(token.permission)
    }
}

/// The token kept in `DIR/api-token`, made when there is none.
fn generated_token(state: &StateDir) -> Result<String, EdgeError> {
    if let Some(kept) = state.read_string(files::API_TOKEN)? {
        let kept = kept.trim();
        if kept.len() != TOKEN_LEN || !kept.bytes().all(|b| TOKEN_ALPHABET.contains(&b)) {
            return Err(EdgeError::state(
                state.file(files::API_TOKEN),
                format!(
                    "is not an API token of {TOKEN_LEN} letters, digits, '-' or '_' (remove it to have a new one made)"
                ),
            ));
        }
        return Ok(kept.to_owned());
    }
    let token = new_token();
    state.write(files::API_TOKEN, format!("{token}\n").as_bytes(), SECRET)?;
    tracing::info!(
        "made an API token that may edit Access apps ({})",
        state.file(files::API_TOKEN).display()
    );
    Ok(token)
}

/// 40 random characters of `A-Za-z0-9_-`.
fn new_token() -> String {
    (0..TOKEN_LEN)
        .map(|_| char::from(TOKEN_ALPHABET[usize::from(rand::random::<u8>() & 63)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn zero_config_makes_one_token_and_keeps_it() {
        let state = StateDir::open(None).unwrap();
        let config = Config::demo();
        let first = Credentials::resolve(&config, &state).unwrap();
        let token = first.edit_token().unwrap().to_owned();
        assert_eq!(token.len(), 40);
        assert!(token.bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
        assert!(is_hex_id(&first.account_id, 32));
        let again = Credentials::resolve(&config, &state).unwrap();
        assert_eq!(again.edit_token(), Some(token.as_str()));
        assert_eq!(again.account_id, first.account_id);
        assert!(!format!("{again:?}").contains(&token));
        assert_eq!(
            again.check(&headers(&[("authorization", &format!("Bearer {token}"))])),
            Some(ApiPermission::Edit)
        );
        assert_eq!(
            again.check(&headers(&[("authorization", "Bearer nope")])),
            None
        );
        assert_eq!(again.check(&headers(&[])), None);
        std::fs::write(state.file(files::API_TOKEN), "short\n").unwrap();
        let err = Credentials::resolve(&config, &state)
            .unwrap_err()
            .to_string();
        assert!(err.contains("api-token: is not an API token"), "{err}");
    }

    #[test]
    fn configured_credentials_replace_the_generated_token() {
        let state = StateDir::open(None).unwrap();
        let config = Config::parse(
            "account_id = \"0123456789ABCDEF0123456789abcdef\"\n[[apps]]\nhostname = \"x.test\"\n\
             [[api_tokens]]\nname = \"r\"\ntoken = \"read-me\"\npermission = \"read\"\n\
             [[api_tokens]]\nname = \"old\"\ntoken = \"old-one\"\npermission = \"edit\"\nexpires = \"2001-01-01T00:00:00Z\"\n\
             [[api_keys]]\nemail = \"admin@x.test\"\nkey = \"k3y\"\n",
        )
        .unwrap();
        let creds = Credentials::resolve(&config, &state).unwrap();
        assert_eq!(creds.account_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(
            state.read_string(files::ACCOUNT_ID).unwrap().unwrap(),
            "0123456789abcdef0123456789abcdef\n"
        );
        assert_eq!(state.read(files::API_TOKEN).unwrap(), None);
        assert_eq!(creds.edit_token(), Some("old-one"));
        let bearer = |t: &str| headers(&[("authorization", &format!("bearer {t}"))]);
        assert_eq!(creds.check(&bearer("read-me")), Some(ApiPermission::Read));
        assert_eq!(creds.check(&bearer("old-one")), None);
        assert_eq!(
            creds.check(&headers(&[
                ("x-auth-email", "Admin@x.test"),
                ("x-auth-key", "k3y")
            ])),
            Some(ApiPermission::Edit)
        );
        assert_eq!(
            creds.check(&headers(&[
                ("x-auth-email", "admin@x.test"),
                ("x-auth-key", "nope")
            ])),
            None
        );
        assert_eq!(
            creds.check(&headers(&[("authorization", "Basic read-me")])),
            None
        );
    }
}
