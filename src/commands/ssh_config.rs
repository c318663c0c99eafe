//! `cfaccess ssh-config --hostname h [--short-lived-cert]`: the ssh_config
//! snippet on stdout (so `>> ~/.ssh/config` works), or `--install`ed where
//! it wins (see `ssh::install`), `--include`d from a file of its own, or
//! shown as a `--dry-run` diff.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::UsageError;
use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::cli::SshConfigArgs;
use crate::error::WithHint;
use crate::limits;
use crate::platform::read::read_capped_string;
use crate::platform::short_path::short_path;
use crate::platform::{atomic_file, home, private_dir};
use crate::ssh::config::{self as ssh_config, Certs, KeyDir, Program, Style};
use crate::ssh::install::{self, InstallError, Position};

/// The host ssh matches, and the application's path when it has one.
struct Target {
    hostname: String,
    /// `/some/path`, and the key stem `ssh-gen` uses for it.
    path: Option<(String, String)>,
}

pub fn run(args: SshConfigArgs) -> anyhow::Result<ExitCode> {
    let target = match args.hostname.as_deref() {
        Some(h) => ssh_target(h)?,
        None if args.install => {
            return Err(UsageError("--install needs --hostname".into()).into());
        }
        None => Target {
            hostname: "[your hostname]".into(),
            path: None,
        },
    };
    let hostname = target.hostname.as_str();
    let exe = std::env::current_exe().context("cannot find the path of this program")?;
    let program = Program::new(&exe, short_path(&exe).as_deref());
    let dir = ConfigDir::locate()?;
    let key_dir = if dir.is_default() {
        KeyDir::Default
    } else {
        KeyDir::Path(dir.path().to_string_lossy().into_owned())
    };
    let style = Style::native();
    let mut block = match ssh_config::snippet(
        style,
        &program,
        hostname,
        Certs::new(args.short_lived_cert, args.agent),
        &key_dir,
    ) {
        Ok(block) => block,
        Err(e) => {
            let hint = e.hint();
            return Err(e).hint(hint);
        }
    };
    if let Some((path, stem)) = &target.path {
        block = install::with_app_path(&block, hostname, path, stem).map_err(hinted)?;
    }

    // An audited app's edge is the ssh server: ssh trusts it by its host CA.
    let host_ca = args
        .hostname
        .as_ref()
        .and_then(|_| audited_host_line(hostname));

    if !args.install {
        eprintln!("Add this to your ~/.ssh/config (or run this command again with --install):");
        let mut out = std::io::stdout().lock();
        out.write_all(block.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        if let Some(line) = &host_ca {
            eprintln!(
                "{hostname} is an audited app: the edge answers ssh with its own host key. \
                 Add this line to ~/.ssh/known_hosts (or run again with --install):\n{line}"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(line) = &host_ca
        && !args.dry_run
    {
        install_known_host(hostname, line)?;
    }

    let file = match args.config {
        Some(file) => file,
        None => ssh_dir()?.join("config"),
    };
    // beside the config as named (~/.ssh), not in a dotfiles repo it links to
    let include_file = file
        .parent()
        .unwrap_or(Path::new("."))
        .join("cfaccess")
        .join("config");
    // a config kept as a symlink (dotfiles) is edited where it points
    let file = std::fs::canonicalize(&file).unwrap_or(file);
    let old = read(&file)?;
    let old_include = read(&include_file)?;
    let text = old.as_deref().unwrap_or("");

    // What changes, the file that makes the new block win first: with
    // --include the block's own file, else the config; then the other one
    // loses its now stale block for the host (an included one would win).
    let mut changes: Vec<(PathBuf, Option<String>, String)> = Vec::new();
    let outcome;
    if args.include {
        let placed = install::place(old_include.as_deref().unwrap_or(""), hostname, &block)
            .map_err(hinted)?;
        changes.push((include_file.clone(), old_include.clone(), placed.text));
        let without = install::remove(text, hostname).map_err(hinted)?;
        let home = home::home_dir().filter(|_| style == Style::Windows);
        let main = install::place_include(
            without.as_deref().unwrap_or(text),
            &include_file,
            home.as_deref(),
        )
        .map_err(hinted)?;
        changes.push((file.clone(), old.clone(), main));
        outcome = format!(
            "the cfaccess block for {hostname} in {}, included at the top of {}",
            include_file.display(),
            file.display()
        );
    } else {
        let placed = install::place(text, hostname, &block).map_err(hinted)?;
        outcome = match &placed.position {
            Position::End => format!(
                "the cfaccess block for {hostname} at the end of {}",
                file.display()
            ),
            Position::InPlace => format!("the cfaccess block for {hostname} in {}", file.display()),
            Position::Before { line, text } => format!(
                "the cfaccess block for {hostname} in {}, before line {line} ({text}): \
                 ssh takes the first value it meets, so the block wins over that",
                file.display()
            ),
        };
        changes.push((file.clone(), old.clone(), placed.text));
        if let Some(inc) = &old_include
            && let Some(without) = install::remove(inc, hostname).map_err(hinted)?
        {
            changes.push((include_file.clone(), old_include.clone(), without));
        }
    }
    changes.retain(|(_, old, new)| old.as_deref() != Some(new.as_str()));

    if args.dry_run {
        if changes.is_empty() {
            eprintln!("Nothing to change: {outcome} is up to date.");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("Dry run, nothing written. --install would make these changes:");
        let mut out = std::io::stdout().lock();
        for (path, old, new) in &changes {
            out.write_all(install::diff(path, old.as_deref(), new).as_bytes())
                .context("cannot write to stdout")?;
        }
        out.flush().context("cannot write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    if changes.is_empty() {
        eprintln!("Up to date: {outcome}.");
        return Ok(ExitCode::SUCCESS);
    }
    for (path, _, new) in &changes {
        write(path, new)?;
    }
    let verb = if old
        .as_deref()
        .is_some_and(|t| t.contains(&format!("# BEGIN cfaccess {hostname}\n")))
        || old_include
            .as_deref()
            .is_some_and(|t| t.contains(&format!("# BEGIN cfaccess {hostname}\n")))
    {
        "Replaced"
    } else {
        "Added"
    };
    eprintln!("{verb} {outcome}.");
    Ok(ExitCode::SUCCESS)
}

/// The `@cert-authority` line of an audited app (docs/protocol.md 14.3),
/// from the edge profile, which names each audited app with the edge's SSH
/// host CA: `None` for any other app. Only an access-edge has audited apps
/// of its own (Cloudflare's SSH proxy is set up in its dashboard), so only
/// with a profile (`CFACCESS_EDGE`) is there a line; `ssh-config` stays an
/// offline command either way.
fn audited_host_line(hostname: &str) -> Option<String> {
    let profile = super::edge_profile().ok()??;
    let key = profile.audited_host_ca(hostname)?;
    host_ca_line(hostname, &format!("@cert-authority {hostname} {key}"))
}

/// The one `@cert-authority <hostname> <key>` line in `text`, if that is
/// what it is (a key type and base64, nothing else).
fn host_ca_line(hostname: &str, text: &str) -> Option<String> {
    let line = text.trim();
    let mut words = line.split(' ');
    let ok = words.next() == Some("@cert-authority")
        && words.next() == Some(hostname)
        && words
            .next()
            .is_some_and(|t| t.starts_with("ssh-") || t.starts_with("ecdsa-"))
        && words.next().is_some_and(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        })
        && words.next().is_none();
    ok.then(|| line.to_owned())
}

/// Puts `line` into `~/.ssh/known_hosts`, replacing an older
/// `@cert-authority` line for `hostname` (a host CA made again).
fn install_known_host(hostname: &str, line: &str) -> anyhow::Result<()> {
    let file = ssh_dir()?.join("known_hosts");
    let old = read(&file)?.unwrap_or_default();
    let prefix = format!("@cert-authority {hostname} ");
    if old.lines().any(|l| l == line) {
        eprintln!(
            "Up to date: the host CA line for {hostname} in {}.",
            file.display()
        );
        return Ok(());
    }
    let mut text: String = old
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(line);
    text.push('\n');
    write(&file, &text)?;
    eprintln!(
        "Added the host CA line for {hostname} (an audited app) to {}.",
        file.display()
    );
    Ok(())
}

fn hinted(e: InstallError) -> anyhow::Error {
    let hint = e.hint().to_owned();
    anyhow::Error::new(crate::error::Hinted {
        error: e.into(),
        hint,
    })
}

/// The text of `path`, `None` when it does not exist.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match read_capped_string(path, limits::SSH_CONFIG_FILE) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces `path` with `text` atomically, keeping its mode (new files
/// 0600: ssh refuses a config others may write); a missing directory is
/// created 0700, as ssh wants `~/.ssh`.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        private_dir::create_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mode = atomic_file::mode_of(path).unwrap_or(atomic_file::SECRET);
    atomic_file::write(path, text.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", path.display()))
        .hint("check that the file and its directory are writable")
}

/// The host as ssh will match it: the name alone. A name holding ssh's
/// pattern characters would match other hosts too (`*` every one of them),
/// so it is refused. A path, which ssh cannot match, is kept for the
/// commands and key names (see `install::with_app_path`); a query is dropped.
fn ssh_target(given: &str) -> anyhow::Result<Target> {
    if let Some(c) = given
        .chars()
        .find(|c| matches!(c, '*' | '?' | '!' | ',') || c.is_whitespace())
    {
        return Err(UsageError(format!(
            "the hostname '{given}' holds '{c}', which ssh reads as a pattern matching other hosts; \
             give the application's own hostname, like ssh.example.com"
        ))
        .into());
    }
    let url = AppUrl::parse(given).map_err(|e| UsageError(e.to_string()))?;
    let hostname = url.hostname();
    // `%h` puts the name into the commands that sh or cmd.exe runs, and
    // `Match host` into a config word (`=` splits one): a DNS name (IDNs
    // come punycoded) or an address holds none of their special characters
    if let Some(c) = hostname
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_:".contains(*c)))
    {
        return Err(UsageError(format!(
            "the hostname '{given}' holds '{c}', which the shell or cmd.exe that runs ssh's \
             commands would read as syntax; give the application's DNS name, like ssh.example.com"
        ))
        .into());
    }
    if url.url().query().is_some() {
        eprintln!("note: the query of '{given}' is left out: ssh connections carry none");
    }
    let stem = url.key_stem();
    let path = url.url().path();
    // `https://h/` is the host itself, pasted from a browser
    if stem == hostname || path == "/" {
        return Ok(Target {
            hostname,
            path: None,
        });
    }
    eprintln!(
        "note: ssh matches host names only, so every ssh connection to {hostname} goes to \
         the application at {hostname}{path}"
    );
    Ok(Target {
        hostname,
        path: Some((path.to_owned(), stem)),
    })
}

/// `~/.ssh`, not created yet: only a write makes it (0700).
fn ssh_dir() -> anyhow::Result<PathBuf> {
    let home = home::home_dir()
        .context("cannot find your home directory, so there is no ~/.ssh/config")
        .hint("set HOME, or give the file with --config")?;
    Ok(home.join(".ssh"))
}

#[cfg(test)]
mod tests {
    use super::{host_ca_line, ssh_target};

    #[test]
    fn only_a_host_ca_line_for_the_host_is_taken() {
        let line = "@cert-authority h.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+x";
        assert_eq!(
            host_ca_line("h.test", &format!("{line}\n")).as_deref(),
            Some(line)
        );
        assert_eq!(host_ca_line("other.test", line), None);
        assert_eq!(host_ca_line("h.test", &format!("{line} extra")), None);
        assert_eq!(host_ca_line("h.test", "<html>a login page</html>"), None);
        assert_eq!(host_ca_line("h.test", &format!("{line}\n{line}")), None);
    }

    #[test]
    fn hostnames_that_commands_would_read_as_syntax_are_refused() {
        for bad in [
            "a&b.example.com",
            "a=b.example.com",
            "a(b).example.com",
            "a$b.example.com",
        ] {
            let err = ssh_target(bad).err().unwrap().to_string();
            assert!(err.contains("DNS name"), "{bad}: {err}");
        }
        let t = ssh_target("ssh.example.com").unwrap();
        assert_eq!((t.hostname.as_str(), t.path), ("ssh.example.com", None));
        let t = ssh_target("https://Ssh.Example.com/").unwrap();
        assert_eq!((t.hostname.as_str(), t.path), ("ssh.example.com", None));
        let t = ssh_target("https://Ssh.Example.com/x/y").unwrap();
        assert_eq!(t.hostname, "ssh.example.com");
        assert_eq!(
            t.path,
            Some(("/x/y".to_owned(), "ssh.example.com-x-y".to_owned()))
        );
    }
}
