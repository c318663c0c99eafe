//! Browser login through the login service (docs/protocol.md section 4.4).
//!
//! A fresh Curve25519 keypair names the login: its public key goes into the
//! login URL the user opens, and the login service hands the result, sealed
//! to that key, to whoever polls `transfer/<public key>`. Only the holder of
//! the private key, which never leaves this process, can open it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use crypto_box::aead::Aead;
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use serde::Deserialize;

use crate::access::host::AppUrl;
use crate::access::http::{self, BodyError, RedirectRefused, SendError};
use crate::limits;
use tracing::debug;

/// The login service, and its FedRAMP twin.
pub const LOGIN_SERVICE: &str = "https://login.cloudflareaccess.org/";
pub const LOGIN_SERVICE_FEDRAMP: &str = "https://login.fed.cloudflareaccess.org/";

/// Why the login did not yield tokens.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the login service failed ({status}): {body}")]
    Service { status: u16, body: String },
    #[error("cannot reach the login service: {0}")]
    Unreachable(String),
    /// The whole wait ran out: as the user sees it.
    #[error("nobody approved the login at {url} within {}", limits::show(*.limit))]
    NotApproved { url: String, limit: Duration },
    #[error("the login service's answer cannot be opened: {0}")]
    BadAnswer(String),
    #[error("the login service: {0}")]
    Body(#[source] BodyError),
    /// The poll's URL names this login's key: it goes nowhere else.
    #[error("{0}")]
    Redirected(#[source] RedirectRefused),
}

/// What the login service delivers.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub app_token: String,
    #[serde(default)]
    pub org_token: String,
}

/// How the `redirect_url` in the login URL is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// The app URL as given (`login`, `ssh`, `ssh-gen`).
    FullUrl,
    /// The app URL with its path emptied (`curl`).
    HostOnly,
}

/// One browser login in progress.
pub struct LoginRequest {
    secret: SecretKey,
    public_b64: String,
    url: String,
}

impl LoginRequest {
    /// A fresh keypair and the login URL for `app_url`.
    pub fn new(app_url: &AppUrl, aud: &str, redirect: Redirect, auto_close: bool) -> Self {
        let secret = SecretKey::generate(&mut rand::rngs::OsRng);
        let public_b64 = URL_SAFE.encode(secret.public_key().as_bytes());
        let url = login_url(app_url, aud, &public_b64, redirect, auto_close);
        LoginRequest {
            secret,
            public_b64,
            url,
        }
    }

