//! One websocket handshake with the edge (docs/protocol.md 6.1): an HTTP/1.1
//! upgrade sent through the shared HTTP client, so the proxy, the trust roots
//! and the edge profile apply to it as to every other request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::{CONNECTION, HeaderMap, HeaderValue, LOCATION, UPGRADE};
use sha1::{Digest, Sha1};

use crate::access::host::AppUrl;
use crate::access::http;
use crate::access::token_check::is_login_redirect;
use crate::limits;

/// RFC 6455's magic value for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
pub const TOKEN_HEADER: &str = "cf-access-token";

/// Why a handshake did not open a websocket.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Access sent us to log in: the one answer that starts a login.
    #[error("Access asked for a login")]
    LoginRedirect,
    #[error("{0}")]
    Unreachable(String),
    #[error("{status}{}", body_suffix(.body))]
    Refused { status: StatusCode, body: String },
    #[error("the websocket handshake failed: {0}")]
    Handshake(String),
    /// The upgrade was sent and not answered (or its refusal not finished)
    /// within [`limits::WS_UPGRADE`].
    #[error(
        "the websocket upgrade was not answered within {}",
        limits::show(limits::WS_UPGRADE)
    )]
    Stalled,
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Opens a websocket to `url` with `headers` (and `token`, unless the
/// headers already carry one), returning the upgraded byte stream. The
/// whole upgrade, connect, TLS and a refusal's body included, is bounded by
/// [`limits::WS_UPGRADE`].
pub async fn dial(
    http: &reqwest::Client,
    url: &AppUrl,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<reqwest::Upgraded, DialError> {
    tokio::time::timeout(limits::WS_UPGRADE, upgrade(http, url, headers, token))
        .await
        .map_err(|_| DialError::Stalled)?
}

async fn upgrade(
    http: &reqwest::Client,
    url: &AppUrl,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<reqwest::Upgraded, DialError> {
    let key = STANDARD.encode(rand::random::<[u8; 16]>());
    let mut request = http
        .get(url.url().clone())
        .headers(headers.clone())
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", &key);
    if let Some(token) = token.filter(|_| !headers.contains_key(TOKEN_HEADER)) {
        let value = HeaderValue::from_str(token)
            .map_err(|_| DialError::Handshake("the token is not a valid header value".into()))?;
        request = request.header(TOKEN_HEADER, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| DialError::Unreachable(crate::error::describe_reqwest(&e)))?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if is_login_redirect(status, location.as_deref(), url.url()) {
            return Err(DialError::LoginRedirect);
        }
        // the caller's deadline bounds this read too
        let body = http::error_text(response, limits::WS_UPGRADE).await;
        return Err(DialError::Refused { status, body });
    }
    let accept = response
        .headers()
        .get("sec-websocket-accept")
        .and_then(|v| v.to_str().ok());
    if accept != Some(accept_key(&key).as_str()) {
        return Err(DialError::Handshake(
            "the server's Sec-WebSocket-Accept does not match our key".into(),
        ));
    }
    response
        .upgrade()
        .await
        .map_err(|e| DialError::Handshake(crate::error::describe_reqwest(&e)))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_rfc_6455s() {
        // the example of RFC 6455 section 1.3
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
