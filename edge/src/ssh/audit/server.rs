//! The SSH server an audited app's client talks to (docs/protocol.md 14.2):
//! russh over the carrier's byte stream, one origin connection behind it
//! (`ssh::origin`), each session channel relayed to a channel of its own
//! there and recorded (`ssh::logs`).
//!
//! What is relayed: shell, exec, the PTY and its window changes, data both
//! ways, stderr, the exit status or signal. What is refused, with a line on
//! the client's terminal: port forwarding (`-L`, `-R`, `-W`), agent and X11
//! forwarding, subsystems (sftp): Cloudflare's SSH proxy carries none of
//! them, and a recorded session must be the whole of what went through.

use std::collections::HashMap;
use std::sync::Arc;

use russh::server::{Auth, Handle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty as PtyMode, Sig};
use tokio::sync::mpsc;

use super::{Audited, refusal};
use crate::ssh::logs::{self, ExitData, Program, SessionLog, SessionMeta, Source, codes};
use crate::ssh::origin::{OriginChannel, OriginEvent};

/// SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 5.1): what `ssh` prints
/// as "administratively prohibited" before the description.
const PROHIBITED: u32 = 1;
/// How many client writes may wait for the origin before the client is
/// held back (russh stops reading it while `data` awaits).
const QUEUE: usize = 16;

/// The russh handler of one client connection.
pub(super) struct Server {
    pub(super) ctx: Arc<Audited>,
    /// The user name the client asked for, once authenticated.
    pub(super) user: Option<String>,
    pub(super) channels: HashMap<ChannelId, State>,
}

pub(super) enum State {
    /// Opened; a PTY may come before the program.
    Opened { pty: Option<logs::Pty> },
    /// Running: what the client sends goes here.
    Running(mpsc::Sender<ToOrigin>),
}