    /// The URL the user opens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Long-polls the login service until the sealed tokens arrive, and opens
    /// them: polls of [`limits::LOGIN_POLL`] at most, at least
    /// [`limits::LOGIN_POLL_GAP`] apart, until `limit` (the whole wait) runs
    /// out. Only the time is the user's to know: however many polls a
    /// service takes to say "not yet", the wait ends when it was said to.
    pub async fn wait(
        &self,
        client: &reqwest::Client,
        service: &str,
        limit: Duration,
    ) -> Result<Tokens, LoginError> {
        let began = Instant::now();
        let deadline = began + limit;
        let service_host = url::Url::parse(service)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| service.to_owned());
        let mut polls = 0u32;
        loop {
            let started = Instant::now();
            if started >= deadline {
                break;
            }
            polls += 1;
            let poll = limits::LOGIN_POLL.min(deadline - started);
            debug!(
                "polling the login service at {service_host} (poll {polls}, held up to {}; {} of the wait left)",
                limits::show(poll),
                limits::show(deadline - started)
            );
            match tokio::time::timeout(poll, self.poll(client, service, poll)).await {
                Ok(Ok(Some(tokens))) => {
                    debug!(
                        "the login service delivered the sealed tokens after {} (poll {polls})",
                        limits::show(began.elapsed())
                    );
                    return Ok(tokens);
                }
                Ok(Ok(None)) => {
                    debug!("the login service has nothing yet: nobody approved the login so far")
                }
                Ok(Err(e)) => return Err(e),
                // the service holds a poll for less than LOGIN_POLL: past it,
                // only the end of the whole wait is ours to give up at
                Err(_) if Instant::now() >= deadline => break,
                Err(_) => {
                    return Err(LoginError::Unreachable(format!(
                        "it did not answer a poll within {}",
                        limits::show(poll)
                    )));
                }
            }
            // a service that says "not yet" at once must not make this spin
            tokio::time::sleep_until((started + limits::LOGIN_POLL_GAP).min(deadline)).await;
        }
        debug!(
            "the wait of {} ran out after {polls} polls",
            limits::show(limit)
        );
        Err(LoginError::NotApproved {
            url: self.url.clone(),
            limit,
        })
    }

    /// One poll: the tokens, or `None` for "not yet".
    async fn poll(
        &self,
        client: &reqwest::Client,
        service: &str,
        limit: Duration,
    ) -> Result<Option<Tokens>, LoginError> {
        // The key goes into the path raw: `=` is fine there, and the service
        // looks it up byte for byte.
        let transfer = format!("{service}transfer/{}", self.public_b64);
        // no timeout of its own: the caller's bounds this poll, body included
        let request = client
            .get(&transfer)
            .build()
            .map_err(|e| LoginError::Unreachable(e.to_string()))?;
        let response = match http::send_following(client, request).await {
            Ok(response) => response,
            Err(SendError::Redirect(refused)) => return Err(LoginError::Redirected(refused)),
            Err(e) => return Err(LoginError::Unreachable(e.to_string())),
        };
        let status = response.status();
        if status.is_server_error() {
            return Err(LoginError::Service {
                status: status.as_u16(),
                body: http::error_text(response, limit).await,
            });
        }
        let sender = response
            .headers()
            .get("service-public-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status != reqwest::StatusCode::OK {
            return Ok(None);
        }
        let body = http::read_body(response, limits::TRANSFER_BODY, limit)
            .await
            .map_err(LoginError::Body)?;
        if body.is_empty() {
            return Ok(None);
        }
        self.open(&body, sender.as_deref().unwrap_or_default())
            .map(Some)
    }

    /// Opens `base64(nonce || box)` sealed by `sender` (base64url) to our key.
    fn open(&self, body: &[u8], sender: &str) -> Result<Tokens, LoginError> {
        let bad = |s: &dyn std::fmt::Display| LoginError::BadAnswer(s.to_string());
        let text = std::str::from_utf8(body).map_err(|e| bad(&e))?;
        let sealed = STANDARD.decode(text.trim()).map_err(|e| bad(&e))?;
        if sealed.len() < 24 {
            return Err(bad(&"it is too short to hold a nonce"));
        }
        let sender =
            decode_key(sender).ok_or_else(|| bad(&"no valid service-public-key header"))?;
        let (nonce, ciphertext) = sealed.split_at(24);
        let plain = SalsaBox::new(&sender, &self.secret)
            .decrypt(nonce.into(), ciphertext)
            .map_err(|_| bad(&"it was not sealed to this login's key"))?;
        let tokens: Tokens = serde_json::from_slice(&plain).map_err(|e| bad(&e))?;
        if tokens.app_token.is_empty() {
            return Err(bad(&"it holds no app token"));
        }
        Ok(tokens)
    }
}

/// A 32-byte public key in base64url, with or without padding.
fn decode_key(text: &str) -> Option<PublicKey> {
    let text = text.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Some(PublicKey::from(bytes))
}

