//! cfaccess: a client for Cloudflare Access, a drop-in for `cloudflared access`.
//!
//! The modules follow the nouns of the wire protocol (`docs/protocol.md`); the
//! commands in `commands` are thin layers over them.

pub mod access;
pub mod carrier;
pub mod cli;
mod commands;
pub mod doctor;
pub mod error;
pub mod inventory;
pub mod limits;
pub mod logging;
pub mod platform;
pub mod server;
pub mod ssh;
pub mod ui;

use std::process::ExitCode;

/// The whole program: parse, run, report. Usage errors exit 2 (as clap's
/// own do), other failures 1, each with one line on stderr.
pub fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os());
    if let Some(code) =
        commands::ssh_gen_fast_path(&args).or_else(|| commands::token_fast_path(&args))
    {
        return code;
    }
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", error::one_line(&err));
            if err.downcast_ref::<commands::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
