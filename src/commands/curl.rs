//! `cfaccess curl <url> [curl args…]`: curl with the app token in a
//! `Cf-Access-Token` header (docs/protocol.md section 9).

use std::process::ExitCode;

use anyhow::Context;

use crate::access::LoginOptions;
use crate::access::config_dir::ConfigDir;
use crate::access::edge_profile::EdgeProfile;
use crate::access::host::AppUrl;
use crate::access::login_service::Redirect;
use crate::access::token_check;
use crate::cli::CurlArgs;
use crate::error::WithHint;
use crate::platform::exec::replace_process_or_run;

use super::UsageError;

/// curl's own options that ask it about itself rather than for a URL.
const CURL_SELF: &[&str] = &["-h", "--help", "-M", "--manual", "-V", "--version"];

pub async fn run(args: CurlArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    let mut args = args.args;
    // `cfaccess curl --help` is curl's help, as the rest of the line is curl's
    if args
        .first()
        .is_some_and(|a| CURL_SELF.contains(&a.as_str()))
    {
        eprintln!(
            "cfaccess curl runs curl with an Access token (see `cfaccess help curl`); curl says:"
        );
        return curl(&args);
    }
    // `--fedramp` before the URL is ours (curl has no such option), as it
    // is for the other commands that log in
    let mut fedramp = fedramp;
    if let Some(at) = args
        .iter()
        .take(2)
        .position(|a| matches!(a.as_str(), "--fedramp" | "-fedramp"))
    {
        args.remove(at);
        fedramp = true;
    }
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
    let profile = super::edge_profile()?;
    // Point curl where cfaccess itself goes: the edge's CA and addresses.
    // Ours come first so that the user's own --cacert (the last wins) and
    // --connect-to still decide.
    let edge_args = match &profile {
        Some(profile) => edge_args(profile, &url)?,
        None => Vec::new(),
    };
    let access = super::access_with(
        profile,
        LoginOptions {
            fedramp,
            qr,
            ..LoginOptions::default()
        },
    )?;
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
    let mut all = edge_args;
    all.append(&mut args);
    if let Some(token) = token {
        all.push("-H".into());
        all.push(format!("Cf-Access-Token: {token}"));
    }
    curl(&all)
}

/// Runs curl with `args`: its exit status (and on Unix its signals) are the
/// command's own.
fn curl(args: &[String]) -> anyhow::Result<ExitCode> {
    replace_process_or_run(std::process::Command::new("curl").args(args))
        .context("cannot run curl")
        .hint("install curl, or check that it is on PATH")
}

/// `--cacert <the edge's CA>` and a `--connect-to` for every name the edge
/// serves (and for the URL's host, which may fall under a wildcard), so curl
/// reaches the edge as cfaccess does, with SNI and Host unchanged. curl reads
/// a CA from a file only: the profile's is written into the config dir,
/// named by its digest so that edges with different CAs never share one.
fn edge_args(profile: &EdgeProfile, url: &AppUrl) -> anyhow::Result<Vec<String>> {
    use sha1::Digest as _;
    let dir = ConfigDir::locate()?;
    dir.ensure()?;
    let digest = sha1::Sha1::digest(profile.ca_cert.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let ca = dir.path().join(format!("edge-ca-{hex}.pem"));
    if std::fs::read(&ca).ok().as_deref() != Some(profile.ca_cert.as_bytes()) {
        crate::platform::atomic_file::write(&ca, profile.ca_cert.as_bytes(), 0o600)
            .with_context(|| format!("cannot write the edge's CA to {}", ca.display()))?;
    }
    let mut out = vec!["--cacert".to_owned(), ca.display().to_string()];
    let host = url.hostname();
    let mut routes: Vec<(String, std::net::SocketAddr)> = profile
        .hosts
        .iter()
        .filter(|(name, _)| !name.starts_with("*."))
        .map(|(name, addr)| (name.clone(), *addr))
        .collect();
    if let Some(addr) = profile.address_for(&host) {
        routes.retain(|(name, _)| *name != host);
        routes.insert(0, (host, addr));
    }
    for (name, addr) in routes {
        // HOST::ADDR: that name on any port goes to the edge's address
        out.push("--connect-to".to_owned());
        out.push(format!("{name}::{addr}"));
    }
    tracing::debug!("edge profile in use: curl gets {}", out.join(" "));
    Ok(out)
}
