//! `cfaccess logout [--team] [url]`: forget credentials. With a URL, that
//! app's token and the host's ssh certificate; with `--team` too, the app's
//! team's org token and everything else that team issued; without a URL,
//! every token and certificate in the config dir. Certificates go from the
//! ssh-agent as well (those `ssh-gen --agent` put there from this config
//! dir). Key pairs stay: they grant nothing by themselves. Tokens are not
//! revoked on the edge (Access has no such call for clients); they are only
//! no longer on this machine.
//!
//! The team's sign-on stays by default because it is what single sign-on is
//! for: logging out of one app should not log you out of the others. A user
//! switching accounts says so with `--team`.

use std::process::ExitCode;

use anyhow::Context;

use super::UsageError;
use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::cli::LogoutArgs;
use crate::error::WithHint;
use crate::inventory::{self, Credential};
use crate::ssh::agent::{self, Agent};

pub fn run(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let dir = ConfigDir::locate()?;
    // what a login killed without a chance to clean up left behind
    let stale = crate::access::lock::clear_stale(dir.path());
    if stale > 0 {
        tracing::debug!("removed {stale} stale lock and login URL files");
    }
    let found = inventory::credentials(&dir);
    let (target, chosen, stems): (String, Vec<&Credential>, Option<Vec<String>>) = match &args.url {
        None => (
            format!("everything in {}", dir.path().display()),
            found.iter().collect(),
            None,
        ),
        Some(raw) => {
            let url = AppUrl::parse(raw).map_err(|e| UsageError(e.to_string()))?;
            let mut chosen = inventory::of_app(&found, &dir, &url);
            let mut target = url.authority();
            if args.team {
                let team = inventory::team_of(&found, &dir, &url)
                    .ok_or_else(|| {
                        anyhow::anyhow!("cannot tell which team {} belongs to", url.authority())
                    })
                    .hint(format!(
                        "run `cfaccess logout {raw}` for the app alone, or `cfaccess logout` \
                         for every app and team"
                    ))?;
                for c in &found {
                    if c.team() == Some(team.as_str()) && !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                target = format!("{target} and its team {team}");
            }
            // the agent may hold a certificate whose file is gone already
            let mut stems: Vec<String> = chosen
                .iter()
                .filter_map(|c| match c {
                    Credential::SshCert { host, .. } => Some(host.clone()),
                    _ => None,
                })
                .collect();
            stems.push(url.key_stem());
            (target, chosen, Some(stems))
        }
    };
    for c in &chosen {
        std::fs::remove_file(c.path())
            .with_context(|| format!("cannot remove {}", c.path().display()))?;
    }
    let from_agent = remove_from_agent(&dir, stems.as_deref());
    if chosen.is_empty() && from_agent == 0 {
        eprintln!("Nothing to log out of for {target}.");
        return Ok(ExitCode::SUCCESS);
    }
    let certs = chosen
        .iter()
        .filter(|c| matches!(c, Credential::SshCert { .. }))
        .count();
    let tokens = chosen.len() - certs;
    let agent_note = if from_agent > 0 {
        format!(" ({from_agent} from the ssh-agent)")
    } else {
        String::new()
    };
    eprintln!(
        "Logged out of {target}: removed {tokens} token{} and {certs} ssh certificate{}{agent_note}.",
        if tokens == 1 { "" } else { "s" },
        if certs == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}

/// Takes this config dir's certificates out of the ssh-agent: those of the
/// hosts `stems` names, or all of them. An absent agent is nothing to do; a
/// failing one is a warning (the files are gone either way).
fn remove_from_agent(dir: &ConfigDir, stems: Option<&[String]>) -> usize {
    let removed = Agent::connect().and_then(|mut agent| {
        agent.remove_where(|held| {
            agent::is_ours_in(&held.comment, dir.path())
                && stems.is_none_or(|stems| {
                    stems
                        .iter()
                        .any(|stem| held.comment == agent::comment_for(&dir.ssh_key(stem)))
                })
        })
    });
    match removed {
        Ok(n) => n,
        Err(e) if e.is_absent() => {
            tracing::debug!("no ssh-agent to take certificates out of");
            0
        }
        Err(e) => {
            tracing::warn!(
                "the ssh-agent may still hold certificates of {}: {e}",
                dir.path().display()
            );
            0
        }
    }
}
