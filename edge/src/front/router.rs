//! Routing on the Host: one listener answers for the auth domain, the login
//! service, the Cloudflare API (`api.cloudflare.com`) and every app host, as
//! the real edge's anycast addresses do.
//!
//! Each kind of host has its own small router; the request is handed to it
//! after the host is classified (and, for an app host, the app found and put
//! in the request's extensions as [`AppHost`]). A websocket upgrade goes
//! through the app host's fallback to the carrier.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use tower::ServiceExt;

use crate::auth::html;
use crate::auth::login_page;
use crate::auth::login_service;
use crate::auth::org_exchange;
use crate::edge::EdgeState;
use crate::front::app_host;
use crate::limits;
use crate::ops::counters::Endpoint;
use crate::ops::faults::ApiFault;
use crate::site::{API_HOST, Site};
use crate::ssh::cert_sign;

/// The app a request on an app host is for, and the host as asked (lower
/// case, port stripped).
#[derive(Debug, Clone)]
pub(crate) struct AppHost {
    /// Index into `Site::apps`.
    pub app: usize,
    pub host: String,
}

/// One router per kind of host.
#[derive(Clone)]
struct HostRouters {
    app: Router,
    auth: Router,
    login: Router,
    api: Router,
}

/// The edge's whole HTTP service.
pub(crate) fn build(edge: Arc<EdgeState>) -> Router {
    let routers = HostRouters {
        app: Router::new()
            .route(
                "/cdn-cgi/access/cli",
                get(login_page::show).post(login_page::submit),
            )
            .route("/cdn-cgi/access/authorized", get(org_exchange::authorized))
            .route(
                &format!("{}/{{file}}", crate::ssh::page::ASSETS),
                get(crate::ssh::page::asset),
            )
            .route(
                crate::ssh::terminal::SESSION,
                get(crate::ssh::terminal::session),
            )
            .route(
                "/cdn-cgi/access/ssh/host-ca",
                get(crate::ssh::audit::host_ca),
            )
            .fallback(app_host::request)
            .with_state(edge.clone()),
        auth: Router::new()
            .route("/cdn-cgi/access/certs", get(jwks))
            .route(
                "/cdn-cgi/access/login/{*host}",
                get(org_exchange::login).post(org_exchange::sign_in),
            )
            .route("/cdn-cgi/access/cert_sign", any(cert_sign::handle))
            .fallback(not_found)
            .with_state(edge.clone()),
        login: Router::new()
            .route("/transfer/{*key}", get(login_service::poll))
            .fallback(not_found)
            .with_state(edge.clone()),
        api: crate::api::router(edge.api.clone()),
    };
    let faults = edge.clone();
    Router::new()
        .fallback(move |request: Request| dispatch(routers.clone(), edge.clone(), request))
        .layer(axum::middleware::from_fn(bounded_body))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                let skew = faults.faults.date_skew();
                async move { skewed_date(skew, next.run(request).await) }
            },
        ))
}

/// The `date-skew` fault: a `Date` header that far from the real time
/// (hyper adds the right one only to answers that have none).
fn skewed_date(skew: i64, mut response: Response) -> Response {
    if skew == 0 {
        return response;
    }
    let now = std::time::SystemTime::now();
    let at = if skew > 0 {
        now + std::time::Duration::from_secs(skew.unsigned_abs())
    } else {
        now - std::time::Duration::from_secs(skew.unsigned_abs())
    };
    if let Ok(value) = header::HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// Reads every request body before any handler sees it, within
/// [`limits::BODY_READ`] and [`limits::REQUEST_BODY`]: no handler can be
/// held by a body that dribbles in or never ends. A websocket upgrade has
/// no body and keeps its connection as it is.
async fn bounded_body(request: Request, next: axum::middleware::Next) -> Response {
    if crate::carrier::upgrade::is_upgrade(&request) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits::REQUEST_BODY);
    let bytes = match tokio::time::timeout(limits::BODY_READ, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                html::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "access-edge: the request body is larger than {} bytes",
                        limits::REQUEST_BODY
                    ),
                )
            } else {
                html::text(
                    StatusCode::BAD_REQUEST,
                    &format!("access-edge: cannot read the request body: {e}"),
                )
            };
        }
        Err(_) => {
            return html::text(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "access-edge: the request body did not arrive within {}s",
                    limits::BODY_READ.as_secs()
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn dispatch(routers: HostRouters, edge: Arc<EdgeState>, mut request: Request) -> Response {
    let Some(host) = request_host(&request) else {
        edge.counters.hit(Endpoint::Unknown);
        return html::text(
            StatusCode::BAD_REQUEST,
            "access-edge: the request names no host",
        );
    };
    // The transfer key is the capability that fetches a login's tokens.
    let path = request.uri().path();
    let path = if path.starts_with("/transfer/") {
        "/transfer/…"
    } else {
        path
    };
    tracing::debug!(method = %request.method(), %host, path, "request");
    let router = if host == edge.site.auth_domain {
        routers.auth
    } else if host == API_HOST {
        // Counted and faulted here, so the API's handlers need only its own
        // state. (Its credentials are headers, which are never logged.)
        edge.counters.hit(Endpoint::Api);
        if let Some(fault) = edge.faults.api_fault() {
            return api_fault(fault).await;
        }
        routers.api
    } else if Site::is_login_service(&host) {
        routers.login
    } else if let Some(app) = edge.site.app_index(&host) {
        request.extensions_mut().insert(AppHost { app, host });
        routers.app
    } else {
        edge.counters.hit(Endpoint::Unknown);
        return html::text(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("access-edge: no Access application at {host}"),
        );
    };
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// What the Cloudflare API answers under the `api` fault.
async fn api_fault(fault: ApiFault) -> Response {
    match fault {
        ApiFault::Garbage => {
            tracing::debug!("API: answered the fault garbage");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<<not json>> {\"success\": tr",
            )
                .into_response()
        }
        ApiFault::Status(status) => {
            tracing::debug!("API: answered the fault status {status}");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page = format!(
                "<!DOCTYPE html>\n<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center><hr><center>cloudflare</center></body></html>\n"
            );
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page,
            )
                .into_response()
        }
        _ => {
            tracing::debug!("API: injected stall");
            std::future::pending().await
        }
    }
}

/// `GET /cdn-cgi/access/certs` on the auth domain: the JWKS.
async fn jwks(State(edge): State<Arc<EdgeState>>) -> Response {
    edge.counters.hit(Endpoint::Jwks);
    Json(edge.keys.jwks()).into_response()
}

async fn not_found(State(edge): State<Arc<EdgeState>>) -> Response {
    edge.counters.hit(Endpoint::Unknown);
    html::text(StatusCode::NOT_FOUND, "access-edge: not found")
}

/// The host a request is for: the `Host` header (HTTP/1.1) or the URI's
/// authority (HTTP/2), lower case, without port, brackets or final dot.
fn request_host(request: &Request) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))?;
    normalize_host(raw)
}

pub(crate) fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// A request header as text.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hosts_lose_port_case_brackets_and_dot() {
        assert_eq!(
            normalize_host("SSH.Demo.test:443").as_deref(),
            Some("ssh.demo.test")
        );
        assert_eq!(
            normalize_host("ssh.demo.test.").as_deref(),
            Some("ssh.demo.test")
        );
        assert_eq!(normalize_host("[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host(":443"), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; CF_AppSession=xyz"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("CF_Authorization=tok"),
        );
        assert_eq!(cookie(&headers, "CF_AppSession").as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "CF_Authorization").as_deref(), Some("tok"));
        assert_eq!(cookie(&headers, "b"), None);
    }
}
