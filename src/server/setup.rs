//! `cfaccess server setup --hostname <app host>`: the server's steps of
//! Cloudflare's guide, done so that a mistake changes nothing.
//!
//! Everything is worked out before a byte is written: the CA key, the CA
//! file's new text, sshd_config's (through [`sshd_config::plan`]), the
//! users to create. `--dry-run` prints that and stops. Otherwise the files
//! are written (each atomically), `sshd -t` and `sshd -T` must accept the
//! result, and only then are users created and sshd reloaded; if anything
//! fails on the way, every file written is put back byte for byte.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ssh_key::{HashAlg, PublicKey};

use super::sshd::{Effective, Sshd};
use super::sshd_config::{self, Mapping, Wanted};
use super::{Root, api, ca_file, parse_map, principal_of};
use crate::access::host::AppUrl;
use crate::cli::ServerSetupArgs;
use crate::commands::UsageError;
use crate::platform::{atomic_file, service, users};

/// The CA file when sshd trusts none yet.
const DEFAULT_CA_FILE: &str = "/etc/ssh/ca.pub";

/// Where the CA key came from, for the summary.
enum KeySource {
    Api { created: bool },
    File(String),
}

/// One file to write: its path, what it held (`None`: absent) and the mode
/// it had, and its new text.
struct Change {
    path: PathBuf,
    old: Option<(Vec<u8>, u32)>,
    new: String,
    mode: u32,
}

