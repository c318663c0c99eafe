//! One function per command: arguments in, calls on the library, output out.
//! No protocol logic lives here.

mod completions;
mod curl;
mod doctor;
mod help;
mod login;
mod logout;
mod ssh_config;
mod ssh_gen;
mod status;
mod tcp;
mod token;
mod version;

use std::process::ExitCode;

use anyhow::Context;

use crate::access::config_dir::ConfigDir;
use crate::access::edge_profile::EdgeProfile;
use crate::access::host::AppUrl;
use crate::access::{Access, LoginOptions};
use crate::cli::{Action, Cli, Command};
use crate::error::WithHint;
use crate::logging;
use crate::platform::signals;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(dir) = cli.config_dir.filter(|d| !d.as_os_str().is_empty()) {
        ConfigDir::choose(dir);
    }
    // Logging as the global options ask; with a log file, the console gets
    // the logs too when `console_with_file`.
    let init_logging = |console_with_file| {
        logging::init(&logging::Settings {
            level: cli.log_level,
            output: cli.output,
            file: cli.logfile.as_deref(),
            directory: cli.log_directory.as_deref(),
            console_with_file,
        })
    };
    let (action, access_fedramp) = match cli.command {
        Command::Server { action } => {
            init_logging(true)?;
            return crate::server::run(action);
        }
        Command::Action(Action::Help(args)) => return help::run(&[], &args),
        Command::Access {
            action: Action::Help(args),
            ..
        } => return help::run(&["access"], &args),
        Command::Action(action) => (action, false),
        Command::Access { action, fedramp } => (action, fedramp),
        Command::Version(args) => return version::run(&args),
        Command::Completions(args) => return completions::run(&args),
        Command::Man(args) => return completions::man(&args),
    };
    // `--fedramp` where the official client takes it (`access --fedramp
    // login`), after the command, or before it as earlier releases took it
    let fedramp = cli.fedramp
        || access_fedramp
        || match &action {
            Action::Login(args) => args.fedramp.on,
            Action::Tcp(args) => args.fedramp.on,
            Action::SshGen(args) => args.fedramp.on,
            _ => false,
        };
    // A carrier on stdin/stdout writes into ssh's terminal: with a log file
    // its logs go there alone, as the official client's do.
    let carrying_stdio =
        matches!(&action, Action::Tcp(args) if args.url.is_none() && args.listen.is_none());
    init_logging(!carrying_stdio)?;
    if let Action::Tcp(args) = &action
        && (args.connect_to.is_some() || args.debug_stream.is_some())
    {
        tracing::warn!(
            "--connect-to and --debug-stream are the official client's testing aids; cfaccess ignores them (use CFACCESS_EDGE to point it at another edge)"
        );
    }
    match action {
        Action::Login(args) => block_on(login::run(args, fedramp)),
        Action::Token(args) => token::run(args),
        Action::Curl(args) => block_on(curl::run(args, fedramp)),
        Action::Tcp(args) => block_on(tcp::run(args, fedramp)),
        Action::SshGen(args) => ssh_gen::run(args, fedramp),
        Action::SshConfig(args) => ssh_config::run(args),
        Action::Status(args) => status::run(&args),
        Action::Logout(args) => logout::run(&args),
        Action::Doctor(args) => block_on(doctor::run(args)),
        Action::Help(args) => help::run(&[], &args),
    }
}

/// `ssh-gen`'s answer before any parsing, for the line ssh runs before
/// every connection ([`ssh_gen::fast_path`]).
pub fn ssh_gen_fast_path(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    ssh_gen::fast_path(args)
}

/// `token`'s answer before any parsing, for scripts ([`token::fast_path`]).
pub fn token_fast_path(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    token::fast_path(args)
}

/// A usage error found after parsing: printed like clap's, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs `future` on a current-thread runtime: a CLI does one thing at a time,
/// and this starts in microseconds. Blocking work still running at the end
/// (a read of a terminal, say) is abandoned, not waited for.
///
/// SIGINT or SIGTERM drops the command where it stands, so what it holds is
/// released by its `Drop` (a login lock and its `.url` file), and exits as a
/// shell reports that signal (130, 143) after one line on stderr. A command
/// that handles the signal itself (the `tcp` listener stops and exits 0) wins
/// the race: it is polled first.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        tokio::select! {
            biased;
            result = future => result,
            signal = signals::stop_signal() => {
                eprintln!("cfaccess: interrupted by {}", signal.name());
                Ok(ExitCode::from(signal.exit_code()))
            }
        }
    });
    runtime.shutdown_background();
    result
}

/// The shared context for commands that talk to Access.
fn access(options: LoginOptions) -> anyhow::Result<Access> {
    access_with(edge_profile()?, options)
}

/// The edge profile named by `CFACCESS_EDGE`, if any.
fn edge_profile() -> anyhow::Result<Option<EdgeProfile>> {
    EdgeProfile::from_env().hint(format!("fix or unset {}", crate::access::edge_profile::ENV))
}

/// [`access`] with a profile read already.
fn access_with(profile: Option<EdgeProfile>, options: LoginOptions) -> anyhow::Result<Access> {
    let dir = ConfigDir::locate()?;
    Ok(Access::new(profile, dir, options))
}

/// The application URL from `--hostname`, which `command` needs.
fn hostname_url(hostname: Option<&str>, command: &str) -> anyhow::Result<AppUrl> {
    let Some(hostname) = hostname else {
        return Err(UsageError(format!(
            "give the application's hostname, like: cfaccess {command} --hostname ssh.example.com"
        ))
        .into());
    };
    AppUrl::parse(hostname).map_err(|e| UsageError(e.to_string()).into())
}

/// The application URL from a positional argument or `--app`.
fn app_url(positional: Option<&str>, app: Option<&str>) -> anyhow::Result<AppUrl> {
    let Some(raw) = positional.or(app) else {
        return Err(UsageError(
            "give the URL of the Access application, like: cfaccess login https://app.example.com"
                .into(),
        )
        .into());
    };
    AppUrl::parse(raw).map_err(|e| UsageError(e.to_string()).into())
}
