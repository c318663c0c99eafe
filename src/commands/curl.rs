//! `cfaccess curl <url> [curl args…]`: curl with the app token in a
//! `Cf-Access-Token` header (PROTOCOL.md section 9).

use std::process::ExitCode;

use anyhow::Context;

use crate::access::LoginOptions;
use crate::access::host::AppUrl;
use crate::access::login_service::Redirect;
use crate::access::token_check;
use crate::cli::CurlArgs;
use crate::error::WithHint;
use crate::platform::exec::replace_process_or_run;

use super::UsageError;

pub async fn run(args: CurlArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    let mut args = args.args;
    // `-ar` counts only as the first argument, and only with a URL after it.
    let allow_request = args.len() > 1 && matches!(args[0].as_str(), "--allow-request" | "-ar");
    if allow_request {
        args.remove(0);
    }
    let qr = crate::cli::QrArgs::take_leading(&mut args).choice();
    let Some(first) = args.first() else {
        return Err(UsageError("give the URL of the Access application, like: cfaccess curl https://app.example.com/path".into()).into());
    };
    let url = AppUrl::parse_absolute(first).map_err(|e| UsageError(e.to_string()))?;
    let access = super::access(LoginOptions {
        fedramp,
        qr,
        ..LoginOptions::default()
    })?;
    let app = access.app_info_once(&url).await?;

    let token = if allow_request {
        // use a token we have and the edge takes; never start a login
        match access.store().app_token(&app) {
            Some(token) if token_check::accepted(access.http()?, &url, &token).await? => {
                Some(token)
            }
            _ => {
                eprintln!(
                    "No valid Access token for {url}; running curl without one (run `cfaccess login {url}` to get one)."
                );
                None
            }
        }
    } else {
        let token = access
            .checked_app_token(&url, &app, Redirect::HostOnly)
            .await
            .with_context(|| format!("cannot get a token for {url}"))?;
        Some(token)
    };
    if let Some(token) = token {
        args.push("-H".into());
        args.push(format!("Cf-Access-Token: {token}"));
    }
    // curl's exit status (and on Unix its signals) are the command's own
    replace_process_or_run(std::process::Command::new("curl").args(&args))
        .context("cannot run curl")
        .hint("install curl, or check that it is on PATH")
}
