//! Diagnostics on stderr through `tracing`. Only what the user asks for with
//! `--log-level` appears; the messages a command owes its user (the login URL,
//! "waiting for login") are printed by the command itself. No token, secret
//! or key is ever logged.

use std::path::Path;

use anyhow::Context;
use tracing::level_filters::LevelFilter;

use crate::cli::LogLevel;

/// Starts logging at `level` (warnings and errors when unset), to `file`
/// (appended, created 0600) when given, else to stderr. Never to stdout: it
/// may be an ssh session.
pub fn init(level: Option<LogLevel>, file: Option<&Path>) -> anyhow::Result<()> {
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
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
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
