//! How errors reach the user: one line on stderr, what went wrong and, where
//! there is one, what to do about it.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// An error with advice for the user, shown after the error chain.
#[derive(Debug)]
pub struct Hinted {
    pub error: anyhow::Error,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl StdError for Hinted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// Adds a hint to an error or a result.
pub trait WithHint<T> {
    fn hint(self, hint: impl Into<String>) -> Result<T, anyhow::Error>;
}

impl<T, E: Into<anyhow::Error>> WithHint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> Result<T, anyhow::Error> {
        self.map_err(|e| {
            anyhow::Error::new(Hinted {
                error: e.into(),
                hint: hint.into(),
            })
        })
    }
}

/// The one line printed for a failed command: `error: <chain>; hint: <hint>`.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("error: {}", describe(err))
}

/// An error's chain and hint on one line, without the `error:` prefix.
pub fn describe(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut hint = None;
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            hint.get_or_insert_with(|| h.hint.clone());
        }
        if hint.is_none() {
            hint = advice(cause);
        }
        let text = cause.to_string();
        // typed errors often repeat their source in their own message
        if parts.last().is_some_and(|p| p.contains(&text)) || text.is_empty() {
            continue;
        }
        parts.push(text);
    }
    let mut line = parts.join(": ");
    if let Some(hint) = hint {
        line.push_str("; hint: ");
        line.push_str(&hint);
    }
    line.replace(['\n', '\r'], " ")
}

/// What to do about a certificate we do not trust.
pub const TLS_HINT: &str = "the server's certificate is not trusted here: check the hostname, SSL_CERT_FILE and CFACCESS_EDGE";

/// What to do about a redirect refused because it would take a token away.
const REDIRECT_HINT: &str = "a server or proxy on the way tried to send the request elsewhere; check CFACCESS_EDGE and HTTPS_PROXY, and tell the app's admin";

