//! App discovery and the answer to every unauthenticated request on an app
//! host (docs/protocol.md 2).
//!
//! The real edge answers with a 302 to the auth domain's login path,
//! `https://<auth domain>/cdn-cgi/access/login/<app host>?kid=<aud>&redirect_url=…&meta=…`,
//! naming the app in `CF-Access-Domain` and starting an app session with the
//! `CF_AppSession` cookie (which the org-token exchange must send back). New
//! clients ask with `cf-access-metadata-request: true` and also get the signed
//! `cf-access-metadata` JWT; old clients and the token check read the 302
//! itself. Only the exact 302 makes a client start a login, so this is the
//! one refusal an app host gives.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use url::form_urlencoded;

use crate::auth::html;
use crate::auth::tokens::now;
use crate::edge::EdgeState;
use crate::ops::faults::MetadataFault;
use crate::site::App;

/// The claims of the `cf-access-metadata` JWT, in the real edge's order.
#[derive(Debug, Serialize)]
struct MetadataClaims<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    hostname: &'a str,
    auth_domain: &'a str,
    aud: &'a str,
    app_hostname: &'a str,
    iat: u64,
}

/// The 302 to the login path for a request to `host` (lower case, no port)
/// at `path_and_query`, with the metadata JWT when `metadata` is asked for.
pub(crate) fn login_redirect(
    edge: &EdgeState,
    app: &App,
    host: &str,
    path_and_query: &str,
    metadata: bool,
) -> Response {
    let (meta, nonce) = edge.exchange.new_session(&app.aud);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("kid", &app.aud)
        .append_pair("redirect_url", path_and_query)
        .append_pair("meta", &meta)
        .finish();
    let location = format!(
        "https://{}/cdn-cgi/access/login/{host}?{query}",
        edge.site.auth_domain
    );
    let cookie = format!("CF_AppSession={nonce}; Path=/; Secure; HttpOnly; SameSite=None");

    let (Ok(location), Ok(domain), Ok(cookie)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(host),
        HeaderValue::from_str(&cookie),
    ) else {
        return html::text(StatusCode::BAD_REQUEST, "access-edge: bad request");
    };
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert("cf-access-domain", domain);
    headers.insert(header::SET_COOKIE, cookie);
    if metadata {
        let fault = edge.faults.metadata_fault();
        let wrong_host = format!("other.{host}");
        let claims = MetadataClaims {
            kind: "match",
            hostname: if fault == Some(MetadataFault::WrongHostname) {
                &wrong_host
            } else {
                host
            },
            auth_domain: if fault == Some(MetadataFault::ForeignAuthDomain) {
                "access.evil.test"
            } else {
                &edge.site.auth_domain
            },
            aud: &app.aud,
            app_hostname: &app.hostname,
            iat: match fault {
                Some(MetadataFault::StaleIat) => now() - 24 * 3600 - 60,
                Some(MetadataFault::FutureIat) => now() + 10 * 60,
                _ => now(),
            },
        };
        match edge.keys.sign(&claims) {
            Ok(jwt) => {
                let jwt = match fault {
                    Some(MetadataFault::BadSignature) => spoil_signature(&jwt),
                    Some(MetadataFault::UnknownKid) => with_unknown_kid(&jwt),
                    _ => jwt,
                };
                if let Ok(value) = HeaderValue::from_str(&jwt) {
                    headers.insert("cf-access-metadata", value);
                }
            }
            Err(e) => {
                tracing::error!("cannot sign the app metadata: {e}");
                return html::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "access-edge: cannot sign the app metadata",
                );
            }
        }
    }
    response
}

/// The same JWT with a signature made for other claims.
fn spoil_signature(jwt: &str) -> String {
    let Some((signed, signature)) = jwt.rsplit_once('.') else {
        return jwt.to_owned();
    };
    // flipping the first character keeps it valid base64url of the same length
    let mut sig: Vec<u8> = signature.bytes().collect();
    if let Some(first) = sig.first_mut() {
        *first = if *first == b'A' { b'B' } else { b'A' };
    }
    format!("{signed}.{}", String::from_utf8_lossy(&sig))
}

/// The same JWT with a header naming a key the JWKS does not hold.
fn with_unknown_kid(jwt: &str) -> String {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#,
        "0".repeat(64)
    ));
    match jwt.split_once('.') {
        Some((_, rest)) => format!("{header}.{rest}"),
        None => jwt.to_owned(),
    }
}
