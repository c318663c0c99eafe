//! `cfaccess token <url> [--json]`: the cached app token, and nothing else;
//! with `--json`, the token with what a script wants to know of it.
//!
//! Scripts call this often, so when the app info is known (verified by an
//! earlier discovery) it answers from the config dir alone: no runtime, no
//! HTTP client; its plain forms even without the command line parser
//! ([`fast_path`]). Only an app never seen before is discovered over the
//! network.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::access::app_info::AppInfo;
use crate::access::host::AppUrl;
use crate::access::jwt;
use crate::access::{Access, LoginOptions};
use crate::cli::TokenArgs;
use crate::error::WithHint;

/// `token --json`: `{"token": "<jwt>", "exp": <unix seconds>, "email":
/// "<identity>", "aud": "<the app's aud>"}`, with `email` empty for a
/// token that names none (a service token's). Read from the token's own
/// claims (unverified: the edge verifies; these say when to log in again).
#[derive(Debug, Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    exp: i64,
    email: String,
    aud: &'a str,
}

/// `token`'s answer before any parsing, for the scripts that call it in a
/// loop: the plain forms (`token URL`, `access token --app URL`, `--json`)
/// with a cached token for an app already discovered are answered without
/// building the command line parser, which is most of what the command
/// would touch. Anything else (another flag, logging asked for, no usable
/// token) is `None`, and the command runs the usual way, with its errors.
pub fn fast_path(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    let (raw, json) = fast_form(args)?;
    let logging_asked = crate::cli::LOG_ENVS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if logging_asked {
        return None;
    }
    let url = AppUrl::parse(raw).ok()?;
    let access = super::access(LoginOptions::default()).ok()?;
    let app = access.known_app_info(&url)?;
    access.store().app_token(&app)?;
    Some(print(&access, &url, &app, json).unwrap_or_else(|e| {
        eprintln!("{}", crate::error::one_line(&e));
        ExitCode::FAILURE
    }))
}

/// The URL and `--json` of a command line [`fast_path`] takes.
fn fast_form(args: &[std::ffi::OsString]) -> Option<(&str, bool)> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut word = words.next()??;
    if word == "access" {
        word = words.next()??;
    }
    if word != "token" {
        return None;
    }
    let (mut url, mut json) = (None, false);
    while let Some(word) = words.next() {
        let word = word?;
        let value = match word.split_once('=') {
            Some(("--app", value)) => value,
            _ if word == "--app" => words.next()??,
            _ if word == "--json" && !json => {
                json = true;
                continue;
            }
            _ if !word.starts_with('-') => word,
            _ => return None,
        };
        if url.replace(value).is_some() || value.is_empty() || value.starts_with('-') {
            return None;
        }
    }
    Some((url?, json))
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let url = super::app_url(args.url.as_deref(), args.app.as_deref())?;
    let access = super::access(LoginOptions::default())?;
    match access.known_app_info(&url) {
        Some(app) => print(&access, &url, &app, args.json),
        None => super::block_on(async {
            let app = access.app_info(&url).await?;
            print(&access, &url, &app, args.json)
        }),
    }
}

fn print(access: &Access, url: &AppUrl, app: &AppInfo, json: bool) -> anyhow::Result<ExitCode> {
    let token = access
        .store()
        .app_token(app)
        .ok_or_else(|| anyhow!("no valid token for {url} is cached"))
        .hint(format!("run `cfaccess login {url}`"))?;
    let out = if json {
        // the store hands out only tokens whose claims it could read
        let claims = jwt::peek(&token).unwrap_or_default();
        let json = TokenJson {
            token: &token,
            exp: claims.exp.unwrap_or(0),
            email: claims.email.unwrap_or_default(),
            aud: &app.aud,
        };
        serde_json::to_string(&json).context("cannot write the token as JSON")? + "\n"
    } else {
        token
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the token to stdout")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::fast_form;

    fn form(line: &str) -> Option<(String, bool)> {
        let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
        fast_form(&args).map(|(url, json)| (url.to_owned(), json))
    }

    #[test]
    fn the_fast_path_takes_the_plain_forms_only() {
        let url = "https://app.example.com";
        let plain = Some((url.to_owned(), false));
        assert_eq!(form(&format!("cfaccess token {url}")), plain);
        assert_eq!(form(&format!("cfaccess access token --app {url}")), plain);
        assert_eq!(form(&format!("cfaccess access token --app={url}")), plain);
        assert_eq!(
            form(&format!("cfaccess token --json {url}")),
            Some((url.to_owned(), true))
        );
        // everything else is for the parser, with its errors and its help
        assert_eq!(form("cfaccess token"), None);
        assert_eq!(form(&format!("cfaccess token {url} --app {url}")), None);
        assert_eq!(form(&format!("cfaccess token --json --json {url}")), None);
        assert_eq!(form(&format!("cfaccess token --config-dir /x {url}")), None);
        assert_eq!(form(&format!("cfaccess token {url} --help")), None);
        assert_eq!(form("cfaccess token --app"), None);
        assert_eq!(form(&format!("cfaccess login {url}")), None);
    }
}
