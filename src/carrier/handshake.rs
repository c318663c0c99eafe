//! One websocket handshake with the edge (docs/protocol.md 6.1): an HTTP/1.1
//! upgrade over the carrier's own connection, or through the shared HTTP
//! client when a proxy is set ([`transport`]); the trust roots and the edge
//! profile apply to it as to every other request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::{CONNECTION, HeaderMap, HeaderValue, LOCATION, UPGRADE};
use sha1::{Digest, Sha1};

use std::sync::Arc;

use super::transport::{self, Stream};
use crate::access::edge_profile::EdgeProfile;
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

/// How a websocket reaches the edge: over a connection of our own, or
/// through the shared HTTP client when a proxy is set ([`transport`]).
pub enum Dialer<'a> {
    Direct {
        tls: &'a Arc<rustls::ClientConfig>,
        profile: Option<&'a EdgeProfile>,
    },
    Proxied(&'a reqwest::Client),
}

/// Opens a websocket to `url` with `headers` (and `token`, unless the
/// headers already carry one), returning the upgraded byte stream. The
/// whole upgrade, connect, TLS and a refusal's body included, is bounded by
/// [`limits::WS_UPGRADE`].
pub async fn dial(
    dialer: &Dialer<'_>,
    url: &AppUrl,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<Stream, DialError> {
    tokio::time::timeout(limits::WS_UPGRADE, upgrade(dialer, url, headers, token))
        .await
        .map_err(|_| DialError::Stalled)?
}

/// A response to the upgrade, before its body or its stream is taken.
enum Answer {
    Direct(transport::Answer),
    Proxied(reqwest::Response),
}

async fn upgrade(
    dialer: &Dialer<'_>,
    url: &AppUrl,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<Stream, DialError> {
    let key = STANDARD.encode(rand::random::<[u8; 16]>());
    let mut request = headers.clone();
    request.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    request.insert(UPGRADE, HeaderValue::from_static("websocket"));
    request.insert("sec-websocket-version", HeaderValue::from_static("13"));
    request.insert(
        "sec-websocket-key",
        HeaderValue::from_str(&key).map_err(|e| DialError::Handshake(e.to_string()))?,
    );
    if let Some(token) = token.filter(|_| !headers.contains_key(TOKEN_HEADER)) {
        let value = HeaderValue::from_str(token)
            .map_err(|_| DialError::Handshake("the token is not a valid header value".into()))?;
        request.insert(TOKEN_HEADER, value);
    }
    let answer = match dialer {
        Dialer::Direct { tls, profile } => transport::send(tls, *profile, url, request)
            .await
            .map(Answer::Direct)
            .map_err(DialError::Unreachable)?,
        Dialer::Proxied(http) => http
            .get(url.url().clone())
            .headers(request)
            .send()
            .await
            .map(Answer::Proxied)
            .map_err(|e| DialError::Unreachable(crate::error::describe_reqwest(&e)))?,
    };
    let (status, response_headers) = match &answer {
        Answer::Direct(a) => (a.status(), a.headers()),
        Answer::Proxied(r) => (r.status(), r.headers()),
    };
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let location = response_headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if is_login_redirect(status, location.as_deref(), url.url()) {
            return Err(DialError::LoginRedirect);
        }
        // the caller's deadline bounds this read too
        let body = match answer {
            Answer::Direct(a) => a.error_text(limits::WS_UPGRADE).await,
            Answer::Proxied(r) => http::error_text(r, limits::WS_UPGRADE).await,
        };
        return Err(DialError::Refused { status, body });
    }
    let accept = response_headers
        .get("sec-websocket-accept")
        .and_then(|v| v.to_str().ok());
    if accept != Some(accept_key(&key).as_str()) {
        return Err(DialError::Handshake(
            "the server's Sec-WebSocket-Accept does not match our key".into(),
        ));
    }
    match answer {
        Answer::Direct(a) => a.upgrade().await.map_err(DialError::Handshake),
        Answer::Proxied(r) => r
            .upgrade()
            .await
            .map(Stream::Proxied)
            .map_err(|e| DialError::Handshake(crate::error::describe_reqwest(&e))),
    }
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
