//! `cfaccess ssh-config --hostname h [--short-lived-cert]`: the ssh_config
//! snippet on stdout (so `>> ~/.ssh/config` works), or `--install`ed.

use std::io::Write;
use std::path::PathBuf;
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

pub fn run(args: SshConfigArgs) -> anyhow::Result<ExitCode> {
    let hostname = match args.hostname.as_deref() {
        Some(h) => ssh_hostname(h)?,
        None if args.install => {
            return Err(UsageError("--install needs --hostname".into()).into());
        }
        None => "[your hostname]".into(),
    };
    let exe = std::env::current_exe().context("cannot find the path of this program")?;
    let program = Program::new(&exe, short_path(&exe).as_deref());
    let dir = ConfigDir::locate()?;
    let key_dir = if dir.is_default() {
        KeyDir::Default
    } else {
        KeyDir::Path(dir.path().to_string_lossy().into_owned())
    };
    let style = Style::native();
    let block = match ssh_config::snippet(
        style,
        &program,
        &hostname,
        Certs::new(args.short_lived_cert, args.agent),
        &key_dir,
    ) {
        Ok(block) => block,
        Err(e) => {
            let hint = e.hint();
            return Err(e).hint(hint);
        }
    };

    if !args.install {
        eprintln!("Add this to your ~/.ssh/config (or run this command again with --install):");
        let mut out = std::io::stdout().lock();
        out.write_all(block.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }

    let file = match args.config {
        Some(file) => file,
        None => ssh_dir()?.join("config"),
    };
    let old = match read_capped_string(&file, limits::SSH_CONFIG_FILE) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let installed = ssh_config::install(&old, &hostname, &block);
    if args.dry_run {
        let mut diff = format!(
            "--- {}\n+++ {} (with cfaccess's block for {hostname})\n",
            file.display(),
            file.display()
        );
        for line in installed.replaced.iter().flat_map(|old| old.lines()) {
            diff.push_str(&format!("-{line}\n"));
        }
        for line in block.lines() {
            diff.push_str(&format!("+{line}\n"));
        }
        print!("{diff}");
        return Ok(ExitCode::SUCCESS);
    }
    let mode = atomic_file::mode_of(&file).unwrap_or(atomic_file::SECRET);
    atomic_file::write(&file, installed.text.as_bytes(), mode)
        .with_context(|| format!("cannot write {}", file.display()))
        .hint("check that the file and its directory are writable")?;
    let what = if installed.replaced.is_some() {
        "Replaced"
    } else {
        "Added"
    };
    eprintln!(
        "{what} the cfaccess block for {hostname} in {}.",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The host as ssh will match it: the name alone. A name holding ssh's
/// pattern characters would match other hosts too (`*` every one of them),
/// so it is refused; a path, which ssh cannot match, is dropped with a note.
fn ssh_hostname(given: &str) -> anyhow::Result<String> {
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
    if url.key_stem() != hostname {
        eprintln!(
            "note: ssh matches host names only, so the path {} of '{given}' is left out: \
             the block below is for {hostname}",
            url.url().path()
        );
    }
    Ok(hostname)
}

/// `~/.ssh`, created 0700 when missing.
fn ssh_dir() -> anyhow::Result<PathBuf> {
    let home = home::home_dir()
        .context("cannot find your home directory, so there is no ~/.ssh/config")
        .hint("set HOME, or give the file with --config")?;
    let dir = home.join(".ssh");
    match private_dir::create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("cannot create {}", dir.display()))
        }
        _ => Ok(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::ssh_hostname;

    #[test]
    fn hostnames_that_commands_would_read_as_syntax_are_refused() {
        for bad in [
            "a&b.example.com",
            "a=b.example.com",
            "a(b).example.com",
            "a$b.example.com",
        ] {
            let err = ssh_hostname(bad).unwrap_err().to_string();
            assert!(err.contains("DNS name"), "{bad}: {err}");
        }
        assert_eq!(ssh_hostname("ssh.example.com").unwrap(), "ssh.example.com");
        assert_eq!(
            ssh_hostname("https://Ssh.Example.com/x").unwrap(),
            "ssh.example.com"
        );
    }
}
