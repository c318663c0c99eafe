//! `POST https://<auth domain>/cdn-cgi/access/cert_sign` (docs/protocol.md
//! 7.4–7.6): a short-lived OpenSSH user certificate for the public key sent,
//! signed by the SSH CA of the app whose token comes with it.
//!
//! The request is `{"public_key","jwt","issuer"}`. Neither its content type
//! nor its User-Agent is looked at: the official client sends Go's default
//! agent. The certificate is shaped like the one real certificate on record:
//! a user certificate whose only principal is the email's local part (the
//! Unix account sshd will log in), valid from [`CLOCK_SKEW`] before now for
//! the configured validity (180 s by default), a random 64-bit serial, a key
//! id of 32 hex digits that is also the answer's `id`, no critical options,
//! and the [`EXTENSIONS`] below; the line has no comment.
//!
//! Errors are `{"status":N,"message":…}` with HTTP status N, so that a client
//! can tell what to do: 401 for a token to log in again for (bad, expired,
//! revoked), 400 for a request that will never work as sent (not JSON, a
//! field missing, an issuer that is not the token's, a key that does not
//! parse), 404 for an app without a CA (the message says how to make one),
//! 405 for a method other than POST.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ssh_key::certificate::{Builder, CertType, Certificate};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey, public::KeyData};

use crate::auth::tokens::{AccessClaims, Kind, TokenError};
use crate::edge::EdgeState;
use crate::ops::counters::Endpoint;
use crate::ops::faults::CertSignFault;
use crate::ops::profile::shell_word;
use crate::site::App;
use crate::ssh::ca::{self as ssh_ca, SshCa};

/// How long before now a certificate starts, for clocks that run behind.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// The extensions of every certificate: those of the real one on record, and
/// port forwarding. Not X11 forwarding.
pub(crate) const EXTENSIONS: [&str; 4] = [
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// A request is three short strings; an RSA key of 16384 bits is 3 KiB.
const MAX_BODY: usize = 64 * 1024;

/// An answer other than a certificate.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }

    fn bad_token(why: TokenError) -> Refusal {
        let message = match why {
            TokenError::Expired => "the token has expired: log in again".to_owned(),
            TokenError::Revoked => "the token has been revoked: log in again".to_owned(),
            why => format!("the token is not valid ({why}): log in again"),
        };
        Refusal::new(StatusCode::UNAUTHORIZED, message)
    }

    fn internal(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status.as_u16(), &self.message)
    }
}

/// `{"status":N,"message":…}` with HTTP status N (500 when N is not one).
fn error(status: u16, message: &str) -> Response {
    let http = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "status": status, "message": message });
    (http, axum::Json(body)).into_response()
}

/// The answer to a granted request.
#[derive(Debug, Serialize)]
struct Signed {
    id: String,
    certificate: String,
    expires_at: String,
}

/// What a valid request asks for.
struct Granted<'a> {
    app: &'a App,
    ca: SshCa,
    email: String,
    principal: String,
    subject: PublicKey,
}

/// What goes into one certificate.
pub(crate) struct Plan {
    pub cert_type: CertType,
    pub key: KeyData,
    pub principal: String,
    pub valid_after: u64,
    pub valid_before: u64,
}

impl Plan {
    /// The user certificate `cert_sign` issues for `key`: `principal` only,
    /// from [`CLOCK_SKEW`] before now for `validity` (at least a second).
    pub(crate) fn user(key: KeyData, principal: &str, validity: Duration) -> Plan {
        let valid_after = crate::auth::tokens::now().saturating_sub(CLOCK_SKEW.as_secs());
        Plan {
            cert_type: CertType::User,
            key,
            principal: principal.to_owned(),
            valid_after,
            valid_before: valid_after.saturating_add(validity.as_secs().max(1)),
        }
    }
}

/// The handler for every method on the path.
pub(crate) async fn handle(State(edge): State<Arc<EdgeState>>, request: Request) -> Response {
    edge.counters.hit(Endpoint::CertSign);
    if request.method() != Method::POST {
        let mut response = error(405, "cert_sign takes a POST with a JSON body");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let fault = edge.faults.cert_sign_fault();
    if let Some(CertSignFault::Error { status, message }) = &fault {
        tracing::info!("cert_sign answered the fault {status}: {message}");
        return error(*status, message);
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request is larger than {MAX_BODY} bytes"),
            )
            .into_response();
        }
    };
    let granted = match check(&edge, &body) {
        Ok(granted) => granted,
        Err(refusal) => {
            tracing::info!(
                "cert_sign refused ({}): {}",
                refusal.status.as_u16(),
                refusal.message
            );
            return refusal.into_response();
        }
    };
    match issue(&edge, &granted, fault.as_ref()) {
        Ok(response) => response,
        Err(refusal) => {
            tracing::error!(app = %granted.app.hostname, "cert_sign failed: {}", refusal.message);
            refusal.into_response()
        }
    }
}

