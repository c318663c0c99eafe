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

/// The official client's log variables, read by the global log flags.
pub const LOG_LEVEL_ENV: &str = "TUNNEL_LOGLEVEL";
pub const LOG_FILE_ENV: &str = "TUNNEL_LOGFILE";
pub const LOG_DIRECTORY_ENV: &str = "TUNNEL_LOGDIRECTORY";
pub const LOG_OUTPUT_ENV: &str = "TUNNEL_LOG_OUTPUT";
/// All of them: a command line that skips the parser must still see them.
pub const LOG_ENVS: [&str; 4] = [
    LOG_LEVEL_ENV,
    LOG_FILE_ENV,
    LOG_DIRECTORY_ENV,
    LOG_OUTPUT_ENV,
];

/// A fast client for Cloudflare Access, a drop-in for `cloudflared access`.
///
/// It logs in to Access applications through the browser, keeps the tokens
/// where cloudflared keeps them (~/.cloudflared), and runs curl with them.
/// Point it at a local access-edge with CFACCESS_EDGE=<profile.json>.
#[derive(Debug, Parser)]
#[command(name = "cfaccess", version = VERSION, max_term_width = 100)]
// `-v` as the official client (urfave/cli) has it; `-V` too, as clap has it
#[command(disable_version_flag = true, disable_help_subcommand = true)]
#[command(after_help = "Examples:\n  \
    cfaccess login https://app.example.com\n  \
    cfaccess curl https://app.example.com/api -sS\n  \
    cfaccess ssh-config --hostname ssh.example.com --short-lived-cert --install\n\n\
Environment:\n  \
    CFACCESS_DIR   config dir for tokens and keys (default: ~/.cloudflared; --config-dir wins)\n  \
    CFACCESS_EDGE  edge profile of a local access-edge (trust its CA, send its names to it)\n  \
    BROWSER        browser command for logins (default: xdg-open; none without a display)\n  \
    CFACCESS_LOGIN_WAIT  how long a browser login waits for approval (default: 4m)\n  \
    NO_COLOR       no colour in the logs, even on a terminal")]
pub struct Cli {
    /// How much to log [default: warn]
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        alias = "loglevel",
        env = LOG_LEVEL_ENV,
        ignore_case = true,
        help_heading = LOGS
    )]
    pub log_level: Option<LogLevel>,

    /// Also write the logs to this file (appended, JSON lines as cloudflared writes them)
    #[arg(long, global = true, value_name = "FILE", env = LOG_FILE_ENV, help_heading = LOGS)]
    pub logfile: Option<std::path::PathBuf>,

    /// Also write the logs to cfaccess.log in this directory (created if missing; rotated at 1
    /// MiB, 5 old files kept)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = LOG_DIRECTORY_ENV,
        help_heading = LOGS
    )]
    pub log_directory: Option<std::path::PathBuf>,

    /// Format of the logs on stderr
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        env = LOG_OUTPUT_ENV,
        default_value = "default",
        help_heading = LOGS
    )]
    pub output: LogOutput,

    /// Earlier releases took --fedramp before any command; the official form
    /// is `cfaccess access --fedramp <command>`, or --fedramp after it.
    #[arg(long, hide = true)]
    pub fedramp: bool,

    /// Config dir for tokens and keys, instead of CFACCESS_DIR or ~/.cloudflared (the ssh
    /// config that ssh-config prints passes it on, so a second profile needs no variable)
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<std::path::PathBuf>,

    /// Print the version
    #[arg(short = 'v', short_alias = 'V', long, action = clap::ArgAction::Version)]
    pub version: (),

    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the log flags in every command's help.
