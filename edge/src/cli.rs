//! The command line of `access-edge` (clap definitions only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "A local stand-in for the Cloudflare Access edge";

const LONG_ABOUT: &str = "\
A local stand-in for the Cloudflare Access edge.

It answers everything an Access client says on the wire (app discovery, the
JWKS, the login page, the login service's token transfer, the org-token
exchange, the token check, service tokens, websocket upgrades carried to each
app's TCP origin, as `cloudflared access ssh` uses them, and short-lived SSH
certificates from each app's SSH CA, as `cloudflared access ssh-gen` asks
for them) exactly as the real edge does, over TLS from a local CA, so that
cfaccess and `cloudflared access` run their whole flow against it with no
internet.

With no arguments it serves a demo team (demo.cloudflareaccess.com) and the app
ssh.demo.test, open to *@example.com, whose websockets reach 127.0.0.1:22 (see
--origin), on a free port of 127.0.0.1, and prints what it serves and how to
point a client at it.";

const AFTER_HELP: &str = "\
Files in the state dir:
  ca.pem, ca-key.pem          the local CA that signs every certificate (key 0600)
  signing-key-*.pem           the JWT signing keys, current and previous (0600)
  box-key                     the login service's NaCl box key (0600)
  auds.json                   auds generated for apps that configure none
  config.toml                 a copy of the config in use (0600); used when the
                              edge restarts with this state dir and no --config
  profile.json                the edge profile: CA and name -> address
                              (CFACCESS_EDGE=<this file>); written once ready
  browser                     a headless browser for this edge (BROWSER=<this file>)
  control.sock                the control socket (0600) for revoke, rotate-keys,
                              expire-previous-key, stats and fault
  ssh-ca/<app>.key, .pub      an app's SSH CA (key 0600; `*` written as `_`),
                              made by `access-edge ca generate` or the API's POST
  account-id                  the Cloudflare API's account id (configured, else
                              generated once)
  ssh-logs/                   SSH command logs of apps with ssh_log_public_key:
                              <id>.capture (sealed), index.jsonl; see ssh-logs
  api-token                   the API token the edge made (0600) when the config
                              has no api_tokens or api_keys; also in profile.json

The Cloudflare API: https://api.cloudflare.com/client/v4 (in the edge profile
like every other name) answers, for the account id and its tokens (the banner
prints both), GET /accounts/ID/access/apps, GET …/access/apps/ca, and GET, POST
(= `ca generate`) and DELETE …/access/apps/APP_ID/ca; zone-level apps
(`zone_id`) under /zones/ZONE_ID/ instead. `stats` counts its requests as api.

Carried connections: a websocket upgrade on an app host with a valid app token
(or an allowed service token) is connected to the app's `origin`; a bastion
app (`destinations` in the config) connects to the Cf-Access-Jump-Destination
the client names (`--destination`) if its allow-list has it. Without a token
the upgrade gets the usual 302 to the login path; an origin that cannot be
reached gets 502. `stats` shows the connections and bytes carried. With the
client pointed at the edge:
  ssh -o ProxyCommand='cfaccess access ssh --hostname %h' ssh.demo.test

Short-lived SSH certificates: an app has an SSH CA once `access-edge ca
generate --app HOST --state-dir DIR` made one, with or without an edge running
on DIR (a running edge uses it at once). It prints the CA's public key as one
line for the file named by sshd's TrustedUserCAKeys; run again, it prints the
same line. POST https://<auth domain>/cdn-cgi/access/cert_sign then signs, for
an app token of that app, a user certificate whose principal is the email's
local part, valid --cert-validity (3m) from 10 s before it is issued
(`cloudflared access ssh-gen --hostname HOST`, `cfaccess ssh-gen`). `stats`
counts its requests.

Limits: a TLS handshake has 10 s, a request head 10 s from its first byte
(--header-timeout) and 32 KiB, a body 10 s and 64 KiB; a connection with no
request in flight is closed after 60 s (--idle-timeout). Carried websockets
have no such deadline: an idle ssh session stays open.

Examples:
  access-edge
  access-edge --config team.toml --state-dir ~/.access-edge --listen 127.0.0.1:8443
  access-edge --auto-approve alice@example.com
  access-edge --origin 127.0.0.1:2222
  access-edge revoke alice@example.com --state-dir ~/.access-edge
  access-edge fault login-service stall --state-dir ~/.access-edge   (see `access-edge fault --help`)
  access-edge ca generate --app ssh.demo.test --state-dir ~/.access-edge > /etc/ssh/access-edge-ca.pub";