/// Checks a request, in the order a client can act on: the JSON, the token
/// (401), the issuer, the app's CA (404), then the key.
fn check<'a>(edge: &'a EdgeState, body: &[u8]) -> Result<Granted<'a>, Refusal> {
    let request: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the request is not JSON ({e})")))?;
    let field = |name: &str| {
        request
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Refusal::bad_request(format!("the request has no {name:?} (a non-empty string)"))
            })
    };
    let public_key = field("public_key")?;
    let jwt = field("jwt")?.trim();
    let issuer = field("issuer")?;

    // The signature first, to learn which app the token is for; then every
    // check of an app token for that app.
    let claims: AccessClaims = edge
        .keys
        .verify(jwt)
        .map_err(|e| Refusal::bad_token(e.into()))?;
    let Some(app) = claims
        .aud
        .iter()
        .find_map(|aud| edge.site.apps.iter().find(|app| app.aud == *aud))
    else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "the token is for no Access application of this team: log in to the app again",
        ));
    };
    let claims = edge
        .tokens
        .verify(&edge.keys, jwt, Kind::App, &app.aud)
        .map_err(Refusal::bad_token)?;
    if issuer != claims.iss {
        return Err(Refusal::bad_request(format!(
            "issuer {issuer:?} is not the token's issuer ({})",
            claims.iss
        )));
    }
    let principal = match claims.email.split_once('@') {
        Some((local, _)) if !local.is_empty() => local.to_owned(),
        _ => {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "the token names no user email: log in again",
            ));
        }
    };

    let ca = match ssh_ca::load(edge.state.path(), &app.hostname) {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the application {} has no SSH CA: create one with `access-edge ca generate --app {} --state-dir {}`",
                    app.hostname,
                    shell_word(Path::new(&app.hostname)),
                    shell_word(edge.state.path())
                ),
            ));
        }
        Err(e) => {
            tracing::error!(app = %app.hostname, "cannot read the SSH CA: {e}");
            return Err(Refusal::internal(format!(
                "the SSH CA of {} cannot be read (see the edge's log)",
                app.hostname
            )));
        }
    };

    let subject = PublicKey::from_openssh(public_key.trim()).map_err(|e| {
        Refusal::bad_request(format!(
            "public_key is not an OpenSSH public key line like \"ecdsa-sha2-nistp256 AAAA…\" ({e})"
        ))
    })?;
    if matches!(subject.algorithm(), Algorithm::Dsa | Algorithm::Other(_)) {
        return Err(Refusal::bad_request(format!(
            "public_key: {} keys are not signed (use ECDSA P-256 or Ed25519)",
            subject.algorithm()
        )));
    }
    Ok(Granted {
        app,
        ca,
        email: claims.email,
        principal,
        subject,
    })
}

/// Signs the certificate of a granted request (or what a fault makes of it).
fn issue(
    edge: &EdgeState,
    granted: &Granted<'_>,
    fault: Option<&CertSignFault>,
) -> Result<Response, Refusal> {
    if fault == Some(&CertSignFault::Garbage) {
        tracing::info!("cert_sign answered the fault Garbage");
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><body><h1>Something went wrong</h1></body></html>\n",
        )
            .into_response());
    }
    let validity = edge.settings().cert_validity.as_secs().max(1);
    let now = crate::auth::tokens::now();
    let mut plan = Plan::user(
        granted.subject.key_data().clone(),
        &granted.principal,
        edge.settings().cert_validity,
    );
    match fault {
        Some(CertSignFault::OtherKey) => plan.key = fresh_key(&granted.subject.algorithm())?,
        Some(CertSignFault::HostCertificate) => {
            plan.cert_type = CertType::Host;
            plan.principal = granted.app.hostname.clone();
        }
        Some(CertSignFault::Expired) => {
            plan.valid_before = now.saturating_sub(60);
            plan.valid_after = plan.valid_before.saturating_sub(validity);
        }
        _ => {}
    }
    let key_id = hex::encode(rand::random::<[u8; 16]>());
    let certificate = sign(&granted.ca, &plan, &key_id)
        .and_then(|cert| cert.to_openssh())
        .map_err(|e| Refusal::internal(format!("cannot sign the certificate: {e}")))?;
    let certificate = if fault == Some(&CertSignFault::BadCertificate) {
        // The right type name, then bytes that are no certificate.
        let type_name = certificate.split(' ').next().unwrap_or_default();
        format!("{type_name} AAAAB3NvbWV0aGluZyBlbHNl")
    } else {
        certificate
    };
    let expires_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(plan.valid_before))
            .to_string();
    match fault {
        Some(fault) => tracing::info!(
            app = %granted.app.hostname,
            "cert_sign answered the fault {fault:?} to {}",
            granted.email
        ),
        None => tracing::info!(
            email = %granted.email,
            principal = %granted.principal,
            app = %granted.app.hostname,
            key = %granted.subject.fingerprint(HashAlg::Sha256),
            %key_id,
            %expires_at,
            "issued an SSH certificate"
        ),
    }
    Ok(axum::Json(Signed {
        id: key_id,
        certificate,
        expires_at,
    })
    .into_response())
}

/// One certificate, signed by `ca`: every certificate the edge issues (to
/// `cert_sign`, and to its own SSH client, `ssh::origin`) is made here.
pub(crate) fn sign(ca: &SshCa, plan: &Plan, key_id: &str) -> Result<Certificate, ssh_key::Error> {
    let mut builder = Builder::new_with_random_nonce(
        &mut OsRng,
        plan.key.clone(),
        plan.valid_after,
        plan.valid_before,
    )?;
    builder
        .serial(rand::random::<u64>().max(1))?
        .key_id(key_id)?
        .cert_type(plan.cert_type)?
        .valid_principal(plan.principal.clone())?;
    if plan.cert_type == CertType::User {
        for extension in EXTENSIONS {
            builder.extension(extension, "")?;
        }
    }
    builder.sign(ca.private_key())
}

/// A new public key, of `like`'s type when the edge can make one.
fn fresh_key(like: &Algorithm) -> Result<KeyData, Refusal> {
    let algorithm = match like {
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        }
        | Algorithm::Ed25519 => like.clone(),
        _ => Algorithm::Ed25519,
    };
    PrivateKey::random(&mut OsRng, algorithm)
        .map(|key| key.public_key().key_data().clone())
        .map_err(|e| Refusal::internal(format!("cannot make a key: {e}")))
}
