//! What the config dir holds: the credentials `status` shows and `logout`
//! removes. Read from the files alone, with no request: tokens by their
//! names and unverified claims (docs/protocol.md 3), certificates as OpenSSH
//! certificates (docs/protocol.md 7).

use std::path::{Path, PathBuf};

use crate::access::config_dir::ConfigDir;
use crate::access::edge_profile::wildcard_matches;
use crate::access::host::AppUrl;
use crate::access::jwt;
use crate::platform::read::read_capped_string;

/// One credential in the config dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An app token: `<app host>-<aud>-token`.
    AppToken {
        app: String,
        aud: String,
        /// The team (auth domain) that issued it: the host of its `iss`.
        team: Option<String>,
        email: String,
        expires: i64,
        path: PathBuf,
    },
    /// A team's org token: `<auth domain>-org-token`.
    OrgToken {
        team: String,
        email: String,
        expires: i64,
        path: PathBuf,
    },
    /// A short-lived ssh certificate: `<host>-cf_key-cert.pub`.
    SshCert {
        host: String,
        /// The team of the host's app, from the app metadata kept beside it.
        team: Option<String>,
        principals: Vec<String>,
        key_id: String,
        valid_after: i64,
        expires: i64,
        path: PathBuf,
    },
}

impl Credential {
    pub fn path(&self) -> &Path {
        match self {
            Credential::AppToken { path, .. }
            | Credential::OrgToken { path, .. }
            | Credential::SshCert { path, .. } => path,
        }
    }

    /// When it stops being valid, in unix seconds.
    pub fn expires(&self) -> i64 {
        match self {
            Credential::AppToken { expires, .. }
            | Credential::OrgToken { expires, .. }
            | Credential::SshCert { expires, .. } => *expires,
        }
    }
}

/// Every credential in `dir`, sorted by kind and name; files that are not
/// credentials, or cannot be read, are passed over.
pub fn credentials(dir: &ConfigDir) -> Vec<Credential> {
    let Ok(entries) = std::fs::read_dir(dir.path()) else {
        return Vec::new();
    };
    let mut found: Vec<Credential> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| read(&e.path(), &e.file_name().to_string_lossy()))
        .collect();
    found.sort_by_key(|c| match c {
        Credential::AppToken { app, .. } => (0, app.clone()),
        Credential::OrgToken { team, .. } => (1, team.clone()),
        Credential::SshCert { host, .. } => (2, host.clone()),
    });
    found
}

fn read(path: &Path, name: &str) -> Option<Credential> {
    if let Some(host) = name.strip_suffix("-cf_key-cert.pub") {
        let text = read_capped_string(path, crate::limits::SSH_FILE).ok()?;
        let cert = ssh_key::Certificate::from_openssh(text.trim()).ok()?;
        let metadata = path.with_file_name(format!("{host}-metadata"));
        return Some(Credential::SshCert {
            host: host.to_owned(),
            team: metadata_team(&metadata),
            principals: cert.valid_principals().to_vec(),
            key_id: cert.key_id().to_owned(),
            valid_after: i64::try_from(cert.valid_after()).unwrap_or(i64::MAX),
            expires: i64::try_from(cert.valid_before()).unwrap_or(i64::MAX),
            path: path.to_owned(),
        });
    }
    let token_name = name.strip_suffix("-token")?;
    let text = read_capped_string(path, crate::limits::TOKEN).ok()?;
    let claims = jwt::peek(crate::access::token_store::compact_jws(&text)?).ok()?;
    let email = claims.email.clone().unwrap_or_default();
    let expires = claims.exp.unwrap_or(0);
    if let Some(team) = token_name.strip_suffix("-org") {
        return Some(Credential::OrgToken {
            team: team.to_owned(),
            email,
            expires,
            path: path.to_owned(),
        });
    }
    // `<app host>-<aud>`: the aud is one the token names
    let (app, aud) = claims.aud.iter().find_map(|aud| {
        let app = token_name.strip_suffix(aud.as_str())?.strip_suffix('-')?;
        Some((app, aud))
    })?;
    let team = claims
        .iss
        .as_deref()
        .and_then(|iss| url::Url::parse(iss).ok())
        .and_then(|iss| iss.host_str().map(str::to_ascii_lowercase));
    Some(Credential::AppToken {
        app: app.to_owned(),
        aud: aud.clone(),
        team,
        email,
        expires,
        path: path.to_owned(),
    })
}

