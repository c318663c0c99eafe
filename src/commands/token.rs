//! `cfaccess token <url>`: the cached app token, and nothing else.
//!
//! Scripts call this often, so when the app info is known (verified by an
//! earlier discovery) it answers from the config dir alone: no runtime, no
//! HTTP client. Only an app never seen before is discovered over the network.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::access::app_info::AppInfo;
use crate::access::host::AppUrl;
use crate::access::{Access, LoginOptions};
use crate::cli::TokenArgs;
use crate::error::WithHint;

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let url = super::app_url(args.url.as_deref(), args.app.as_deref())?;
    let access = super::access(LoginOptions::default())?;
    match access.known_app_info(&url) {
        Some(app) => print(&access, &url, &app),
        None => super::block_on(async {
            let app = access.app_info(&url).await?;
            print(&access, &url, &app)
        }),
    }
}

fn print(access: &Access, url: &AppUrl, app: &AppInfo) -> anyhow::Result<ExitCode> {
    let token = access
        .store()
        .app_token(app)
        .ok_or_else(|| anyhow!("no valid token for {url} is cached"))
        .hint(format!("run `cfaccess login {url}`"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(token.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the token to stdout")?;
    Ok(ExitCode::SUCCESS)
}
