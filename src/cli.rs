//! The command line: every form the official client takes (`cfaccess access
//! login`, `cfaccess forward login`, `-app=…` with one dash) as well as the
//! short forms (`cfaccess login`).

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--version` and `cfaccess version` print after the name: the version,
/// the commit and the target, from build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CFACCESS_COMMIT"),
    ", ",
    env!("CFACCESS_TARGET"),
    ")"
);

/// A fast client for Cloudflare Access, a drop-in for `cloudflared access`.
///
/// It logs in to Access applications through the browser, keeps the tokens
/// where cloudflared keeps them (~/.cloudflared), and runs curl with them.
/// Point it at a local access-edge with CFACCESS_EDGE=<profile.json>.
#[derive(Debug, Parser)]
#[command(name = "cfaccess", version = VERSION, max_term_width = 100)]
#[command(after_help = "Environment:\n  \
    CFACCESS_DIR   config dir for tokens and keys (default: ~/.cloudflared; --config-dir wins)\n  \
    CFACCESS_EDGE  edge profile of a local access-edge (trust its CA, send its names to it)\n  \
    BROWSER        browser command for logins (default: xdg-open; none without a display)\n  \
    CFACCESS_LOGIN_WAIT  how long a browser login waits for approval (default: 4m)")]
pub struct Cli {
    /// How much to log on stderr
    #[arg(long, global = true, value_name = "LEVEL", alias = "loglevel")]
    pub log_level: Option<LogLevel>,

    /// Log in through the FedRAMP login service
    #[arg(long, global = true)]
    pub fedramp: bool,

    /// Config dir for tokens and keys, instead of CFACCESS_DIR or ~/.cloudflared (the ssh
    /// config that ssh-config prints passes it on, so a second profile needs no variable)
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Action(Action),

    /// The official client's form: `cfaccess access login <url>` and so on
    #[command(visible_alias = "forward", subcommand_required = true)]
    Access {
        #[command(subcommand)]
        action: Action,
    },

    /// Print the version, the commit and the target (as --version does)
    Version(VersionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only the version number
    #[arg(long, short)]
    pub short: bool,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Log in to an Access application and print its token
    ///
    /// Uses a cached token when the edge still accepts it, else the team's
    /// org token, else a browser login. The token is cached in the config dir.
    Login(LoginArgs),

    /// Print the cached token of an Access application
    ///
    /// Prints nothing and fails when there is no valid cached token; run
    /// `cfaccess login <url>` first.
    Token(TokenArgs),

    /// Run curl with the application's token in a Cf-Access-Token header
    ///
    /// Usage: cfaccess curl [--allow-request|-ar] [--qr|--no-qr] <url> [curl args...]. Logs in
    /// first if needed; with --allow-request, runs curl without a token
    /// instead of logging in.
    #[command(disable_help_flag = true)]
    Curl(CurlArgs),

    /// Carry a TCP stream (ssh, rdp, smb…) to an Access application
    #[command(visible_aliases = ["ssh", "rdp", "smb"], long_about = TCP_ABOUT)]
    Tcp(TcpArgs),

    /// Get a short-lived ssh certificate for a host from its Access app
    ///
    /// Makes (or reuses) a key pair in the config dir, logs in if needed, and
    /// has the app's SSH CA sign the public key. When the certificate on disk
    /// is for that key and valid for --margin seconds more, it exits at once
    /// without asking anyone: ssh runs it before every connection (see
    /// `cfaccess ssh-config --short-lived-cert`).
    SshGen(SshGenArgs),

    /// Show what you are logged in to: tokens and ssh certificates, and how long they last
    ///
    /// Reads the config dir only; asks nobody. With a URL, only that app (its token, its
    /// host's certificate, its team's sign-on), and the exit code says whether anything
    /// of it is valid: 0 when its token or certificate is, else 1. --json prints the
    /// same as one JSON object (its schema is in the README, "status --json").
    #[command(after_help = "Examples:\n  \
        cfaccess status\n  \
        cfaccess status https://app.example.com || cfaccess login https://app.example.com\n  \
        cfaccess status --json | jq '.apps[] | {app, email, expires}'")]
    Status(StatusArgs),

    /// Forget the token and ssh certificate of an app, or (with no URL) every one
    ///
    /// With a URL, the app's token and its host's ssh certificate go (from the ssh-agent too);
    /// the team's single sign-on (its org token) stays, so the next `login` to any app of the
    /// team comes back as the same person without a browser. To switch accounts, add --team:
    /// the team's org token and every token and certificate it issued go as well, and the next
    /// login asks who you are. With no URL, everything goes. Key pairs stay. Tokens are removed
    /// from this machine, not revoked.
    #[command(after_help = "Examples:\n  \
        cfaccess logout https://app.example.com          # this app only\n  \
        cfaccess logout --team https://app.example.com   # its whole team: switch accounts\n  \
        cfaccess logout                                  # everything")]
    Logout(LogoutArgs),

    /// Print (or --install) the ssh config that sends a host through cfaccess
    ///
    /// The snippet goes to stdout, so `cfaccess ssh-config --hostname h >> ~/.ssh/config`
    /// works; with --install it is written into ~/.ssh/config as a marked
    /// block that a second run replaces, before the first section that would
    /// win over it (ssh takes the first value it meets, so a `Host *` above
    /// it would). With --include it goes to a file of its own, included at
    /// the top.
    ///
    /// Example: cfaccess ssh-config --hostname ssh.example.com --short-lived-cert --install --dry-run
    SshConfig(SshConfigArgs),

    /// Check what stands between you and an Access application, with the fix for each
    ///
    /// One line per check: the ssh client, the config dir's owner and
    /// modes, CFACCESS_EDGE and proxy settings, DNS and TLS to the app and
    /// its team's auth domain, your clock against the edge's Date, the app
    /// token and ssh certificate for the host, and whether `ssh -G <host>`
    /// goes through cfaccess. Exits 1 when a check fails. Repairs nothing.
    ///
    /// Example: cfaccess doctor https://ssh.example.com --json
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// URL of the Access application (wins over --app)
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// URL of the Access application; also prints the bare token
    #[arg(long, value_name = "URL")]
    pub app: Option<String>,

    /// Do not print the token
    #[arg(short, long)]
    pub quiet: bool,

    /// Print only the token, with no newline
    #[arg(long)]
    pub no_verbose: bool,

    /// Ask the login page to close itself once the login is done
    #[arg(long)]
    pub auto_close: bool,

    /// Do not start a browser: print the login URL to open elsewhere
    #[arg(long)]
    pub no_browser: bool,

    #[command(flatten)]
    pub qr: QrArgs,
}

/// How the login URL is shown, on every command that may start a browser
/// login.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct QrArgs {
    /// Draw the login URL as a QR code for a phone (default: with no browser here, on a terminal)
    #[arg(long, conflicts_with = "no_qr")]
    pub qr: bool,

    /// Never draw the login URL as a QR code
    #[arg(long)]
    pub no_qr: bool,
}

impl QrArgs {
    pub fn choice(self) -> crate::ui::qr::QrChoice {
        use crate::ui::qr::QrChoice;
        match (self.qr, self.no_qr) {
            (true, _) => QrChoice::Always,
            (_, true) => QrChoice::Never,
            _ => QrChoice::Auto,
        }
    }

    /// Takes `--qr` and `--no-qr` from the front of `cfaccess curl`'s
    /// arguments (everything from the URL on is curl's).
    pub fn take_leading(args: &mut Vec<String>) -> QrArgs {
        let mut flags = QrArgs::default();
        while args.len() > 1 {
            match args[0].as_str() {
                "--qr" | "-qr" => flags.qr = true,
                "--no-qr" | "-no-qr" => flags.no_qr = true,
                _ => break,
            }
            args.remove(0);
        }
        if flags.qr && flags.no_qr {
            flags.qr = false;
        }
        flags
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// URL of the Access application (wins over --app)
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// URL of the Access application
    #[arg(long, value_name = "URL")]
    pub app: Option<String>,

    /// Print {"token","exp","email","aud"} as JSON instead of the bare token
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CurlArgs {
    /// [--allow-request|-ar] [--qr|--no-qr] <url> [curl args...]
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TcpArgs {
    /// Hostname (or URL) of the Access application
    #[arg(
        long,
        short = 'T',
        visible_alias = "tunnel-host",
        env = "TUNNEL_SERVICE_HOSTNAME",
        value_name = "HOST"
    )]
    pub hostname: Option<String>,

    /// Address to reach through a bastion app (Cf-Access-Jump-Destination)
    #[arg(long, env = "TUNNEL_SERVICE_DESTINATION", value_name = "HOST:PORT")]
    pub destination: Option<String>,

    /// Listen on this local address and carry each connection, instead of stdin/stdout
    #[arg(
        long,
        short = 'L',
        visible_alias = "listener",
        env = "TUNNEL_SERVICE_URL",
        value_name = "ADDR"
    )]
    pub url: Option<String>,

    /// The same as --url
    #[arg(value_name = "ADDR", conflicts_with = "url")]
    pub listen: Option<String>,

    /// Extra request header, 'Name: value' (repeatable)
    #[arg(long, short = 'H', value_name = "HEADER")]
    pub header: Vec<String>,

    /// Access service token client id (skips the browser login)
    #[arg(
        long,
        visible_alias = "id",
        env = "TUNNEL_SERVICE_TOKEN_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    pub service_token_id: Option<String>,

    /// Access service token client secret
    #[arg(
        long,
        visible_alias = "secret",
        env = "TUNNEL_SERVICE_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub service_token_secret: Option<String>,

    /// Write logs to this file (appended) instead of stderr
    #[arg(long, value_name = "FILE")]
    pub logfile: Option<std::path::PathBuf>,

    /// Write logs to cfaccess.log in this directory instead of stderr
    #[arg(long, value_name = "DIR", conflicts_with = "logfile")]
    pub log_directory: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// URL of an Access application: show only it, and fail when nothing of it is valid
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Print one JSON object (a stable schema, see the README) instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// URL of the Access application [default: every app and team]
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Also log out of the app's team: its org token, and every token and ssh certificate it
    /// issued (with no URL: every team, which is what a plain `logout` does too)
    #[arg(long)]
    pub team: bool,
}

#[derive(Debug, Args)]
pub struct SshGenArgs {
    /// Hostname of the Access application (a path is allowed; scheme and port are ignored)
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// Type of a new key pair [default: the existing pair's, else ecdsa]
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<crate::ssh::keys::KeyType>,

    /// Seconds of validity the certificate on disk must have left to be reused
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub margin: u64,

    /// Get a new certificate even if the one on disk is good
    #[arg(long)]
    pub force: bool,

    /// Also put the key and certificate into the running ssh-agent (SSH_AUTH_SOCK) for as
    /// long as the certificate is valid, replacing the host's previous one, so `ssh -A`
    /// forwards it; `cfaccess logout` takes it out
    #[arg(long)]
    pub agent: bool,

    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// Hostname of the Access application
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// Log in with short-lived certificates from cfaccess ssh-gen instead of your own keys
    #[arg(long)]
    pub short_lived_cert: bool,

    /// With --short-lived-cert: ssh-gen also puts the certificate into your ssh-agent
    /// (`ssh-gen --agent`), so `ssh -A` forwards it to the next hop
    #[arg(long, requires = "short_lived_cert")]
    pub agent: bool,

    /// Write the block into the ssh config file (replacing an earlier one for the host)
    #[arg(long)]
    pub install: bool,

    /// The ssh config file for --install
    #[arg(long, value_name = "FILE", requires = "install")]
    pub config: Option<std::path::PathBuf>,

    /// With --install: show the change as a unified diff, write nothing
    #[arg(long, requires = "install")]
    pub dry_run: bool,

    /// With --install: write the block to its own file (cfaccess/config beside
    /// the ssh config) and Include that at the top of the ssh config
    #[arg(long, requires = "install")]
    pub include: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// URL of the Access application to check (wins over --hostname)
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Hostname of the Access application to check
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// Print the checks as JSON (schema 1: {"schema","url","ok","checks":[{"id","status","summary","fix","data"}]})
    #[arg(long)]
    pub json: bool,

    /// The ssh config file for the `ssh -G` check (ssh -F) [default: ssh's own]
    #[arg(long, short = 'F', value_name = "FILE")]
    pub ssh_config: Option<std::path::PathBuf>,
}

const TCP_ABOUT: &str = "\
Carry a TCP stream (ssh, rdp, smb…) to an Access application

By default stdin and stdout are the stream, for an ssh ProxyCommand:

    ProxyCommand cfaccess access ssh --hostname %h

With --url (or an address argument) it listens there instead and carries
every accepted connection, until interrupted:

    cfaccess access tcp --hostname rdp.example.com --url 127.0.0.1:3389

It logs in when Access asks for it (a cached token, the org token, or the
browser); with a service token it never does.";

/// Log levels, with the official client's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// Long flags the official client's Go flag parser takes with one dash too.
const LONG_FLAGS: &[&str] = &[
    "app",
    "quiet",
    "no-verbose",
    "auto-close",
    "no-browser",
    "qr",
    "no-qr",
    "fedramp",
    "log-level",
    "loglevel",
    "hostname",
    "tunnel-host",
    "destination",
    "url",
    "listener",
    "header",
    "service-token-id",
    "id",
    "service-token-secret",
    "secret",
    "logfile",
    "log-directory",
    "short-lived-cert",
    "key-type",
    "margin",
    "force",
    "agent",
    "team",
    "config-dir",
    "json",
    "install",
    "dry-run",
    "help",
    "version",
    "short",
];

/// Rewrites Go-style single-dash long flags (`-app=x`, `-hostname h`) to
/// clap's `--app=x`. Arguments after `curl` are curl's and stay as they are,
/// as does everything after `--`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rewriting = true;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || !rewriting {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" || text == "curl" {
            rewriting = false;
            out.push(arg);
            continue;
        }
        let name = text
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .map(|rest| rest.split('=').next().unwrap_or(rest));
        match name {
            Some(name) if name.len() > 1 && LONG_FLAGS.contains(&name) => {
                out.push(OsString::from(format!("-{text}")));
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&["cfaccess", "access", "token", "-app=http://x"]),
            ["cfaccess", "access", "token", "--app=http://x"]
        );
        assert_eq!(
            norm(&["cfaccess", "access", "ssh", "-hostname", "h", "-id", "i"]),
            ["cfaccess", "access", "ssh", "--hostname", "h", "--id", "i"]
        );
        assert_eq!(
            norm(&["cfaccess", "login", "-q", "u"]),
            ["cfaccess", "login", "-q", "u"]
        );
        assert_eq!(
            norm(&["cfaccess", "x", "-unknown"]),
            ["cfaccess", "x", "-unknown"]
        );
    }

    #[test]
    fn curl_arguments_are_left_alone() {
        assert_eq!(
            norm(&["cfaccess", "curl", "-ar", "https://x", "-url", "-H", "a: b"]),
            ["cfaccess", "curl", "-ar", "https://x", "-url", "-H", "a: b"]
        );
    }

    #[test]
    fn all_official_forms_parse() {
        for args in [
            &["cfaccess", "login", "https://x"][..],
            &["cfaccess", "access", "login", "https://x"],
            &["cfaccess", "forward", "login", "--app", "https://x"],
            &[
                "cfaccess",
                "access",
                "--fedramp",
                "login",
                "-q",
                "https://x",
            ],
            &["cfaccess", "--log-level", "debug", "token", "https://x"],
            &["cfaccess", "access", "token", "--app=https://x"],
            &["cfaccess", "access", "curl", "https://x", "-v", "--help"],
            &["cfaccess", "access", "ssh", "--hostname", "h"],
            &[
                "cfaccess",
                "forward",
                "tcp",
                "-T",
                "h",
                "-L",
                "127.0.0.1:2222",
            ],
            &[
                "cfaccess",
                "access",
                "rdp",
                "--tunnel-host",
                "h",
                "--url",
                "localhost:3389",
            ],
            &[
                "cfaccess",
                "access",
                "smb",
                "-hostname=h",
                "-H",
                "a: b",
                "-H",
                "c: d",
            ],
            &[
                "cfaccess",
                "ssh",
                "--hostname",
                "h",
                "--id",
                "i",
                "--secret",
                "s",
                "--loglevel",
                "debug",
            ],
            &[
                "cfaccess",
                "ssh",
                "--hostname",
                "h",
                "--destination",
                "10.0.0.1:22",
                "--logfile",
                "/tmp/x",
            ],
            &["cfaccess", "tcp", "--hostname", "h", "127.0.0.1:2222"],
            &["cfaccess", "login", "--qr", "https://x"],
            &["cfaccess", "access", "ssh", "--hostname", "h", "--no-qr"],
            &["cfaccess", "ssh-gen", "--hostname", "h", "-qr"],
            &["cfaccess", "access", "ssh-gen", "--hostname", "h"],
            &[
                "cfaccess",
                "ssh-gen",
                "-hostname",
                "h",
                "--key-type",
                "ed25519",
            ],
            &[
                "cfaccess",
                "access",
                "ssh-config",
                "--hostname",
                "h",
                "--short-lived-cert",
            ],
            &[
                "cfaccess",
                "ssh-config",
                "--hostname",
                "h",
                "--install",
                "--config",
                "/tmp/c",
                "--dry-run",
            ],
            // issue 12: the agent, teams, profiles, JSON
            &["cfaccess", "ssh-gen", "--hostname", "h", "--agent"],
            &[
                "cfaccess",
                "access",
                "ssh-config",
                "--hostname",
                "h",
                "--short-lived-cert",
                "--agent",
            ],
            &["cfaccess", "logout", "--team", "https://x"],
            &["cfaccess", "status", "--json", "https://x"],
            &["cfaccess", "token", "--json", "--app", "https://x"],
            &[
                "cfaccess",
                "--config-dir",
                "/p",
                "access",
                "ssh",
                "--hostname",
                "h",
            ],
            &[
                "cfaccess",
                "access",
                "ssh-gen",
                "--hostname",
                "h",
                "--config-dir",
                "/p",
            ],
        ] {
            let parsed = Cli::try_parse_from(normalize_args(args.iter().map(OsString::from)));
            assert!(parsed.is_ok(), "{args:?}: {}", parsed.unwrap_err());
        }
    }

    #[test]
    fn agent_in_the_printed_config_needs_short_lived_certificates() {
        let parsed = Cli::try_parse_from(["cfaccess", "ssh-config", "--hostname", "h", "--agent"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn curl_takes_the_qr_flags_before_its_url_only() {
        use crate::ui::qr::QrChoice;
        let mut args: Vec<String> = ["--no-qr", "https://x", "--qr"].map(String::from).into();
        assert_eq!(QrArgs::take_leading(&mut args).choice(), QrChoice::Never);
        assert_eq!(args, ["https://x", "--qr"]);
        let mut args: Vec<String> = ["--qr"].map(String::from).into();
        assert_eq!(QrArgs::take_leading(&mut args).choice(), QrChoice::Auto);
        assert_eq!(args, ["--qr"], "a lone argument is the URL");
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
