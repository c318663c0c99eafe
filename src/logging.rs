//! Diagnostics on stderr through `tracing`. Only what the user asks for with
//! `--log-level` appears; the messages a command owes its user (the login URL,
//! "waiting for login") are printed by the command itself. No token, secret
//! or key is ever logged.

use tracing::level_filters::LevelFilter;

use crate::cli::LogLevel;

/// Starts logging to stderr at `level` (warnings and errors when unset).
pub fn init(level: Option<LogLevel>) {
    let filter = match level {
        Some(LogLevel::Debug) => LevelFilter::DEBUG,
        Some(LogLevel::Info) => LevelFilter::INFO,
        None | Some(LogLevel::Warn) => LevelFilter::WARN,
        Some(LogLevel::Error) | Some(LogLevel::Fatal) => LevelFilter::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
