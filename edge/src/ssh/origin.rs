//! The edge as SSH client of an app's origin (docs/protocol.md 13): what
//! Cloudflare's browser-rendered terminal (and its audited SSH proxy) does
//! behind the page.
//!
//! Each session gets a fresh Ed25519 key and a certificate for it made
//! exactly as `cert_sign` makes one (`cert_sign::Plan::user` and
//! `cert_sign::sign`, with the app's CA): the principal is the email's local
//! part, valid from a little before now for the configured validity. The
//! origin trusts the CA and nothing else, as in Cloudflare's guide.
//!
//! Host keys are trusted on first use, per app and origin address, in
//! `<state dir>/ssh-known-hosts/<app>` (lines `HOST:PORT <type> <base64>`,
//! an app's `*` written `_`); a different key later is refused before any
//! authentication, as `ssh` refuses one, and the pin stays until an operator
//! removes the line.
//!
//! sshd never says why it refused a certificate; the usual cause by far is a
//! principal with no Unix account, so that is what [`OriginError::NoUser`]
//! says first.
//!
//! The SSH library is russh with its `ring` backend (no aws-lc-rs, no
//! OpenSSL); its keys are ssh-key 0.7, the CA's are 0.6, so keys and
//! certificates cross between the two as OpenSSH text.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding};
use tokio::net::TcpStream;

use crate::ssh::ca as ssh_ca;
use crate::ssh::cert_sign;
use crate::ssh::logs;

/// How long reaching the origin (TCP and the SSH handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a channel request (pty, shell, exec) may take to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The directory of the pinned host keys inside the state dir.
pub(crate) const KNOWN_HOSTS_DIR: &str = "ssh-known-hosts";

/// Where and as whom to connect.
pub(crate) struct OriginTarget<'a> {
    /// The app's configured hostname (its CA and its pins are kept by it).
    pub app_hostname: &'a str,
    /// `HOST:PORT`.
    pub origin: &'a str,
    /// The Access user; the principal is its local part.
    pub email: &'a str,
    pub state_dir: &'a Path,
    pub cert_validity: Duration,
}

/// Why a session with the origin could not be had or went wrong. Each
/// message is one line a page can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OriginError {
    /// Refused, unreachable, or no SSH server answering.
    #[error("{0}")]
    Down(String),
    #[error(
        "the host key of the origin {origin} has changed: it was {pinned}, it is now {offered}. \
         Someone could be intercepting the connection, or the server's key was replaced; \
         the edge will not connect until the old key is removed from its pins"
    )]
    HostKeyChanged {
        origin: String,
        pinned: String,
        offered: String,
    },
    #[error(
        "no user {user} on the server: sshd refused the certificate for {user} \
         (usually there is no Unix account {user}; or sshd does not trust the app's CA \
         in TrustedUserCAKeys, or its AuthorizedPrincipals leave {user} out)"
    )]
    NoUser { user: String },
    /// The edge cannot make the session (no CA, a bad email) or the origin
    /// refused a channel or request.
    #[error("{0}")]
    Refused(String),
    /// The SSH connection failed in some other way.
    #[error("the SSH connection to the origin failed: {0}")]
    Ssh(String),
}

/// An authenticated SSH connection to an origin.
pub(crate) struct Origin {
    handle: Handle<Client>,
    origin: String,
    user: String,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("origin", &self.origin)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One session channel: a shell or a command.
pub(crate) struct OriginChannel {
    read: ChannelReadHalf,
    write: ChannelWriteHalf<client::Msg>,
    /// What arrived while a request's answer was awaited.
    early: VecDeque<OriginEvent>,
}

/// What the origin sends on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginEvent {
    Data(Vec<u8>),
    ExtendedData(Vec<u8>),
    ExitStatus(u32),
    ExitSignal {
        name: String,
        core_dumped: bool,
        message: String,
    },
    Eof,
}

