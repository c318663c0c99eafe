//! Diagnostics on stderr through `tracing`. Only what the user asks for with
//! `--log-level` appears; the messages a command owes its user (the login URL,
//! "waiting for login") are printed by the command itself. No token, secret
//! or key is ever logged.

use std::path::Path;

use anyhow::Context;
use tracing::level_filters::LevelFilter;

use crate::cli::LogLevel;

/// Where logs go: stderr, a file, or `cfaccess.log` in a directory that is
/// created (0700, as the official client does) when missing.
pub enum Target<'a> {
    Stderr,
    File(&'a Path),
    Directory(&'a Path),
}

/// The file logs go to in a `--log-directory`.
pub const FILE_NAME: &str = "cfaccess.log";

/// Starts logging at `level` (warnings and errors when unset), to `target`
/// (a file is appended to, created 0600). Never to stdout: it may be an ssh
/// session.
pub fn init(level: Option<LogLevel>, target: Target<'_>) -> anyhow::Result<()> {
    let in_dir;
    let file = match target {
        Target::Stderr => None,
        Target::File(path) => Some(path),
        Target::Directory(dir) => {
            crate::platform::private_dir::create_all(dir)
                .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
            in_dir = dir.join(FILE_NAME);
            Some(in_dir.as_path())
        }
    };
    let filter = match level {
        Some(LogLevel::Debug) => LevelFilter::DEBUG,
        Some(LogLevel::Info) => LevelFilter::INFO,
        None | Some(LogLevel::Warn) => LevelFilter::WARN,
        Some(LogLevel::Error) | Some(LogLevel::Fatal) => LevelFilter::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_target(false);
    let _ = match file {
        Some(path) => {
            let file = crate::platform::atomic_file::open_append(path, 0o600)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
        }
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
    };
    Ok(())
}
