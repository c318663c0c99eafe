//! `cfaccess server`: the machine behind Access. `setup` does the server's
//! steps of Cloudflare's short-lived-certificate guide (the app's CA, the CA
//! file, sshd_config, validation, reload, users); `check` reports them.
//!
//! Every file is read and written through a [`Root`], so `--root DIR`
//! works on a copy of a system and the tests never touch `/etc`.

pub mod api;
pub mod ca_file;
mod check;
mod setup;
pub mod sshd;
pub mod sshd_config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::access::edge_profile::EdgeProfile;
use crate::cli::{ApiArgs, ServerAction, ServerPaths};
use crate::commands::UsageError;
use crate::error::WithHint;

/// Runs `cfaccess server <action>`.
pub fn run(action: ServerAction) -> anyhow::Result<ExitCode> {
    if cfg!(windows) {
        return Err(anyhow::anyhow!(
            "cfaccess server runs on the Linux or macOS machine behind Access; Windows' OpenSSH server is not supported"
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = match action {
        ServerAction::Setup(args) => runtime.block_on(setup::run(args)),
        ServerAction::Check(args) => runtime.block_on(check::run(args)),
    };
    runtime.shutdown_background();
    result
}

/// The file system cfaccess works on: `/`, or the `--root` directory.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: Option<&Path>) -> anyhow::Result<Root> {
        let Some(dir) = dir else {
            return Ok(Root(PathBuf::from("/")));
        };
        let dir = std::path::absolute(dir)
            .map_err(|e| UsageError(format!("--root {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "--root {}: no such directory (make it, with etc/ssh/sshd_config inside)",
                dir.display()
            ))
            .into());
        }
        Ok(Root(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `path` (an absolute path as on the system) under the root; a
    /// relative path is taken from the working directory, as given.
    pub fn join(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(rest) if !self.is_system() => self.0.join(rest),
            _ => path.to_owned(),
        }
    }

    /// Whether `path` (as sshd sees it) lies under the root.
    pub fn holds(&self, path: &Path) -> bool {
        self.is_system() || path.starts_with(&self.0)
    }
}

/// The config file and the sshd of a command.
fn sshd_for(root: &Root, paths: &ServerPaths) -> anyhow::Result<sshd::Sshd> {
    let binary = sshd::find(paths.sshd.as_deref()).map_err(anyhow::Error::msg)?;
    let config = root.join(
        paths
            .sshd_config
            .as_deref()
            .unwrap_or(Path::new("/etc/ssh/sshd_config")),
    );
    if !config.is_file() {
        return Err(anyhow::anyhow!(
            "no sshd config at {}: is OpenSSH's server installed here (or give --sshd-config)?",
            config.display()
        ));
    }
    Ok(sshd::Sshd { binary, config })
}

/// The API client of a command, or `None` when no credentials are given.
fn api_for(args: &ApiArgs) -> anyhow::Result<Option<api::Api>> {
    let Some(credentials) =
        api::Credentials::find(args.api_token_file.as_deref()).map_err(UsageError)?
    else {
        return Ok(None);
    };
    let scope = match (&args.zone_id, &args.account_id) {
        (Some(zone), _) => {
            api::Scope::Zone(api::Scope::checked_id(zone, "--zone-id").map_err(UsageError)?)
        }
        (None, Some(account)) => api::Scope::Account(
            api::Scope::checked_id(account, "--account-id").map_err(UsageError)?,
        ),
        (None, None) => {
            return Err(UsageError(format!(
                "the Cloudflare API needs the account: set {} or give --account-id (the dashboard shows it on the account's overview page)",
                api::ACCOUNT_ENV
            ))
            .into());
        }
    };
    let profile = EdgeProfile::from_env()
        .hint(format!("fix or unset {}", crate::access::edge_profile::ENV))?;
    Ok(Some(api::Api::new(profile.as_ref(), credentials, scope)?))
}

/// The Unix user a certificate for `email` logs in as: its local part.
fn principal_of(email: &str, flag: &str) -> Result<String, UsageError> {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain))
            if !domain.is_empty() && crate::platform::users::is_valid_name(local) =>
        {
            Ok(local.to_owned())
        }
        Some((local, domain)) if !domain.is_empty() => Err(UsageError(format!(
            "{flag} {email}: its local part {local:?} cannot be a Unix user name; map a user to it with --map USER={email}"
        ))),
        _ => Err(UsageError(format!(
            "{flag} {email:?} is not an email address, like jdoe@example.com"
        ))),
    }
}

/// `--map USER=EMAIL`: the Unix user and the certificate principal.
fn parse_map(text: &str) -> Result<(String, String), UsageError> {
    let Some((user, email)) = text.split_once('=') else {
        return Err(UsageError(format!(
            "--map {text:?}: give USER=EMAIL, like --map johndoe=jdoe@example.com"
        )));
    };
    let user = user.trim();
    if !crate::platform::users::is_valid_name(user) {
        return Err(UsageError(format!(
            "--map {text:?}: {user:?} is not a Unix user name"
        )));
    }
    let principal = match email.trim().split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => local.to_owned(),
        _ => {
            return Err(UsageError(format!(
                "--map {text:?}: {:?} is not an email address, like jdoe@example.com",
                email.trim()
            )));
        }
    };
    // the principal goes on a command line that sshd splits on spaces
    if !principal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        return Err(UsageError(format!(
            "--map {text:?}: the email's local part {principal:?} holds characters a certificate principal cannot"
        )));
    }
    Ok((user.to_owned(), principal))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_root_prefixes_absolute_paths_only() {
        let root = Root(PathBuf::from("/tmp/r"));
        assert_eq!(
            root.join(Path::new("/etc/ssh/ca.pub")),
            Path::new("/tmp/r/etc/ssh/ca.pub")
        );
        assert_eq!(root.join(Path::new("ca.pub")), Path::new("ca.pub"));
        assert!(root.holds(Path::new("/tmp/r/etc/ssh/x")));
        assert!(!root.holds(Path::new("/etc/ssh/x")));
        let system = Root(PathBuf::from("/"));
        assert_eq!(
            system.join(Path::new("/etc/ssh/ca.pub")),
            Path::new("/etc/ssh/ca.pub")
        );
        assert!(system.holds(Path::new("/etc/ssh/x")));
    }

    #[test]
    fn maps_and_users_are_checked() {
        assert_eq!(
            parse_map("johndoe=jdoe@example.com").unwrap(),
            ("johndoe".into(), "jdoe".into())
        );
        assert!(parse_map("johndoe").unwrap_err().0.contains("USER=EMAIL"));
        assert!(parse_map("john doe=jdoe@example.com").is_err());
        assert!(parse_map("johndoe=jdoe").is_err());
        assert!(parse_map("johndoe=j doe@example.com").is_err());
        assert_eq!(principal_of("jdoe@example.com", "--user").unwrap(), "jdoe");
        assert!(principal_of("jdoe", "--user").is_err());
        assert!(
            principal_of("-rf@example.com", "--user")
                .unwrap_err()
                .0
                .contains("--map")
        );
    }
}
