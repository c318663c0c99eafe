//! `cfaccess status [url] [--json]`: what you are logged in to, from the
//! files alone. With a URL, that app only, and the exit code says whether
//! anything of it is valid (its token or its host's certificate): 0, else 1.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::UsageError;
use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::access::jwt;
use crate::cli::StatusArgs;
use crate::error::WithHint;
use crate::inventory::{self, Credential};

/// `status --json`: one object, schema version 1. Fields are only ever
/// added, never renamed or removed, within a version; times are unix
/// seconds; `valid` is "not expired at `now`" (the files alone say no more:
/// the edge may have revoked a token meanwhile).
///
/// ```json
/// {
///   "version": 1,
///   "config_dir": "/home/me/.cloudflared",
///   "now": 1764640000,
///   "url": null,
///   "apps": [{"app": "ssh.example.com", "aud": "…", "team": "myteam.cloudflareaccess.com",
///             "email": "me@example.com", "expires": 1764700000, "valid": true,
///             "seconds_left": 60000, "file": "…"}],
///   "teams": [{"team": "myteam.cloudflareaccess.com", "email": "me@example.com",
///              "expires": 1764700000, "valid": true, "seconds_left": 60000, "file": "…"}],
///   "certificates": [{"host": "ssh.example.com", "team": "myteam.cloudflareaccess.com",
///                     "principals": ["me"], "key_id": "…", "valid_after": 1764639990,
///                     "expires": 1764640170, "valid": true, "seconds_left": 170, "file": "…"}],
///   "identities": [{"email": "me@example.com", "teams": ["myteam.cloudflareaccess.com"],
///                   "apps": ["ssh.example.com"]}]
/// }
/// ```
///
/// `url` is the host (and port) asked about (`status <url>`), else `null`; `team` is
/// `null` when unknown; `app` is the app's host as Access names it (`*.x`
/// for a wildcard app); `identities` lists each email that a team or app
/// token carries, with where.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: u32,
    pub config_dir: String,
    pub now: i64,
    pub url: Option<String>,
    pub apps: Vec<App>,
    pub teams: Vec<Team>,
    pub certificates: Vec<Cert>,
    pub identities: Vec<Identity>,
}

