//! The token store (docs/protocol.md section 3): app and org tokens as files in
//! the config dir, named and written exactly as the official client does, so
//! either client uses what the other fetched.

use std::io;
use std::path::Path;

use tracing::debug;

use crate::access::app_info::AppInfo;
use crate::access::config_dir::ConfigDir;
use crate::access::jwt;
use crate::limits;
use crate::platform::{atomic_file, private_dir, read};

/// Why a token could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the token file {path}: {source}")]
pub struct StoreError {
    pub path: std::path::PathBuf,
    pub source: io::Error,
}

/// Reads and writes the tokens in one config dir.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: ConfigDir,
}

impl TokenStore {
    pub fn new(dir: ConfigDir) -> Self {
        TokenStore { dir }
    }

    pub fn dir(&self) -> &ConfigDir {
        &self.dir
    }

    /// The cached app token for `app`, if it is unexpired and names the app's
    /// aud. An expired token or one for another aud is deleted; an unreadable
    /// one is left alone and counts as absent.
    pub fn app_token(&self, app: &AppInfo) -> Option<String> {
        load_valid(&self.dir.app_token(app), Some(&app.aud))
    }

    /// The cached org token for `auth_domain`, if it is unexpired and has an aud.
    pub fn org_token(&self, auth_domain: &str) -> Option<String> {
        load_valid(&self.dir.org_token(auth_domain), None)
    }

    pub fn store_app_token(&self, app: &AppInfo, token: &str) -> Result<(), StoreError> {
        self.store(&self.dir.app_token(app), token)
    }

    pub fn store_org_token(&self, auth_domain: &str, token: &str) -> Result<(), StoreError> {
        self.store(&self.dir.org_token(auth_domain), token)
    }

    /// Deletes the app token, say after the edge refused it.
    pub fn remove_app_token(&self, app: &AppInfo) -> io::Result<()> {
        remove_if_exists(&self.dir.app_token(app))
    }

    fn store(&self, path: &Path, token: &str) -> Result<(), StoreError> {
        let err = |source| StoreError {
            path: path.to_owned(),
            source,
        };
        self.dir.ensure().map_err(|e| err(io::Error::other(e)))?;
        atomic_file::write(path, token.trim().as_bytes(), atomic_file::SECRET).map_err(err)
    }
}

/// The token in `path` if it is one worth sending: one compact JWS and
/// nothing else, RS256, unexpired, and naming `aud` (any aud at all when
/// `aud` is `None`). A file that is not a regular one, is larger than
/// [`limits::TOKEN`] or holds anything else counts as no token.
fn load_valid(path: &Path, aud: Option<&str>) -> Option<String> {
    match private_dir::tighten_file(path) {
        Ok(true) => debug!(path = %path.display(), "made the token file 0600"),
        Ok(false) => {}
        Err(e) => debug!(path = %path.display(), error = %e, "cannot tighten the token file"),
    }
    let text = match read::read_capped_string(path, limits::TOKEN) {
        Ok(text) => text,
        Err(e) => {
            if !e.is_not_found() {
                debug!(path = %path.display(), error = %e, "ignoring the token file");
            }
            return None;
        }
    };
    let Some(token) = compact_jws(&text) else {
        debug!(path = %path.display(), "ignoring a token file that holds no single token");
        return None;
    };
    let claims = match jwt::peek(token) {
        Ok(claims) => claims,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "ignoring an unreadable token file");
            return None;
        }
    };
    let usable = !claims.is_expired(jwt::now())
        && match aud {
            Some(aud) => claims.has_aud(aud),
            None => !claims.aud.is_empty(),
        };
    if !usable {
        debug!(path = %path.display(), "deleting an expired token or one for another audience");
        let _ = remove_if_exists(path);
        return None;
    }
    Some(token.to_owned())
}

/// The token in `text` if `text` is exactly one compact JWS (three
/// non-empty base64url segments) with at most a trailing newline: what can
/// be sent as a header value and nothing else.
pub fn compact_jws(text: &str) -> Option<&str> {
    let token = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segment.is_empty() || !segment.bytes().all(base64url) {
            return None;
        }
    }
    (segments == 3 && token.len() <= limits::TOKEN).then_some(token)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::jwt::tests::token;

    const RS256: &str = r#"{"alg":"RS256","kid":"k"}"#;

    fn app() -> AppInfo {
        AppInfo {
            auth_domain: "t.cloudflareaccess.com".into(),
            aud: "aud1".into(),
            app_hostname: "h.example".into(),
        }
    }

    #[test]
    fn keeps_good_tokens_and_deletes_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let store = TokenStore::new(ConfigDir::at(tmp.path().join("c")));
        let exp = jwt::now() + 60;
        let good = token(RS256, &format!(r#"{{"aud":["aud1"],"exp":{exp}}}"#));
        store.store_app_token(&app(), &good).unwrap();
        assert_eq!(store.app_token(&app()).as_deref(), Some(good.as_str()));

        let other_aud = token(RS256, &format!(r#"{{"aud":"aud2","exp":{exp}}}"#));
        store.store_app_token(&app(), &other_aud).unwrap();
        assert_eq!(store.app_token(&app()), None);
        assert!(!store.dir().app_token(&app()).exists());

        let expired = token(RS256, r#"{"aud":"aud1","exp":1}"#);
        store.store_app_token(&app(), &expired).unwrap();
        assert_eq!(store.app_token(&app()), None);
        assert!(!store.dir().app_token(&app()).exists());
    }

    #[test]
    fn only_one_compact_jws_is_a_token() {
        assert_eq!(compact_jws("a.b.c"), Some("a.b.c"));
        assert_eq!(compact_jws("a-_.B0.c\n"), Some("a-_.B0.c"));
        assert_eq!(compact_jws("a.b.c\r\n"), Some("a.b.c"));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c\n\n",
            "a.b.c\0\0",
            "a.b.c\nd",
            " a.b.c",
            "a.b.c ",
            "a.b=.c",
            "a.b.c\u{7f}",
        ] {
            assert_eq!(compact_jws(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_token_with_junk_appended_is_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let store = TokenStore::new(ConfigDir::at(tmp.path()));
        let exp = jwt::now() + 60;
        let good = token(RS256, &format!(r#"{{"aud":["aud1"],"exp":{exp}}}"#));
        let mut junk = good.clone().into_bytes();
        junk.resize(junk.len() + 4096, 0);
        std::fs::write(store.dir().app_token(&app()), &junk).unwrap();
        assert_eq!(store.app_token(&app()), None);
        std::fs::write(store.dir().app_token(&app()), format!("{good}\n")).unwrap();
        assert_eq!(store.app_token(&app()).as_deref(), Some(good.as_str()));
        let huge = std::fs::File::create(store.dir().app_token(&app())).unwrap();
        huge.set_len(1 << 30).unwrap();
        assert_eq!(store.app_token(&app()), None);
    }

    #[test]
    fn garbage_counts_as_absent_and_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let store = TokenStore::new(ConfigDir::at(tmp.path()));
        std::fs::write(store.dir().app_token(&app()), "garbage").unwrap();
        assert_eq!(store.app_token(&app()), None);
        assert!(store.dir().app_token(&app()).exists());
    }
}
