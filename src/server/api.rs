//! The Cloudflare API, as far as `cfaccess server` needs it (docs/protocol.md
//! 11): list the Access apps, read an app's short-lived-certificate CA, and
//! create it.
//!
//! Written on reqwest rather than with an SDK: the three calls and their
//! envelope are a page of code, while the Rust SDKs for Cloudflare's API
//! (`cloudflare`) pull in OpenSSL by default and a much larger surface.
//!
//! Credentials come from the environment, as Cloudflare's own tools read
//! them (`CLOUDFLARE_API_TOKEN`, or `CLOUDFLARE_EMAIL` + `CLOUDFLARE_API_KEY`
//! for the legacy Global API Key), or from a file: never from argv, never
//! printed. The requests carry them as sensitive headers, which reqwest keeps
//! out of its own debug output.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::access::edge_profile::EdgeProfile;
use crate::access::http::{self, BodyError, SendError};
use crate::limits;

/// Where the API lives.
pub const BASE: &str = "https://api.cloudflare.com/client/v4";

/// The variables Cloudflare's tools read.
pub const TOKEN_ENV: &str = "CLOUDFLARE_API_TOKEN";
pub const ACCOUNT_ENV: &str = "CLOUDFLARE_ACCOUNT_ID";
pub const ZONE_ENV: &str = "CLOUDFLARE_ZONE_ID";
pub const EMAIL_ENV: &str = "CLOUDFLARE_EMAIL";
pub const KEY_ENV: &str = "CLOUDFLARE_API_KEY";

/// Apps asked for per page.
const PER_PAGE: u32 = 100;
/// Pages followed at most (a loop guard: 100 000 apps).
const MAX_PAGES: u32 = 1000;
/// An answer body: an account's apps page is a few hundred KiB at most.
const BODY_CAP: usize = 8 << 20;

/// How the requests authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// The legacy pair: `X-Auth-Email` and `X-Auth-Key`.
    GlobalKey { email: String, key: String },
}

impl std::fmt::Debug for Credentials {
    // The secrets stay out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token(…)"),
            Credentials::GlobalKey { email, .. } => f
                .debug_struct("Credentials::GlobalKey")
                .field("email", email)
                .finish_non_exhaustive(),
        }
    }
}

impl Credentials {
    /// The token in `file` (first line, trimmed) when given, else
    /// `CLOUDFLARE_API_TOKEN`, else the Global API Key pair; `Ok(None)` when
    /// there is none of them.
    pub fn find(file: Option<&Path>) -> Result<Option<Credentials>, String> {
        if let Some(file) = file {
            let text = crate::platform::read::read_capped_string(file, 64 << 10)
                .map_err(|e| format!("cannot read the API token file {}: {e}", file.display()))?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.is_empty() {
                return Err(format!("the API token file {} is empty", file.display()));
            }
            return Ok(Some(Credentials::Token(checked(
                token,
                "the API token file",
            )?)));
        }
        if let Some(token) = env(TOKEN_ENV) {
            return Ok(Some(Credentials::Token(checked(token, TOKEN_ENV)?)));
        }
        match (env(EMAIL_ENV), env(KEY_ENV)) {
            (Some(email), Some(key)) => Ok(Some(Credentials::GlobalKey {
                email: checked(email, EMAIL_ENV)?,
                key: checked(key, KEY_ENV)?,
            })),
            (None, Some(_)) => Err(format!("{KEY_ENV} is set without {EMAIL_ENV}")),
            _ => Ok(None),
        }
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let sensitive = |text: &str| {
            // `checked` let only visible ASCII through: this cannot fail.
            let mut value = HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""));
            value.set_sensitive(true);
            value
        };
        match self {
            Credentials::Token(token) => {
                vec![(AUTHORIZATION, sensitive(&format!("Bearer {token}")))]
            }
            Credentials::GlobalKey { email, key } => vec![
                (HeaderName::from_static("x-auth-email"), sensitive(email)),
                (HeaderName::from_static("x-auth-key"), sensitive(key)),
            ],
        }
    }
}

/// A variable's value, trimmed, when set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A credential fit for a header: visible ASCII only (a pasted token with a
/// stray quote or newline fails here with a word, not at the server).
fn checked(value: String, source: &str) -> Result<String, String> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value)
    } else {
        Err(format!(
            "{source} holds spaces or characters an API credential never has: paste it again"
        ))
    }
}

/// Whose apps: an account's or a zone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Account(String),
    Zone(String),
}

