//! The login page a command-line client opens in the browser
//! (`/cdn-cgi/access/cli` on the app host, docs/protocol.md 4.4).
//!
//! It shows the app and asks the person to pick (or type) an identity, then
//! Approve or Deny. Approving with an identity the app's policy allows mints
//! an app token (and an org token when `send_org_token=true`) and hands them,
//! sealed to the key in the `token` parameter, to the login service for the
//! waiting client. Denying, or an identity outside the policy, delivers
//! nothing: the client keeps waiting, as with the real service.
//!
//! Only a post of the form this edge served for this login counts
//! (`login_nonce`): anything else gets a 403 page and delivers nothing.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

use crate::auth::html::{self, Page, escape};
use crate::auth::login_nonce;
use crate::auth::login_service::ClientKey;
use crate::auth::policy::{allows, is_valid_email};
use crate::edge::EdgeState;
use crate::front::router::{AppHost, cookie};
use crate::limits;
use crate::ops::counters::Endpoint;
use crate::site::App;

/// The login URL's parameters (and the form's hidden fields).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CliParams {
    #[serde(default)]
    aud: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    redirect_url: Option<String>,
    #[serde(default)]
    send_org_token: Option<String>,
    #[serde(default)]
    edge_token_transfer: Option<String>,
    #[serde(default)]
    close_interstitial: Option<String>,
}

/// The login form as posted: the parameters plus the person's choice.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Submission {
    #[serde(flatten)]
    params: CliParams,
    /// The identity picked from the list.
    #[serde(default)]
    email: Option<String>,
    /// An identity typed in (wins over the pick when not empty).
    #[serde(default)]
    email_typed: Option<String>,
    /// `approve` or `deny`.
    #[serde(default)]
    action: Option<String>,
    /// The form's anti-forgery nonce (`login_nonce`).
    #[serde(default)]
    nonce: Option<String>,
}

/// A login request that passed validation.
struct Login {
    key: ClientKey,
    send_org_token: bool,
    close: bool,
}

fn is_true(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `GET /cdn-cgi/access/cli`: the form, or at once the outcome when the edge
/// auto-approves.
pub(crate) async fn show(
    State(edge): State<Arc<EdgeState>>,
    Extension(target): Extension<AppHost>,
    Query(params): Query<CliParams>,
) -> Response {
    edge.counters.hit(Endpoint::LoginPage);
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    let login = match validate(app, &params) {
        Ok(login) => login,
        Err(why) => return bad_request(&why),
    };
    if let Some(email) = edge.settings().auto_approve {
        return approve(&edge, app, &target.host, &login, &email);
    }
    form(&edge, app, &target, &params)
}

/// `POST /cdn-cgi/access/cli`: the person's Approve or Deny.
pub(crate) async fn submit(
    State(edge): State<Arc<EdgeState>>,
    Extension(target): Extension<AppHost>,
    headers: HeaderMap,
    Form(form): Form<Submission>,
) -> Response {
    edge.counters.hit(Endpoint::LoginSubmit);
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    let login = match validate(app, &form.params) {
        Ok(login) => login,
        Err(why) => return bad_request(&why),
    };
    let client_key = form.params.token.as_deref().unwrap_or_default();
    let cookie = cookie(&headers, &login_nonce::cookie_name(client_key));
    if let Err(refusal) = edge.login_nonces.redeem(
        target.app,
        client_key,
        form.nonce.as_deref(),
        cookie.as_deref(),
    ) {
        tracing::warn!(app = %app.hostname, "refused a login form post: {refusal}");
        return stale_form(&refusal);
    }
    match form.action.as_deref() {
        Some("deny") => {
            tracing::info!(app = %app.hostname, "login refused on the login page");
            denied(app, &target.host)
        }
        Some("approve") => {
            let email = chosen_email(form.email.as_deref(), form.email_typed.as_deref());
            if !is_valid_email(email) {
                return bad_request(&format!(
                    "{} is not an email address. Go back and pick or type one.",
                    if email.is_empty() {
                        "Nothing".to_owned()
                    } else {
                        format!("<b>{}</b>", escape(email))
                    }
                ));
            }
            approve(&edge, app, &target.host, &login, email)
        }
        _ => bad_request("The form did not say whether to approve or deny the login."),
    }
}

/// Checks the login URL: `token` must be a 32-byte public key and `aud` this
/// app's aud.
fn validate(app: &App, params: &CliParams) -> Result<Login, String> {
    let Some(token) = params.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(
            "The <code>token</code> parameter is missing: it must be the client's public key."
                .into(),
        );
    };
    let Some(key) = ClientKey::parse(token) else {
        return Err(
            "The <code>token</code> parameter is not a public key (base64url of 32 bytes).".into(),
        );
    };
    if params.aud.as_deref() != Some(app.aud.as_str()) {
        return Err(format!(
            "The <code>aud</code> parameter does not name the application {}.",
            escape(&app.hostname)
        ));
    }
    Ok(Login {
        key,
        send_org_token: is_true(&params.send_org_token),
        close: is_true(&params.close_interstitial),
    })
}

