//! Finding the Access application behind a URL (docs/protocol.md section 2).
//!
//! The edge answers a `HEAD` carrying `cf-access-metadata-request: true` with
//! a JWT signed by the team's key, naming the host asked, the team's auth
//! domain and the app's aud. Checking that signature before trusting the aud
//! and auth domain keeps a hostile server from steering the login (and the
//! token it yields) to an app of its choosing.

use serde::Deserialize;
use tracing::debug;

use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::access::jwks::{self, JwksError};
use crate::access::jwt;
use crate::platform::atomic_file;

const METADATA_REQUEST: &str = "cf-access-metadata-request";
const METADATA: &str = "cf-access-metadata";
const ACCESS_SUFFIX: &str = ".cloudflareaccess.com";
const MAX_AGE_S: i64 = 24 * 3600;
const MAX_SKEW_S: i64 = 5 * 60;

/// The application protecting a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// The team's login domain, `<team>.cloudflareaccess.com`, lower case.
    pub auth_domain: String,
    /// The application's audience tag.
    pub aud: String,
    /// The application's host as configured (may hold `*`), as given.
    pub app_hostname: String,
}

/// Why the application could not be found or trusted.
#[derive(Debug, thiserror::Error)]
pub enum AppInfoError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no Access application answers at {url} (its answer has no cf-access-metadata header)")]
    NoApp { url: String },
    #[error("the application metadata from {url} is not a valid JWT: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "the application metadata names the auth domain '{domain}', which is not under {ACCESS_SUFFIX}"
    )]
    ForeignAuthDomain { domain: String },
    #[error("the application metadata from {url} cannot be trusted: {source}")]
    Untrusted {
        url: String,
        #[source]
        source: JwksError,
    },
    #[error("the application metadata is for '{claimed}', not for '{asked}'")]
    WrongHost { claimed: String, asked: String },
    #[error("the application metadata is not valid: {0}")]
    BadClaims(String),
}

impl AppInfoError {
    /// Whether the edge itself could not be reached (rather than answering
    /// something we refused).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            AppInfoError::Unreachable { .. }
                | AppInfoError::Untrusted {
                    source: JwksError::Fetch { .. },
                    ..
                }
        )
    }
}

#[derive(Debug, Deserialize)]
struct MetadataClaims {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    auth_domain: String,
    #[serde(default)]
    aud: String,
    #[serde(default)]
    app_hostname: String,
    #[serde(default)]
    iat: i64,
}

/// Asks the edge which application protects `url`, checks its answer, and
/// with `remember` keeps the signed answer for [`cached`] (not for one-off
/// URLs such as `curl`'s, whose paths would litter the config dir).
pub async fn discover(
    http: &reqwest::Client,
    dir: &ConfigDir,
    url: &AppUrl,
    remember: bool,
) -> Result<AppInfo, AppInfoError> {
    let jwt = fetch_metadata(http, url).await?;
    let info = verify_metadata(http, dir, url, &jwt).await?;
    if !remember {
        return Ok(info);
    }
    let path = dir.app_metadata(&url.key_stem());
    if let Err(e) = atomic_file::write(&path, jwt.as_bytes(), atomic_file::SECRET) {
        debug!(path = %path.display(), error = %e, "cannot keep the app metadata");
    }
    Ok(info)
}

/// The app info for `url` from the metadata kept by an earlier [`discover`],
/// checked again exactly as a fresh answer would be (signature against the
/// cached key set, host, age under 24 hours), with no request at all. `None`
/// when there is none that still checks out: then discover.
pub fn cached(dir: &ConfigDir, url: &AppUrl) -> Option<AppInfo> {
    // over its cap it is a corrupt entry: a miss, replaced by the next discovery
    let jwt = crate::platform::read::read_capped_string(
        &dir.app_metadata(&url.key_stem()),
        crate::limits::METADATA_FILE,
    )
    .ok()?;
    let jwt = jwt.trim();
    let unverified: MetadataClaims = jsonwebtoken::dangerous::insecure_decode_claims(jwt).ok()?;
    let auth_domain = auth_domain_host(&unverified.auth_domain).ok()?;
    let claims: MetadataClaims = jwks::verify_offline(dir, &auth_domain, jwt)?;
    app_info_from(claims, auth_domain, &url.hostname(), jwt::now()).ok()
}

/// The signed metadata JWT the edge returns for `url`.
async fn fetch_metadata(http: &reqwest::Client, url: &AppUrl) -> Result<String, AppInfoError> {
    let response = http
        .head(url.url().clone())
        .header(METADATA_REQUEST, "true")
        .timeout(crate::limits::DISCOVERY)
        .send()
        .await
        .map_err(|e| AppInfoError::Unreachable {
            url: url.to_string(),
            reason: crate::error::describe_reqwest(&e),
        })?;
    response
        .headers()
        .get(METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| AppInfoError::NoApp {
            url: url.to_string(),
        })
}

/// Checks a metadata JWT as the official client does, in its order.
pub async fn verify_metadata(
    http: &reqwest::Client,
    dir: &ConfigDir,
    url: &AppUrl,
    jwt: &str,
) -> Result<AppInfo, AppInfoError> {
    let unverified: MetadataClaims =
        jsonwebtoken::dangerous::insecure_decode_claims(jwt).map_err(|e| {
            AppInfoError::Malformed {
                url: url.to_string(),
                reason: e.to_string(),
            }
        })?;
    let auth_domain = auth_domain_host(&unverified.auth_domain)?;
    let claims: MetadataClaims =
        jwks::verify(http, dir, &auth_domain, jwt)
            .await
            .map_err(|source| AppInfoError::Untrusted {
                url: url.to_string(),
                source,
            })?;
    app_info_from(claims, auth_domain, &url.hostname(), jwt::now())
}

