//! Reading the host argument (docs/protocol.md section 1).
//!
//! Users give `host`, `host:port`, `host/path`, a full `http(s)://` URL, an
//! IPv4 address or a bare or bracketed IPv6 address. Everything becomes an
//! `https://` URL with a punycode host, and anything that is not a usable host
//! is a usage error (the official client panics on some and prints help with
//! exit 0 on others; we name the problem).

use std::fmt;
use std::net::Ipv6Addr;

use url::{Host, Url};

/// Why an argument is not a usable application URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no hostname given")]
    Empty,
    #[error("'{input}' is not a valid hostname or URL: {reason}")]
    Invalid { input: String, reason: String },
    #[error(
        "'{input}' uses the scheme '{scheme}': only http and https URLs name an Access application"
    )]
    Scheme { input: String, scheme: String },
    #[error("'{input}' is not an absolute URL: give it with its scheme, like https://{input}")]
    NotAbsolute { input: String },
}

/// An Access application's URL: always `https`, host in punycode, no user
/// info, path and query as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUrl {
    url: Url,
    /// Whether the argument had a path at all: the url crate writes `/` for
    /// a missing one, Go keeps it empty, and key file names depend on that.
    path_given: bool,
}

impl AppUrl {
    /// Reads a `--hostname`/URL argument the way the official client does,
    /// but refuses what it would mangle.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(HostError::Empty);
        }
        let with_scheme = match scheme_of(trimmed) {
            Some(scheme)
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                trimmed.to_owned()
            }
            Some(scheme) if !looks_like_host_port(trimmed) => {
                return Err(HostError::Scheme {
                    input: input.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
            _ => format!("https://{}", bracket_bare_ipv6(trimmed)),
        };
        Self::from_url_str(input, &with_scheme)
    }

    /// Reads an absolute URL, as `curl` takes it: the scheme must be written out.
    pub fn parse_absolute(input: &str) -> Result<Self, HostError> {
        let trimmed = input.trim();
        match scheme_of(trimmed) {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                Self::from_url_str(input, trimmed)
            }
            Some(s) if !looks_like_host_port(trimmed) => Err(HostError::Scheme {
                input: input.to_owned(),
                scheme: s.to_owned(),
            }),
            _ if trimmed.is_empty() => Err(HostError::Empty),
            _ => Err(HostError::NotAbsolute {
                input: input.to_owned(),
            }),
        }
    }

    fn from_url_str(input: &str, text: &str) -> Result<Self, HostError> {
        let invalid = |reason: &dyn fmt::Display| HostError::Invalid {
            input: input.to_owned(),
            reason: reason.to_string(),
        };
        let mut url = Url::parse(text).map_err(|e| invalid(&e))?;
        match url.host() {
            None => return Err(invalid(&"it has no host")),
            Some(Host::Domain("")) => return Err(invalid(&"it has no host")),
            Some(Host::Domain(d)) => {
                if let Some(c) = d.chars().find(|c| !is_host_char(*c)) {
                    return Err(invalid(&format_args!(
                        "a DNS name holds letters, digits, '-', '.' and '_', not '{c}'"
                    )));
                }
            }
            Some(_) => {}
        }
        // `set_scheme` refuses nothing between two special schemes.
        let _ = url.set_scheme("https");
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
        let path_given = after_scheme
            .find(['/', '?', '#'])
            .is_some_and(|i| after_scheme[i..].starts_with('/'));
        Ok(AppUrl { url, path_given })
    }

    /// The URL, for requests.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL as Go's `url.URL.String()` writes it: no `/` when no path was
    /// given. The login URL's `redirect_url` is built from this.
    pub fn go_string(&self) -> String {
        let mut s = format!("https://{}{}", self.authority(), self.go_path());
        if let Some(q) = self.url.query() {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The escaped path, empty when none was given.
    fn go_path(&self) -> &str {
        if self.path_given { self.url.path() } else { "" }
    }

    /// The host name without port or IPv6 brackets, as the edge's metadata
    /// names it.
    pub fn hostname(&self) -> String {
        match self.url.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            None => String::new(),
        }
    }

    /// `host[:port]`, as a `Host` header carries it.
    pub fn authority(&self) -> String {
        match (self.url.host_str(), self.url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        }
    }

    /// The stem of the ssh key files for this host: the host name and the
    /// escaped path, every `/` turned into `-` (the official client drops
    /// scheme and port, so `https://h:22/x` and `h/x` share their keys).
    pub fn key_stem(&self) -> String {
        format!("{}{}", self.hostname(), self.go_path()).replace('/', "-")
    }
}

impl fmt::Display for AppUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// The scheme of `s`, if it starts with one followed by `://` or `:`.
fn scheme_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}