/// Approves the login as `email` if the policy allows it.
fn approve(edge: &EdgeState, app: &App, host: &str, login: &Login, email: &str) -> Response {
    if !allows(&app.allow, email) {
        tracing::info!(%email, app = %app.hostname, "login refused by the policy");
        return html::page(
            Page::Forbidden,
            "Access denied",
            &format!(
                "<div class=\"mark bad\">&#10007;</div><h1>Access denied</h1>\
                 <p><b>{}</b> is not allowed to reach <b>{}</b>.</p>\
                 <p class=\"muted\">Nothing was sent to the waiting client. Go back and pick another identity.</p>",
                escape(email),
                escape(&app.hostname)
            ),
            Some(email),
        );
    }
    let settings = edge.settings();
    let Some(app_token) = edge.mint_app_token(&app.aud, email, settings.app_token_lifetime) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: cannot sign a token",
        );
    };
    let mut result = serde_json::json!({ "app_token": app_token });
    if login.send_org_token {
        let Some(org_token) = edge.mint_org_token(email, settings.org_token_lifetime) else {
            return html::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "access-edge: cannot sign a token",
            );
        };
        result["org_token"] = serde_json::Value::String(org_token);
    }
    if let Err(e) = edge
        .login_service
        .deliver(&login.key, result.to_string().as_bytes())
    {
        tracing::error!("{e}");
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("access-edge: {e}"),
        );
    }
    tracing::info!(%email, app = %app.hostname, "login approved");
    let body = format!(
        "<div class=\"mark ok\">&#10003;</div><h1>You're signed in</h1>\
         <p>Signed in to <b>{}</b> as <b>{}</b>.</p>\
         <p class=\"muted\">The command-line client picks up its token now. You can close this window.</p>",
        escape(host),
        escape(email)
    );
    let script = login.close.then_some("window.close();");
    html::page_with_script(Page::Approved, "Signed in", &body, Some(email), script)
}

fn denied(app: &App, host: &str) -> Response {
    html::page(
        Page::Denied,
        "Login refused",
        &format!(
            "<div class=\"mark bad\">&#10007;</div><h1>Login refused</h1>\
             <p>You refused the login to <b>{}</b>{}.</p>\
             <p class=\"muted\">Nothing was sent. The command-line client keeps waiting until it gives up; \
             stop it with Ctrl-C.</p>",
            escape(host),
            if app.hostname != host {
                format!(" (application <code>{}</code>)", escape(&app.hostname))
            } else {
                String::new()
            }
        ),
        None,
    )
}

fn stale_form(refusal: &login_nonce::Refusal) -> Response {
    html::page(
        Page::StaleForm,
        "Login form not accepted",
        &format!(
            "<div class=\"mark bad\">!</div><h1>This login form was not accepted</h1>\
             <p>Only the form this page served for this login can approve or refuse it, once: {}.</p>\
             <p class=\"muted\">Nothing was sent to the waiting client. Open the login link again \
             (or start the login again from the command line).</p>",
            escape(&refusal.to_string())
        ),
        None,
    )
}