/// What in `found` is the app's at `url`: its token (the file its kept app
/// info names, or one for its host, a wildcard app's included) and the
/// certificate of its host.
pub fn of_app<'a>(found: &'a [Credential], dir: &ConfigDir, url: &AppUrl) -> Vec<&'a Credential> {
    let host = url.hostname();
    let stem = url.key_stem();
    let app_token = crate::access::app_info::cached(dir, url).map(|app| dir.app_token(&app));
    found
        .iter()
        .filter(|c| match c {
            Credential::AppToken { app, path, .. } => {
                app_token.as_deref() == Some(path.as_path())
                    || app.eq_ignore_ascii_case(&host)
                    || wildcard_matches(&app.replacen("-.", "*.", 1), &host)
            }
            Credential::SshCert {
                host: cert_host, ..
            } => *cert_host == stem,
            Credential::OrgToken { .. } => false,
        })
        .collect()
}

/// The team of the app at `url`: from the app info kept for it, else from
/// its credentials in `found`.
pub fn team_of(found: &[Credential], dir: &ConfigDir, url: &AppUrl) -> Option<String> {
    if let Some(app) = crate::access::app_info::cached(dir, url) {
        return Some(app.auth_domain);
    }
    of_app(found, dir, url)
        .iter()
        .find_map(|c| c.team().map(str::to_owned))
}

/// The team named by the app metadata at `path` (its `auth_domain` claim,
/// read without checking the signature: it only groups what `status` shows
/// and `logout --team` removes, files that are ours either way).
fn metadata_team(path: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        auth_domain: String,
    }
    let jwt = read_capped_string(path, crate::limits::METADATA_FILE).ok()?;
    let claims: Metadata = jsonwebtoken::dangerous::insecure_decode_claims(jwt.trim()).ok()?;
    let team = claims.auth_domain.trim().to_ascii_lowercase();
    let team = team.strip_prefix("https://").unwrap_or(&team);
    let host = team.split(['/', ':']).next().unwrap_or_default();
    Some(host.to_owned()).filter(|t| !t.is_empty())
}

impl Credential {
    /// The team it belongs to, when that is known.
    pub fn team(&self) -> Option<&str> {
        match self {
            Credential::OrgToken { team, .. } => Some(team),
            Credential::AppToken { team, .. } | Credential::SshCert { team, .. } => team.as_deref(),
        }
    }
}

/// "2h5m", "3m20s", "40s" ([`crate::limits::show`]): how long until
/// `expires` from `now`, or `None` when it has passed.
pub fn remaining(expires: i64, now: i64) -> Option<String> {
    let left = expires.checked_sub(now).filter(|s| *s > 0)?;
    Some(crate::limits::show(std::time::Duration::from_secs(
        left as u64,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::jwt::tests::token;

    #[test]
    fn reads_tokens_by_name_and_claims_and_skips_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path());
        let header = r#"{"alg":"RS256","kid":"k"}"#;
        let app = token(
            header,
            r#"{"aud":["a1"],"email":"jo@x.test","exp":2000,"iss":"https://T.cloudflareaccess.com"}"#,
        );
        let org = token(
            header,
            r#"{"aud":["t.cloudflareaccess.com"],"email":"jo@x.test","exp":3000}"#,
        );
        std::fs::write(tmp.path().join("-.x.test-a1-token"), &app).unwrap();
        std::fs::write(tmp.path().join("t.cloudflareaccess.com-org-token"), &org).unwrap();
        std::fs::write(tmp.path().join("-.x.test-a1-token.lock"), "{}").unwrap();
        std::fs::write(tmp.path().join("garbage-token"), "not a jwt").unwrap();
        std::fs::write(tmp.path().join("t.cloudflareaccess.com-jwks"), "{}").unwrap();
        let found = credentials(&dir);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            matches!(&found[0], Credential::AppToken { app, aud, email, expires: 2000, .. }
            if app == "-.x.test" && aud == "a1" && email == "jo@x.test")
        );
        assert_eq!(found[0].team(), Some("t.cloudflareaccess.com"));
        assert!(
            matches!(&found[1], Credential::OrgToken { team, expires: 3000, .. }
            if team == "t.cloudflareaccess.com")
        );
    }

    #[test]
    fn remaining_time_reads_well() {
        assert_eq!(remaining(100, 100), None);
        assert_eq!(remaining(140, 100), Some("40s".into()));
        assert_eq!(remaining(100 + 200, 100), Some("3m20s".into()));
        assert_eq!(remaining(100 + 7500, 100), Some("2h5m".into()));
        assert_eq!(remaining(100 + 86_399, 100), Some("23h59m".into()));
        assert_eq!(remaining(100 + 90_000, 100), Some("25h".into()));
    }
}
