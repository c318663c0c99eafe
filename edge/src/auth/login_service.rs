//! The login service (`https://login.cloudflareaccess.org/transfer/<key>`,
//! docs/protocol.md 4.4): the sealed hand-over of tokens from the browser login to
//! the waiting command-line client.
//!
//! The client's public key is both the name of the login and the key the
//! result is sealed to (NaCl box: XSalsa20-Poly1305 over Curve25519, from the
//! edge's own keypair). Polls are held until the result arrives or the hold
//! time passes, because the official client gives up on a timeout or a network
//! error, not on "not yet"; a result is delivered once, and expires uncollected
//! after ten minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use tokio::sync::Notify;

use crate::auth::html;
use crate::edge::EdgeState;
use crate::error::EdgeError;
use crate::ops::counters::Endpoint;
use crate::ops::faults::PollFault;
use crate::ops::state::{SECRET, StateDir, files};

/// How long an uncollected result is kept.
const RESULT_TTL: Duration = Duration::from_secs(600);

/// base64url that takes the key with or without its padding.
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A client's box public key, as given in the login URL's `token` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientKey([u8; 32]);

impl ClientKey {
    /// Reads base64url (padded, as clients send it, or not); it must be 32
    /// bytes.
    pub fn parse(text: &str) -> Option<ClientKey> {
        let bytes = URL_SAFE_ANY_PAD.decode(text.trim()).ok()?;
        bytes.try_into().ok().map(ClientKey)
    }

    /// The name a result is stored under: one spelling for every way of
    /// writing the key.
    fn name(&self) -> String {
        URL_SAFE.encode(self.0)
    }
}

struct Ready {
    body: String,
    stored: Instant,
}

/// The login service's box key and its results waiting to be collected.
pub(crate) struct LoginService {
    secret: SecretKey,
    /// The edge's public key, base64url with padding (`service-public-key`).
    public_b64: String,
    results: Mutex<HashMap<String, Ready>>,
    arrived: Notify,
}

impl LoginService {
    /// Loads the box key kept in the state dir, or makes one.
    pub fn load_or_create(state: &StateDir) -> Result<LoginService, EdgeError> {
        let secret = match state.read_string(files::BOX_KEY)? {
            Some(text) => {
                let bytes = STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        EdgeError::state(state.file(files::BOX_KEY), "not a base64 32-byte key")
                    })?;
                SecretKey::from_bytes(bytes)
            }
            None => {
                let secret = SecretKey::generate(&mut OsRng);
                let text = format!("{}\n", STANDARD.encode(secret.to_bytes()));
                state.write(files::BOX_KEY, text.as_bytes(), SECRET)?;
                secret
            }
        };
        Ok(LoginService {
            public_b64: URL_SAFE.encode(secret.public_key().as_bytes()),
            secret,
            results: Mutex::default(),
            arrived: Notify::new(),
        })
    }

    /// Seals `plaintext` to `client` and keeps it for the client's poll:
    /// `base64(nonce || box)`, as the official client opens it.
    pub fn deliver(&self, client: &ClientKey, plaintext: &[u8]) -> Result<(), String> {
        let sealer = SalsaBox::new(&PublicKey::from_bytes(client.0), &self.secret);
        let nonce = SalsaBox::generate_nonce(&mut OsRng);
        let sealed = sealer
            .encrypt(&nonce, plaintext)
            .map_err(|_| "cannot seal the tokens".to_owned())?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results.retain(|_, r| r.stored.elapsed() < RESULT_TTL);
        results.insert(
            client.name(),
            Ready {
                body: STANDARD.encode(body),
                stored: Instant::now(),
            },
        );
        drop(results);
        self.arrived.notify_waiters();
        Ok(())
    }

    /// Takes the result for `client` if it is there (delivered once).
    fn take(&self, client: &ClientKey) -> Option<String> {
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results
            .remove(&client.name())
            .filter(|r| r.stored.elapsed() < RESULT_TTL)
            .map(|r| r.body)
    }

    /// Waits up to `hold` for the result for `client`.
    async fn wait(&self, client: &ClientKey, hold: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            // Registered before looking, so a delivery in between is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(body) = self.take(client) {
                return Some(body);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.take(client);
            }
        }
    }
}

/// `GET /transfer/<key>` on the login service.
pub(crate) async fn poll(State(edge): State<Arc<EdgeState>>, Path(key): Path<String>) -> Response {
    edge.counters.hit(Endpoint::TransferPoll);
    match edge.faults.take_poll_fault() {
        Some(PollFault::Fail(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::debug!(%status, "transfer poll: injected failure");
            return html::text(status, "access-edge: injected login service failure");
        }
        Some(PollFault::Stall) => {
            tracing::debug!("transfer poll: injected stall");
            return std::future::pending().await;
        }
        None => {}
    }
    let Some(client) = ClientKey::parse(&key) else {
        return html::text(
            StatusCode::BAD_REQUEST,
            "access-edge: the transfer key is not a base64url 32-byte public key",
        );
    };
    let hold = edge.settings().poll_hold;
    match edge.login_service.wait(&client, hold).await {
        Some(body) => {
            tracing::info!("login service: delivered a sealed login result");
            let mut response = (StatusCode::OK, body).into_response();
            if let Ok(value) = HeaderValue::from_str(&edge.login_service.public_b64) {
                response.headers_mut().insert("service-public-key", value);
            }
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_32_bytes_padded_or_not() {
        let padded = URL_SAFE.encode([7u8; 32]);
        assert_eq!(padded.len(), 44);
        let key = ClientKey::parse(&padded).unwrap();
        assert_eq!(ClientKey::parse(padded.trim_end_matches('=')), Some(key));
        assert_eq!(key.name(), padded);
        assert_eq!(ClientKey::parse(&URL_SAFE.encode([7u8; 31])), None);
        assert_eq!(ClientKey::parse("not base64!"), None);
    }

    #[tokio::test]
    async fn a_result_opens_with_the_clients_key_and_is_delivered_once() {
        let state = StateDir::open(None).unwrap();
        let service = LoginService::load_or_create(&state).unwrap();
        let client_secret = SecretKey::generate(&mut OsRng);
        let client = ClientKey(*client_secret.public_key().as_bytes());

        assert_eq!(service.wait(&client, Duration::from_millis(10)).await, None);
        service.deliver(&client, b"{\"app_token\":\"x\"}").unwrap();
        let body = service
            .wait(&client, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(service.take(&client), None);

        let raw = STANDARD.decode(body).unwrap();
        let server = PublicKey::from_slice(&URL_SAFE.decode(&service.public_b64).unwrap()).unwrap();
        let opener = SalsaBox::new(&server, &client_secret);
        let nonce = crypto_box::Nonce::from_slice(&raw[..24]);
        assert_eq!(
            opener.decrypt(nonce, &raw[24..]).unwrap(),
            b"{\"app_token\":\"x\"}"
        );

        // the box key is kept
        let again = LoginService::load_or_create(&state).unwrap();
        assert_eq!(again.public_b64, service.public_b64);
    }

    #[tokio::test]
    async fn a_waiting_poll_wakes_when_the_result_arrives() {
        let state = StateDir::open(None).unwrap();
        let service = Arc::new(LoginService::load_or_create(&state).unwrap());
        let client = ClientKey([1; 32]);
        let waiter = {
            let service = service.clone();
            tokio::spawn(async move { service.wait(&client, Duration::from_secs(30)).await })
        };
        // deliver until the waiter has it (it may not be waiting yet)
        service.deliver(&client, b"x").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(got.is_some());
    }
}
