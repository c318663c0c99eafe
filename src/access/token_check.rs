//! Asking the edge whether it still takes a token (docs/protocol.md section 5).
//!
//! A token can be unexpired and still refused: revoked, or issued before the
//! team rotated its keys. `login` and `curl` check it before trusting it.

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::access::host::AppUrl;

const LOGIN_PATH: &str = "/cdn-cgi/access/login";

/// Why the check could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot check the token with {url}: {reason}")]
pub struct CheckError {
    pub url: String,
    pub reason: String,
}

/// Whether `response` is Access sending the client to log in: a 302 whose
/// `Location` path starts with `/cdn-cgi/access/login`. Only this answer means
/// "log in"; any other refusal is an error of its own.
pub fn is_login_redirect(
    response_status: StatusCode,
    location: Option<&str>,
    base: &url::Url,
) -> bool {
    response_status == StatusCode::FOUND
        && location
            .and_then(|loc| base.join(loc).ok())
            .is_some_and(|loc| loc.path().starts_with(LOGIN_PATH))
}

/// Sends `token` to the app with `cloudflared_token_check=true`; true if the
/// edge accepted it.
pub async fn accepted(
    http: &reqwest::Client,
    app_url: &AppUrl,
    token: &str,
) -> Result<bool, CheckError> {
    let mut url = app_url.url().clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "cloudflared_token_check")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("cloudflared_token_check", "true");
    let response = http
        .get(url.clone())
        .header("cf-access-token", token)
        .timeout(crate::limits::TOKEN_CHECK)
        .send()
        .await
        .map_err(|e| CheckError {
            url: app_url.to_string(),
            reason: crate::error::describe_reqwest(&e),
        })?;
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok());
    Ok(!is_login_redirect(response.status(), location, &url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_302_to_the_login_path_means_log_in() {
        let base = url::Url::parse("https://h.example/x").unwrap();
        let login = Some("https://t.cloudflareaccess.com/cdn-cgi/access/login/h.example?kid=a");
        assert!(is_login_redirect(StatusCode::FOUND, login, &base));
        assert!(is_login_redirect(
            StatusCode::FOUND,
            Some("/cdn-cgi/access/login"),
            &base
        ));
        assert!(!is_login_redirect(
            StatusCode::MOVED_PERMANENTLY,
            login,
            &base
        ));
        assert!(!is_login_redirect(
            StatusCode::FOUND,
            Some("/elsewhere"),
            &base
        ));
        assert!(!is_login_redirect(StatusCode::FOUND, None, &base));
        assert!(!is_login_redirect(StatusCode::FORBIDDEN, login, &base));
    }
}
