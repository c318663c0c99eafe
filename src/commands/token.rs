//! `cfaccess token <url> [--json]`: the cached app token, and nothing else;
//! with `--json`, the token with what a script wants to know of it.
//!
//! Scripts call this often, so when the app info is known (verified by an
//! earlier discovery) it answers from the config dir alone: no runtime, no
//! HTTP client. Only an app never seen before is discovered over the network.

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
