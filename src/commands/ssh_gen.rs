//! `cfaccess ssh-gen --hostname h`: a short-lived ssh certificate for the
//! host, signed by the app's CA (docs/protocol.md 7).
//!
//! ssh runs this before every connection (`Match exec`), so when the
//! certificate on disk is for our key and stays valid for the margin, it
//! exits at once: no runtime, no HTTP client, no request. With `--agent` it
//! also makes sure the running ssh-agent holds that certificate (one local
//! socket exchange) and puts it there when not (`ssh::agent`).

use std::process::ExitCode;

use anyhow::Context;
use ssh_key::Certificate;

use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::access::lock::{self, Acquired};
use crate::access::login_service::Redirect;
use crate::access::{LoginOptions, show_other_login};
use crate::cli::SshGenArgs;
use crate::error::WithHint;
use crate::ssh::agent::{self, Agent};
use crate::ssh::cert_sign::{self, CertSignError};
use crate::ssh::keys::{CertProblem, KeyFiles, check_cert};

/// The command line ssh runs before every connection, as `ssh-config`
/// prints it: `[access] ssh-gen --hostname H [--config-dir D]`, in any order
/// after `ssh-gen`, once the official client's single-dash forms are made
/// double (`cli::normalize_args`). When the certificate on disk will do,
/// this answers before clap builds its whole command tree and before logging
/// starts, which together are about a tenth of the start-up memory. Anything
/// else (another flag, a log variable, a certificate to renew, an error to
/// report) is `None`: the full parser runs and decides, with the same result
/// for these forms (see the tests).
pub fn fast_path(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    let (hostname, config_dir) = fast_form(args)?;
    let logging_asked = crate::cli::LOG_ENVS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if logging_asked || std::env::var_os(crate::doctor::PROBE_ENV).is_some() {
        return None;
    }
    let url = AppUrl::parse(hostname).ok()?;
    if let Some(dir) = config_dir {
        ConfigDir::choose(dir.into());
    }
    let dir = ConfigDir::locate().ok()?;
    let files = KeyFiles::new(&dir, &url.key_stem());
    let fresh = files.usable_cert(now(), crate::cli::SSH_GEN_MARGIN).is_ok();
    fresh.then_some(ExitCode::SUCCESS)
}

/// The hostname and config dir of a command line [`fast_path`] takes.
fn fast_form(args: &[std::ffi::OsString]) -> Option<(&str, Option<&str>)> {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    let mut word = words.next()??;
    if word == "access" || word == "forward" {
        word = words.next()??;
    }
    if word != "ssh-gen" {
        return None;
    }
    let (mut hostname, mut config_dir) = (None, None);
    while let Some(word) = words.next() {
        let (flag, value) = match word?.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, value),
            _ => (word?, words.next()??),
        };
        let slot = match flag {
            "--hostname" => &mut hostname,
            "--config-dir" => &mut config_dir,
            _ => return None,
        };
        if slot.replace(value).is_some() || value.is_empty() || value.starts_with('-') {
            return None;
        }
    }
    Some((hostname?, config_dir))
}