impl Scope {
    fn path(&self) -> String {
        match self {
            Scope::Account(id) => format!("accounts/{id}"),
            Scope::Zone(id) => format!("zones/{id}"),
        }
    }

    /// `account 0123…` or `zone 0123…`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Scope::Account(id) => format!("account {id}"),
            Scope::Zone(id) => format!("zone {id}"),
        }
    }

    /// Checks an id as the API has them: 32 hex digits.
    pub fn checked_id(id: &str, what: &str) -> Result<String, String> {
        let id = id.trim();
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(id.to_ascii_lowercase())
        } else {
            Err(format!(
                "{what} {id:?} is not a Cloudflare id (32 hex digits, from the dashboard's overview page)"
            ))
        }
    }
}

/// An Access application, as the API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub aud: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// An app's short-lived-certificate CA.
#[derive(Debug, Clone, Deserialize)]
pub struct Ca {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub aud: String,
    pub public_key: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the Cloudflare API refused the credentials ({status} {message})")]
    Unauthenticated { status: u16, message: String },
    #[error("the Cloudflare API denied this to the credentials ({status} {message})")]
    Forbidden { status: u16, message: String },
    #[error("the Cloudflare API found nothing at {what} ({message})")]
    NotFound { what: String, message: String },
    #[error("the Cloudflare API failed: {status} {message}")]
    Failed { status: u16, message: String },
    #[error(
        "the Cloudflare API answered {status} with something that is not its JSON envelope{detail}"
    )]
    Garbage { status: u16, detail: String },
    #[error("cannot reach the Cloudflare API: {0}")]
    Send(#[from] SendError),
    #[error("the Cloudflare API's answer is unusable: {0}")]
    Body(#[from] BodyError),
    #[error("cannot make the HTTP client: {0}")]
    Client(String),
}

impl ApiError {
    /// What to do about it, for the error line.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthenticated { .. } => Some(
                "check CLOUDFLARE_API_TOKEN (or --api-token-file): the token may be mistyped, expired or revoked",
            ),
            ApiError::Forbidden { .. } => Some(
                "check CLOUDFLARE_ACCOUNT_ID and that the token may use Access apps in that account (Access: Apps and Policies Read, and Edit to create a CA)",
            ),
            ApiError::Garbage { .. } | ApiError::Send(_) | ApiError::Body(_) => Some(
                "is api.cloudflare.com reachable from here (a proxy or captive portal may answer instead)? try again later",
            ),
            _ => None,
        }
    }
}

/// The API's envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<Message>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    page: Option<u32>,
}

