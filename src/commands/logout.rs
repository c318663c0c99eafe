//! `cfaccess logout [url]`: forget credentials. With a URL, that app's token
//! and the host's ssh certificate; without, every token and certificate in
//! the config dir. Key pairs stay: they grant nothing by themselves. Tokens
//! are not revoked on the edge (Access has no such call for clients); they
//! are only no longer on this machine.

use std::process::ExitCode;

use anyhow::Context;

use super::UsageError;
use crate::access::config_dir::ConfigDir;
use crate::access::edge_profile::wildcard_matches;
use crate::access::host::AppUrl;
use crate::inventory::{self, Credential};

pub fn run(url: Option<&str>) -> anyhow::Result<ExitCode> {
    let dir = ConfigDir::locate()?;
    // what a login killed without a chance to clean up left behind
    let stale = crate::access::lock::clear_stale(dir.path());
    if stale > 0 {
        tracing::debug!("removed {stale} stale lock and login URL files");
    }
    let found = inventory::credentials(&dir);
    let (target, chosen): (String, Vec<&Credential>) = match url {
        None => (
            format!("everything in {}", dir.path().display()),
            found.iter().collect(),
        ),
        Some(raw) => {
            let url = AppUrl::parse(raw).map_err(|e| UsageError(e.to_string()))?;
            let host = url.hostname();
            let stem = url.key_stem();
            let app_token =
                crate::access::app_info::cached(&dir, &url).map(|app| dir.app_token(&app));
            let chosen = found
                .iter()
                .filter(|c| match c {
                    Credential::AppToken { app, path, .. } => {
                        app_token.as_deref() == Some(path.as_path())
                            || app.eq_ignore_ascii_case(&host)
                            || wildcard_matches(&app.replacen("-.", "*.", 1), &host)
                    }
                    Credential::SshCert {
                        host: cert_host, ..
                    } => *cert_host == stem,
                    Credential::OrgToken { .. } => false,
                })
                .collect();
            (url.authority(), chosen)
        }
    };
    if chosen.is_empty() {
        eprintln!("Nothing to log out of for {target}.");
        return Ok(ExitCode::SUCCESS);
    }
    for c in &chosen {
        std::fs::remove_file(c.path())
            .with_context(|| format!("cannot remove {}", c.path().display()))?;
    }
    let certs = chosen
        .iter()
        .filter(|c| matches!(c, Credential::SshCert { .. }))
        .count();
    let tokens = chosen.len() - certs;
    eprintln!(
        "Logged out of {target}: removed {tokens} token{} and {certs} ssh certificate{}.",
        if tokens == 1 { "" } else { "s" },
        if certs == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}
