//! cfaccess: a client for Cloudflare Access, a drop-in for `cloudflared access`.
//!
//! The modules follow the nouns of the wire protocol (`PROTOCOL.md`); the
//! commands in `commands` are thin layers over them.

pub mod access;
pub mod app_info;
pub mod atomic_file;
pub mod browser;
pub mod carrier;
pub mod cert_sign;
pub mod cli;
mod commands;
pub mod config_dir;
pub mod dir_watch;
pub mod edge_profile;
pub mod error;
pub mod host;
pub mod http;
pub mod inventory;
pub mod jwks;
pub mod jwt;
pub mod lock;
pub mod logging;
pub mod login_service;
pub mod org_exchange;
pub mod ssh_config;
pub mod ssh_keys;
pub mod stdio;
pub mod token_check;
pub mod token_store;

use std::process::ExitCode;

use clap::Parser;

/// The whole program: parse, run, report. Usage errors exit 2 (as clap's
/// own do), other failures 1, each with one line on stderr.
pub fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os());
    let cli = match cli::Cli::try_parse_from(args) {
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