/// A client of the API for one account or zone.
pub struct Api {
    client: reqwest::Client,
    base: String,
    credentials: Credentials,
    scope: Scope,
    timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client; with an edge profile, `api.cloudflare.com` is the local
    /// edge's when the profile serves that name.
    pub fn new(
        profile: Option<&EdgeProfile>,
        credentials: Credentials,
        scope: Scope,
    ) -> Result<Api, ApiError> {
        let client = http::client(profile).map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(Api {
            client,
            base: BASE.to_owned(),
            credentials,
            scope,
            timeout: limits::API,
        })
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Every Access app of the account or zone, following the pages.
    pub async fn apps(&self) -> Result<Vec<App>, ApiError> {
        let mut apps = Vec::new();
        let mut page = 1;
        loop {
            let path = format!("access/apps?page={page}&per_page={PER_PAGE}");
            let (mut batch, info): (Vec<App>, _) = self.call(reqwest::Method::GET, &path).await?;
            let got = batch.len();
            apps.append(&mut batch);
            let last = match info {
                Some(ResultInfo {
                    total_pages: Some(total),
                    page: Some(at),
                }) => at >= total,
                _ => got < PER_PAGE as usize,
            };
            if last || got == 0 || page >= MAX_PAGES {
                return Ok(apps);
            }
            page += 1;
        }
    }

    /// The app's CA, or `None` when it has none (the API answers 404).
    pub async fn ca(&self, app_id: &str) -> Result<Option<Ca>, ApiError> {
        match self
            .call(reqwest::Method::GET, &format!("access/apps/{app_id}/ca"))
            .await
        {
            Ok((ca, _)) => Ok(Some(ca)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the app's CA (the dashboard's "Generate certificate").
    pub async fn create_ca(&self, app_id: &str) -> Result<Ca, ApiError> {
        self.call(reqwest::Method::POST, &format!("access/apps/{app_id}/ca"))
            .await
            .map(|(ca, _)| ca)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(T, Option<ResultInfo>), ApiError> {
        let url = format!("{}/{}/{path}", self.base, self.scope.path());
        let what = url.split('?').next().unwrap_or(&url).to_owned();
        tracing::debug!(%method, url = %what, "Cloudflare API");
        let mut request = self
            .client
            .request(method, &url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in self.credentials.headers() {
            request = request.header(name, value);
        }
        let request = request
            .build()
            .map_err(|e| ApiError::Client(e.to_string()))?;
        let response = http::send_following(&self.client, request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = http::read_body(response, BODY_CAP, self.timeout).await?;
        let envelope: Envelope<T> = match serde_json::from_slice(&body) {
            Ok(envelope) => envelope,
            Err(e) => {
                let shown = http::first_line(&String::from_utf8_lossy(&body));
                let detail = match (content_type.is_empty(), shown.is_empty()) {
                    (false, false) => format!(" ({content_type}: {shown:?})"),
                    (false, true) => format!(" ({content_type})"),
                    (true, false) => format!(" ({shown:?})"),
                    (true, true) => format!(" ({e})"),
                };
                return Err(ApiError::Garbage { status, detail });
            }
        };
        let message = || {
            let text: Vec<String> = envelope
                .errors
                .iter()
                .map(|m| format!("{}: {}", m.code, m.message))
                .collect();
            if text.is_empty() {
                "no error given".to_owned()
            } else {
                text.join("; ")
            }
        };
        match status {
            200..=299 if envelope.success => match envelope.result {
                Some(result) => Ok((result, envelope.result_info)),
                None => Err(ApiError::Garbage {
                    status,
                    detail: " (success with no result)".into(),
                }),
            },
            401 => Err(ApiError::Unauthenticated {
                status,
                message: message(),
            }),
            403 => Err(ApiError::Forbidden {
                status,
                message: message(),
            }),
            404 => Err(ApiError::NotFound {
                what,
                message: message(),
            }),
            _ => Err(ApiError::Failed {
                status,
                message: message(),
            }),
        }
    }
}

/// The app protecting `hostname`: the one whose domain is that host (its
/// path, if any, aside), else the wildcard app with the longest suffix.
pub fn find_app<'a>(apps: &'a [App], hostname: &str) -> Option<&'a App> {
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();
    let domain_host = |app: &App| {
        app.domain
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    apps.iter().find(|a| domain_host(a) == host).or_else(|| {
        apps.iter()
            .filter(|a| crate::access::edge_profile::wildcard_matches(&domain_host(a), &host))
            .max_by_key(|a| a.domain.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, domain: &str) -> App {
        App {
            id: id.into(),
            name: domain.into(),
            domain: domain.into(),
            aud: String::new(),
            kind: "self_hosted".into(),
        }
    }

    #[test]
    fn the_exact_domain_wins_then_the_longest_wildcard() {
        let apps = vec![
            app("1", "*.example.com"),
            app("2", "ssh.example.com/admin"),
            app("3", "*.deep.example.com"),
        ];
        assert_eq!(find_app(&apps, "SSH.example.com.").unwrap().id, "2");
        assert_eq!(find_app(&apps, "a.deep.example.com").unwrap().id, "3");
        assert_eq!(find_app(&apps, "web.example.com").unwrap().id, "1");
        assert!(find_app(&apps, "example.com").is_none());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let token = Credentials::Token("sekrit-token-value".into());
        let key = Credentials::GlobalKey {
            email: "a@b.c".into(),
            key: "sekrit-key-value".into(),
        };
        assert!(!format!("{token:?}").contains("sekrit"));
        assert!(!format!("{key:?}").contains("sekrit"));
        for (_, value) in token.headers().into_iter().chain(key.headers()) {
            assert!(value.is_sensitive());
        }
    }

    #[test]
    fn ids_are_32_hex_digits() {
        assert_eq!(
            Scope::checked_id(" 0123456789ABCDEF0123456789abcdef ", "--account-id").unwrap(),
            "0123456789abcdef0123456789abcdef"
        );
        let err = Scope::checked_id("acme", "--account-id").unwrap_err();
        assert!(err.contains("32 hex digits"), "{err}");
    }

    #[test]
    fn a_credential_with_spaces_is_refused_by_name() {
        let err = checked("abc def".into(), TOKEN_ENV).unwrap_err();
        assert!(err.starts_with(TOKEN_ENV), "{err}");
        assert!(!err.contains("abc"), "{err}");
    }
}
