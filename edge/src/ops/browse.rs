//! A headless browser for the edge's login pages (`access-edge browse`).
//!
//! A client under test opens the login URL with `$BROWSER` (cfaccess) or
//! `xdg-open` (the official client); pointing either at `DIR/browser` makes
//! this open the URL through the edge profile, the way a person's browser
//! would reach the real edge. It follows redirects, reads what the page says
//! from its `x-access-edge-page` header, and with `--as EMAIL` or `--deny`
//! submits the login form as a person would. It reports one line and never
//! writes to stdout (it may run inside an ssh ProxyCommand session).

use std::path::PathBuf;

use cfaccess::access::edge_profile::{EdgeProfile, ProfileError};
use cfaccess::access::http::HttpError;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use url::{Url, form_urlencoded};

use crate::auth::html::{EMAIL_HEADER, PAGE_HEADER, Page};
use crate::auth::login_nonce;

/// What to do on a login page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Only open it (an auto-approving edge answers at once).
    Look,
    /// Approve the login as this identity.
    Approve(String),
    /// Refuse the login.
    Deny,
}

/// What to open, and how.
#[derive(Debug, Clone)]
pub struct BrowseOptions {
    /// The edge profile; `None` reads `CFACCESS_EDGE`, and without it the
    /// system's roots and DNS are used.
    pub profile: Option<PathBuf>,
    pub action: Action,
    pub url: String,
}

/// How it went: whether the final page was a success (2xx) and a one-line
/// summary of what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    pub summary: String,
}

/// Why the page could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Client(#[from] HttpError),
    #[error("{0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("cannot open {url}: {message}")]
    Request { url: String, message: String },
    #[error("{0} is not a login page, so there is no form to submit")]
    NoForm(String),
}

/// Opens the URL and acts on the page.
pub async fn browse(opts: &BrowseOptions) -> Result<Outcome, BrowseError> {
    let profile = match &opts.profile {
        Some(path) => Some(EdgeProfile::load(path)?),
        None => EdgeProfile::from_env()?,
    };
    let client = cfaccess::access::http::client(profile.as_ref())?;
    let url = Url::parse(&opts.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| BrowseError::BadUrl(opts.url.clone()))?;

    let failed = |url: &Url, e: &(dyn std::error::Error + 'static)| BrowseError::Request {
        url: url.to_string(),
        message: error_chain(e),
    };
    let request = client
        .get(url.clone())
        .build()
        .map_err(|e| failed(&url, &e))?;
    let mut response = cfaccess::access::http::follow_anywhere(&client, request)
        .await
        .map_err(|e| failed(&url, &e))?;

    let submit = match &opts.action {
        Action::Look => None,
        Action::Approve(email) => Some(vec![
            ("action", "approve"),
            ("email", email),
            ("email_typed", email),
        ]),
        Action::Deny => Some(vec![("action", "deny")]),
    };
    if let Some(fields) = submit {
        match page_of(&response) {
            Some(Page::Login) => {
                let page_url = response.url().clone();
                // The form's nonce, twice: a browser posts the hidden field
                // and sends back the cookie that came with the page.
                let cookie = nonce_cookie(&response);
                let html = read_capped(response, PAGE_CAP)
                    .await
                    .map_err(|e| failed(&page_url, &e))?;
                let nonce = hidden_field(&html, login_nonce::FIELD);
                let mut body = form_urlencoded::Serializer::new(String::new());
                body.extend_pairs(page_url.query_pairs());
                body.extend_pairs(fields);
                if let Some(nonce) = &nonce {
                    body.append_pair(login_nonce::FIELD, nonce);
                }
                let mut action = page_url.clone();
                action.set_query(None);
                action.set_path("/cdn-cgi/access/cli");
                let mut request = client
                    .post(action.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                if let Some(cookie) = cookie {
                    request = request.header(COOKIE, cookie);
                }
                let request = request
                    .body(body.finish())
                    .build()
                    .map_err(|e| failed(&action, &e))?;
                response = cfaccess::access::http::follow_anywhere(&client, request)
                    .await
                    .map_err(|e| failed(&action, &e))?;
            }
            // An auto-approving edge (or an earlier refusal) already decided.
            Some(_) => {}
            None => return Err(BrowseError::NoForm(response.url().to_string())),
        }
    }
    Ok(describe(&response))
}

/// More than any login page this edge serves.
const PAGE_CAP: usize = 256 << 10;

/// The body, up to `cap` bytes (the rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() >= cap {
            body.truncate(cap);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `name=value` of the login nonce cookie the page set, for a `Cookie`
/// header.
fn nonce_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.trim_start().starts_with(login_nonce::COOKIE_PREFIX))
        .map(|pair| pair.trim().to_owned())
}

/// The value of the hidden input `name` in the edge's own form markup.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("type=\"hidden\" name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_owned())
}

fn page_of(response: &reqwest::Response) -> Option<Page> {
    response
        .headers()
        .get(PAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Page::from_header)
}

/// One line about the final page.
fn describe(response: &reqwest::Response) -> Outcome {
    let email = response
        .headers()
        .get(EMAIL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?");
    let host = response.url().host_str().unwrap_or("?");
    let status = response.status();
    let summary = match page_of(response) {
        Some(Page::Approved) => format!("approved as {email} at {host}"),
        Some(Page::Login) => format!("login page open at {host}, waiting for approval"),
        Some(Page::Denied) => format!("login refused at {host}"),
        Some(Page::Forbidden) => format!("denied: {email} is not allowed to reach {host}"),
        Some(Page::BadRequest) => format!("error: the login link is not valid ({host})"),
        Some(Page::SignIn) => format!("sign-in page at {host}: no org session"),
        Some(Page::StaleForm) => format!("error: the login form was not accepted at {host}"),
        None if status.is_success() => format!("opened {} ({status})", response.url()),
        None => format!("error: {status} from {}", response.url()),
    };
    Outcome {
        success: status.is_success(),
        summary,
    }
}

/// An error with its causes, on one line (reqwest hides the useful part).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