pub fn run(args: SshGenArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    // `cfaccess doctor` runs `ssh -G`, which runs `Match exec` too: the
    // block applies as it would, and nothing logs in
    if std::env::var_os(crate::doctor::PROBE_ENV).is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    let url = super::hostname_url(args.hostname.as_deref(), "ssh-gen")?;
    let dir = ConfigDir::locate()?;
    let files = KeyFiles::new(&dir, &url.key_stem());
    let reused = if args.force {
        tracing::debug!("--force: getting a new certificate whatever is on disk");
        None
    } else {
        reusable(&url, &files, &args)
    };
    if let Some(cert) = reused {
        if args.agent {
            to_agent(&url, &files, &cert, false);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let code = super::block_on(fetch(url.clone(), &files, &args, fedramp))?;
    if args.agent {
        match files.usable_cert(now(), 0) {
            Ok(cert) => to_agent(&url, &files, &cert, true),
            Err(why) => tracing::warn!("no certificate to put into the ssh-agent: {why}"),
        }
    }
    Ok(code)
}

/// The certificate on disk if it will do, without asking anyone; with
/// `--log-level debug`, why it is reused or renewed (nothing secret: names,
/// principals, times, the key's fingerprint).
fn reusable(url: &AppUrl, files: &KeyFiles, args: &SshGenArgs) -> Option<Certificate> {
    let host = url.authority();
    if !files.private.is_file() {
        tracing::debug!("no key pair for {host} yet: making one and getting a certificate");
        return None;
    }
    if !files.cert.is_file() {
        tracing::debug!(
            "no certificate for {host} in {}: getting one",
            files.cert.display()
        );
        return None;
    }
    let now = now();
    let cert = match files.usable_cert(now, args.margin) {
        Ok(cert) => cert,
        Err(CertProblem::Expired) => {
            tracing::debug!(
                "renewing the certificate for {host}: it has expired or ends within the \
                 --margin of {} s",
                args.margin
            );
            return None;
        }
        Err(why) => {
            tracing::debug!("renewing the certificate for {host}: {why}");
            return None;
        }
    };
    if let Some(wanted) = args.key_type
        && !wanted.matches(cert.public_key())
    {
        tracing::debug!(
            "renewing the certificate for {host}: it is for a {} key and --key-type asks for {wanted:?}",
            cert.public_key().algorithm()
        );
        return None;
    }
    tracing::debug!(
        "reusing the certificate for {host}: principal {}, valid for {} more (margin {} s), key {}",
        principals(&cert),
        left(&cert, now),
        args.margin,
        cert.public_key().fingerprint(Default::default()),
    );
    Some(cert)
}

/// Whether the certificate on disk will do (the quiet check of waiters).
fn usable(files: &KeyFiles, args: &SshGenArgs) -> bool {
    files
        .usable_cert(now(), args.margin)
        .is_ok_and(|cert| args.key_type.is_none_or(|t| t.matches(cert.public_key())))
}

/// Puts `cert` into the ssh-agent for the rest of its validity, unless the
/// agent holds it already. A failure is a warning, not an error: the
/// certificate is on disk, and ssh uses it from there.
fn to_agent(url: &AppUrl, files: &KeyFiles, cert: &Certificate, new: bool) {
    let now = now();
    let lifetime = u32::try_from(cert.valid_before().saturating_sub(now)).unwrap_or(u32::MAX);
    let comment = agent::comment_for(&files.private);
    let added = Agent::connect().and_then(|mut agent| {
        if !new && agent.holds(cert, &comment)? {
            return Ok(None);
        }
        agent.replace(&files.private, cert, lifetime).map(Some)
    });
    match added {
        Ok(None) => tracing::debug!("the ssh-agent holds this certificate already"),
        Ok(Some(removed)) => tell(format!(
            "ssh certificate for {} added to the ssh-agent for {}{}",
            url.authority(),
            left(cert, now),
            if removed > 0 {
                " (in place of the previous one)"
            } else {
                ""
            },
        )),
        Err(e) if e.is_absent() => tracing::warn!(
            "the certificate is not in an ssh-agent: {e}; start one (eval $(ssh-agent)) or leave out --agent"
        ),
        Err(e) => tracing::warn!("the certificate is not in the ssh-agent: {e}"),
    }
}

/// A line for the user who ran ssh-gen by hand, on a terminal (stdout and
/// stderr both terminals); otherwise only for the log at info level. ssh
/// runs `Match exec` commands with stdout on /dev/null and stderr its own,
/// so a line printed there would land in every `ssh host cmd 2>&1`.
fn tell(line: String) {
    use std::io::IsTerminal;
    let by_hand = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    if by_hand && !tracing::enabled!(tracing::Level::INFO) {
        eprintln!("cfaccess: {line}");
    } else {
        tracing::info!("{line}");
    }
}

fn principals(cert: &Certificate) -> String {
    cert.valid_principals()
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long `cert` stays valid from `now`, as status shows it.
fn left(cert: &Certificate, now: u64) -> String {
    let before = i64::try_from(cert.valid_before()).unwrap_or(i64::MAX);
    crate::inventory::remaining(before, now as i64).unwrap_or_else(|| "0s".into())
}

fn now() -> u64 {
    crate::access::jwt::now().max(0) as u64
}

async fn fetch(
    url: AppUrl,
    files: &KeyFiles,
    args: &SshGenArgs,
    fedramp: bool,
) -> anyhow::Result<ExitCode> {
    let access = super::access(LoginOptions {
        fedramp,
        qr: args.qr.choice(),
        ..LoginOptions::default()
    })?;
    access.store().dir().ensure()?;
    // Many ssh started at once: one asks cert_sign, the others wait for it.
    let check = || usable(files, args).then(String::new);
    let _lock = match lock::acquire(&files.cert, check, show_other_login).await? {
        Acquired::Token(_) => return Ok(ExitCode::SUCCESS),
        Acquired::Lock(lock) => lock,
    };
    if !args.force && usable(files, args) {
        return Ok(ExitCode::SUCCESS);
    }

    let (app, token) = access.app_and_token(&url, Redirect::FullUrl).await?;
    let (public_line, key) = files.ensure_pair(args.key_type)?;
    let http = access.http()?;
    let signed = match cert_sign::sign(http, &token, &public_line).await {
        Err(CertSignError::TokenRefused { .. }) => {
            tracing::info!("cert_sign refused the token; finding the app again and logging in");
            let (_, token) = access.after_refusal(&url, &app, Redirect::FullUrl).await?;
            cert_sign::sign(http, &token, &public_line).await
        }
        other => other,
    }
    .with_context(|| format!("cannot get an ssh certificate for {}", url.authority()))?;

    let cert = check_cert(&signed.certificate, &key, now(), 0)
        .map_err(|why| {
            anyhow::anyhow!("cert_sign returned a certificate that cannot be used: {why}")
        })
        .hint("try again; if it persists, the app's SSH CA is misconfigured")?;
    files.write_cert(&signed.certificate)?;
    // When sshd refuses a certificate, the principal is the first thing to
    // check: status shows it, and so does this line (on a terminal, or in
    // the log at info level).
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(cert.valid_before());
    tell(format!(
        "new ssh certificate for {}: principal {}, valid until {}",
        url.authority(),
        principals(&cert),
        httpdate::fmt_http_date(until),
    ));
    tracing::debug!(key_id = %cert.key_id(), "wrote {}", files.cert.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::fast_form;
    use crate::cli::{Action, Command, SSH_GEN_MARGIN, normalize_args, parse};

    fn argv(args: &[&str]) -> Vec<OsString> {
        normalize_args(args.iter().map(OsString::from))
    }

    /// What the full parser makes of `args`, in the terms of the fast path.
    fn by_clap(args: &[OsString]) -> Option<(String, Option<String>)> {
        let cli = parse(args.to_vec()).ok()?;
        let config_dir = cli.config_dir.map(|d| d.to_string_lossy().into_owned());
        let (Command::Action(Action::SshGen(a))
        | Command::Access {
            action: Action::SshGen(a),
            ..
        }) = cli.command
        else {
            return None;
        };
        let plain = !a.force && !a.agent && a.key_type.is_none() && a.margin == SSH_GEN_MARGIN;
        plain.then_some((a.hostname?, config_dir))
    }

    #[test]
    fn the_fast_path_takes_what_the_parser_reads_the_same_way() {
        for args in [
            &[
                "cfaccess",
                "access",
                "ssh-gen",
                "--hostname",
                "ssh.example.com",
            ][..],
            &["cfaccess", "ssh-gen", "--hostname=ssh.example.com"],
            &[
                "cfaccess",
                "access",
                "ssh-gen",
                "-hostname",
                "ssh.example.com",
            ],
            &[
                "cfaccess",
                "forward",
                "ssh-gen",
                "--hostname",
                "h",
                "--config-dir",
                "/tmp/a b",
            ],
            &[
                "cfaccess",
                "access",
                "ssh-gen",
                "--config-dir=/d",
                "--hostname",
                "h/x",
            ],
        ] {
            let args = argv(args);
            let fast = fast_form(&args).map(|(h, d)| (h.to_owned(), d.map(str::to_owned)));
            assert!(fast.is_some(), "{args:?}");
            assert_eq!(fast, by_clap(&args), "{args:?}");
        }
    }

    #[test]
    fn anything_else_goes_to_the_parser() {
        for args in [
            &["cfaccess", "access", "ssh-gen"][..],
            &["cfaccess", "ssh-gen", "--hostname", "h", "--agent"],
            &["cfaccess", "ssh-gen", "--hostname", "h", "--force"],
            &["cfaccess", "ssh-gen", "--hostname", "h", "--margin", "60"],
            &[
                "cfaccess",
                "ssh-gen",
                "--hostname",
                "h",
                "--log-level",
                "debug",
            ],
            &["cfaccess", "ssh-gen", "--hostname", "h", "--hostname", "i"],
            &["cfaccess", "ssh-gen", "--hostname", "--agent"],
            &["cfaccess", "ssh-gen", "--hostname="],
            &["cfaccess", "ssh-gen", "--hostname", "h", "extra"],
            &[
                "cfaccess",
                "--config-dir",
                "/d",
                "ssh-gen",
                "--hostname",
                "h",
            ],
            &["cfaccess", "access", "login", "--hostname", "h"],
            &["cfaccess", "ssh-gen", "--help"],
        ] {
            assert_eq!(fast_form(&argv(args)), None, "{args:?}");
        }
    }
}