const LOGS: &str = "Log options";

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Action(Action),

    /// The official client's form: `cfaccess access login <url>` and so on
    #[command(visible_alias = "forward", subcommand_required = true)]
    #[command(after_help = "Examples:\n  \
        cfaccess access login https://app.example.com\n  \
        cfaccess access --fedramp ssh --hostname ssh.example.com")]
    Access {
        /// Log in through the FedRAMP login service (login, curl, tcp/ssh, ssh-gen)
        #[arg(long)]
        fedramp: bool,

        #[command(subcommand)]
        action: Action,
    },

    /// Print the version, the commit and the target (as --version does)
    #[command(after_help = "Examples:\n  cfaccess version\n  cfaccess version --short")]
    Version(VersionArgs),

    /// Print the completion script for a shell, generated from this command line
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),

    /// Set up the machine behind Access: sshd trusts the app's SSH CA (`server setup`, `server check`)
    #[command(subcommand_required = true, long_about = SERVER_ABOUT)]
    #[command(after_help = SERVER_EXAMPLES)]
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },

    /// Write a man page per command into a directory (for packagers)
    #[command(hide = true, after_help = "Examples:\n  cfaccess man target/man")]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only the version number
    #[arg(long, short)]
    pub short: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells `clap_complete` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

const COMPLETIONS_HELP: &str = "\
Examples:
  cfaccess completions bash > ~/.local/share/bash-completion/completions/cfaccess
  cfaccess completions zsh > ~/.zfunc/_cfaccess    # with fpath+=~/.zfunc before compinit
  cfaccess completions fish > ~/.config/fish/completions/cfaccess.fish
  cfaccess completions powershell >> $PROFILE";

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory for the pages (created if missing): cfaccess.1, cfaccess-login.1, …
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The command (and subcommand) to explain
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Log in to an Access application and print its token
    ///
    /// Uses a cached token when the edge still accepts it, else the team's
    /// org token, else a browser login. The token is cached in the config dir.
    #[command(after_help = "Examples:\n  \
        cfaccess login https://app.example.com\n  \
        cfaccess login --quiet --no-browser https://app.example.com")]
    Login(LoginArgs),

    /// Print the cached token of an Access application
    ///
    /// Prints nothing and fails when there is no valid cached token; run
    /// `cfaccess login <url>` first.
    #[command(after_help = "Examples:\n  \
        curl -H \"cf-access-token: $(cfaccess token https://app.example.com)\" https://app.example.com/")]
    Token(TokenArgs),

    /// Run curl with the application's token in a Cf-Access-Token header
    ///
    /// Usage: cfaccess curl [--allow-request|-ar] [--fedramp] [--qr|--no-qr] <url> [curl args...]. Logs in
    /// first if needed; with --allow-request, runs curl without a token
    /// instead of logging in. `cfaccess curl --help` shows curl's own help.
    /// With CFACCESS_EDGE set, curl is given the edge's CA (--cacert) and
    /// its addresses (--connect-to) too.
    #[command(disable_help_flag = true, after_help = CURL_HELP)]
    Curl(CurlArgs),

    /// Carry a TCP stream (ssh, rdp, smb…) to an Access application
    #[command(visible_aliases = ["ssh", "rdp", "smb"], long_about = TCP_ABOUT)]
    #[command(after_help = "Examples:\n  \
        ssh -o ProxyCommand='cfaccess access ssh --hostname %h' ssh.example.com\n  \
        cfaccess access tcp --hostname rdp.example.com --url 127.0.0.1:3389")]
    Tcp(TcpArgs),

    /// Get a short-lived ssh certificate for a host from its Access app
    ///
    /// Makes (or reuses) a key pair in the config dir, logs in if needed, and
    /// has the app's SSH CA sign the public key. When the certificate on disk
    /// is for that key and valid for --margin seconds more, it exits at once
    /// without asking anyone: ssh runs it before every connection (see
    /// `cfaccess ssh-config --short-lived-cert`).
    #[command(after_help = "Examples:\n  \
        cfaccess ssh-gen --hostname ssh.example.com\n  \
        cfaccess ssh-gen --hostname ssh.example.com --key-type ed25519 --force")]
    SshGen(SshGenArgs),

    /// Show what you are logged in to: tokens and ssh certificates, and how long they last
    ///
    /// Reads the config dir only; asks nobody. With a URL, only that app (its token, its
    /// host's certificate, its team's sign-on), and the exit code says whether anything
    /// of it is valid: 0 when its token or certificate is, else 1. --json prints the
    /// same as one JSON object (its schema: docs/reference.md).
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
    #[command(after_help = "Examples:\n  \
        cfaccess ssh-config --hostname ssh.example.com --short-lived-cert\n  \
        cfaccess ssh-config --hostname ssh.example.com --short-lived-cert --install --dry-run\n  \
        cfaccess ssh-config --hostname ssh.example.com --short-lived-cert --agent --install --include")]
    SshConfig(SshConfigArgs),

    /// Check what stands between you and an Access application, with the fix for each
    ///
    /// One line per check: the ssh client, the config dir's owner and
    /// modes, CFACCESS_EDGE and proxy settings, DNS and TLS to the app and
    /// its team's auth domain, your clock against the edge's Date, the app
    /// token and ssh certificate for the host, and whether `ssh -G <host>`
    /// goes through cfaccess. Exits 1 when a check fails. Repairs nothing.
    #[command(after_help = "Examples:\n  \
        cfaccess doctor https://ssh.example.com\n  \
        cfaccess doctor --hostname ssh.example.com --json")]
    Doctor(DoctorArgs),

    /// Print this message or the help of the given command
    #[command(
        visible_alias = "h",
        after_help = "Examples:\n  cfaccess help ssh-gen\n  cfaccess access help login"
    )]
    Help(HelpArgs),
}

