//! Asking the team's SSH CA for a short-lived certificate (docs/protocol.md 7.4
//! and 7.5): `POST <iss>/cdn-cgi/access/cert_sign` with our public key and
//! the app token whose `iss` names the team.

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::access::http::{self, BodyError, RedirectRefused, SendError};
use crate::access::jwt;
use crate::limits;

const PATH: &str = "/cdn-cgi/access/cert_sign";

/// Why no certificate came back.
#[derive(Debug, thiserror::Error)]
pub enum CertSignError {
    /// The service refused the token (expired, revoked): log in again.
    #[error("cert_sign refused the token ({status}: {message})")]
    TokenRefused { status: u16, message: String },
    #[error("cert_sign answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach cert_sign at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cert_sign at {url}: {source}")]
    Body {
        url: String,
        #[source]
        source: BodyError,
    },
    /// The request holds the app token: it goes to its issuer or nowhere.
    #[error("{0}")]
    Redirected(#[source] RedirectRefused),
    #[error("the app token's issuer {0} is not an https URL, so the token is not sent there")]
    InsecureIssuer(String),
    #[error("cert_sign's answer is not valid: {0}")]
    BadAnswer(String),
    #[error("the app token names no issuer (iss), so there is no cert_sign to ask")]
    NoIssuer,
}

/// A successful answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Signed {
    #[serde(default)]
    pub id: String,
    pub certificate: String,
    #[serde(default)]
    pub expires_at: String,
}

#[derive(Serialize)]
struct Request<'a> {
    public_key: &'a str,
    jwt: &'a str,
    issuer: &'a str,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    message: String,
}

/// Sends `public_key` (an `authorized_keys` line, newline included, as the
/// official client sends it) with `token` to the token's issuer.
pub async fn sign(
    http: &reqwest::Client,
    token: &str,
    public_key: &str,
) -> Result<Signed, CertSignError> {
    let issuer = jwt::peek(token)
        .ok()
        .and_then(|c| c.iss)
        .filter(|iss| !iss.is_empty())
        .ok_or(CertSignError::NoIssuer)?;
    let url = format!("{}{PATH}", issuer.trim_end_matches('/'));
    if !url.starts_with("https://") {
        return Err(CertSignError::InsecureIssuer(issuer));
    }
    let unreachable = |reason: String| CertSignError::Unreachable {
        url: url.clone(),
        reason,
    };
    let body = serde_json::to_vec(&Request {
        public_key,
        jwt: token,
        issuer: &issuer,
    })
    .map_err(|e| unreachable(e.to_string()))?;
    let request = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(limits::CERT_SIGN)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let started = tokio::time::Instant::now();
    let response = match http::send_following(http, request).await {
        Ok(response) => response,
        Err(SendError::Redirect(refused)) => return Err(CertSignError::Redirected(refused)),
        Err(e) => return Err(unreachable(e.to_string())),
    };
    let status = response.status();
    // the answer's body shares the request's deadline
    let left = limits::CERT_SIGN.saturating_sub(started.elapsed());
    let body_error = |source| CertSignError::Body {
        url: url.clone(),
        source,
    };
    if status == StatusCode::OK {
        let body = http::read_body(response, limits::CERT_SIGN_BODY, left)
            .await
            .map_err(body_error)?;
        return serde_json::from_slice(&body).map_err(|e| CertSignError::BadAnswer(e.to_string()));
    }
    let body = match http::read_body(response, limits::ERROR_BODY, left).await {
        Ok(body) => body,
        Err(BodyError::TooLarge { .. }) => Vec::new(),
        Err(e) => return Err(body_error(e)),
    };
    // the JSON status is the one the official client reports
    let (status, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) if e.status != 0 => (e.status, e.message),
        _ => (
            status.as_u16(),
            http::first_line(&String::from_utf8_lossy(&body)),
        ),
    };
    if status == 401 {
        Err(CertSignError::TokenRefused { status, message })
    } else {
        Err(CertSignError::Refused { status, message })
    }
}