#[derive(Debug, Parser)]
#[command(
    name = "access-edge",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags for serving (the default command).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with the team, apps, identities, service tokens and token
    /// lifetimes [default: the config kept in the state dir, else the demo]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory that keeps the CA, signing keys, box key, generated auds and
    /// a copy of the config across restarts (created 0700) [default: a fresh
    /// temporary directory, removed on exit]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Address to listen on, for every served name (port 0: a free port;
    /// 127.0.0.1:443 for a hosts-file setup with the real names)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The TCP origin (HOST:PORT) that websockets on the app are carried to,
    /// in place of the config's; for a config of one app only, such as the
    /// built-in demo [demo default: 127.0.0.1:22]
    #[arg(long, value_name = "HOST:PORT")]
    pub origin: Option<String>,

    /// Approve every login page at once as EMAIL (if the app's policy allows
    /// it), for runs with no person at the browser
    #[arg(long, value_name = "EMAIL")]
    pub auto_approve: Option<String>,

    /// How long the login service holds a transfer poll before answering
    /// "not yet" (keep it under the clients' 60 s timeout)
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = parse_duration)]
    pub poll_hold: Duration,

    /// How long the SSH certificates of cert_sign are valid, from 10 s
    /// before they are issued [default: the config's ssh_cert_validity, 3m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub cert_validity: Option<Duration>,

    /// How long a client may take from a request's first byte to the end of
    /// its headers (the first request's clock starts with the TLS handshake)
    /// before its connection is closed
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a connection may stay open with no request in flight
    /// (keep-alive) before it is closed; carried websockets (an ssh session)
    /// are never closed for being idle
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Log level of the messages on stderr (error, warn, info, debug, trace);
    /// tokens and secrets are never logged
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open a URL through an edge profile as a browser would, and say on
    /// stderr what the page said (what DIR/browser runs)
    Browse {
        /// The edge profile [default: $CFACCESS_EDGE, else system roots and DNS]
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Approve the login page's form as EMAIL
        #[arg(long = "as", value_name = "EMAIL", conflicts_with = "deny")]
        approve_as: Option<String>,
        /// Deny the login page's form
        #[arg(long)]
        deny: bool,
        /// The URL to open (a login URL from a client)
        url: String,
    },
    /// Refuse every token issued to EMAIL so far (later ones are fine)
    Revoke {
        /// The identity whose tokens to revoke
        email: String,
        /// The state dir of the running edge
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Make a new current JWT signing key; the current one stays in the JWKS
    /// as the previous one, the previous one is dropped
    RotateKeys {
        /// The state dir of the running edge
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Drop the previous JWT signing key: tokens it signed stop verifying
    ExpirePreviousKey {
        /// The state dir of the running edge
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// Print the running edge's request counters and carried connections
    Stats {
        /// The state dir of the running edge
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
    /// An app's SSH CA, which signs the certificates of cert_sign
    #[command(subcommand)]
    Ca(CaCommand),
    /// Inject a fault into the running edge to rehearse a failure (or list
    /// or clear the faults); it lasts until cleared or the edge stops
    #[command(subcommand, after_help = FAULT_HELP)]
    Fault(FaultCommand),
    /// SSH command logs: the key pair they are sealed for, the sessions
    /// logged, and playing one back
    #[command(subcommand, after_help = SSH_LOGS_HELP)]
    SshLogs(SshLogsCommand),
}

const SSH_LOGS_HELP: &str = "\
An app with `ssh_log_public_key = \"<base64>\"` in the config has every
terminal session the edge relays recorded in DIR/ssh-logs, sealed for that
key in the capture format of Cloudflare's ssh-log-cli (`ssh-log-cli decrypt
-i DIR/ssh-logs/ID.capture -k KEY` reads it too); DIR/ssh-logs/index.jsonl
has one line per session.

Examples:
  access-edge ssh-logs keygen --out audit-key      writes audit-key and audit-key.pub
  access-edge ssh-logs list --state-dir DIR
  access-edge ssh-logs replay ID --key audit-key --state-dir DIR
  access-edge ssh-logs replay ID --key audit-key --state-dir DIR --asciicast > ID.cast";

#[derive(Debug, Subcommand)]
pub enum SshLogsCommand {
    /// Make a key pair: NAME holds the private key (0600), NAME.pub the
    /// public key for `ssh_log_public_key`, printed on stdout (the files of
    /// `ssh-log-cli generate-key-pair -o NAME`)
    Keygen {
        /// The private key file; it must not exist yet
        #[arg(long, short = 'o', value_name = "NAME", default_value = "ssh-log-key")]
        out: PathBuf,
    },
    /// List the logged sessions (from ssh-logs/index.jsonl) and any capture
    /// left unfinished
    List {
        #[command(flatten)]
        at: LogsAt,
        /// One JSON object per line: the index's, then {"id", "unfinished": true}
        #[arg(long)]
        json: bool,
    },
    /// Decrypt a session and play the origin's output back in the terminal
    /// with its timing, or write it as asciicast v2
    Replay {
        /// The session id (`ssh-logs list` shows them)
        id: String,
        /// The private key file
        #[arg(long, short = 'k', value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        at: LogsAt,
        /// Write asciicast v2 to stdout (for `asciinema play`) instead
        #[arg(long)]
        asciicast: bool,
        /// Play this many times faster
        #[arg(
            long,
            value_name = "FACTOR",
            default_value_t = 1.0,
            conflicts_with = "asciicast"
        )]
        speed: f64,
        /// Play with no pauses
        #[arg(long, conflicts_with = "asciicast")]
        no_wait: bool,
    },
}

/// Where the logs are.
#[derive(Debug, Args)]
pub struct LogsAt {
    /// The edge's state dir (its logs are in DIR/ssh-logs)
    #[arg(long, value_name = "DIR", env = "ACCESS_EDGE_STATE_DIR")]
    pub state_dir: PathBuf,
}

const FAULT_HELP: &str = "\
Examples (each takes --state-dir DIR, the state dir of the running edge):
  access-edge fault login-service fail --status 503 --state-dir DIR   every transfer poll fails
  access-edge fault login-service stall --count 1 --state-dir DIR     the next poll never answers
  access-edge fault login-service ok --state-dir DIR
  access-edge fault cut-after 65536 --state-dir DIR     cut carried connections after 64 KiB
  access-edge fault origin refuse --state-dir DIR       websocket upgrades get 502
  access-edge fault handshake-delay 2s --state-dir DIR  answer upgrades 2 s late (0s: at once)
  access-edge fault cert-sign expired --state-dir DIR   cert_sign issues expired certificates
  access-edge fault cert-sign error --status 500 --message 'CA offline' --state-dir DIR
  access-edge fault metadata stale-iat --state-dir DIR  app metadata JWTs carry a stale iat
  access-edge fault date-skew -5m --state-dir DIR       Date headers 5 min behind (0s: right)
  access-edge fault api status 502 --state-dir DIR      the Cloudflare API answers a 502 page
  access-edge fault api off --state-dir DIR
  access-edge fault list --state-dir DIR
  access-edge fault clear --state-dir DIR";

/// The running edge a command talks to.
#[derive(Debug, Args)]
pub struct Running {
    /// The state dir of the running edge
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Make the login service's transfer polls fail, stall, or work again
    LoginService {
        /// fail: answer --status at once; stall: never answer (the client's
        /// own timeout ends the poll); ok: answer normally
        #[arg(value_enum)]
        mode: LoginServiceMode,
        /// How many polls [default: every poll until `ok`]
        #[arg(long, value_name = "N")]
        count: Option<u32>,
        /// The status of a failing poll
        #[arg(long, value_name = "STATUS", default_value_t = 503, value_parser = clap::value_parser!(u16).range(100..=599))]
        status: u16,
        #[command(flatten)]
        at: Running,
    },
    /// Cut every carried connection (running ones too), with no close
    /// frame, once it has sent BYTES to its client; `off` to stop
    CutAfter {
        #[arg(value_name = "BYTES|off", value_parser = parse_bytes_or_off)]
        bytes: ByteLimit,
        #[command(flatten)]
        at: Running,
    },
    /// Answer websocket upgrades with the 502 of an origin that refused
    /// (refuse), or reach the origin again (ok)
    Origin {
        #[arg(value_enum)]
        mode: OriginMode,
        #[command(flatten)]
        at: Running,
    },
    /// Wait DURATION before answering each websocket upgrade (0s: at once)
    HandshakeDelay {
        #[arg(value_name = "DURATION", value_parser = parse_duration)]
        delay: Duration,
        #[command(flatten)]
        at: Running,
    },
    /// Make cert_sign answer KIND instead of the certificate asked for
    CertSign {
        #[arg(value_enum)]
        kind: CertSignKind,
        /// The HTTP status of `error`
        #[arg(long, value_name = "STATUS", default_value_t = 500, value_parser = clap::value_parser!(u16).range(100..=599))]
        status: u16,
        /// The message of `error`
        #[arg(long, value_name = "TEXT", default_value = "cert_sign fault")]
        message: String,
        #[command(flatten)]
        at: Running,
    },
    /// Put a flaw into every app metadata JWT (each one a client must refuse)
    Metadata {
        #[arg(value_enum)]
        kind: MetadataKind,
        #[command(flatten)]
        at: Running,
    },
    /// Send every Date header DURATION ahead of the edge's clock (`-5m`:
    /// behind; 0s: right), as a client whose clock is off would read it
    DateSkew {
        #[arg(value_name = "DURATION", allow_hyphen_values = true, value_parser = parse_signed_duration)]
        skew: i64,
        #[command(flatten)]
        at: Running,
    },
    /// Make the Cloudflare API (api.cloudflare.com) answer MODE to every
    /// request: garbage (200, not JSON), status N (that status with an HTML
    /// page, like a proxy's), stall (never answer), off (answer normally)
    Api {
        #[arg(value_enum)]
        mode: ApiMode,
        /// The HTTP status of `status`
        #[arg(value_name = "N", required_if_eq("mode", "status"), value_parser = clap::value_parser!(u16).range(100..=599))]
        status: Option<u16>,
        #[command(flatten)]
        at: Running,
    },
    /// Print the faults in force
    List {
        #[command(flatten)]
        at: Running,
    },
    /// Turn every fault off
    Clear {
        #[command(flatten)]
        at: Running,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoginServiceMode {
    Fail,
    Stall,
    Ok,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OriginMode {
    Refuse,
    Ok,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertSignKind {
    /// Answer {"status":STATUS,"message":TEXT} with that HTTP status
    Error,
    /// A valid certificate for another key than the one sent
    OtherKey,
    /// 200 with a body that is not JSON
    Garbage,
    /// 200 with a certificate that does not parse
    BadCertificate,
    /// A host certificate instead of a user certificate
    HostCertificate,
    /// A certificate whose validity already ended
    Expired,
    /// Answer normally
    Ok,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiMode {
    /// 200 with a body that is not JSON
    Garbage,
    /// Status N with an HTML page
    Status,
    /// Never answer
    Stall,
    /// Answer normally
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetadataKind {
    /// The signature does not match the claims
    BadSignature,
    /// The header names a key that is not in the JWKS
    UnknownKid,
    /// `hostname` names another host
    WrongHostname,
    /// `iat` is more than 24 hours old
    StaleIat,
    /// `iat` is in the future
    FutureIat,
    /// `auth_domain` is not under .cloudflareaccess.com
    ForeignAuthDomain,
    /// Sign metadata normally
    Ok,
}

/// A number of bytes, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteLimit(pub Option<u64>);

fn parse_bytes_or_off(text: &str) -> Result<ByteLimit, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(ByteLimit(None));
    }
    text.parse()
        .map(|n| ByteLimit(Some(n)))
        .map_err(|_| "not a number of bytes, or `off`".to_owned())
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the app's SSH CA unless it has one, and print its public key
    /// as one line for the file named by sshd's TrustedUserCAKeys (works with
    /// or without a running edge; run again, it prints the same line)
    Generate {
        #[command(flatten)]
        target: CaTarget,
        /// The key type of a new CA; for an existing CA, a different type is
        /// an error [default: ecdsa, or the existing CA's]
        #[arg(long, value_name = "TYPE", value_enum)]
        key_type: Option<KeyType>,
    },
    /// Print the app's existing SSH CA public key line
    Show {
        #[command(flatten)]
        target: CaTarget,
    },
}

/// Which app's CA, in which state dir.
#[derive(Debug, Args)]
pub struct CaTarget {
    /// The app (its hostname as configured, or a host it protects)
    /// [default: the config's first app, ssh.demo.test in the demo]
    #[arg(long, value_name = "HOST")]
    pub app: Option<String>,
    /// The state dir the edge runs (or will run) with
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The config that names the app [default: the config kept in the state
    /// dir, else the demo]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (what the real service is known to use)
    Ecdsa,
    /// Ed25519
    Ed25519,
}

/// `5m` or `-5m`, in seconds.
fn parse_signed_duration(text: &str) -> Result<i64, String> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let d = parse_duration(rest)?;
    i64::try_from(d.as_secs())
        .map(|s| sign * s)
        .map_err(|_| "too long".to_owned())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("not a duration like \"25s\" ({e})"))
}
