//! Where a carried connection goes (docs/protocol.md 6.1): the app's TCP origin,
//! or, for a bastion app, the destination the client names in
//! `Cf-Access-Jump-Destination`, checked against the app's allow-list.
//!
//! The rules, in order:
//! - An app with no `destinations` is not a bastion: it always goes to its
//!   `origin`, and a jump destination header is ignored (as a tunnel that is
//!   not a bastion ignores it).
//! - A bastion app (`destinations` set) goes where the header says, if the
//!   allow-list has that `HOST:PORT` (or `*`); any other destination is
//!   refused (403), never quietly replaced by the origin.
//! - Without the header, a bastion app goes to its `origin` if it has one
//!   (a default destination), else the request is a usage error (400): the
//!   client was not given `--destination`.
//!
//! The header is read as the official `ResolveBastionDest` reads it
//! (`carrier/carrier.go`): a scheme and a path are stripped, so
//! `tcp://db.internal:5432/x` means `db.internal:5432`.

use axum::http::StatusCode;

use crate::ops::config::check_host_port;
use crate::site::App;

/// The request header naming a bastion destination.
pub(crate) const JUMP_HEADER: &str = "cf-access-jump-destination";

/// Why a carried connection has nowhere to go: an HTTP status and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Self {
        Refusal { status, message }
    }
}

/// The `HOST:PORT` to dial for `app`, given the request's jump destination
/// header (`None` when absent or empty).
pub(crate) fn resolve(app: &App, jump: Option<&str>) -> Result<String, Refusal> {
    let jump = jump.map(str::trim).filter(|j| !j.is_empty());
    if app.destinations.is_empty() {
        return app.origin.clone().ok_or_else(|| no_origin(app));
    }
    let Some(jump) = jump else {
        return app.origin.clone().ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "no destination: use --destination (the bastion {} needs the Cf-Access-Jump-Destination header)",
                    app.hostname
                ),
            )
        });
    };
    let destination = strip_scheme_and_path(jump);
    if check_host_port(destination).is_err() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("destination {destination:?} is not HOST:PORT"),
        ));
    }
    if app
        .destinations
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(destination))
    {
        Ok(destination.to_owned())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "destination {destination} is not allowed through {}",
                app.hostname
            ),
        ))
    }
}

/// The refusal for an app that has no origin to carry to.
pub(crate) fn no_origin(app: &App) -> Refusal {
    Refusal::new(
        StatusCode::BAD_GATEWAY,
        format!("no origin configured for {}", app.hostname),
    )
}

/// `ResolveBastionDest`: the URL's host and port when the value parses as a
/// URL with a host, else the value up to its first `/`.
fn strip_scheme_and_path(value: &str) -> &str {
    let authority = match value.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            // Go's URL.Host leaves out user info.
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host)
        }
        _ => value,
    };
    authority.split('/').next().unwrap_or(authority)
}

/// A URL scheme as RFC 3986 spells it.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(origin: Option<&str>, destinations: &[&str]) -> App {
        App {
            hostname: "jump.test".into(),
            aud: "aud".into(),
            id: "00000000-0000-0000-0000-000000000000".into(),
            name: "jump.test".into(),
            zone_id: None,
            allow: Vec::new(),
            service_tokens: Vec::new(),
            origin: origin.map(str::to_owned),
            destinations: destinations.iter().map(|d| (*d).to_owned()).collect(),
            ssh_log_key: None,
            browser_rendering: false,
        }
    }

    #[test]
    fn the_header_loses_scheme_and_path_as_resolve_bastion_dest_does() {
        for (value, want) in [
            ("db.internal:5432", "db.internal:5432"),
            ("tcp://db.internal:5432", "db.internal:5432"),
            ("ssh://user@10.0.0.1:22/x/y", "10.0.0.1:22"),
            ("https://h:443?q=1", "h:443"),
            ("10.0.0.1:22/path", "10.0.0.1:22"),
            ("[::1]:22", "[::1]:22"),
        ] {
            assert_eq!(strip_scheme_and_path(value), want, "{value}");
        }
    }

    #[test]
    fn an_app_that_is_no_bastion_goes_to_its_origin() {
        let plain = app(Some("127.0.0.1:22"), &[]);
        assert_eq!(resolve(&plain, None).unwrap(), "127.0.0.1:22");
        assert_eq!(
            resolve(&plain, Some("10.0.0.1:22")).unwrap(),
            "127.0.0.1:22"
        );
        let none = resolve(&app(None, &[]), None).unwrap_err();
        assert_eq!(none.status, StatusCode::BAD_GATEWAY);
        assert_eq!(none.message, "no origin configured for jump.test");
    }

    #[test]
    fn a_bastion_goes_where_the_allow_list_lets_it() {
        let bastion = app(None, &["DB.internal:5432", "10.0.0.1:22"]);
        assert_eq!(
            resolve(&bastion, Some("tcp://db.INTERNAL:5432")).unwrap(),
            "db.INTERNAL:5432"
        );
        let refused = resolve(&bastion, Some("10.0.0.2:22")).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.message.contains("10.0.0.2:22 is not allowed"));
        let missing = resolve(&bastion, Some("  ")).unwrap_err();
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert!(
            missing
                .message
                .starts_with("no destination: use --destination")
        );
        let bad = resolve(&bastion, Some("db.internal")).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        let any = app(None, &["*"]);
        assert_eq!(resolve(&any, Some("x.test:1")).unwrap(), "x.test:1");
    }

    #[test]
    fn a_bastion_with_an_origin_uses_it_when_no_destination_is_asked() {
        let both = app(Some("127.0.0.1:22"), &["10.0.0.1:22"]);
        assert_eq!(resolve(&both, None).unwrap(), "127.0.0.1:22");
        assert_eq!(resolve(&both, Some("10.0.0.1:22")).unwrap(), "10.0.0.1:22");
        assert_eq!(
            resolve(&both, Some("10.0.0.9:22")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }
}
