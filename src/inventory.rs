//! What the config dir holds: the credentials `status` shows and `logout`
//! removes. Read from the files alone, with no request: tokens by their
//! names and unverified claims (PROTOCOL.md 3), certificates as OpenSSH
//! certificates (PROTOCOL.md 7).

use std::path::{Path, PathBuf};

use crate::access::config_dir::ConfigDir;
use crate::access::jwt;
use crate::platform::read::read_capped_string;

/// One credential in the config dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An app token: `<app host>-<aud>-token`.
    AppToken {
        app: String,
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
        principals: Vec<String>,
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
        return Some(Credential::SshCert {
            host: host.to_owned(),
            principals: cert.valid_principals().to_vec(),
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
    let app = claims
        .aud
        .iter()
        .find_map(|aud| token_name.strip_suffix(aud.as_str())?.strip_suffix('-'))?;
    Some(Credential::AppToken {
        app: app.to_owned(),
        email,
        expires,
        path: path.to_owned(),
    })
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
        let app = token(header, r#"{"aud":["a1"],"email":"jo@x.test","exp":2000}"#);
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
            matches!(&found[0], Credential::AppToken { app, email, expires: 2000, .. }
            if app == "-.x.test" && email == "jo@x.test")
        );
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