#[derive(Debug, Serialize)]
pub struct App {
    pub app: String,
    pub aud: String,
    pub team: Option<String>,
    pub email: String,
    pub expires: i64,
    pub valid: bool,
    pub seconds_left: i64,
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct Team {
    pub team: String,
    pub email: String,
    pub expires: i64,
    pub valid: bool,
    pub seconds_left: i64,
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct Cert {
    pub host: String,
    pub team: Option<String>,
    pub principals: Vec<String>,
    pub key_id: String,
    pub valid_after: i64,
    pub expires: i64,
    pub valid: bool,
    pub seconds_left: i64,
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct Identity {
    pub email: String,
    pub teams: Vec<String>,
    pub apps: Vec<String>,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let dir = ConfigDir::locate()?;
    let now = jwt::now();
    let found = inventory::credentials(&dir);
    let url = args
        .url
        .as_deref()
        .map(|raw| AppUrl::parse(raw).map_err(|e| UsageError(e.to_string())))
        .transpose()?;
    let shown: Vec<&Credential> =
        match &url {
            None => found.iter().collect(),
            Some(url) => {
                let mut shown = inventory::of_app(&found, &dir, url);
                if let Some(team) = inventory::team_of(&found, &dir, url) {
                    shown.extend(found.iter().filter(
                        |c| matches!(c, Credential::OrgToken { team: t, .. } if *t == team),
                    ));
                }
                shown
            }
        };
    let status = collect(&dir, now, url.as_ref(), &shown);
    let out = if args.json {
        serde_json::to_string_pretty(&status).context("cannot write the status as JSON")? + "\n"
    } else {
        text(&status)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    if let (Some(url), Some(raw)) = (&url, &args.url) {
        let valid =
            status.apps.iter().any(|a| a.valid) || status.certificates.iter().any(|c| c.valid);
        if !valid {
            return Err(anyhow::anyhow!(
                "nothing valid for {} in {}",
                url.authority(),
                dir.path().display()
            ))
            .hint(format!("run `cfaccess login {raw}`"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn collect(dir: &ConfigDir, now: i64, url: Option<&AppUrl>, shown: &[&Credential]) -> Status {
    let left = |expires: i64| expires.saturating_sub(now).max(0);
    let valid = |expires: i64| expires >= now;
    let file = |c: &Credential| c.path().display().to_string();
    let mut status = Status {
        version: 1,
        config_dir: dir.path().display().to_string(),
        now,
        url: url.map(|u| u.authority()),
        apps: Vec::new(),
        teams: Vec::new(),
        certificates: Vec::new(),
        identities: Vec::new(),
    };
    for c in shown {
        match c {
            Credential::AppToken {
                app,
                aud,
                team,
                email,
                expires,
                ..
            } => status.apps.push(App {
                app: app.replacen("-.", "*.", 1),
                aud: aud.clone(),
                team: team.clone(),
                email: email.clone(),
                expires: *expires,
                valid: valid(*expires),
                seconds_left: left(*expires),
                file: file(c),
            }),
            Credential::OrgToken {
                team,
                email,
                expires,
                ..
            } => status.teams.push(Team {
                team: team.clone(),
                email: email.clone(),
                expires: *expires,
                valid: valid(*expires),
                seconds_left: left(*expires),
                file: file(c),
            }),
            Credential::SshCert {
                host,
                team,
                principals,
                key_id,
                valid_after,
                expires,
                ..
            } => status.certificates.push(Cert {
                host: host.clone(),
                team: team.clone(),
                principals: principals.clone(),
                key_id: key_id.clone(),
                valid_after: *valid_after,
                expires: *expires,
                // a certificate is good until the second before valid_before
                valid: *valid_after <= now && now < *expires,
                seconds_left: left(*expires),
                file: file(c),
            }),
        }
    }
    let mut identities: Vec<Identity> = Vec::new();
    let mut note = |email: &str, team: Option<&str>, app: Option<&str>| {
        if email.is_empty() {
            return;
        }
        let i = match identities.iter().position(|i| i.email == email) {
            Some(i) => i,
            None => {
                identities.push(Identity {
                    email: email.to_owned(),
                    teams: Vec::new(),
                    apps: Vec::new(),
                });
                identities.len() - 1
            }
        };
        let id = &mut identities[i];
        if let Some(team) = team.filter(|t| !id.teams.iter().any(|x| x == t)) {
            id.teams.push(team.to_owned());
        }
        if let Some(app) = app.filter(|a| !id.apps.iter().any(|x| x == a)) {
            id.apps.push(app.to_owned());
        }
    };
    for t in &status.teams {
        note(&t.email, Some(&t.team), None);
    }
    for a in &status.apps {
        note(&a.email, a.team.as_deref(), Some(&a.app));
    }
    status.identities = identities;
    status
}

fn text(status: &Status) -> String {
    let mut out = format!("Config dir: {}\n", status.config_dir);
    let nothing =
        status.apps.is_empty() && status.teams.is_empty() && status.certificates.is_empty();
    match (&status.url, nothing) {
        (None, true) => out.push_str("Not logged in to any Access application.\n"),
        (Some(app), true) => {
            let _ = writeln!(out, "Nothing for {app}.");
        }
        _ => {}
    }
    let validity = |valid: bool, left: i64| {
        if valid {
            format!(
                "valid for {}",
                inventory::remaining(status.now + left, status.now).unwrap_or_else(|| "0s".into())
            )
        } else {
            "expired".to_owned()
        }
    };
    // one table each: a heading, then name, who or what, and validity
    let mut table = |heading: &str, rows: Vec<(&str, String, String)>| {
        if rows.is_empty() {
            return;
        }
        out.push_str(&format!("\n{heading}\n"));
        for (name, what, valid) in rows {
            let _ = writeln!(out, "  {name:<32} {what:<28} {valid}");
        }
    };
    let apps = status.apps.iter();
    table(
        "Access applications",
        apps.map(|a| {
            (
                a.app.as_str(),
                a.email.clone(),
                validity(a.valid, a.seconds_left),
            )
        })
        .collect(),
    );
    let teams = status.teams.iter();
    table(
        "Teams (single sign-on: a login to any of their apps signs in as this identity)",
        teams
            .map(|t| {
                (
                    t.team.as_str(),
                    t.email.clone(),
                    validity(t.valid, t.seconds_left),
                )
            })
            .collect(),
    );
    let certs = status.certificates.iter();
    table(
        "SSH certificates",
        certs
            .map(|c| {
                let principals = format!("principal {}", c.principals.join(", "));
                (
                    c.host.as_str(),
                    principals,
                    validity(c.valid, c.seconds_left),
                )
            })
            .collect(),
    );
    if !status.teams.is_empty() {
        out.push_str(
            "\nTo sign in as someone else: cfaccess logout --team <app url>, then log in again.\n",
        );
    }
    out
}