const CURL_HELP: &str = "\
Examples:
  cfaccess curl https://app.example.com/api/items -sS
  cfaccess curl -ar https://app.example.com/ -I
  cfaccess curl --fedramp https://app.example.com/
  cfaccess curl --help        (curl's own help)";

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub fedramp: Fedramp,

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
    #[command(flatten)]
    pub fedramp: Fedramp,

    /// The official client's testing override (host, host:port or sni:port:host);
    /// accepted and ignored here: point cfaccess at another edge with CFACCESS_EDGE
    #[arg(long, hide = true, value_name = "TARGET")]
    pub connect_to: Option<String>,

    /// The official client's debugging aid (log up to N stream payloads);
    /// accepted and ignored here: payloads are never logged
    #[arg(long, hide = true, value_name = "N")]
    pub debug_stream: Option<u64>,

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

    #[command(flatten)]
    pub qr: QrArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// URL of an Access application: show only it, and fail when nothing of it is valid
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Print one JSON object (a stable schema: docs/reference.md) instead of text
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

/// `ssh-gen --margin`'s default: seconds a reused certificate must have left.
pub const SSH_GEN_MARGIN: u64 = 30;

#[derive(Debug, Args)]
pub struct SshGenArgs {
    #[command(flatten)]
    pub fedramp: Fedramp,

    /// Hostname of the Access application (a path is allowed; scheme and port are ignored)
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// Type of a new key pair [default: the existing pair's, else ecdsa]
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<crate::ssh::keys::KeyType>,

    /// Seconds of validity the certificate on disk must have left to be reused
    #[arg(long, value_name = "SECONDS", default_value_t = SSH_GEN_MARGIN)]
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

const SERVER_ABOUT: &str = "\
Set up the machine behind Access for short-lived certificates

`server setup` does the server's steps of Cloudflare's guide: it fetches the
app's SSH CA from the Cloudflare API (or takes it from --ca-key), adds it to
the CA file, makes sshd trust that file with pubkey authentication on,
validates the result with `sshd -t` (restoring every file if sshd refuses
it) and reloads sshd. `server check` reports that state, with a fix for
each gap. Run them as root on the server, or with --root DIR to try them on
a copy.";

const SERVER_EXAMPLES: &str = "\
Examples:
  export CLOUDFLARE_API_TOKEN=… CLOUDFLARE_ACCOUNT_ID=…
  sudo -E cfaccess server setup --hostname ssh.example.com --user jdoe@example.com --dry-run
  sudo -E cfaccess server setup --hostname ssh.example.com --user jdoe@example.com
  sudo cfaccess server setup --hostname ssh.example.com --ca-key ca.pub --map johndoe=jdoe@example.com
  cfaccess server check --hostname ssh.example.com --user jdoe@example.com";

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Make sshd trust the Access app's SSH CA (Cloudflare's guide, steps 2 to 6)
    #[command(long_about = SETUP_ABOUT, after_help = SERVER_EXAMPLES)]
    Setup(ServerSetupArgs),

    /// Check that sshd trusts the app's CA, with the fix for each gap
    #[command(after_help = "Examples:\n  \
        cfaccess server check\n  \
        cfaccess server check --hostname ssh.example.com --user jdoe@example.com --json")]
    Check(ServerCheckArgs),
}

