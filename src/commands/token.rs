//! `cfaccess token <url>`: the cached app token, and nothing else.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::access::LoginOptions;
use crate::cli::TokenArgs;
use crate::error::WithHint;

pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let url = super::app_url(args.url.as_deref(), args.app.as_deref())?;
    let access = super::access(LoginOptions::default())?;
    let app = access.app_info_cached(&url).await?;
    let token = access
        .store()
        .app_token(&app)
        .ok_or_else(|| anyhow!("no valid token for {url} is cached"))
        .hint(format!("run `cfaccess login {url}`"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(token.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the token to stdout")?;
    Ok(ExitCode::SUCCESS)
}