pub async fn run(args: ServerSetupArgs) -> anyhow::Result<ExitCode> {
    let url = AppUrl::parse(&args.hostname).map_err(|e| UsageError(e.to_string()))?;
    let hostname = url.hostname();
    let root = Root::new(args.paths.root.as_deref())?;
    let mut principals = Vec::new();
    for email in &args.user {
        principals.push((email.trim().to_owned(), principal_of(email, "--user")?));
    }
    let mut maps = Vec::new();
    for text in &args.map {
        maps.push(parse_map(text)?);
    }
    if let Some(file) = &args.ca_file
        && !file.is_absolute()
    {
        return Err(UsageError(format!(
            "--ca-file {}: give an absolute path (sshd_config needs one)",
            file.display()
        ))
        .into());
    }

    let sshd = super::sshd_for(&root, &args.paths)?;
    sshd.test().map_err(|said| {
        anyhow::anyhow!(
            "sshd already rejects {} before any change ({said}): fix that first; nothing was changed",
            sshd.config.display()
        )
    })?;
    let before = sshd.effective(None).map_err(|said| {
        anyhow::anyhow!(
            "sshd -T cannot read {} ({said}); nothing was changed",
            sshd.config.display()
        )
    })?;

    let users_to_create = users_to_create(&root, &principals, &maps, args.create_user)?;
    let (key, source) = ca_key(&args, &hostname).await?;

    // The CA file: the one sshd trusts already unless told otherwise; the
    // keys of a file being replaced are carried over.
    let trusted = before.trusted_ca_file();
    let ca_path = match (&args.ca_file, &trusted) {
        (Some(file), _) => root.join(file),
        (None, Some(path)) if root.holds(path) => path.clone(),
        (None, _) => root.join(Path::new(DEFAULT_CA_FILE)),
    };
    let mut changes = Vec::new();
    let old_ca = read_old(&ca_path)?;
    let mut ca_text = old_ca
        .as_ref()
        .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned());
    if let Some(other) = trusted.as_ref().filter(|p| **p != ca_path) {
        let text = std::fs::read_to_string(other).with_context(|| {
            format!(
                "sshd trusts the CAs in {}, which cannot be read to carry them over to {}",
                other.display(),
                ca_path.display()
            )
        })?;
        if let Some(merged) = ca_file::merge(ca_text.as_deref(), &text) {
            ca_text = Some(merged);
        }
    }
    let comment = format!("cfaccess: the Access app {hostname}");
    let new_ca = ca_file::with_key(ca_text.as_deref(), &key, &comment).or_else(|| {
        // the key is there; the text may still have changed by a merge
        ca_text
            .clone()
            .filter(|t| Some(t.as_bytes()) != old_ca.as_ref().map(|(b, _)| b.as_slice()))
    });
    if let Some(new) = new_ca {
        changes.push(Change {
            path: ca_path.clone(),
            old: old_ca,
            new,
            mode: 0o644,
        });
    }

    // sshd_config: planned on the files as they are now.
    let wanted = Wanted {
        ca_file: ca_path.clone(),
        maps: maps
            .iter()
            .map(|(unix_user, principal)| Mapping {
                unix_user: unix_user.clone(),
                principal: principal.clone(),
            })
            .collect(),
        hostname: hostname.clone(),
    };
    let files = sshd_config::Disk;
    let config = sshd_config::read(&sshd.config, &files)?;
    let plan = sshd_config::plan(&config, &wanted, root.path(), &files)?;
    for change in plan.changes {
        let old = read_old(&change.path)?;
        let mode = old.as_ref().map_or(0o644, |(_, mode)| *mode);
        changes.push(Change {
            path: change.path,
            old,
            new: change.new,
            mode,
        });
    }

    let reload = service::plan(
        root.path(),
        before
            .get("pidfile")
            .filter(|p| *p != "none")
            .map(Path::new),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CA of {hostname}: {} {} ({})",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256),
        match &source {
            KeySource::Api { created: true } => "created now through the Cloudflare API".into(),
            KeySource::Api { created: false } => "from the Cloudflare API".into(),
            KeySource::File(from) => format!("from {from}"),
        }
    );

    if args.dry_run {
        for change in &changes {
            let old = change
                .old
                .as_ref()
                .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned());
            out.push_str(&crate::ssh::install::diff(
                &change.path,
                old.as_deref(),
                &change.new,
            ));
        }
        if changes.is_empty() && users_to_create.is_empty() {
            let _ = writeln!(out, "Nothing to change: {}", settled(&ca_path, &sshd));
        } else {
            let _ = writeln!(out, "Would run:");
            for argv in &users_to_create {
                let _ = writeln!(out, "  {}", argv.join(" "));
            }
            if !changes.is_empty() {
                let _ = writeln!(
                    out,
                    "  {} -t -f {}",
                    sshd.binary.display(),
                    sshd.config.display()
                );
                match reload.why_not() {
                    None => {
                        let _ = writeln!(out, "  {}", reload.describe());
                    }
                    Some(why) => {
                        let _ = writeln!(out, "and no reload: {why}");
                    }
                }
            }
        }
        let _ = writeln!(out, "Dry run: nothing was changed.");
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }

    if changes.is_empty() && users_to_create.is_empty() {
        verify(&sshd, &ca_path, &maps)?;
        let _ = writeln!(out, "Nothing to change: {}", settled(&ca_path, &sshd));
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }

    // From here on, a failure puts every written file back, and Ctrl-C
    // waits for the files to be finished or put back.
    let _deferred = crate::platform::signals::defer_stops();
    let mut written: Vec<&Change> = Vec::new();
    for change in &changes {
        if let Err(e) = atomic_file::write(&change.path, change.new.as_bytes(), change.mode) {
            let restored = restore(&written);
            return Err(anyhow::anyhow!(
                "cannot write {}: {e}; {restored}",
                change.path.display()
            ));
        }
        written.push(change);
    }
    if let Err(said) = sshd.test() {
        let restored = restore(&written);
        return Err(anyhow::anyhow!(
            "sshd rejects the new configuration ({said}); {restored}"
        ));
    }
    if let Err(e) = verify(&sshd, &ca_path, &maps) {
        let restored = restore(&written);
        return Err(anyhow::anyhow!("{e}; {restored}"));
    }
    for argv in &users_to_create {
        if let Err(e) = run_tool(argv) {
            let restored = restore(&written);
            return Err(anyhow::anyhow!("{e}; {restored}"));
        }
    }

    for change in &changes {
        let _ = writeln!(
            out,
            "{} {}",
            if change.old.is_some() {
                "Updated"
            } else {
                "Created"
            },
            change.path.display()
        );
    }
    for argv in &users_to_create {
        let _ = writeln!(out, "Ran {}", argv.join(" "));
    }
    let _ = writeln!(
        out,
        "sshd accepts the configuration and trusts the CA in {}",
        ca_path.display()
    );
    if let Some(why) = reload.why_not() {
        let _ = writeln!(out, "No reload: {why}");
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.no_reload {
        let _ = writeln!(
            out,
            "sshd was not reloaded (--no-reload): run {} to use the new configuration",
            reload.describe()
        );
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    print(&out)?;
    reload.run().map_err(|e| {
        anyhow::anyhow!(
            "the files are in place, but reloading sshd failed: {e}; run {} yourself",
            reload.describe()
        )
    })?;
    print(&format!("Reloaded sshd ({})\n", reload.describe()))?;
    Ok(ExitCode::SUCCESS)
}

/// The key, from `--ca-key` or the API.
async fn ca_key(args: &ServerSetupArgs, hostname: &str) -> anyhow::Result<(PublicKey, KeySource)> {
    if let Some(file) = &args.ca_key {
        let (text, source) = if file == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .take(64 << 10)
                .read_to_string(&mut text)
                .context("cannot read the CA key from stdin")?;
            (text, "--ca-key - (stdin)".to_owned())
        } else {
            let text = crate::platform::read::read_capped_string(file, 64 << 10)
                .map_err(|e| anyhow::anyhow!("cannot read --ca-key {}: {e}", file.display()))?;
            (text, format!("--ca-key {}", file.display()))
        };
        let key = ca_file::parse_key(&text, &source)?;
        return Ok((key, KeySource::File(source)));
    }
    let Some(api) = super::api_for(&args.api)? else {
        return Err(UsageError(format!(
            "no CA key: set {} (and {}) to fetch the app's CA from the Cloudflare API, or give the key with --ca-key FILE",
            api::TOKEN_ENV,
            api::ACCOUNT_ENV
        ))
        .into());
    };
    let apps = api.apps().await.map_err(with_advice)?;
    let Some(app) = api::find_app(&apps, hostname) else {
        let mut names: Vec<&str> = apps.iter().map(|a| a.domain.as_str()).collect();
        names.truncate(5);
        let listed = if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("its apps: {}", names.join(", "))
        };
        return Err(anyhow::anyhow!(
            "no Access application for {hostname} in {} ({listed}): check --hostname, or the account/zone",
            api.scope().describe()
        ));
    };
    let (ca, created) = match api.ca(&app.id).await.map_err(with_advice)? {
        Some(ca) => (ca, false),
        None if args.create_ca => {
            let ca = api.create_ca(&app.id).await.map_err(|e| match e {
                api::ApiError::Forbidden { .. } => anyhow::anyhow!(
                    "{e}; hint: creating the CA needs an API token that may edit Access apps (Access: Apps and Policies Edit)"
                ),
                e => with_advice(e),
            })?;
            (ca, true)
        }
        None => {
            return Err(anyhow::anyhow!(
                "the Access app {hostname} has no SSH CA yet: run again with --create-ca, or generate it in the dashboard (the app's short-lived certificate settings)"
            ));
        }
    };
    let key = ca_file::parse_key(&ca.public_key, "the Cloudflare API's CA")?;
    Ok((key, KeySource::Api { created }))
}

