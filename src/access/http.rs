//! The one HTTP client factory.
//!
//! Every request cfaccess makes, the websocket upgrade included, goes through
//! a client built here, so the User-Agent, the trust roots, the proxy, the
//! name overrides of an edge profile and the TLS settings live in one place.
//! The client never follows redirects by itself: the protocol needs to see
//! most of them (app discovery, the token check, the org-token exchange), and
//! the few requests that follow them do so through [`send_following`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::LOCATION;
use reqwest::{Client, Request, Response, StatusCode};

use crate::access::edge_profile::EdgeProfile;

/// Sent on every request: the official release whose protocol we speak first
/// (the real edge may look at it), then ourselves.
pub const USER_AGENT: &str = concat!("cloudflared/2026.8.2 cfaccess/", env!("CARGO_PKG_VERSION"));

/// How many redirects [`send_following`] takes before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the edge profile's CA certificate is not valid PEM: {0}")]
    BadCa(#[source] reqwest::Error),
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Builds the client: HTTP/1.1 only (the websocket upgrade needs it, and one
/// connection per host is all a CLI uses), no automatic redirects, the system
/// roots plus the edge profile's CA, proxies from the environment.
pub fn client(profile: Option<&EdgeProfile>) -> Result<Client, HttpError> {
    install_crypto_provider();
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(profile) = profile {
        let ca =
            reqwest::Certificate::from_pem(profile.ca_cert.as_bytes()).map_err(HttpError::BadCa)?;
        builder = builder
            .tls_certs_merge([ca])
            .dns_resolver(Arc::new(ProfileResolver(profile.clone())));
    }
    builder.build().map_err(HttpError::Build)
}

/// reqwest is built without a default provider: ring keeps the binary small.
/// AES-128-GCM goes first: it is as safe for a session of minutes to hours
/// and costs less per byte than AES-256 on a stream of gigabytes.
fn install_crypto_provider() {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let mut provider = default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        let s = suite.suite();
        if s == cipher_suite::TLS13_AES_128_GCM_SHA256.suite() {
            0
        } else if s == cipher_suite::TLS13_AES_256_GCM_SHA384.suite() {
            1
        } else {
            2
        }
    });
    let _ = provider.install_default();
}

/// Sends `request`, following up to ten redirects by hand. A 303, and a 301 or
/// 302 answering a POST, turn into a GET without a body, as browsers and Go do.
pub async fn send_following(client: &Client, request: Request) -> reqwest::Result<Response> {
    let mut request = request;
    let mut hops = 0;
    loop {
        let retry = request.try_clone();
        let response = client.execute(request).await?;
        let status = response.status();
        let Some(mut next) = retry.filter(|_| status.is_redirection() && hops < MAX_REDIRECTS)
        else {
            return Ok(response);
        };
        let Some(location) = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| response.url().join(loc).ok())
        else {
            return Ok(response);
        };
        let to_get = status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && next.method() == reqwest::Method::POST);
        if to_get {
            *next.method_mut() = reqwest::Method::GET;
            *next.body_mut() = None;
            next.headers_mut().remove(reqwest::header::CONTENT_TYPE);
            next.headers_mut().remove(reqwest::header::CONTENT_LENGTH);
        }
        *next.url_mut() = location;
        request = next;
        hops += 1;
    }
}

/// Sends the names of an edge profile to its addresses; every other name goes
/// to the system resolver.
struct ProfileResolver(EdgeProfile);

impl Resolve for ProfileResolver {
    fn resolve(&self, name: Name) -> Resolving {
        if let Some(addr) = self.0.address_for(name.as_str()) {
            let addrs: Addrs = Box::new(std::iter::once(addr));
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
