//! What each command does: turn parsed arguments into library calls and
//! decide what to print. Results go to stdout, everything else to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use access_edge::browse::{self, Action, BrowseError, BrowseOptions};
use access_edge::control::{self, Command as ControlCommand, FaultCommand as ControlFault};
use access_edge::ssh_ca;
use access_edge::{CaKeyType, Config, Edge, EdgeError, EdgeOptions, Timeouts};
use anyhow::Context;

use crate::cli::{
    CaCommand, CaTarget, Cli, Command, FaultCommand, KeyType, ServeArgs, SshLogsCommand,
};

/// An error in what the operator gave us: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

pub fn is_usage_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<EdgeError>()
            .is_some_and(EdgeError::is_usage)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Browse {
            profile,
            approve_as,
            deny,
            url,
        }) => {
            let action = match (approve_as, deny) {
                (Some(email), _) => Action::Approve(email),
                (None, true) => Action::Deny,
                (None, false) => Action::Look,
            };
            browse(BrowseOptions {
                profile,
                action,
                url,
            })
        }
        Some(Command::Revoke { email, state_dir }) => {
            if !access_edge::is_valid_email(&email) {
                return Err(UsageError(format!("{email:?} is not an email address")).into());
            }
            control_command(&state_dir, ControlCommand::Revoke { email })
        }
        Some(Command::RotateKeys { state_dir }) => {
            control_command(&state_dir, ControlCommand::RotateKeys)
        }
        Some(Command::ExpirePreviousKey { state_dir }) => {
            control_command(&state_dir, ControlCommand::ExpirePreviousKey)
        }
        Some(Command::Stats { state_dir }) => control_command(&state_dir, ControlCommand::Stats),
        Some(Command::Ca(CaCommand::Generate { target, key_type })) => ca_generate(
            &target,
            key_type.map(|k| match k {
                KeyType::Ecdsa => CaKeyType::Ecdsa,
                KeyType::Ed25519 => CaKeyType::Ed25519,
            }),
        ),
        Some(Command::Ca(CaCommand::Show { target })) => ca_show(&target),
        Some(Command::Fault(fault)) => {
            let (state_dir, command) = fault_command(fault);
            control_command(&state_dir, ControlCommand::Fault(command))
        }
        Some(Command::SshLogs(command)) => ssh_logs(command),
    }
}

