//! The org-token exchange: single sign-on to a second app without a browser
//! (docs/protocol.md 4.3).
//!
//! 1. An app host answers an unauthenticated request with a 302 to the auth
//!    domain's login path and starts an app session: `meta` names it and the
//!    `CF_AppSession` cookie carries its nonce (see `discovery`).
//! 2. The auth domain's login path, given a valid org token in the
//!    `CF_Authorization` cookie for an identity the app allows, answers a 302
//!    to the app host's `/cdn-cgi/access/authorized` with a one-time code
//!    bound to the app and to `meta`.
//! 3. `/cdn-cgi/access/authorized` redeems the code, checks that the
//!    `CF_AppSession` cookie matches the session's nonce (so only the party
//!    that started the session can finish it), and sets the new app token as
//!    the `CF_Authorization` cookie, with `Expires` (the official client
//!    ignores a cookie that only has `Max-Age`).
//!
//! A browser with no org session gets, at step 2, the team's sign-in page:
//! pick (or type) an identity and approve. Its post (only from the form this
//! edge served for this app session: `login_nonce`, as the command-line login
//! form) sets the org token as the auth domain's `CF_Authorization` cookie and
//! goes on with step 2's redirect, so a browser reaches an app (the browser
//! terminal, docs/protocol.md 13) the way it does through the real edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::form_urlencoded;

use crate::auth::html::{self, Page, escape};
use crate::auth::login_nonce;
use crate::auth::login_page::{chosen_email, identity_choices};
use crate::auth::policy::{allows, is_valid_email};
use crate::auth::tokens::Kind;
use crate::edge::EdgeState;
use crate::front::router::{AppHost, cookie, normalize_host};
use crate::limits;
use crate::ops::counters::Endpoint;
use crate::site::App;

/// How long an app session (a `meta` and its nonce) lasts.
const SESSION_TTL: Duration = Duration::from_secs(600);
/// How long a code from the auth domain may wait to be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);
/// Past this many live sessions, the oldest go: every unauthenticated
/// request starts one, and nothing else bounds them.
const MAX_SESSIONS: usize = 50_000;

#[derive(Debug)]
struct Session {
    nonce: String,
    aud: String,
    started: Instant,
}

#[derive(Debug)]
struct Code {
    email: String,
    aud: String,
    meta: String,
    issued: Instant,
}

/// Live app sessions and unredeemed codes.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    sessions: Mutex<HashMap<String, Session>>,
    codes: Mutex<HashMap<String, Code>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl Exchange {
    /// Starts an app session for the app `aud`: its `meta` and its nonce.
    pub fn new_session(&self, aud: &str) -> (String, String) {
        let meta = random_hex();
        let nonce = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.started.elapsed() < SESSION_TTL);
            if sessions.len() >= MAX_SESSIONS {
                sessions.clear();
            }
        }
        sessions.insert(
            meta.clone(),
            Session {
                nonce: nonce.clone(),
                aud: aud.to_owned(),
                started: Instant::now(),
            },
        );
        (meta, nonce)
    }

    /// A one-time code for `email` on the app `aud`, bound to `meta`.
    fn issue_code(&self, email: &str, aud: &str, meta: &str) -> String {
        let code = random_hex();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, c| c.issued.elapsed() < CODE_TTL);
        codes.insert(
            code.clone(),
            Code {
                email: email.to_owned(),
                aud: aud.to_owned(),
                meta: meta.to_owned(),
                issued: Instant::now(),
            },
        );
        code
    }

    /// Redeems `code` for the app `aud`, given the `meta` of the request and
    /// the `CF_AppSession` cookie; the email it was issued for, or why not.
    fn redeem(
        &self,
        code: &str,
        aud: &str,
        meta: &str,
        session_cookie: Option<&str>,
    ) -> Result<String, &'static str> {
        let code = {
            let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
            codes.remove(code)
        }
        .filter(|c| c.issued.elapsed() < CODE_TTL)
        .ok_or("the sign-in code is unknown, used or expired")?;
        if code.aud != aud || code.meta != meta {
            return Err("the sign-in code was issued for another application or session");
        }
        let session = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.remove(meta)
        }
        .filter(|s| s.started.elapsed() < SESSION_TTL && s.aud == aud)
        .ok_or("the application session is unknown or expired")?;
        let cookie = session_cookie.ok_or("the CF_AppSession cookie is missing")?;
        if !bool::from(cookie.as_bytes().ct_eq(session.nonce.as_bytes())) {
            return Err("the CF_AppSession cookie does not match the application session");
        }
        Ok(code.email)
    }
}

/// The query of the auth domain's login path.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    redirect_url: Option<String>,
    #[serde(default)]
    meta: Option<String>,
}

