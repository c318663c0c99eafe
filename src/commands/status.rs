//! `cfaccess status`: what you are logged in to, from the files alone.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::access::config_dir::ConfigDir;
use crate::access::jwt;
use crate::inventory::{self, Credential};

pub fn run() -> anyhow::Result<ExitCode> {
    let dir = ConfigDir::locate()?;
    let now = jwt::now();
    let found = inventory::credentials(&dir);
    let mut out = format!("Config dir: {}\n", dir.path().display());
    if found.is_empty() {
        out.push_str("Not logged in to any Access application.\n");
    }
    let validity = |c: &Credential| {
        inventory::remaining(c.expires(), now)
            .map_or("expired".to_owned(), |left| format!("valid for {left}"))
    };
    let mut section = "";
    for c in &found {
        let (title, name, who) = match c {
            Credential::AppToken { app, email, .. } => (
                "Access applications",
                app.replacen("-.", "*.", 1),
                email.clone(),
            ),
            Credential::OrgToken { team, email, .. } => {
                ("Teams (single sign-on)", team.clone(), email.clone())
            }
            Credential::SshCert {
                host, principals, ..
            } => (
                "SSH certificates",
                host.clone(),
                format!("principal {}", principals.join(", ")),
            ),
        };
        if title != section {
            let _ = writeln!(out, "\n{title}");
            section = title;
        }
        let _ = writeln!(out, "  {name:<32} {who:<28} {}", validity(c));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