/// `host:22` and `host:22/path` parse as a scheme `host`; they are not one.
fn looks_like_host_port(s: &str) -> bool {
    let Some((_, rest)) = s.split_once(':') else {
        return false;
    };
    let port: &str = rest.split(['/', '?', '#']).next().unwrap_or("");
    !port.is_empty() && !rest.starts_with("//") && port.bytes().all(|b| b.is_ascii_digit())
}

/// Wraps a bare IPv6 address (`::1`, `::1/path`) in brackets so it parses as a host.
fn bracket_bare_ipv6(s: &str) -> String {
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let (host, rest) = s.split_at(end);
    if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]{rest}")
    } else {
        s.to_owned()
    }
}

/// What the url crate lets through in a domain but a Host header cannot carry.
/// What a DNS name (in punycode, as the url crate gives it) is made of. The
/// URL syntax allows more (`!$&'()*+,;=`), but no Access application can be
/// named with them, and a name like `ht!tp` is a typo to report, not a host
/// to look up.
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> String {
        AppUrl::parse(s).unwrap().to_string()
    }

    #[test]
    fn a_typo_in_the_scheme_is_not_a_host() {
        for input in [
            "ht!tp://x",
            "a&b.example.com",
            "exa(mple).com",
            "*.example.com",
        ] {
            let err = AppUrl::parse(input).unwrap_err();
            assert!(matches!(err, HostError::Invalid { .. }), "{input}: {err}");
        }
    }

    #[test]
    fn adds_https_and_upgrades_http() {
        assert_eq!(url("ssh.example.com"), "https://ssh.example.com/");
        assert_eq!(url("ssh.example.com:2222"), "https://ssh.example.com:2222/");
        assert_eq!(
            url("ssh.example.com/a/b?x=1"),
            "https://ssh.example.com/a/b?x=1"
        );
        assert_eq!(url("http://ssh.example.com/x"), "https://ssh.example.com/x");
        assert_eq!(url("HTTPS://SSH.Example.com"), "https://ssh.example.com/");
    }

    #[test]
    fn takes_ip_addresses() {
        assert_eq!(url("10.0.0.1:22"), "https://10.0.0.1:22/");
        assert_eq!(url("::1"), "https://[::1]/");
        assert_eq!(url("[::1]:8443"), "https://[::1]:8443/");
        assert_eq!(url("2001:db8::1/p"), "https://[2001:db8::1]/p");
        assert_eq!(AppUrl::parse("[::1]").unwrap().hostname(), "::1");
    }

    #[test]
    fn converts_to_punycode_and_drops_user_info() {
        assert_eq!(url("bücher.example"), "https://xn--bcher-kva.example/");
        assert_eq!(url("https://user:pw@h.example/"), "https://h.example/");
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        assert_eq!(AppUrl::parse(""), Err(HostError::Empty));
        assert_eq!(AppUrl::parse("  "), Err(HostError::Empty));
        assert!(matches!(
            AppUrl::parse(":8080"),
            Err(HostError::Invalid { .. })
        ));
        assert!(matches!(
            AppUrl::parse("https://"),
            Err(HostError::Invalid { .. })
        ));
        assert!(matches!(
            AppUrl::parse("bad host"),
            Err(HostError::Invalid { .. })
        ));
        assert!(matches!(
            AppUrl::parse("a<b.example"),
            Err(HostError::Invalid { .. })
        ));
        assert!(matches!(
            AppUrl::parse("ftp://h.example"),
            Err(HostError::Scheme { .. })
        ));
    }

    #[test]
    fn absolute_urls_need_their_scheme() {
        assert!(AppUrl::parse_absolute("https://h.example/x").is_ok());
        assert!(matches!(
            AppUrl::parse_absolute("h.example"),
            Err(HostError::NotAbsolute { .. })
        ));
        assert!(matches!(
            AppUrl::parse_absolute("h.example:443"),
            Err(HostError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn renders_like_go_without_a_path() {
        assert_eq!(
            AppUrl::parse("h.example:8443?x=1").unwrap().go_string(),
            "https://h.example:8443?x=1"
        );
        assert_eq!(
            AppUrl::parse("h.example/").unwrap().go_string(),
            "https://h.example/"
        );
        assert_eq!(
            AppUrl::parse("h.example/a%20b").unwrap().go_string(),
            "https://h.example/a%20b"
        );
    }

    #[test]
    fn key_stems_keep_host_and_path_only() {
        assert_eq!(
            AppUrl::parse("ssh.example.com").unwrap().key_stem(),
            "ssh.example.com"
        );
        assert_eq!(
            AppUrl::parse("https://ssh.example.com:22")
                .unwrap()
                .key_stem(),
            "ssh.example.com"
        );
        assert_eq!(
            AppUrl::parse("ssh.example.com/").unwrap().key_stem(),
            "ssh.example.com-"
        );
        assert_eq!(
            AppUrl::parse("ssh.example.com/a/b").unwrap().key_stem(),
            "ssh.example.com-a-b"
        );
    }
}