/// `/cdn-cgi/access/login/<app host>` on the auth domain.
pub(crate) async fn login(
    State(edge): State<Arc<EdgeState>>,
    Path(host): Path<String>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    edge.counters.hit(Endpoint::OrgLogin);
    let (host, index, app) = match sign_in_app(&edge, &host, query.kid.as_deref()) {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let org = cookie(&headers, "CF_Authorization").and_then(|token| {
        edge.tokens
            .verify(&edge.keys, &token, Kind::Org, &edge.site.auth_domain)
            .map_err(|why| tracing::debug!("org token refused: {why}"))
            .ok()
    });
    let Some(org) = org else {
        return sign_in_page(&edge, &host, index, &query);
    };
    if !allows(&app.allow, &org.email) {
        return html::page(
            Page::Forbidden,
            "Access denied",
            &format!(
                "<div class=\"mark bad\">&#10007;</div><h1>Access denied</h1><p><b>{}</b> is not allowed to reach <b>{}</b>.</p>",
                escape(&org.email),
                escape(&app.hostname)
            ),
            Some(&org.email),
        );
    }
    tracing::info!(email = %org.email, app = %app.hostname, "org token exchanged for a sign-in code");
    to_authorized(&edge, app, &host, &org.email, &query, None)
}

/// The app of a login path's `<app host>`, checked against the link's `kid`:
/// the host (normalized), the app's index and the app; or the page to answer.
fn sign_in_app<'a>(
    edge: &'a EdgeState,
    host: &str,
    kid: Option<&str>,
) -> Result<(String, usize, &'a App), Box<Response>> {
    let Some(host) = normalize_host(host.trim_end_matches('/')) else {
        return Err(Box::new(html::text(
            StatusCode::NOT_FOUND,
            "access-edge: no application named",
        )));
    };
    let (Some(index), Some(app)) = (edge.site.app_index(&host), edge.site.app_for_host(&host))
    else {
        return Err(Box::new(html::text(
            StatusCode::NOT_FOUND,
            &format!("access-edge: no Access application at {host}"),
        )));
    };
    if kid != Some(app.aud.as_str()) {
        return Err(Box::new(html::page(
            Page::BadRequest,
            "Invalid sign-in link",
            &format!(
                "<h1 class=\"bad\">Invalid sign-in link</h1><p>The <code>kid</code> of this link does not name the application at <b>{}</b>.</p>",
                escape(&host)
            ),
            None,
        )));
    }
    Ok((host, index, app))
}

/// Step 2's redirect: a one-time code for `email`, bound to the app session,
/// to the app host's `/cdn-cgi/access/authorized`; with `cookie` set.
fn to_authorized(
    edge: &EdgeState,
    app: &App,
    host: &str,
    email: &str,
    query: &LoginQuery,
    cookie: Option<&str>,
) -> Response {
    let meta = query.meta.as_deref().unwrap_or_default();
    let code = edge.exchange.issue_code(email, &app.aud, meta);
    let next = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("meta", meta)
        .append_pair("redirect_url", query.redirect_url.as_deref().unwrap_or("/"))
        .finish();
    redirect(
        &format!("https://{host}/cdn-cgi/access/authorized?{next}"),
        cookie,
    )
}

/// What binds a sign-in form's nonce: the app session it signs in.
fn sign_in_key(meta: Option<&str>) -> String {
    format!("sign-in:{}", meta.unwrap_or_default())
}

/// The browser sign-in form as posted: the login path's query again, and the
/// person's choice.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignIn {
    #[serde(flatten)]
    query: LoginQuery,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_typed: Option<String>,
    /// `approve` or `deny`.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// `POST /cdn-cgi/access/login/<app host>` on the auth domain: the browser