pub(super) enum ToOrigin {
    Data(Vec<u8>),
    Resize(u32, u32),
    /// The client closed its stdin (`echo x | ssh host cat`).
    Eof,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ServerError {
    #[error("{0}")]
    Ssh(#[from] russh::Error),
}

impl Server {
    /// Whether the client logged in as the user the token names; if not,
    /// the reason, for the client's terminal.
    fn wrong_user(&self) -> Option<String> {
        match &self.user {
            Some(user) if *user == self.ctx.principal => None,
            Some(user) => Some(format!(
                "access-edge: you are {} on {} (from {}): log in as {0}, not {user} (ssh {0}@{1})",
                self.ctx.principal, self.ctx.host, self.ctx.email
            )),
            None => Some("access-edge: not logged in".to_owned()),
        }
    }

    /// Writes `line` to the client's stderr on `channel`.
    fn tell(session: &mut Session, channel: ChannelId, line: &str) {
        let _ = session.extended_data(channel, 1, format!("{line}\r\n").into_bytes());
    }

    /// Starts `program` on `channel`: a channel at the origin, a log, and
    /// the task that relays between them.
    fn start(&mut self, channel: ChannelId, program: Program, session: &mut Session) {
        let pty = match self.channels.remove(&channel) {
            Some(State::Opened { pty }) => pty,
            Some(running @ State::Running(_)) => {
                // one program per channel (RFC 4254 6.5)
                self.channels.insert(channel, running);
                let _ = session.channel_failure(channel);
                return;
            }
            None => {
                let _ = session.channel_failure(channel);
                return;
            }
        };
        if let Some(why) = self.wrong_user() {
            let _ = session.channel_success(channel);
            finish_with(session.handle(), channel, why);
            return;
        }
        let _ = session.channel_success(channel);
        if self.ctx.origin.is_closed() {
            finish_with(
                session.handle(),
                channel,
                "access-edge: the connection to the origin has ended".to_owned(),
            );
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.channels.insert(channel, State::Running(tx));
        tokio::spawn(relay(
            self.ctx.clone(),
            session.handle(),
            channel,
            pty,
            program,
            rx,
        ));
    }
}

/// Ends `channel` after `why` on its stderr, with exit status 1.
fn finish_with(handle: Handle, channel: ChannelId, why: String) {
    tokio::spawn(async move {
        let _ = handle
            .extended_data(channel, 1, format!("{why}\r\n").into_bytes())
            .await;
        let _ = handle.exit_status_request(channel, 1).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
    });
}

impl russh::server::Handler for Server {
    type Error = ServerError;

    // The websocket that carries this connection was let in by Access, as
    // the token's user: ssh needs no key of its own. "none" succeeds, so a
    // client with no key (or an agent full of them) logs in at once; a
    // public key is accepted too, for clients that never try "none".
    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        self.user = Some(user.to_owned());
        Ok(Auth::Accept)
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _key: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.user = Some(user.to_owned());
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels
            .insert(channel.id(), State::Opened { pty: None });
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(app = %self.ctx.app, who = %self.ctx.email, "refused port forwarding to {host}:{port}");
        reply
            .reject(ChannelOpenFailure::Other {
                code: PROHIBITED,
                reason: refusal::port_forwarding(&self.ctx.host),
            })
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::Other {
                code: PROHIBITED,
                reason: refusal::port_forwarding(&self.ctx.host),
            })
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // ssh says "remote port forwarding failed"; the global request
        // carries no reason, so the log says which.
        tracing::info!(app = %self.ctx.app, who = %self.ctx.email, "refused remote port forwarding of {address}:{port}");
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // OpenSSH asks without wanting a reply: the refusal is a line on
        // the session's stderr, and the session goes on without an agent.
        tracing::info!(app = %self.ctx.app, who = %self.ctx.email, "refused agent forwarding");
        Self::tell(session, channel, &refusal::agent_forwarding(&self.ctx.host));
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Self::tell(session, channel, &refusal::x11_forwarding(&self.ctx.host));
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        modes: &[(PtyMode, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(State::Opened { pty }) => {
                *pty = Some(logs::Pty {
                    term: term.to_owned(),
                    width: col_width,
                    height: row_height,
                    modes: modes
                        .iter()
                        .filter(|(mode, _)| *mode != PtyMode::TTY_OP_END)
                        .map(|(mode, value)| (format!("{mode:?}"), *value))
                        .collect(),
                });
                let _ = session.channel_success(channel);
            }
            _ => {
                let _ = session.channel_failure(channel);
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Program::Shell, session);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Program::Exec(command), session);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Self::tell(session, channel, &refusal::subsystem(name, &self.ctx.host));
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(State::Running(tx)) => {
                let _ = tx.send(ToOrigin::Resize(col_width, row_height)).await;
            }
            Some(State::Opened { pty: Some(pty) }) => {
                pty.width = col_width;
                pty.height = row_height;
            }
            _ => {}
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(State::Running(tx)) = self.channels.get(&channel) {
            // awaiting a full queue holds the client back: backpressure
            let _ = tx.send(ToOrigin::Data(data.to_vec())).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(State::Running(tx)) = self.channels.get(&channel) {
            let _ = tx.send(ToOrigin::Eof).await;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // the relay sees its queue end and closes the origin's channel
        self.channels.remove(&channel);
        Ok(())
    }
}

/// One session channel: opened at the origin, recorded, relayed both ways
/// until the origin's side ends or the client goes.
async fn relay(
    ctx: Arc<Audited>,
    handle: Handle,
    channel: ChannelId,
    pty: Option<logs::Pty>,
    program: Program,
    mut from_client: mpsc::Receiver<ToOrigin>,
) {
    let mut log = match &ctx.log_key {
        Some(key) => {
            let meta = SessionMeta {
                id: uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .to_string(),
                email: ctx.email.clone(),
                app: ctx.app.clone(),
                client_addr: ctx.client_addr.clone(),
                origin_addr: ctx.origin_addr.clone(),
                program: program.clone(),
                pty: pty.clone(),
            };
            match SessionLog::start(&ctx.logs_dir, meta, key) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::warn!(app = %ctx.app, who = %ctx.email, "session refused: its log cannot be written: {e}");
                    finish_with(handle, channel, refusal::unlogged(&e.to_string()));
                    return;
                }
            }
        }
        None => None,
    };
    let mut origin: OriginChannel = match ctx.origin.open(pty.as_ref(), &program).await {
        Ok(origin) => origin,
        Err(e) => {
            tracing::info!(app = %ctx.app, who = %ctx.email, "the origin refused the session: {e}");
            if let Some(log) = log.take() {
                let _ = log.finish(Some(exit_error(e.to_string())));
            }
            finish_with(handle, channel, format!("access-edge: {e}"));
            return;
        }
    };
    tracing::info!(app = %ctx.app, who = %ctx.email, ?program, "audited session started");
    let mut exit = ExitData {
        status: None,
        signal: None,
        core_dumped: false,
        error_msg: None,
    };
    // A log that cannot keep up ends the session: it never runs unlogged.
    let record = |log: &Option<SessionLog>, source: Source, code: u32, data: &[u8]| match log {
        Some(log) => log.record(source, code, data).map_err(|e| e.to_string()),
        None => Ok(()),
    };
    let failure = loop {
        tokio::select! {
            message = from_client.recv() => match message {
                Some(ToOrigin::Data(data)) => {
                    if let Err(e) = record(&log, Source::Client, codes::DATA, &data) {
                        break Some(refusal::unlogged(&e));
                    }
                    if let Err(e) = origin.send(&data).await {
                        break Some(format!("access-edge: {e}"));
                    }
                }
                Some(ToOrigin::Resize(cols, rows)) => {
                    if let Some(log) = &log
                        && let Some(pty) = &pty
                    {
                        log.set_pty(logs::Pty { width: cols, height: rows, ..pty.clone() });
                    }
                    let _ = origin.resize(cols, rows).await;
                }
                Some(ToOrigin::Eof) => {
                    if let Err(e) = origin.eof().await {
                        break Some(format!("access-edge: {e}"));
                    }
                }
                // the client closed its channel (or went): close the origin's
                None => break None,
            },
            event = origin.next() => match event {
                Some(OriginEvent::Data(data)) => {
                    if let Err(e) = record(&log, Source::Origin, codes::DATA, &data) {
                        break Some(refusal::unlogged(&e));
                    }
                    if handle.data(channel, data).await.is_err() {
                        break None;
                    }
                }
                Some(OriginEvent::ExtendedData(data)) => {
                    if let Err(e) = record(&log, Source::Origin, codes::EXTENDED_DATA, &data) {
                        break Some(refusal::unlogged(&e));
                    }
                    if handle.extended_data(channel, 1, data).await.is_err() {
                        break None;
                    }
                }
                Some(OriginEvent::ExitStatus(status)) => {
                    exit.status = Some(status);
                    let _ = handle.exit_status_request(channel, status).await;
                }
                Some(OriginEvent::ExitSignal { name, core_dumped, message }) => {
                    exit.signal = Some(name.clone());
                    exit.core_dumped = core_dumped;
                    if !message.is_empty() {
                        exit.error_msg = Some(message.clone());
                    }
                    let _ = handle
                        .exit_signal_request(channel, Sig::Custom(name), core_dumped, message, String::new())
                        .await;
                }
                Some(OriginEvent::Eof) => {
                    let _ = handle.eof(channel).await;
                }
                None => break None,
            },
        }
    };
    origin.close().await;
    if let Some(why) = &failure {
        exit.error_msg = Some(why.clone());
        let _ = handle
            .extended_data(channel, 1, format!("{why}\r\n").into_bytes())
            .await;
    }
    let _ = handle.close(channel).await;
    if let Some(log) = log {
        match log.finish(Some(exit)) {
            Ok(path) => {
                tracing::info!(app = %ctx.app, who = %ctx.email, "audited session ended, recorded in {}", path.display())
            }
            Err(e) => {
                tracing::warn!(app = %ctx.app, who = %ctx.email, "audited session ended, but its log could not be sealed: {e}")
            }
        }
    }
}

fn exit_error(message: String) -> ExitData {
    ExitData {
        status: None,
        signal: None,
        core_dumped: false,
        error_msg: Some(message),
    }
}