/// The login URL, built as the official client builds it: `token` and `aud`
/// set on the app URL's query, that URL as `redirect_url`, the transfer
/// flags added, keys sorted as Go's `url.Values.Encode` sorts them, and the
/// path set to `/cdn-cgi/access/cli` on the app host.
pub fn login_url(
    app_url: &AppUrl,
    aud: &str,
    public_key: &str,
    redirect: Redirect,
    auto_close: bool,
) -> String {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in app_url.url().query_pairs() {
        query
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    query.insert("token".into(), vec![public_key.into()]);
    query.insert("aud".into(), vec![aud.into()]);
    let authority = format!("https://{}", app_url.authority());
    let redirect_url = match redirect {
        Redirect::FullUrl => {
            let base = app_url.go_string();
            let base = base.split('?').next().unwrap_or(&base).to_owned();
            format!("{base}?{}", go_encode(&query))
        }
        Redirect::HostOnly => format!("{authority}?{}", go_encode(&query)),
    };
    query.insert("redirect_url".into(), vec![redirect_url]);
    query.insert("send_org_token".into(), vec!["true".into()]);
    query.insert("edge_token_transfer".into(), vec!["true".into()]);
    if auto_close {
        query.insert("close_interstitial".into(), vec!["true".into()]);
    }
    format!("{authority}/cdn-cgi/access/cli?{}", go_encode(&query))
}

/// Go's `url.Values.Encode`: keys in order, each value `QueryEscape`d.
fn go_encode(query: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    for (k, values) in query {
        for v in values {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&go_query_escape(k));
            out.push('=');
            out.push_str(&go_query_escape(v));
        }
    }
    out
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the
/// rest is `%XX` in upper case.
fn go_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

    #[test]
    fn login_url_matches_the_official_client_byte_for_byte() {
        let app = AppUrl::parse("ssh.example.com").unwrap();
        assert_eq!(
            login_url(&app, "aud1", KEY, Redirect::FullUrl, false),
            "https://ssh.example.com/cdn-cgi/access/cli?aud=aud1&edge_token_transfer=true\
             &redirect_url=https%3A%2F%2Fssh.example.com%3Faud%3Daud1%26token%3Dq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA%253D\
             &send_org_token=true&token=q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA%3D"
        );
    }

    #[test]
    fn login_url_keeps_path_port_and_query_and_sorts_keys() {
        let app = AppUrl::parse("https://h.example:8443/a b?z=1&b=2").unwrap();
        let url = login_url(&app, "A", "k", Redirect::FullUrl, true);
        assert_eq!(
            url,
            "https://h.example:8443/cdn-cgi/access/cli?aud=A&b=2&close_interstitial=true\
             &edge_token_transfer=true\
             &redirect_url=https%3A%2F%2Fh.example%3A8443%2Fa%2520b%3Faud%3DA%26b%3D2%26token%3Dk%26z%3D1\
             &send_org_token=true&token=k&z=1"
        );
        let host_only = login_url(&app, "A", "k", Redirect::HostOnly, false);
        assert!(host_only.contains("redirect_url=https%3A%2F%2Fh.example%3A8443%3Faud%3DA"));
    }

    #[test]
    fn a_wait_that_runs_out_says_so_as_the_user_sees_it() {
        let e = LoginError::NotApproved {
            url: "https://h/cdn-cgi/access/cli?x".into(),
            limit: limits::LOGIN_WAIT,
        };
        assert_eq!(
            e.to_string(),
            "nobody approved the login at https://h/cdn-cgi/access/cli?x within 4m"
        );
    }

    #[test]
    fn query_escape_is_gos() {
        assert_eq!(go_query_escape("a b/c=d~e*f"), "a+b%2Fc%3Dd~e%2Af");
    }

    #[test]
    fn opens_what_was_sealed_to_it_and_nothing_else() {
        let app = AppUrl::parse("h.example").unwrap();
        let login = LoginRequest::new(&app, "aud", Redirect::FullUrl, false);
        let service = SecretKey::generate(&mut rand::rngs::OsRng);
        let nonce = [7u8; 24];
        let sealed = SalsaBox::new(&login.secret.public_key(), &service)
            .encrypt(
                (&nonce).into(),
                br#"{"app_token":"A","org_token":"O"}"#.as_slice(),
            )
            .unwrap();
        let body = STANDARD.encode([nonce.as_slice(), &sealed].concat());
        let sender = URL_SAFE.encode(service.public_key().as_bytes());
        let tokens = login.open(body.as_bytes(), &sender).unwrap();
        assert_eq!(
            (tokens.app_token.as_str(), tokens.org_token.as_str()),
            ("A", "O")
        );

        let stranger = URL_SAFE.encode(
            SecretKey::generate(&mut rand::rngs::OsRng)
                .public_key()
                .as_bytes(),
        );
        assert!(matches!(
            login.open(body.as_bytes(), &stranger),
            Err(LoginError::BadAnswer(_))
        ));
        assert!(login.open(b"!!", &sender).is_err());
        assert!(
            login
                .open(STANDARD.encode([1u8; 10]).as_bytes(), &sender)
                .is_err()
        );
    }
}