/// sign-in form's Approve or Deny.
pub(crate) async fn sign_in(
    State(edge): State<Arc<EdgeState>>,
    Path(host): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    edge.counters.hit(Endpoint::OrgLogin);
    let (host, index, app) = match sign_in_app(&edge, &host, form.query.kid.as_deref()) {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let key = sign_in_key(form.query.meta.as_deref());
    let nonce_cookie = cookie(&headers, &login_nonce::cookie_name(&key));
    if let Err(refusal) =
        edge.login_nonces
            .redeem(index, &key, form.nonce.as_deref(), nonce_cookie.as_deref())
    {
        tracing::warn!(app = %app.hostname, "refused a sign-in form post: {refusal}");
        return html::page(
            Page::StaleForm,
            "Sign-in form not accepted",
            &format!(
                "<div class=\"mark bad\">!</div><h1>This sign-in form was not accepted</h1>\
                 <p>Only the form this page served can sign in, once: {}.</p>\
                 <p class=\"muted\">Open <b>https://{}/</b> again to sign in.</p>",
                escape(&refusal.to_string()),
                escape(&host)
            ),
            None,
        );
    }
    match form.action.as_deref() {
        Some("approve") => {}
        Some("deny") => {
            return html::page(
                Page::Denied,
                "Sign-in refused",
                &format!(
                    "<div class=\"mark bad\">&#10007;</div><h1>Sign-in refused</h1>\
                     <p>You did not sign in to <b>{}</b>.</p>",
                    escape(&host)
                ),
                None,
            );
        }
        _ => {
            return html::page(
                Page::BadRequest,
                "Invalid sign-in",
                "<h1 class=\"bad\">Invalid sign-in</h1><p>The form did not say whether to approve or deny.</p>",
                None,
            );
        }
    }
    let email = chosen_email(form.email.as_deref(), form.email_typed.as_deref());
    if !is_valid_email(email) {
        return html::page(
            Page::BadRequest,
            "Invalid sign-in",
            &format!(
                "<h1 class=\"bad\">Invalid sign-in</h1><p>{} is not an email address. \
                 Open <b>https://{}/</b> again and pick or type one.</p>",
                if email.is_empty() {
                    "Nothing".to_owned()
                } else {
                    format!("<b>{}</b>", escape(email))
                },
                escape(&host)
            ),
            None,
        );
    }
    if !allows(&app.allow, email) {
        tracing::info!(%email, app = %app.hostname, "browser sign-in refused by the policy");
        return html::page(
            Page::Forbidden,
            "Access denied",
            &format!(
                "<div class=\"mark bad\">&#10007;</div><h1>Access denied</h1>\
                 <p><b>{}</b> is not allowed to reach <b>{}</b>.</p>\
                 <p class=\"muted\">Open <b>https://{}/</b> again to sign in as someone else.</p>",
                escape(email),
                escape(&app.hostname),
                escape(&host)
            ),
            Some(email),
        );
    }
    let lifetime = edge.settings().org_token_lifetime;
    let Some(org_token) = edge.mint_org_token(email, lifetime) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: cannot sign a token",
        );
    };
    let org_cookie = format!(
        "CF_Authorization={org_token}; Expires={}; Path=/; Secure; HttpOnly; SameSite=None",
        expires_after(lifetime)
    );
    tracing::info!(%email, app = %app.hostname, "signed in in the browser");
    to_authorized(&edge, app, &host, email, &form.query, Some(&org_cookie))
}

/// The `Expires` of a cookie holding a token minted now for `lifetime` (its
/// `exp`: iat and exp are whole seconds from now).
fn expires_after(lifetime: Duration) -> String {
    let exp = crate::auth::tokens::now().saturating_add(lifetime.as_secs());
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(exp.min(253_402_300_799)))
}

/// The auth domain's sign-in page, for a browser with no org session: the
/// identities to sign in as, with a fresh nonce in a hidden field and a
/// cookie (scoped to the login path).
fn sign_in_page(edge: &EdgeState, host: &str, app: usize, query: &LoginQuery) -> Response {
    let key = sign_in_key(query.meta.as_deref());
    let nonce = edge.login_nonces.issue(app, &key);
    let hidden: String = [
        ("kid", query.kid.as_deref()),
        ("redirect_url", query.redirect_url.as_deref()),
        ("meta", query.meta.as_deref()),
        (login_nonce::FIELD, Some(nonce.as_str())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            escape(value)
        )
    })
    .collect();
    let choose = identity_choices(&edge.site.identities);
    let body = format!(
        "<h1>Sign in to {team}</h1>\n\
         <p class=\"muted\">to reach <b>{host}</b></p>\n\
         <dl class=\"facts\"><dt>Team</dt><dd>{team} <span class=\"muted mono\">{domain}</span></dd></dl>\n\
         <form method=\"post\" action=\"/cdn-cgi/access/login/{host}\" data-access-edge=\"sign-in\">\n{hidden}{choose}\
         <label class=\"other\" for=\"email_typed\">{other}</label>\n\
         <input type=\"email\" id=\"email_typed\" name=\"email_typed\" placeholder=\"you@example.com\" autocomplete=\"email\">\n\
         <div class=\"actions\"><button type=\"submit\" class=\"approve\" name=\"action\" value=\"approve\">Sign in</button>\
         <button type=\"submit\" class=\"deny\" name=\"action\" value=\"deny\" formnovalidate>Cancel</button></div>\n\
         </form>\n\
         <p class=\"muted\">From the command line: <code>cfaccess login https://{host}</code> \
         (or <code>cloudflared access login</code>).</p>",
        team = escape(&edge.site.team),
        domain = escape(&edge.site.auth_domain),
        host = escape(host),
        other = if choose.is_empty() {
            "Your email"
        } else {
            "Or another email"
        },
    );
    let mut page = html::page(
        Page::SignIn,
        &format!("Sign in · {}", edge.site.team),
        &body,
        None,
    );
    let cookie = format!(
        "{}={nonce}; Path=/cdn-cgi/access/login; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        login_nonce::cookie_name(&key),
        limits::LOGIN_NONCE_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, value);
    }
    page
}