fn with_advice(e: api::ApiError) -> anyhow::Error {
    match e.advice() {
        Some(advice) => anyhow::anyhow!("{e}; hint: {advice}"),
        None => e.into(),
    }
}

/// The `useradd` lines for the `--user`s that are missing, or the error
/// for the first missing one without `--create-user`.
fn users_to_create(
    root: &Root,
    principals: &[(String, String)],
    maps: &[(String, String)],
    create: bool,
) -> anyhow::Result<Vec<Vec<String>>> {
    let exists = |name: &str| {
        users::exists(root.path(), name)
            .map_err(|e| anyhow::anyhow!("cannot look up the Unix user {name}: {e}"))
    };
    for (user, principal) in maps {
        if !exists(user)? {
            return Err(anyhow::anyhow!(
                "--map {user}={principal}@…: there is no Unix user {user} on this machine; create it first, or map an existing user"
            ));
        }
    }
    let mut commands = Vec::new();
    for (email, name) in principals {
        if maps.iter().any(|(_, p)| p == name) || exists(name)? {
            continue;
        }
        if !create {
            return Err(anyhow::anyhow!(
                "there is no Unix user {name} for {email} on this machine: run again with --create-user, or let an existing user in with --map USER={email}"
            ));
        }
        let argv = users::create_command(root.path(), name).map_err(anyhow::Error::msg)?;
        if !commands.contains(&argv) {
            commands.push(argv);
        }
    }
    Ok(commands)
}