fn bad_request(message_html: &str) -> Response {
    html::page(
        Page::BadRequest,
        "Invalid login link",
        &format!(
            "<div class=\"mark bad\">!</div><h1>This login link is not valid</h1><p>{message_html}</p>\
             <p class=\"muted\">Start the login again from the command line.</p>"
        ),
        None,
    )
}

/// The identities to pick from (the first checked), as the login forms show
/// them; empty when the edge lists none.
pub(crate) fn identity_choices(identities: &[String]) -> String {
    let identities: String = identities
        .iter()
        .enumerate()
        .map(|(i, email)| {
            format!(
                "<label class=\"id\"><input type=\"radio\" name=\"email\" value=\"{e}\"{checked}> {e}</label>\n",
                e = escape(email),
                checked = if i == 0 { " checked" } else { "" }
            )
        })
        .collect();
    if identities.is_empty() {
        String::new()
    } else {
        format!("<fieldset><legend>Continue as</legend>\n{identities}</fieldset>\n")
    }
}

/// The email a login form was approved with: a typed one wins over the pick.
pub(crate) fn chosen_email<'a>(picked: Option<&'a str>, typed: Option<&'a str>) -> &'a str {
    typed
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or(picked.map(str::trim))
        .unwrap_or_default()
}

/// The form itself, with a fresh nonce in a hidden field and a cookie.
fn form(edge: &EdgeState, app: &App, target: &AppHost, params: &CliParams) -> Response {
    let host = target.host.as_str();
    let client_key = params.token.as_deref().unwrap_or_default();
    let nonce = edge.login_nonces.issue(target.app, client_key);
    let hidden: String = [
        ("aud", &params.aud),
        ("token", &params.token),
        ("redirect_url", &params.redirect_url),
        ("send_org_token", &params.send_org_token),
        ("edge_token_transfer", &params.edge_token_transfer),
        ("close_interstitial", &params.close_interstitial),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            escape(value)
        )
    })
    .chain(std::iter::once(format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{nonce}\">\n",
        login_nonce::FIELD
    )))
    .collect();
    let choose = identity_choices(&edge.site.identities);
    let app_line = if app.hostname == host {
        escape(host)
    } else {
        format!(
            "{} <span class=\"muted\">(application {})</span>",
            escape(host),
            escape(&app.hostname)
        )
    };
    let policy = if app.allow.is_empty() {
        "nobody (service tokens only)".to_owned()
    } else {
        app.allow
            .iter()
            .map(|p| escape(&p.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = format!(
        "<h1>Sign in to {host}</h1>\n\
         <p class=\"muted\">A command-line client is waiting for this login.</p>\n\
         <dl class=\"facts\"><dt>Application</dt><dd class=\"mono\">{app_line}</dd>\
         <dt>Team</dt><dd>{team} <span class=\"muted mono\">{domain}</span></dd>\
         <dt>Allowed</dt><dd class=\"mono\">{policy}</dd></dl>\n\
         <form method=\"post\" action=\"/cdn-cgi/access/cli\" data-access-edge=\"login\">\n{hidden}{choose}\
         <label class=\"other\" for=\"email_typed\">{other}</label>\n\
         <input type=\"email\" id=\"email_typed\" name=\"email_typed\" placeholder=\"you@example.com\" autocomplete=\"email\">\n\
         <div class=\"actions\"><button type=\"submit\" class=\"approve\" name=\"action\" value=\"approve\">Approve</button>\
         <button type=\"submit\" class=\"deny\" name=\"action\" value=\"deny\" formnovalidate>Deny</button></div>\n\
         </form>",
        host = escape(host),
        team = escape(&edge.site.team),
        domain = escape(&edge.site.auth_domain),
        other = if choose.is_empty() {
            "Your email"
        } else {
            "Or another email"
        },
    );
    let mut page = html::page(Page::Login, &format!("Sign in · {host}"), &body, None);
    let cookie = format!(
        "{}={nonce}; Path=/cdn-cgi/access/cli; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        login_nonce::cookie_name(client_key),
        limits::LOGIN_NONCE_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, value);
    }
    page
}