/// The query of `/cdn-cgi/access/authorized`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthorizedQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    meta: Option<String>,
    #[serde(default)]
    redirect_url: Option<String>,
}

/// `/cdn-cgi/access/authorized` on an app host.
pub(crate) async fn authorized(
    State(edge): State<Arc<EdgeState>>,
    Extension(target): Extension<AppHost>,
    Query(query): Query<AuthorizedQuery>,
    headers: HeaderMap,
) -> Response {
    edge.counters.hit(Endpoint::Authorized);
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    let session_cookie = cookie(&headers, "CF_AppSession");
    let email = match edge.exchange.redeem(
        query.code.as_deref().unwrap_or_default(),
        &app.aud,
        query.meta.as_deref().unwrap_or_default(),
        session_cookie.as_deref(),
    ) {
        Ok(email) => email,
        Err(why) => {
            tracing::info!(app = %app.hostname, "sign-in refused: {why}");
            return html::text(StatusCode::FORBIDDEN, &format!("access-edge: {why}"));
        }
    };
    let lifetime = edge.settings().app_token_lifetime;
    let Some(token) = edge.mint_app_token(&app.aud, &email, lifetime) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: cannot sign a token",
        );
    };
    let cookie = format!(
        "CF_Authorization={token}; Expires={}; Path=/; Secure; HttpOnly; SameSite=None",
        expires_after(lifetime)
    );
    tracing::info!(%email, app = %app.hostname, "app token issued by the org-token exchange");
    redirect(
        &safe_redirect(query.redirect_url.as_deref(), &target.host),
        Some(&cookie),
    )
}

/// Where `/authorized` may send the browser: a path on the app host, or an
/// https URL on that host; anything else goes to `/` (no open redirect).
fn safe_redirect(redirect_url: Option<&str>, host: &str) -> String {
    let Some(target) = redirect_url.map(str::trim).filter(|t| !t.is_empty()) else {
        return "/".into();
    };
    if target.starts_with('/') && !target.starts_with("//") && !target.starts_with("/\\") {
        return target.to_owned();
    }
    match url::Url::parse(target) {
        Ok(url)
            if url.scheme() == "https"
                && url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host)) =>
        {
            url.to_string()
        }
        _ => "/".into(),
    }
}

fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            headers.insert(header::LOCATION, value);
        }
        Err(_) => return html::text(StatusCode::BAD_REQUEST, "access-edge: bad redirect"),
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_one_time_and_bound_to_app_session_and_cookie() {
        let x = Exchange::default();
        let (meta, nonce) = x.new_session("aud1");
        let code = x.issue_code("a@b.c", "aud1", &meta);
        assert_eq!(
            x.redeem(&code, "aud1", &meta, Some(&nonce)),
            Ok("a@b.c".into())
        );
        assert!(
            x.redeem(&code, "aud1", &meta, Some(&nonce)).is_err(),
            "used twice"
        );

        let (meta, nonce) = x.new_session("aud1");
        let code = x.issue_code("a@b.c", "aud1", &meta);
        assert!(
            x.redeem(&code, "aud2", &meta, Some(&nonce)).is_err(),
            "other app"
        );

        let (meta, _nonce) = x.new_session("aud1");
        let code = x.issue_code("a@b.c", "aud1", &meta);
        assert_eq!(
            x.redeem(&code, "aud1", &meta, None),
            Err("the CF_AppSession cookie is missing")
        );

        let (meta, _nonce) = x.new_session("aud1");
        let code = x.issue_code("a@b.c", "aud1", &meta);
        assert!(x.redeem(&code, "aud1", &meta, Some("forged")).is_err());

        let (meta, nonce) = x.new_session("aud1");
        let code = x.issue_code("a@b.c", "aud1", "another-meta");
        assert!(
            x.redeem(&code, "aud1", &meta, Some(&nonce)).is_err(),
            "other session"
        );
    }

    #[test]
    fn redirects_stay_on_the_app_host() {
        assert_eq!(safe_redirect(Some("/x?y=1"), "a.test"), "/x?y=1");
        assert_eq!(
            safe_redirect(Some("https://A.test/p"), "a.test"),
            "https://a.test/p"
        );
        assert_eq!(safe_redirect(Some("https://evil.test/"), "a.test"), "/");
        assert_eq!(safe_redirect(Some("//evil.test/"), "a.test"), "/");
        assert_eq!(safe_redirect(Some("http://a.test/"), "a.test"), "/");
        assert_eq!(safe_redirect(None, "a.test"), "/");
    }
}