const SETUP_ABOUT: &str = "\
Make sshd trust the Access app's SSH CA (Cloudflare's guide, steps 2 to 6)

1. The CA key: from the Cloudflare API (the app whose domain is --hostname;
   --create-ca makes its CA when it has none), or from --ca-key.
2. The CA file (--ca-file, default /etc/ssh/ca.pub): the key is appended,
   every other line kept. A TrustedUserCAKeys file sshd already uses is
   the one used, unless --ca-file names another (its keys are merged in).
3. sshd_config: `PubkeyAuthentication yes` and `TrustedUserCAKeys <file>`
   in a drop-in (sshd_config.d/00-cfaccess.conf) where sshd_config includes
   that directory, else in a marked block at its top; `sshd -T` must then
   show both in effect.
4. `sshd -t` must accept the result, or every file is put back as it was.
5. sshd is reloaded (systemctl, service, or SIGHUP), never restarted:
   open sessions live on. --no-reload prints the command instead.
6. --user checks that each identity's Unix user exists (--create-user makes
   it); --map USER=EMAIL lets an existing user log in with that identity's
   certificate (a `Match User` block, as Cloudflare documents it).

--dry-run prints the diff of every file and the commands, and changes
nothing. A second run with the same arguments changes nothing.";

/// Where `cfaccess server` finds the server's files, and its sshd.
#[derive(Debug, Clone, Args)]
pub struct ServerPaths {
    /// Read and write every file under DIR instead of / (to try it on a copy, or in tests):
    /// DIR/etc/ssh/sshd_config and so on; the paths written into files are the DIR ones
    #[arg(long, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,

    /// sshd's config file (under --root) [default: /etc/ssh/sshd_config]
    #[arg(long, value_name = "FILE")]
    pub sshd_config: Option<std::path::PathBuf>,

    /// The sshd binary to validate with [default: /usr/sbin/sshd, or sshd on PATH]
    #[arg(long, value_name = "FILE")]
    pub sshd: Option<std::path::PathBuf>,
}