/// Connects, checks (or pins) the host key, and logs in with a fresh
/// certificate for the user's principal.
pub(crate) async fn connect(target: OriginTarget<'_>) -> Result<Origin, OriginError> {
    let user = principal(target.email)?;
    let ca = match ssh_ca::load(target.state_dir, target.app_hostname) {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            return Err(OriginError::Refused(format!(
                "the application {} has no SSH CA: create one with `access-edge ca generate --app {}`",
                target.app_hostname, target.app_hostname
            )));
        }
        Err(e) => {
            tracing::error!(app = %target.app_hostname, "cannot read the SSH CA: {e}");
            return Err(OriginError::Refused(format!(
                "the SSH CA of {} cannot be read (see the edge's log)",
                target.app_hostname
            )));
        }
    };
    let (key, certificate) = credentials(&ca, &user, target.cert_validity)?;

    let stream = dial(target.origin).await?;
    let verdict = Arc::new(Mutex::new(None));
    let handler = Client {
        pins: pins_path(target.state_dir, target.app_hostname),
        origin: target.origin.to_owned(),
        verdict: verdict.clone(),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        // An origin that stops answering ends the session rather than
        // holding it (and its page) for ever.
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        ..client::Config::default()
    });
    let handshake = client::connect_stream(config, stream, handler);
    let mut handle = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let verdict = verdict.lock().ok().and_then(|mut v| v.take());
            return Err(verdict.unwrap_or_else(|| handshake_error(target.origin, &e)));
        }
        Err(_) => {
            return Err(OriginError::Down(format!(
                "the origin {} did not complete the SSH handshake in {}s",
                target.origin,
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let auth = handle.authenticate_openssh_cert(user.clone(), Arc::new(key), certificate);
    match tokio::time::timeout(CONNECT_TIMEOUT, auth).await {
        Ok(Ok(result)) if result.success() => {}
        Ok(Ok(_)) => return Err(OriginError::NoUser { user }),
        Ok(Err(e)) => return Err(OriginError::Ssh(e.to_string())),
        Err(_) => {
            return Err(OriginError::Down(format!(
                "the origin {} did not answer the login in {}s",
                target.origin,
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    }
    tracing::info!(app = %target.app_hostname, origin = %target.origin, %user, "logged in to the origin");
    Ok(Origin {
        handle,
        origin: target.origin.to_owned(),
        user,
    })
}

impl Origin {
    /// The Unix user logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Opens a session channel: a PTY when asked, then the shell or the
    /// command; each request must be granted.
    pub async fn open(
        &self,
        pty: Option<&logs::Pty>,
        program: &logs::Program,
    ) -> Result<OriginChannel, OriginError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| OriginError::Refused(format!("the origin refused a session: {e}")))?;
        let (read, write) = channel.split();
        let mut channel = OriginChannel {
            read,
            write,
            early: VecDeque::new(),
        };
        if let Some(pty) = pty {
            let modes = terminal_modes(&pty.modes);
            channel
                .write
                .request_pty(true, &pty.term, pty.width, pty.height, 0, 0, &modes)
                .await
                .map_err(|e| OriginError::Ssh(e.to_string()))?;
            channel.granted("a terminal (PTY)").await?;
        }
        match program {
            logs::Program::Shell => {
                channel
                    .write
                    .request_shell(true)
                    .await
                    .map_err(|e| OriginError::Ssh(e.to_string()))?;
                channel.granted("a shell").await?;
            }
            logs::Program::Exec(command) => {
                channel
                    .write
                    .exec(true, command.as_bytes())
                    .await
                    .map_err(|e| OriginError::Ssh(e.to_string()))?;
                channel.granted("the command").await?;
            }
        }
        Ok(channel)
    }

    /// Ends the connection (every channel with it).
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "session ended", "en")
            .await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }
}

impl OriginChannel {
    /// Sends input. Waits while the origin's window is full (backpressure).
    pub async fn send(&self, data: &[u8]) -> Result<(), OriginError> {
        self.write
            .data_bytes(data.to_vec())
            .await
            .map_err(|_| OriginError::Ssh("the session with the origin has ended".into()))
    }

    /// A window-change.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), OriginError> {
        self.write
            .window_change(cols, rows, 0, 0)
            .await
            .map_err(|_| OriginError::Ssh("the session with the origin has ended".into()))
    }

    /// The next event; `None` once the channel is closed.
    pub async fn next(&mut self) -> Option<OriginEvent> {
        if let Some(event) = self.early.pop_front() {
            return Some(event);
        }
        loop {
            if let Some(event) = event_of(self.read.wait().await?) {
                return Some(event);
            }
        }
    }

    /// End of input (the client closed its stdin); output may still come.
    pub async fn eof(&self) -> Result<(), OriginError> {
        self.write
            .eof()
            .await
            .map_err(|_| OriginError::Ssh("the session with the origin has ended".into()))
    }

    /// Sends EOF and closes the channel.
    pub async fn close(&self) {
        let _ = self.write.eof().await;
        let _ = self.write.close().await;
    }

    /// Waits for the answer to a request, keeping what arrives meanwhile.
    async fn granted(&mut self, what: &str) -> Result<(), OriginError> {
        let wait = async {
            loop {
                match self.read.wait().await {
                    Some(ChannelMsg::Success) => return Ok(()),
                    Some(ChannelMsg::Failure) => {
                        return Err(OriginError::Refused(format!("the origin refused {what}")));
                    }
                    Some(msg) => {
                        if let Some(event) = event_of(msg) {
                            self.early.push_back(event);
                        }
                    }
                    None => {
                        return Err(OriginError::Refused(format!(
                            "the origin closed the session when asked for {what}"
                        )));
                    }
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| {
                Err(OriginError::Down(format!(
                    "the origin did not answer the request for {what} in {}s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            })
    }
}

fn event_of(msg: ChannelMsg) -> Option<OriginEvent> {
    match msg {
        ChannelMsg::Data { data } => Some(OriginEvent::Data(data.to_vec())),
        ChannelMsg::ExtendedData { data, .. } => Some(OriginEvent::ExtendedData(data.to_vec())),
        ChannelMsg::ExitStatus { exit_status } => Some(OriginEvent::ExitStatus(exit_status)),
        ChannelMsg::ExitSignal {
            signal_name,
            core_dumped,
            error_message,
            ..
        } => Some(OriginEvent::ExitSignal {
            name: signal_name_of(&signal_name),
            core_dumped,
            message: error_message,
        }),
        ChannelMsg::Eof => Some(OriginEvent::Eof),
        _ => None,
    }
}

/// `TERM`, `KILL`…: the name on the wire, without `SIG`.
fn signal_name_of(signal: &russh::Sig) -> String {
    match signal {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// The modes of a PTY by name (`ECHO`, `VINTR`, `TTY_OP_ISPEED`…), the
/// names russh gives the RFC 4254 opcodes; unknown names are left out.
fn terminal_modes(modes: &[(String, u32)]) -> Vec<(russh::Pty, u32)> {
    modes
        .iter()
        .filter_map(|(name, value)| {
            (1..=u8::MAX)
                .filter_map(russh::Pty::from_u8)
                .find(|pty| format!("{pty:?}").eq_ignore_ascii_case(name))
                .map(|pty| (pty, *value))
        })
        .collect()
}

/// The email's local part: the Unix account.
fn principal(email: &str) -> Result<String, OriginError> {
    match email.split_once('@') {
        Some((local, _)) if !local.is_empty() => Ok(local.to_owned()),
        _ => Err(OriginError::Refused(format!(
            "the Access user {email:?} has no email local part to log in as"
        ))),
    }
}

/// A fresh key and its certificate, in russh's types.
fn credentials(
    ca: &ssh_ca::SshCa,
    user: &str,
    validity: Duration,
) -> Result<(russh::keys::PrivateKey, russh::keys::Certificate), OriginError> {
    let failed = |e: &dyn std::fmt::Display| {
        OriginError::Refused(format!("the edge cannot make a certificate: {e}"))
    };
    let key =
        ssh_key::PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| failed(&e))?;
    let plan = cert_sign::Plan::user(key.public_key().key_data().clone(), user, validity);
    let key_id = hex::encode(rand::random::<[u8; 16]>());
    let certificate = cert_sign::sign(ca, &plan, &key_id)
        .and_then(|c| c.to_openssh())
        .map_err(|e| failed(&e))?;
    let private = key.to_openssh(LineEnding::LF).map_err(|e| failed(&e))?;
    let key = russh::keys::PrivateKey::from_openssh(private.as_bytes()).map_err(|e| failed(&e))?;
    let certificate =
        russh::keys::Certificate::from_openssh(&certificate).map_err(|e| failed(&e))?;
    Ok((key, certificate))
}

/// TCP to the origin, with a one-line reason when it cannot be had.
async fn dial(origin: &str) -> Result<TcpStream, OriginError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(origin)).await {
        // russh's `nodelay` applies only to sockets it opens itself: without
        // it, each keystroke's packet waits on the origin's delayed ACK
        Ok(Ok(stream)) => stream
            .set_nodelay(true)
            .map(|()| stream)
            .map_err(|e| OriginError::Down(format!("cannot set up the origin connection: {e}"))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(OriginError::Down(
            format!("the origin {origin} refused the connection: is its sshd running?"),
        )),
        Ok(Err(e)) => Err(OriginError::Down(format!(
            "cannot reach the origin {origin}: {e}"
        ))),
        Err(_) => Err(OriginError::Down(format!(
            "cannot reach the origin {origin}: no answer in {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

fn handshake_error(origin: &str, e: &russh::Error) -> OriginError {
    match e {
        russh::Error::IO(_) | russh::Error::Disconnect | russh::Error::HUP => {
            OriginError::Down(format!(
                "the origin {origin} closed the connection during the SSH handshake ({e}): is it an SSH server?"
            ))
        }
        e => OriginError::Ssh(format!("{origin}: {e}")),
    }
}

/// The file of an app's pinned host keys.
pub(crate) fn pins_path(state_dir: &Path, app: &str) -> PathBuf {
    state_dir
        .join(KNOWN_HOSTS_DIR)
        .join(app.replace('*', "_").replace('/', "-"))
}

/// The client side's callbacks: only the host key check.
struct Client {
    pins: PathBuf,
    origin: String,
    /// Why the key was refused, for [`connect`] to report.
    verdict: Arc<Mutex<Option<OriginError>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::from(cert.public_key().clone())
            }
        };
        let outcome = check_pin(&self.pins, &self.origin, &key);
        match outcome {
            Ok(()) => Ok(true),
            Err(refusal) => {
                if let Ok(mut verdict) = self.verdict.lock() {
                    *verdict = Some(refusal);
                }
                Ok(false)
            }
        }
    }
}

/// Accepts the key pinned for `origin`, pins it if there is none, refuses
/// any other.
fn check_pin(pins: &Path, origin: &str, key: &russh::keys::PublicKey) -> Result<(), OriginError> {
    let mut offered = key.clone();
    offered.set_comment("");
    let line = offered
        .to_openssh()
        .map_err(|e| OriginError::Ssh(format!("the origin's host key cannot be read: {e}")))?;
    let fingerprint = |line: &str| {
        russh::keys::PublicKey::from_openssh(line)
            .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
            .unwrap_or_else(|_| line.to_owned())
    };
    let text = match std::fs::read_to_string(pins) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(OriginError::Refused(format!(
                "cannot read the pinned host keys {}: {e}",
                pins.display()
            )));
        }
    };
    for pinned in text.lines() {
        let Some((host, key)) = pinned.trim().split_once(' ') else {
            continue;
        };
        if host != origin {
            continue;
        }
        let key = key.trim();
        if key == line.trim() {
            return Ok(());
        }
        return Err(OriginError::HostKeyChanged {
            origin: origin.to_owned(),
            pinned: fingerprint(key),
            offered: fingerprint(&line),
        });
    }
    pin(pins, &text, &format!("{origin} {}", line.trim())).map_err(|e| {
        OriginError::Refused(format!(
            "cannot pin the origin's host key in {}: {e}",
            pins.display()
        ))
    })?;
    tracing::info!(%origin, key = %fingerprint(&line), "pinned the origin's host key on first use");
    Ok(())
}

/// Adds `line` to the pins file: a new file beside it, renamed over it.
fn pin(pins: &Path, old: &str, line: &str) -> std::io::Result<()> {
    let dir = pins.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut text = old.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        pins.file_name().and_then(|n| n.to_str()).unwrap_or("pins"),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, pins)
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> russh::keys::PublicKey {
        let key = ssh_key::PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let line = key.public_key().to_openssh().unwrap();
        russh::keys::PublicKey::from_openssh(&line).unwrap()
    }

    #[test]
    fn a_host_key_is_pinned_on_first_use_and_a_changed_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pins = pins_path(dir.path(), "*.demo.test");
        assert!(pins.ends_with("ssh-known-hosts/_.demo.test"));
        let (first, second) = (key(), key());
        check_pin(&pins, "127.0.0.1:22", &first).unwrap();
        check_pin(&pins, "127.0.0.1:22", &first).unwrap();
        // Another origin of the same app has its own pin.
        check_pin(&pins, "127.0.0.1:2222", &second).unwrap();
        match check_pin(&pins, "127.0.0.1:22", &second) {
            Err(OriginError::HostKeyChanged {
                origin,
                pinned,
                offered,
            }) => {
                assert_eq!(origin, "127.0.0.1:22");
                assert_eq!(
                    pinned,
                    first.fingerprint(russh::keys::HashAlg::Sha256).to_string()
                );
                assert_eq!(
                    offered,
                    second.fingerprint(russh::keys::HashAlg::Sha256).to_string()
                );
            }
            other => panic!("expected HostKeyChanged, got {other:?}"),
        }
        let text = std::fs::read_to_string(&pins).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn modes_are_named_as_russh_names_them() {
        let modes = terminal_modes(&[("ECHO".into(), 1), ("vintr".into(), 3), ("NOPE".into(), 1)]);
        assert_eq!(modes, vec![(russh::Pty::ECHO, 1), (russh::Pty::VINTR, 3)]);
    }

    #[test]
    fn no_user_names_the_user_first() {
        let text = OriginError::NoUser {
            user: "jdoe".into(),
        }
        .to_string();
        assert!(text.starts_with("no user jdoe on the server"), "{text}");
    }
}