/// `sshd -T` must show the CA file in effect and pubkey authentication on,
/// and each mapped user's principals command.
fn verify(sshd: &Sshd, ca_path: &Path, maps: &[(String, String)]) -> anyhow::Result<()> {
    let effective = sshd
        .effective(None)
        .map_err(|said| anyhow::anyhow!("sshd -T fails on the new configuration ({said})"))?;
    check_effective(&effective, ca_path)?;
    for (user, principal) in maps {
        let effective = sshd.effective(Some(user)).map_err(|said| {
            anyhow::anyhow!("sshd -T -C user={user} fails on the new configuration ({said})")
        })?;
        let want = format!("/bin/echo {principal}");
        let got = effective
            .get("authorizedprincipalscommand")
            .unwrap_or("none");
        if got != want {
            return Err(anyhow::anyhow!(
                "for the user {user}, sshd -T shows authorizedprincipalscommand {got}, not {want}: an earlier Match block for {user} wins; merge the two by hand"
            ));
        }
    }
    Ok(())
}

fn check_effective(effective: &Effective, ca_path: &Path) -> anyhow::Result<()> {
    let pubkey = effective.get("pubkeyauthentication").unwrap_or("?");
    if pubkey != "yes" {
        return Err(anyhow::anyhow!(
            "sshd -T shows pubkeyauthentication {pubkey}, not yes"
        ));
    }
    match effective.trusted_ca_file() {
        Some(file) if file == ca_path => Ok(()),
        other => Err(anyhow::anyhow!(
            "sshd -T shows trustedusercakeys {}, not {}",
            other.map_or("none".into(), |p| p.display().to_string()),
            ca_path.display()
        )),
    }
}

/// What a run that changes nothing says.
fn settled(ca_path: &Path, sshd: &Sshd) -> String {
    format!(
        "{} already trusts the CA in {}",
        sshd.config.display(),
        ca_path.display()
    )
}

/// A file's bytes and mode, or `None` when it does not exist.
fn read_old(path: &Path) -> anyhow::Result<Option<(Vec<u8>, u32)>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some((bytes, atomic_file::mode_of(path).unwrap_or(0o644)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Puts back what `written` replaced; says how that went, for the error.
fn restore(written: &[&Change]) -> String {
    let mut failed = Vec::new();
    for change in written.iter().rev() {
        let result = match &change.old {
            Some((bytes, mode)) => atomic_file::write(&change.path, bytes, *mode),
            None => std::fs::remove_file(&change.path),
        };
        if let Err(e) = result {
            failed.push(format!("{}: {e}", change.path.display()));
        }
    }
    if failed.is_empty() {
        "every file is as it was before".into()
    } else {
        format!(
            "and putting back {} failed ({}): restore it by hand",
            if failed.len() == 1 { "a file" } else { "files" },
            failed.join(", ")
        )
    }
}

fn run_tool(argv: &[String]) -> anyhow::Result<()> {
    let (program, rest) = argv
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let out = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(anyhow::anyhow!(
        "{} failed ({}): {}",
        argv.join(" "),
        out.status,
        said.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}
