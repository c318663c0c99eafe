//! `cfaccess login <url>`: a token the edge accepts, fetched if need be.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::access::LoginOptions;
use crate::access::login_service::Redirect;
use crate::cli::LoginArgs;

pub async fn run(args: LoginArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    let url = super::app_url(args.url.as_deref(), args.app.as_deref())?;
    let access = super::access(LoginOptions {
        auto_close: args.auto_close,
        fedramp,
        no_browser: args.no_browser,
        qr: args.qr.choice(),
    })?;
    let app = access.app_info(&url).await?;
    let token = access
        .checked_app_token(&url, &app, Redirect::FullUrl)
        .await
        .with_context(|| format!("cannot log in to {url}"))?;
    // The forms scripts parse: nothing, the bare token, or the chatty one.
    let output = if args.quiet {
        String::new()
    } else if args.no_verbose || args.app.is_some() {
        token
    } else {
        format!("Successfully fetched your token:\n\n{token}\n\n")
    };
    let mut out = std::io::stdout().lock();
    out.write_all(output.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the token to stdout")?;
    Ok(ExitCode::SUCCESS)
}
