//! Single sign-on without a browser (docs/protocol.md section 4.3): trading the
//! team's org token for an app token by walking the edge's login redirects
//! by hand, as a browser with the org session cookie would.
//!
//! The walk stays between the app's origin and the team's auth domain, over
//! https: the org token goes only to the auth domain's login path, the app
//! session only to the app, and a hop anywhere else ends the exchange.

use std::time::SystemTime;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, Url};

use crate::access::host::AppUrl;
use crate::limits;

const LOGIN_PATH: &str = "/cdn-cgi/access/login";
const AUTHORIZED_PATH: &str = "/cdn-cgi/access/authorized";
const TOKEN_COOKIE: &str = "CF_Authorization";
const SESSION_COOKIE: &str = "CF_AppSession";
const MAX_HOPS: usize = 10;

/// Why the exchange gave no app token; the caller falls back to the browser.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("the exchange took longer than {}", limits::show(limits::ORG_EXCHANGE))]
    Timeout,
    #[error("{from} redirected the exchange to {to}, which is neither the app nor its team")]
    Foreign { from: String, to: String },
    #[error("the edge's answer from {url} carried no unexpired app token")]
    NoToken { url: String },
}

/// Trades `org_token` (of the team at `auth_domain`) for an app token for
/// `app_url`.
pub async fn exchange(
    http: &reqwest::Client,
    app_url: &AppUrl,
    auth_domain: &str,
    org_token: &str,
) -> Result<String, ExchangeError> {
    let walk = walk(http, app_url.url().clone(), auth_domain, org_token);
    tokio::time::timeout(limits::ORG_EXCHANGE, walk)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}

async fn walk(
    http: &reqwest::Client,
    start: Url,
    auth_domain: &str,
    org_token: &str,
) -> Result<String, ExchangeError> {
    let app_origin = start.origin();
    let mut url = start;
    let mut app_session: Option<String> = None;
    for hop in 0..=MAX_HOPS {
        let at_app = url.origin() == app_origin;
        let at_team =
            url.scheme() == "https" && url.host_str() == Some(auth_domain) && url.port().is_none();
        let mut request = http.request(Method::HEAD, url.clone());
        // Cookies go only on redirected hops, as Go's CheckRedirect adds them.
        if hop > 0 && at_team && url.path().contains(LOGIN_PATH) {
            request = request.header(COOKIE, format!("{TOKEN_COOKIE}={org_token}"));
        }
        let at_authorized = at_app && url.path().contains(AUTHORIZED_PATH);
        if let Some(session) = app_session.as_ref().filter(|_| hop > 0 && at_authorized) {
            request = request.header(COOKIE, format!("{SESSION_COOKIE}={session}"));
        }
        let response = request.send().await.map_err(|e| ExchangeError::Request {
            url: url.to_string(),
            reason: crate::error::describe_reqwest(&e),
        })?;
        let cookies: Vec<Cookie> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Cookie::parse)
            .collect();
        if let Some(session) = cookies.iter().find(|c| c.name == SESSION_COOKIE) {
            app_session.get_or_insert_with(|| session.value.clone());
        }
        let next = response
            .status()
            .is_redirection()
            .then(|| response.headers().get(LOCATION))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| url.join(loc).ok());
        match next {
            Some(next) if !at_authorized => {
                let team = next.scheme() == "https"
                    && next.host_str() == Some(auth_domain)
                    && next.port().is_none();
                if next.origin() != app_origin && !team {
                    return Err(ExchangeError::Foreign {
                        from: url.origin().ascii_serialization(),
                        to: next.origin().ascii_serialization(),
                    });
                }
                url = next;
            }
            // the app token counts only from the app itself
            _ if !at_app => {
                return Err(ExchangeError::NoToken {
                    url: url.to_string(),
                });
            }
            _ => {
                let now = SystemTime::now();
                return cookies
                    .into_iter()
                    .find(|c| c.name == TOKEN_COOKIE && c.expires.is_some_and(|e| e > now))
                    .map(|c| c.value)
                    .ok_or(ExchangeError::NoToken {
                        url: url.to_string(),
                    });
            }
        }
    }
    Err(ExchangeError::NoToken {
        url: url.to_string(),
    })
}

/// The parts of a `Set-Cookie` the exchange looks at.
#[derive(Debug, PartialEq)]
struct Cookie {
    name: String,
    value: String,
    /// From `Expires`; `Max-Age` alone does not count, as in the official client.
    expires: Option<SystemTime>,
}

impl Cookie {
    fn parse(header: &str) -> Option<Cookie> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let expires = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("expires"))
            .and_then(|(_, v)| httpdate::parse_http_date(v.trim()).ok());
        Some(Cookie {
            name: name.trim().to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_value_and_expires_only() {
        let c = Cookie::parse(
            "CF_Authorization=abc; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/; Secure",
        )
        .unwrap();
        assert_eq!(c.name, "CF_Authorization");
        assert_eq!(c.value, "abc");
        assert!(c.expires.unwrap() > SystemTime::now());
        let c = Cookie::parse("CF_Authorization=abc; Max-Age=3600").unwrap();
        assert_eq!(c.expires, None);
        assert!(Cookie::parse("garbage").is_none());
    }
}
