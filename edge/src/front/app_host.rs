//! Requests on an app host (docs/protocol.md 2 and 5): who is asking, and what
//! they get.
//!
//! A request is let through with a valid app token for this app (the
//! `cf-access-token` header, or the `CF_Authorization` cookie a browser
//! holds) or with an allowed service token (`Cf-Access-Client-Id` and
//! `Cf-Access-Client-Secret`); it then reaches a small demo origin that says
//! who it saw. Anything else gets the 302 to the login path, which is what the
//! token check (`cloudflared_token_check=true`) and every client watch for;
//! except a bad service token, which is refused outright (403) so that no
//! client starts a browser login for it.
//!
//! A websocket upgrade is handed to the carrier (`carrier`), which answers
//! it by the same rules and then relays to the app's TCP origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use subtle::ConstantTimeEq;
use url::form_urlencoded;

use crate::auth::discovery;
use crate::auth::html;
use crate::auth::tokens::Kind;
use crate::carrier::upgrade as carrier;
use crate::edge::EdgeState;
use crate::front::router::{AppHost, cookie, header_str};
use crate::ops::counters::Endpoint;
use crate::site::App;

/// Who a request was let through as.
#[derive(Debug)]
pub(crate) enum Principal {
    User(String),
    ServiceToken(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::User(email) => f.write_str(email),
            Principal::ServiceToken(name) => write!(f, "service token {name}"),
        }
    }
}

/// The fallback for every path of an app host.
pub(crate) async fn request(
    State(edge): State<Arc<EdgeState>>,
    Extension(target): Extension<AppHost>,
    request: Request,
) -> Response {
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    if header_str(request.headers(), "cf-access-metadata-request")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        edge.counters.hit(Endpoint::Discovery);
        return discovery::login_redirect(&edge, app, &target.host, path_and_query, true);
    }
    if carrier::is_upgrade(&request) {
        return carrier::upgrade(edge.clone(), target, request).await;
    }
    let headers = request.headers();
    let uri = request.uri();
    let token_check = uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "cloudflared_token_check" && v == "true")
    });
    edge.counters.hit(if token_check {
        Endpoint::TokenCheck
    } else {
        Endpoint::AppRequest
    });

    // A browser-rendered app's root is the terminal page for a user (a
    // token check and a service token get the demo origin as before).
    if app.browser_rendering
        && !token_check
        && uri.path() == "/"
        && let Some(page) = crate::ssh::terminal::index(&edge, app, headers)
    {
        return page;
    }
    match authenticate(&edge, app, headers) {
        Ok(Some(principal)) => origin(app, principal, uri.path()),
        Ok(None) => discovery::login_redirect(&edge, app, &target.host, path_and_query, false),
        Err(refusal) => {
            tracing::info!(app = %app.hostname, "refused a service token: {refusal}");
            html::text(StatusCode::FORBIDDEN, &format!("access-edge: {refusal}"))
        }
    }
}

/// The principal a request carries; `Ok(None)` when it carries none that is
/// valid (a login is needed), `Err` for a bad service token.
pub(crate) fn authenticate(
    edge: &EdgeState,
    app: &App,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Principal>, String> {
    let id = header_str(headers, "cf-access-client-id");
    let secret = header_str(headers, "cf-access-client-secret");
    if id.is_some() || secret.is_some() {
        return check_service_token(edge, app, id, secret).map(Some);
    }
    let candidates = [
        header_str(headers, "cf-access-token").map(str::to_owned),
        cookie(headers, "CF_Authorization"),
    ];
    for token in candidates.into_iter().flatten() {
        match edge.tokens.verify(&edge.keys, &token, Kind::App, &app.aud) {
            Ok(claims) => return Ok(Some(Principal::User(claims.email))),
            Err(why) => tracing::debug!(app = %app.hostname, "app token refused: {why}"),
        }
    }
    Ok(None)
}

fn check_service_token(
    edge: &EdgeState,
    app: &App,
    id: Option<&str>,
    secret: Option<&str>,
) -> Result<Principal, String> {
    let (Some(id), Some(secret)) = (id, secret) else {
        return Err(
            "a service token needs both Cf-Access-Client-Id and Cf-Access-Client-Secret".into(),
        );
    };
    let Some(token) = edge.site.service_token(id) else {
        return Err(format!("unknown service token client id {id:?}"));
    };
    if !bool::from(token.client_secret.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(format!(
            "wrong client secret for service token {:?}",
            token.name
        ));
    }
    if !app.service_tokens.contains(&token.name) {
        return Err(format!(
            "service token {:?} is not allowed to reach {}",
            token.name, app.hostname
        ));
    }
    Ok(Principal::ServiceToken(token.name.clone()))
}

/// The demo origin: says who it saw.
fn origin(app: &App, principal: Principal, path: &str) -> Response {
    let body = match principal {
        Principal::User(email) => serde_json::json!({
            "email": email,
            "aud": app.aud,
            "path": path,
        }),
        Principal::ServiceToken(name) => serde_json::json!({
            "email": "",
            "aud": app.aud,
            "path": path,
            "service_token": name,
        }),
    };
    Json(body).into_response()
}