/// How `cfaccess server` reaches the Cloudflare API. The token itself is
/// read from CLOUDFLARE_API_TOKEN or a file, never from the command line.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The account of the Access app (32 hex digits)
    #[arg(long, value_name = "ID", env = "CLOUDFLARE_ACCOUNT_ID")]
    pub account_id: Option<String>,

    /// For a zone-level Access app: its zone instead of the account
    #[arg(long, value_name = "ID", env = "CLOUDFLARE_ZONE_ID")]
    pub zone_id: Option<String>,

    /// Read the API token from FILE instead of CLOUDFLARE_API_TOKEN (it needs Access: Apps and
    /// Policies Read, and Edit for --create-ca)
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServerSetupArgs {
    /// Hostname of the Access application that protects this server
    #[arg(long, value_name = "HOST")]
    pub hostname: String,

    /// Take the CA's public key from FILE (- for stdin) instead of the API: the line the
    /// dashboard shows
    #[arg(long, value_name = "FILE", conflicts_with = "create_ca")]
    pub ca_key: Option<std::path::PathBuf>,

    /// Create the app's CA through the API when it has none (the dashboard's "Generate
    /// certificate"; needs an API token that may edit Access apps)
    #[arg(long)]
    pub create_ca: bool,

    /// The file sshd's TrustedUserCAKeys names [default: the one sshd already uses, else
    /// /etc/ssh/ca.pub]
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// An identity that logs in here (repeatable): its Unix user (the email's local part) must
    /// exist
    #[arg(long, value_name = "EMAIL")]
    pub user: Vec<String>,

    /// Create the Unix users of --user that do not exist (useradd --create-home)
    #[arg(long, requires = "user")]
    pub create_user: bool,

    /// Let the existing Unix USER log in with EMAIL's certificate (repeatable), like
    /// --map johndoe=jdoe@example.com
    #[arg(long, value_name = "USER=EMAIL")]
    pub map: Vec<String>,

    /// Change the files but do not reload sshd: print the command to run
    #[arg(long)]
    pub no_reload: bool,

    /// Print the diff of every file and the commands, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub paths: ServerPaths,

    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ServerCheckArgs {
    /// Hostname of the Access application: its CA (read from the API when a token is given)
    /// must be in sshd's CA file
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// An identity that should log in here (repeatable): its Unix user must exist, or a --map
    /// rule must let another user in with it
    #[arg(long, value_name = "EMAIL")]
    pub user: Vec<String>,

    /// Print the checks as JSON (schema 1: {"schema","hostname","ok","checks":[{"id","status","summary","fix","data"}]})
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub paths: ServerPaths,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// `--fedramp`, on the commands that log in (login, curl, tcp/ssh, ssh-gen).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Fedramp {
    /// Log in through the FedRAMP login service
    #[arg(long = "fedramp", display_order = 900)]
    pub on: bool,
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

/// Log levels, with the official client's names (zerolog's: `trace` and
/// `panic` are taken too, unlisted, so a `TUNNEL_LOGLEVEL` that works for
/// cloudflared works here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    #[value(hide = true)]
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    #[value(hide = true)]
    Panic,
}

/// Log formats on stderr, with the official client's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogOutput {
    /// Lines for people
    Default,
    /// One JSON object a line: level, time, message (as cloudflared writes them)
    Json,
}

/// The command line as clap sees it, with what derive cannot say:
///
/// - no value after `[env: NAME]` in the help. Clap prints `[env: NAME=VALUE]`
///   with the variable's current value, so `[env: NAME=]` when it is unset
///   (and a secret-looking value when it is set); `hide_env_values` drops the
///   `=` and the value.
/// - an environment variable set but empty counts as unset, as it does for the
///   official client (`TUNNEL_LOGLEVEL=` is the default level, not an error).
pub fn command() -> clap::Command {
    fn adjust(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|arg| {
            let empty = arg
                .get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()));
            let arg = arg.hide_env_values(true);
            if empty { arg.env(None::<&str>) } else { arg }
        })
        .mut_subcommands(adjust)
    }
    adjust(<Cli as clap::CommandFactory>::command())
}