/// `access-edge ssh-logs …`.
fn ssh_logs(command: SshLogsCommand) -> anyhow::Result<ExitCode> {
    use access_edge::ssh::logs::{self, Capture, LogSecret, index, replay};
    match command {
        SshLogsCommand::Keygen { out } => {
            let (public, pub_path) = logs::generate_key_pair(&out)?;
            eprintln!(
                "access-edge: wrote the private key to {} (keep it: it opens every log) and the public key to {}; put the public key below in the app's ssh_log_public_key",
                out.display(),
                pub_path.display()
            );
            print_line(&public.to_base64())?;
        }
        SshLogsCommand::List { at, json } => {
            let dir = logs::logs_dir(&at.state_dir);
            let listing = index::list(&dir)?;
            let mut out = std::io::stdout().lock();
            if json {
                for entry in &listing.entries {
                    writeln!(out, "{}", serde_json::to_string(entry)?)?;
                }
                for id in &listing.unfinished {
                    let line = serde_json::json!({ "id": id, "unfinished": true,
                        "capture": logs::part_name(id) });
                    writeln!(out, "{line}")?;
                }
            } else {
                write!(out, "{}", list_table(&listing))?;
            }
            out.flush()?;
            if listing.bad_lines > 0 {
                eprintln!(
                    "access-edge: warning: {} line(s) of {} are not index entries and were skipped",
                    listing.bad_lines,
                    dir.join(index::INDEX_FILE).display()
                );
            }
        }
        SshLogsCommand::Replay {
            id,
            key,
            at,
            asciicast,
            speed,
            no_wait,
        } => {
            if !(speed > 0.0 && speed.is_finite()) {
                return Err(
                    UsageError(format!("--speed {speed}: must be a number above 0")).into(),
                );
            }
            let secret = LogSecret::read(&key)?;
            let path = index::find_capture(&logs::logs_dir(&at.state_dir), &id)?;
            let capture = Capture::open(&path, &secret)?;
            let mut out = std::io::stdout().lock();
            if asciicast {
                replay::asciicast(&capture, &mut out)?;
            } else {
                let pace = replay::Pace {
                    speed,
                    no_wait,
                    ..replay::Pace::default()
                };
                replay::play(&capture, &mut out, pace)?;
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The sessions as a table, the newest last, then the unfinished ones.
fn list_table(listing: &access_edge::ssh::logs::index::Listing) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "STARTED".to_owned(),
        "ENDED".to_owned(),
        "EMAIL".to_owned(),
        "APP".to_owned(),
        "PROGRAM".to_owned(),
        "EXIT".to_owned(),
        "CAPTURE".to_owned(),
    ]];
    for e in &listing.entries {
        let exit = match (&e.exit_status, &e.exit_signal) {
            (Some(status), _) => status.to_string(),
            (None, Some(signal)) => format!("SIG{signal}"),
            (None, None) => "-".to_owned(),
        };
        rows.push([
            e.id.clone(),
            e.started_at.clone(),
            e.ended_at.clone(),
            e.email.clone(),
            e.app.clone(),
            e.program.clone(),
            exit,
            e.capture.clone(),
        ]);
    }
    for id in &listing.unfinished {
        rows.push([
            id.clone(),
            "-".to_owned(),
            "unfinished".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            access_edge::ssh::logs::part_name(id),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut table = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        table.push_str(line.join("  ").trim_end());
        table.push('\n');
    }
    table
}

/// A value's name on the command line, which is the name the edge knows
/// (clap's kebab-case).
fn value_name<V: clap::ValueEnum>(value: &V) -> String {
    value
        .to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// `access-edge fault …` as a control command, and the edge it is for.
fn fault_command(fault: FaultCommand) -> (PathBuf, ControlFault) {
    use crate::cli::{CertSignKind, LoginServiceMode, OriginMode};
    use access_edge::control::LoginServiceMode as Mode;
    match fault {
        FaultCommand::LoginService {
            mode,
            count,
            status,
            at,
        } => (
            at.state_dir,
            ControlFault::LoginService {
                mode: match mode {
                    LoginServiceMode::Fail => Mode::Fail,
                    LoginServiceMode::Stall => Mode::Stall,
                    LoginServiceMode::Ok => Mode::Ok,
                },
                count,
                status: Some(status),
            },
        ),
        FaultCommand::CutAfter { bytes, at } => {
            (at.state_dir, ControlFault::CutAfter { bytes: bytes.0 })
        }
        FaultCommand::Origin { mode, at } => (
            at.state_dir,
            ControlFault::Origin {
                refuse: mode == OriginMode::Refuse,
            },
        ),
        FaultCommand::HandshakeDelay { delay, at } => (
            at.state_dir,
            ControlFault::HandshakeDelay {
                millis: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
        ),
        FaultCommand::CertSign {
            kind,
            status,
            message,
            at,
        } => (
            at.state_dir,
            ControlFault::CertSign {
                kind: value_name(&kind),
                status: (kind == CertSignKind::Error).then_some(status),
                message: (kind == CertSignKind::Error).then_some(message),
            },
        ),
        FaultCommand::DateSkew { skew, at } => {
            (at.state_dir, ControlFault::DateSkew { seconds: skew })
        }
        FaultCommand::Metadata { kind, at } => (
            at.state_dir,
            ControlFault::Metadata {
                kind: value_name(&kind),
            },
        ),
        FaultCommand::Api { mode, status, at } => (
            at.state_dir,
            ControlFault::Api {
                kind: value_name(&mode),
                status,
            },
        ),
        FaultCommand::List { at } => (at.state_dir, ControlFault::List),
        FaultCommand::Clear { at } => (at.state_dir, ControlFault::Clear),
    }
}

/// Serves until SIGINT or SIGTERM.
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_level);
    let (mut config, config_source) =
        choose_config(args.config.as_deref(), args.state_dir.as_deref())?;
    if let Some(origin) = &args.origin {
        set_origin(&mut config, origin, &config_source)?;
    }
    if let Some(validity) = args.cert_validity {
        // Certificates count whole seconds.
        if validity.as_secs() == 0 {
            return Err(UsageError(
                "--cert-validity: must be at least 1s (real certificates last minutes, like 3m)"
                    .into(),
            )
            .into());
        }
        config.ssh_cert_validity = validity;
    }
    let opts = EdgeOptions {
        config: config.clone(),
        state_dir: args.state_dir.clone(),
        listen: args.listen,
        auto_approve: args.auto_approve.clone(),
        poll_hold: args.poll_hold,
        edge_binary: None,
        timeouts: Timeouts {
            header: args.header_timeout,
            idle: args.idle_timeout,
            ..Timeouts::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        // Before the banner: a script that reads it may signal at once.
        let stop = stop_signals()?;
        let edge = Edge::start(opts).await?;
        print_banner(&edge, &config, &config_source, &args);
        stop.await;
        tracing::info!("stopping");
        edge.shutdown();
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

/// The config to serve, and where it came from: `--config`, else the copy
/// kept in the state dir, else the demo.
fn choose_config(
    config: Option<&Path>,
    state_dir: Option<&Path>,
) -> anyhow::Result<(Config, String)> {
    if let Some(path) = config {
        let config = Config::load(path).map_err(EdgeError::from)?;
        return Ok((config, path.display().to_string()));
    }
    if let Some(dir) = state_dir {
        let kept = dir.join("config.toml");
        if kept.is_file() {
            let config = Config::load(&kept).map_err(EdgeError::from)?;
            return Ok((
                config,
                format!("{} (kept from the last run)", kept.display()),
            ));
        }
    }
    Ok((Config::demo(), "the built-in demo".into()))
}

/// `--origin`: the origin of the served config's only app.
fn set_origin(config: &mut Config, origin: &str, source: &str) -> anyhow::Result<()> {
    let [app] = config.apps.as_mut_slice() else {
        return Err(UsageError(format!(
            "--origin sets the origin of a config's only app, and {source} has {} apps: set `origin` in each [[apps]] entry instead",
            config.apps.len()
        ))
        .into());
    };
    app.origin = Some(origin.trim().to_owned());
    if config.validate().is_err() {
        return Err(UsageError(format!(
            "--origin: {origin:?} is not HOST:PORT (like 127.0.0.1:2222)"
        ))
        .into());
    }
    Ok(())
}

/// Logs on stderr: the edge's own messages at `level`, its dependencies'
/// (hyper, h2, rustls) only from warn up, so `debug` shows requests rather
/// than HTTP/2 frames.
fn init_logging(level: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("access_edge", level)
        .with_target("cfaccess", level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    tracing_subscriber::registry().with(layer).init();
}

/// A future that ends at the first SIGINT or SIGTERM. The handlers are in
/// place when this returns, so the edge stops cleanly (and removes its
/// temporary state dir) whenever a signal comes.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// What the edge serves and how to use it, on stdout.
fn print_banner(edge: &Edge, config: &Config, config_source: &str, args: &ServeArgs) {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        out.push_str(&format!("  {label:<14} {value}\n"));
    };
    line("auth domain", edge.auth_domain());
    line(
        "login service",
        &format!(
            "{} (also {})",
            edge.login_service(),
            if edge.login_service().contains(".fed.") {
                "login.cloudflareaccess.org"
            } else {
                "login.fed.cloudflareaccess.org"
            }
        ),
    );
    for app in &config.apps {
        let aud = edge.app_aud(&app.hostname).unwrap_or_default();
        line(
            "app",
            &format!("https://{}", app.hostname.trim_end_matches('.')),
        );
        line("  aud", &aud);
        line(
            "  allow",
            &if app.allow.is_empty() {
                "nobody".to_owned()
            } else {
                app.allow.join(", ")
            },
        );
        if !app.service_tokens.is_empty() {
            line("  tokens", &app.service_tokens.join(", "));
        }
        if let Some(origin) = &app.origin {
            line("  origin", origin);
        }
        if !app.destinations.is_empty() {
            line("  destinations", &app.destinations.join(", "));
        }
        line("  ssh CA", &ca_summary(edge, config, &app.hostname));
    }
    line(
        "ssh certs",
        &format!(
            "valid {} (cert_sign)",
            humantime::format_duration(config.ssh_cert_validity)
        ),
    );
    if !config.identities.is_empty() {
        line("identities", &config.identities.join(", "));
    }
    if let Some(email) = &args.auto_approve {
        line("auto-approve", email);
    }
    line("config", config_source);
    line(
        "state dir",
        &format!(
            "{}{}",
            edge.state_dir().display(),
            if args.state_dir.is_none() {
                " (temporary, removed on exit)"
            } else {
                ""
            }
        ),
    );
    line("profile", &edge.profile_path().display().to_string());
    line("browser", &edge.browser_path().display().to_string());
    let api_base = "https://api.cloudflare.com/client/v4";
    line(
        "API",
        &format!("{api_base} (Cloudflare API: apps and SSH CAs)"),
    );
    line("  account id", edge.account_id());
    let token = edge.api_token();
    line(
        "  token",
        &match &token {
            Some(token) => format!("{token} (may edit)"),
            None => "the config's api_tokens / api_keys".to_owned(),
        },
    );
    let first_app = config
        .apps
        .first()
        .map(|a| a.hostname.replace("*.", "www."))
        .unwrap_or_default();
    let ssh = match config.apps.first().and_then(|a| a.origin.as_deref()) {
        Some(origin) => format!(
            "  ssh -o ProxyCommand='cfaccess access ssh --hostname %h' {first_app}   \
             # needs an sshd at {origin} that trusts the app's SSH CA\n"
        ),
        None => String::new(),
    };
    // Without --auto-approve nobody answers the login page: the browser
    // helper approves it as the first identity, so the block works as printed.
    let browser = match (&args.auto_approve, config.identities.first()) {
        (None, Some(email)) => access_edge::shell_word(Path::new(&format!(
            "{} --as {email}",
            edge.browser_path().display()
        ))),
        _ => access_edge::shell_word(&edge.browser_path()),
    };
    // The variables Cloudflare's own tools read; with the edge profile, a
    // client reaches this edge's API under the real name.
    let api = format!(
        "  export CLOUDFLARE_ACCOUNT_ID={}\n{}",
        edge.account_id(),
        match &token {
            Some(token) => format!("  export CLOUDFLARE_API_TOKEN={token}\n"),
            None => String::new(),
        }
    );
    let banner = format!(
        "access-edge is serving on {addr}\n{out}\nPoint a client at it:\n  export CFACCESS_EDGE={profile}\n  export BROWSER={browser}\n{api}  cfaccess login https://{first_app}\n{ssh}",
        addr = edge.addr(),
        profile = access_edge::shell_word(&edge.profile_path()),
    );
    // stdout may be closed (a backgrounded edge): that is no reason to stop.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
}

/// The banner's word on an app's SSH CA: its fingerprint, or how to make one.
fn ca_summary(edge: &Edge, config: &Config, hostname: &str) -> String {
    let hostname = ssh_ca::app_hostname(config, hostname).unwrap_or_default();
    match ssh_ca::load(edge.state_dir(), &hostname) {
        Ok(Some(ca)) => format!("{} {}", ca.key_type().description(), ca.fingerprint()),
        Ok(None) => format!(
            "none (access-edge ca generate --app {} --state-dir {})",
            access_edge::shell_word(Path::new(&hostname)),
            access_edge::shell_word(edge.state_dir())
        ),
        Err(e) => format!("unusable: {e}"),
    }
}

/// The app `target` names (default: the config's first), its configured
/// hostname, and the state dir.
fn ca_target(target: &CaTarget) -> anyhow::Result<(String, PathBuf)> {
    let (config, source) = choose_config(target.config.as_deref(), Some(&target.state_dir))?;
    let wanted = match &target.app {
        Some(app) => app.clone(),
        None => config
            .apps
            .first()
            .map(|a| a.hostname.clone())
            .unwrap_or_default(),
    };
    let Some(hostname) = ssh_ca::app_hostname(&config, &wanted) else {
        let apps: Vec<&str> = config.apps.iter().map(|a| a.hostname.as_str()).collect();
        return Err(UsageError(format!(
            "no Access application {wanted} in {source} (its apps: {}); name one with --app, or give the edge's --config",
            apps.join(", ")
        ))
        .into());
    };
    Ok((hostname, target.state_dir.clone()))
}

/// `access-edge ca generate`: the CA's line on stdout, what happened on
/// stderr.
fn ca_generate(target: &CaTarget, key_type: Option<CaKeyType>) -> anyhow::Result<ExitCode> {
    let (app, state_dir) = ca_target(target)?;
    let generated = ssh_ca::generate(&state_dir, &app, key_type)?;
    let ca = &generated.ca;
    print_line(&ca.public_line())?;
    if generated.created {
        eprintln!(
            "access-edge: made a new {} SSH CA for {app} ({}); put the line above in the file named by sshd's TrustedUserCAKeys",
            ca.key_type().description(),
            ca.key_path().display()
        );
    } else {
        eprintln!(
            "access-edge: {app} already has this {} SSH CA ({})",
            ca.key_type().description(),
            ca.key_path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `access-edge ca show`: the existing CA's line on stdout.
fn ca_show(target: &CaTarget) -> anyhow::Result<ExitCode> {
    let (app, state_dir) = ca_target(target)?;
    match ssh_ca::load(&state_dir, &app)? {
        Some(ca) => {
            print_line(&ca.public_line())?;
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "{app} has no SSH CA in {} yet: make one with `access-edge ca generate --app {} --state-dir {}`",
            state_dir.display(),
            access_edge::shell_word(Path::new(&app)),
            access_edge::shell_word(&state_dir)
        ),
    }
}

fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// `access-edge browse`: one line on stderr, nothing on stdout.
fn browse(opts: BrowseOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(browse::browse(&opts)) {
        Ok(outcome) => {
            eprintln!("access-edge browse: {}", outcome.summary);
            Ok(if outcome.success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e @ BrowseError::BadUrl(_)) => Err(UsageError(e.to_string()).into()),
        Err(e) => Err(anyhow::Error::new(e).context("browse")),
    }
}

/// Sends one command to the edge running with `state_dir` and prints its
/// answer.
fn control_command(state_dir: &Path, command: ControlCommand) -> anyhow::Result<ExitCode> {
    let is_stats = command == ControlCommand::Stats;
    let reply = control::send(state_dir, &command)?;
    if !reply.ok {
        anyhow::bail!("{}", reply.message);
    }
    let mut stdout = std::io::stdout().lock();
    if is_stats {
        for (endpoint, count) in reply.counters.unwrap_or_default() {
            writeln!(stdout, "{:<16} {count}", endpoint.name())?;
        }
        writeln!(
            stdout,
            "{:<16} {}",
            "total",
            reply.total.unwrap_or_default()
        )?;
        let carried = reply.carried.unwrap_or_default();
        for (name, value) in [
            ("carried", carried.total),
            ("carried_active", carried.active),
            ("bytes_to_origin", carried.bytes_to_origin),
            ("bytes_to_client", carried.bytes_to_client),
        ] {
            writeln!(stdout, "{name:<16} {value}")?;
        }
    } else {
        writeln!(stdout, "{}", reply.message)?;
    }
    Ok(ExitCode::SUCCESS)
}