/// What to do about the library's errors, where the error itself does not say.
fn advice(cause: &(dyn StdError + 'static)) -> Option<String> {
    use crate::access::AccessError;
    use crate::access::app_info::AppInfoError as A;
    use crate::access::login_service::LoginError as L;
    if let Some(e) = cause.downcast_ref::<crate::carrier::CarrierError>() {
        return match e {
            crate::carrier::CarrierError::Access(e) => advice(e),
            e => e.hint(),
        };
    }
    // transparent wrappers hide the wrapped error from the chain
    if let Some(e) = cause.downcast_ref::<AccessError>() {
        match e {
            AccessError::AppInfo(e) => return advice(e),
            AccessError::Login(e) => return advice(e),
            AccessError::Lock(e) => return advice(e),
            AccessError::Store(e) => return advice(e),
            AccessError::ConfigDir(e) => return advice(e),
            AccessError::LoginWait(_) => {
                return Some(format!(
                    "give {} a duration like 4m or 90s, or unset it",
                    crate::limits::LOGIN_WAIT_ENV
                ));
            }
            AccessError::Http(_) => {
                return Some(format!("fix or unset {}", crate::access::edge_profile::ENV));
            }
            _ => {}
        }
    }
    if let Some(e) = cause.downcast_ref::<A>() {
        return Some(match e {
            A::Unreachable { .. } => {
                "check the hostname, your network and any HTTPS_PROXY setting".into()
            }
            A::NoApp { .. } => "check that this hostname is protected by Cloudflare Access".into(),
            A::ForeignAuthDomain { .. } => {
                "this server is not a Cloudflare Access edge; do not log in to it".into()
            }
            A::Untrusted {
                source: crate::access::jwks::JwksError::UnknownKey { fresh: false, .. },
                ..
            } => "the team's keys may have just been rotated; try again in a few seconds".into(),
            A::Untrusted { .. } | A::Malformed { .. } => {
                "the answer is not signed by the team's Access keys; check the hostname".into()
            }
            A::WrongHost { .. } | A::BadClaims(_) => {
                "check the hostname and your system clock".into()
            }
        });
    }
    if let Some(e) = cause.downcast_ref::<L>() {
        return Some(match e {
            L::NotApproved { .. } => "run the command again".into(),
            L::Service { .. } | L::Unreachable(_) | L::Body(_) => {
                "the login service is failing or out of reach; try again later".into()
            }
            L::BadAnswer(_) => "run the command again to start a new login".into(),
            L::Redirected(_) => REDIRECT_HINT.into(),
        });
    }
    if let Some(e) = cause.downcast_ref::<crate::ssh::cert_sign::CertSignError>() {
        use crate::ssh::cert_sign::CertSignError as C;
        match e {
            C::Redirected(_) => return Some(REDIRECT_HINT.into()),
            C::InsecureIssuer(_) => {
                return Some("log in again with `cfaccess login` to replace the token".into());
            }
            C::Body { .. } => {
                return Some("the team's SSH CA answered badly; try again later".into());
            }
            _ => {}
        }
    }
    if cause.is::<crate::access::http::RedirectRefused>() {
        return Some(REDIRECT_HINT.into());
    }
    if let Some(e) = cause.downcast_ref::<crate::access::lock::LockError>() {
        use crate::access::lock::LockError as K;
        match e {
            K::Timeout { path, .. } => {
                return Some(format!(
                    "finish that login, or delete {} if no login is running",
                    path.display()
                ));
            }
            K::InTheWay { path, .. } => {
                return Some(format!(
                    "remove {} (cfaccess keeps its login lock there) and run the command again",
                    path.display()
                ));
            }
            K::Create { .. } => {}
        }
    }
    if let Some(AccessError::RefusedAgain { .. }) = cause.downcast_ref() {
        return Some("your identity may not be allowed to use this application".into());
    }
    if let Some(crate::access::config_dir::ConfigDirError::ForeignOwner { path, .. }) =
        cause.downcast_ref()
    {
        return Some(format!(
            "its owner could read or replace your tokens: make it yours (chown {}) or point {} at a dir of your own",
            path.display(),
            crate::access::config_dir::ENV
        ));
    }
    if cause.is::<crate::access::token_store::StoreError>()
        || cause.is::<crate::access::config_dir::ConfigDirError>()
    {
        return Some(format!(
            "make the config dir writable, or point {} elsewhere",
            crate::access::config_dir::ENV
        ));
    }
    None
}

/// A short description of why a request failed, from the deepest cause that
/// says something a user can act on (refused, timed out, name not found, a
/// certificate not trusted), rather than hyper's "error sending request".
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    tracing::debug!("request failed: {e:?}");
    if e.is_timeout() && e.is_connect() {
        return format!(
            "no connection within {} (TCP connect and TLS handshake)",
            crate::limits::show(crate::limits::CONNECT)
        );
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    match e.source() {
        Some(cause) => describe_cause(cause),
        None => e.to_string(),
    }
}

/// What went wrong under a network error, in the words of
/// [`describe_reqwest`]: the TLS error or the I/O error's kind where there
/// is one, else the deepest message.
pub fn describe_cause(e: &(dyn StdError + 'static)) -> String {
    let mut deepest: Option<String> = None;
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(tls) = find::<rustls::Error>(c) {
            return format!("TLS handshake failed: {tls}");
        }
        if let Some(io) = c.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                io::ErrorKind::TimedOut => return "timed out".into(),
                io::ErrorKind::ConnectionReset => return "connection reset by the server".into(),
                io::ErrorKind::UnexpectedEof => return "the server closed the connection".into(),
                _ => {}
            }
        }
        let text = c.to_string();
        if !text.is_empty() {
            deepest = Some(text);
        }
        cause = c.source();
    }
    deepest.unwrap_or_else(|| e.to_string())
}

/// An error of type `T` in `e` or below it, looking inside `io::Error`s too
/// (their `source` skips the error they wrap).
fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    if let Some(t) = e.downcast_ref::<T>() {
        return Some(t);
    }
    let inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
    if let Some(inner) = inner {
        let inner: &(dyn StdError + 'static) = inner;
        if let Some(t) = find::<T>(inner) {
            return Some(t);
        }
    }
    e.source().and_then(find::<T>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn joins_the_chain_and_puts_the_hint_last() {
        let err: Result<(), _> = Err(io::Error::other("refused"));
        let err = err
            .context("cannot reach https://h")
            .hint("is the edge running?")
            .context("login failed")
            .unwrap_err();
        assert_eq!(
            one_line(&err),
            "error: login failed: cannot reach https://h: refused; hint: is the edge running?"
        );
    }

    #[test]
    fn never_spans_lines() {
        let err = anyhow::anyhow!("a\nb");
        assert_eq!(one_line(&err), "error: a b");
    }
}