/// Checks verified claims for the host `asked` and makes the app info.
fn app_info_from(
    claims: MetadataClaims,
    auth_domain: String,
    asked: &str,
    now: i64,
) -> Result<AppInfo, AppInfoError> {
    check_claims(&claims, asked, now)?;
    let app_hostname = if claims.app_hostname.is_empty() {
        claims.hostname
    } else {
        claims.app_hostname
    };
    Ok(AppInfo {
        auth_domain,
        aud: claims.aud,
        app_hostname,
    })
}

/// The bare, lower-case host of an `auth_domain` claim, which must be under
/// `.cloudflareaccess.com`; port, user info and path are dropped.
fn auth_domain_host(claim: &str) -> Result<String, AppInfoError> {
    let foreign = || AppInfoError::ForeignAuthDomain {
        domain: claim.to_owned(),
    };
    let parsed = url::Url::parse(&format!("https://{claim}")).map_err(|_| foreign())?;
    let host = parsed.host_str().ok_or_else(foreign)?.to_ascii_lowercase();
    if host.len() > ACCESS_SUFFIX.len() && host.ends_with(ACCESS_SUFFIX) {
        Ok(host)
    } else {
        Err(foreign())
    }
}

fn check_claims(claims: &MetadataClaims, asked: &str, now: i64) -> Result<(), AppInfoError> {
    let bare = |h: &str| {
        let h = h.trim_start_matches('[');
        let h = match h.find(']') {
            Some(i) => &h[..i],
            None if h.matches(':').count() == 1 => h.split(':').next().unwrap_or(h),
            None => h,
        };
        h.to_ascii_lowercase()
    };
    if bare(&claims.hostname) != bare(asked) {
        return Err(AppInfoError::WrongHost {
            claimed: claims.hostname.clone(),
            asked: asked.to_owned(),
        });
    }
    let bad = |s: &str| Err(AppInfoError::BadClaims(s.to_owned()));
    if claims.kind != "match" {
        return bad(&format!("its type is '{}', not 'match'", claims.kind));
    }
    if claims.aud.is_empty() {
        return bad("its aud is empty");
    }
    if claims.iat <= 0 {
        return bad("its iat is missing");
    }
    if claims.iat < now - MAX_AGE_S {
        return bad("it was issued more than 24 hours ago (is the clock right?)");
    }
    if claims.iat > now + MAX_SKEW_S {
        return bad("it was issued more than 5 minutes in the future (is the clock right?)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(hostname: &str, iat: i64) -> MetadataClaims {
        MetadataClaims {
            kind: "match".into(),
            hostname: hostname.into(),
            auth_domain: "t.cloudflareaccess.com".into(),
            aud: "a".into(),
            app_hostname: String::new(),
            iat,
        }
    }

    #[test]
    fn auth_domain_must_be_under_cloudflareaccess_com() {
        assert_eq!(
            auth_domain_host("Team.CloudflareAccess.com").unwrap(),
            "team.cloudflareaccess.com"
        );
        assert_eq!(
            auth_domain_host("team.cloudflareaccess.com:8443/x").unwrap(),
            "team.cloudflareaccess.com"
        );
        assert_eq!(
            auth_domain_host("u@t.fed.cloudflareaccess.com").unwrap(),
            "t.fed.cloudflareaccess.com"
        );
        for bad in [
            "evil.com",
            "cloudflareaccess.com",
            ".cloudflareaccess.com",
            "evilcloudflareaccess.com",
            "t.cloudflareaccess.com.evil.com",
            "",
        ] {
            assert!(auth_domain_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostname_comparison_ignores_case_port_and_brackets() {
        assert!(check_claims(&claims("SSH.example.com", 100), "ssh.example.com", 100).is_ok());
        assert!(check_claims(&claims("ssh.example.com:22", 100), "ssh.example.com", 100).is_ok());
        assert!(check_claims(&claims("[::1]", 100), "::1", 100).is_ok());
        assert!(matches!(
            check_claims(&claims("other.example.com", 100), "ssh.example.com", 100),
            Err(AppInfoError::WrongHost { .. })
        ));
    }

    #[test]
    fn iat_bounds_are_inclusive() {
        let now = 1_000_000;
        assert!(check_claims(&claims("h", now - MAX_AGE_S), "h", now).is_ok());
        assert!(check_claims(&claims("h", now - MAX_AGE_S - 1), "h", now).is_err());
        assert!(check_claims(&claims("h", now + MAX_SKEW_S), "h", now).is_ok());
        assert!(check_claims(&claims("h", now + MAX_SKEW_S + 1), "h", now).is_err());
        assert!(check_claims(&claims("h", 0), "h", now).is_err());
    }

    #[test]
    fn type_and_aud_are_checked() {
        let mut c = claims("h", 100);
        c.kind = "other".into();
        assert!(check_claims(&c, "h", 100).is_err());
        let mut c = claims("h", 100);
        c.aud.clear();
        assert!(check_claims(&c, "h", 100).is_err());
    }
}