/// Parses the (normalized) command line through [`command`].
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches_mut(&mut matches)
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
    "output",
    "connect-to",
    "debug-stream",
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
            let parsed = parse(normalize_args(args.iter().map(OsString::from)));
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
    fn new_and_official_forms_parse() {
        let cli = |args: &[&str]| {
            parse(normalize_args(args.iter().map(OsString::from)))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        };
        // --fedramp: the official place (after `access`), after the command,
        // and before it as earlier releases took it
        for args in [
            &["cfaccess", "access", "--fedramp", "login", "https://x"][..],
            &["cfaccess", "access", "login", "--fedramp", "https://x"],
            &["cfaccess", "login", "-fedramp", "https://x"],
            &["cfaccess", "--fedramp", "login", "https://x"],
            &["cfaccess", "ssh-gen", "--hostname", "h", "--fedramp"],
            &["cfaccess", "access", "ssh", "--hostname", "h", "--fedramp"],
        ] {
            let parsed = cli(args);
            let on = parsed.fedramp
                || match parsed.command {
                    Command::Access { fedramp, action } => {
                        fedramp
                            || matches!(&action, Action::Login(a) if a.fedramp.on)
                            || matches!(&action, Action::Tcp(a) if a.fedramp.on)
                    }
                    Command::Action(Action::Login(a)) => a.fedramp.on,
                    Command::Action(Action::SshGen(a)) => a.fedramp.on,
                    _ => false,
                };
            assert!(on, "{args:?}");
        }
        // not on the commands it does not change
        for args in [
            &["cfaccess", "status", "--fedramp"][..],
            &["cfaccess", "token", "--fedramp", "https://x"],
            &["cfaccess", "logout", "--fedramp"],
        ] {
            assert!(
                parse(normalize_args(args.iter().map(OsString::from))).is_err(),
                "{args:?}"
            );
        }
        // the log flags anywhere, tcp's own forms included
        let parsed = cli(&[
            "cfaccess",
            "access",
            "ssh",
            "-hostname",
            "h",
            "-logfile",
            "/tmp/l",
            "-output",
            "json",
        ]);
        assert_eq!(
            parsed.logfile.as_deref(),
            Some(std::path::Path::new("/tmp/l"))
        );
        assert_eq!(parsed.output, LogOutput::Json);
        let parsed = cli(&[
            "cfaccess",
            "--log-directory",
            "/tmp/d",
            "login",
            "https://x",
        ]);
        assert_eq!(
            parsed.log_directory.as_deref(),
            Some(std::path::Path::new("/tmp/d"))
        );
        let parsed = cli(&["cfaccess", "status", "--loglevel", "DEBUG"]);
        assert_eq!(parsed.log_level, Some(LogLevel::Debug));
        // the official client's hidden testing flags
        cli(&[
            "cfaccess",
            "access",
            "tcp",
            "--hostname",
            "h",
            "--connect-to",
            "a:443:b",
            "--debug-stream",
            "10",
        ]);
        cli(&["cfaccess", "h", "login"]);
        cli(&["cfaccess", "completions", "zsh"]);
        cli(&["cfaccess", "man", "/tmp/m"]);
        // -v and -V are the version; curl's -v stays curl's
        for flag in ["-v", "-V", "--version", "-version"] {
            let err = parse(normalize_args(["cfaccess", flag].map(OsString::from))).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion, "{flag}");
        }
        let parsed = cli(&["cfaccess", "curl", "https://x", "-v"]);
        assert!(
            matches!(parsed.command, Command::Action(Action::Curl(a)) if a.args == ["https://x", "-v"])
        );
    }

    /// Every command's help has an example, and no `[env: NAME=]`.
    #[test]
    fn every_help_has_an_example_and_clean_env_names() {
        fn walk(cmd: &mut clap::Command, path: &str) {
            let path = format!("{path} {}", cmd.get_name());
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Examples:\n"), "{path} --help has no example");
            assert!(!help.contains("=]"), "{path}: {help}");
            for sub in cmd.get_subcommands_mut() {
                walk(sub, &path);
            }
        }
        let mut cmd = command();
        cmd.build();
        walk(&mut cmd, "");
        // the variables are still named
        let tcp = cmd
            .find_subcommand_mut("tcp")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(tcp.contains("[env: TUNNEL_SERVICE_HOSTNAME]"), "{tcp}");
        assert!(tcp.contains("[env: TUNNEL_LOGLEVEL]"), "{tcp}");
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
