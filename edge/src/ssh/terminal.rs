//! The browser-rendered SSH terminal (docs/protocol.md 13): for an app with
//! `browser_rendering = "ssh"`, `/` is a terminal page (`page`) and
//! `/cdn-cgi/access/ssh/session` the websocket behind it, where the edge is
//! the SSH client of the app's origin (`origin`).
//!
//! The websocket is authenticated by the `CF_Authorization` cookie with the
//! checks of every app request (signature, app, aud, expiry, revocation) and
//! the app's policy; a refusal is a 401 or 403 before the upgrade. Then:
//! - browser → edge: binary frames are input bytes; text frames are JSON,
//!   `{"type":"resize","cols":N,"rows":M}`;
//! - edge → browser: binary frames are the origin's output; text frames are
//!   `{"type":"status","message":…}`, then at the end either
//!   `{"type":"exit","status":N|null,"signal":…|null}` or
//!   `{"type":"error","kind":…,"message":…}`, and a close frame.
//!
//! The session ends when the origin closes the channel, at the token's `exp`
//! (as Access ends a session), when the browser goes (the SSH channel and
//! connection are closed with it) or when the edge stops. It is one task;
//! nothing of it outlives it, and `EdgeState::terminals` counts it while it
//! lives. Buffering is bounded both ways: input is read from the websocket
//! only once the previous input is in the SSH channel's window, and output
//! is read from the channel only once the previous frame is written.
//!
//! With `ssh_log_public_key` set, every byte both ways goes to the session's
//! capture (`logs`); a capture that cannot start refuses the session, and
//! one that cannot keep up ends it: an audit log is never skipped.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Version};
use axum::response::Response;
use fastwebsockets::{Frame, OpCode, Role, WebSocketError};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use url::form_urlencoded;

use crate::auth::html;
use crate::auth::policy;
use crate::auth::tokens::{AccessClaims, Kind};
use crate::carrier::relay::{close_payload, send};
use crate::edge::EdgeState;
use crate::front::accept::Connection;
use crate::front::router::{AppHost, cookie, header_str};
use crate::ops::counters::ActiveGuard;
use crate::site::App;
use crate::ssh::logs::{self, Source};
use crate::ssh::origin::{self, OriginError, OriginEvent, OriginTarget};
use crate::ssh::page;

/// The websocket's path on the app host.
pub(crate) const SESSION: &str = "/cdn-cgi/access/ssh/session";
/// A browser frame larger than this is a protocol error: input comes a
/// keystroke or a paste at a time.
const MAX_FRAME: usize = 1024 * 1024;
/// The terminal size when the page gives none, and the largest taken.
const DEFAULT_SIZE: (u32, u32) = (80, 24);
const MAX_SIDE: u32 = 10_000;
/// The PTY's terminal type: what xterm.js emulates.
const TERM: &str = "xterm-256color";

/// `GET /` on a browser-rendered app: the page for a valid user cookie, the
/// login redirect otherwise (`None`: the caller answers as for any request).
pub(crate) fn index(
    edge: &EdgeState,
    app: &App,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    let claims = user_claims(edge, app, headers).ok()?;
    Some(page::page(&app.hostname, &claims.email))
}

/// The user token a request carries, checked as every app request's, and
/// the policy: `Err` is the refusal to answer before an upgrade.
fn user_claims(
    edge: &EdgeState,
    app: &App,
    headers: &axum::http::HeaderMap,
) -> Result<AccessClaims, Box<Response>> {
    let candidates = [
        cookie(headers, "CF_Authorization"),
        header_str(headers, "cf-access-token").map(str::to_owned),
    ];
    let mut why = None;
    for token in candidates.into_iter().flatten() {
        match edge.tokens.verify(&edge.keys, &token, Kind::App, &app.aud) {
            Ok(claims) => {
                if !policy::allows(&app.allow, &claims.email) {
                    return Err(Box::new(html::text(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "access-edge: {} is not allowed to reach {} by its Access policy",
                            claims.email, app.hostname
                        ),
                    )));
                }
                return Ok(claims);
            }
            Err(e) => why = Some(e),
        }
    }
    let message = match why {
        Some(why) => format!(
            "access-edge: the Access token is not valid ({why}): reload the page to log in again"
        ),
        None => {
            "access-edge: no Access token (CF_Authorization cookie): open the app's page to log in"
                .to_owned()
        }
    };
    Err(Box::new(html::text(StatusCode::UNAUTHORIZED, &message)))
}

/// `GET /cdn-cgi/access/ssh/session?cols=N&rows=M`: the terminal's websocket.
pub(crate) async fn session(
    State(edge): State<Arc<EdgeState>>,
    Extension(target): Extension<AppHost>,
    mut request: Request,
) -> Response {
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    if !app.browser_rendering {
        return html::text(
            StatusCode::NOT_FOUND,
            &format!(
                "access-edge: {} has no browser terminal (browser_rendering is off)",
                app.hostname
            ),
        );
    }
    let claims = match user_claims(&edge, app, request.headers()) {
        Ok(claims) => claims,
        Err(refusal) => return *refusal,
    };
    let Some(origin) = app.origin.clone() else {
        return html::text(
            StatusCode::BAD_GATEWAY,
            &format!("access-edge: {} has no origin to connect to", app.hostname),
        );
    };
    if !crate::carrier::upgrade::is_upgrade(&request) || request.version() != Version::HTTP_11 {
        return html::text(
            StatusCode::BAD_REQUEST,
            "access-edge: the terminal session is a websocket (an HTTP/1.1 upgrade)",
        );
    }
    let size = size_of(request.uri().query().unwrap_or(""));
    let (switching, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(answer) => answer,
        Err(e) => {
            return html::text(
                StatusCode::BAD_REQUEST,
                &format!("access-edge: not a websocket upgrade: {e}"),
            );
        }
    };
    if let Some(connection) = request.extensions().get::<Connection>() {
        connection.carrier();
    }
    let client_addr = crate::front::accept::client_addr(&request);
    let session = Session {
        app: app.hostname.clone(),
        log_key: log_key(app),
        origin,
        email: claims.email,
        exp: claims.exp,
        size,
        client_addr,
        active: edge.terminals.start(),
    };
    tokio::spawn(async move {
        let Some(ws) =
            crate::carrier::upgrade::completed(upgraded, &session.app, "the terminal's").await
        else {
            return;
        };
        run(edge, ws, session).await;
    });
    switching.map(Body::new)
}

/// The app's command-log key, if logging is on.
fn log_key(app: &App) -> Option<Result<logs::LogKey, String>> {
    app.ssh_log_key.clone().map(Ok)
}

/// `cols` and `rows` from the query, within bounds.
fn size_of(query: &str) -> (u32, u32) {
    let (mut cols, mut rows) = DEFAULT_SIZE;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Ok(n) = value.parse::<u32>() else {
            continue;
        };
        let n = n.clamp(1, MAX_SIDE);
        match &*key {
            "cols" => cols = n,
            "rows" => rows = n,
            _ => {}
        }
    }
    (cols, rows)
}

/// One terminal session, counted while it lives.
struct Session {
    app: String,
    log_key: Option<Result<logs::LogKey, String>>,
    origin: String,
    email: String,
    exp: u64,
    size: (u32, u32),
    client_addr: String,
    active: ActiveGuard,
}

/// What the browser sends, as the reader passes it on.
#[derive(Debug)]
enum Input {
    Data(Vec<u8>),
    Resize(u32, u32),
    Ping(Vec<u8>),
    /// Close frame, EOF or a broken connection: the browser is gone.
    Gone(String),
}

#[derive(Deserialize)]
struct Control {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cols: u32,
    #[serde(default)]
    rows: u32,
}

/// How a session ended, for the page and the log line.
enum End {
    Exit {
        status: Option<u32>,
        signal: Option<(String, bool, String)>,
    },
    Error {
        kind: &'static str,
        message: String,
    },
    /// The browser went: nothing more to tell it.
    Gone(String),
    Stopping,
}

async fn run<S>(edge: Arc<EdgeState>, ws: S, mut session: Session)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (read, mut write) = tokio::io::split(ws);
    let (mut frames, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    frames.set_auto_close(false);
    frames.set_auto_pong(false);
    frames.set_max_message_size(MAX_FRAME);
    // The reader hands over one input at a time: a full channel stops it
    // reading the websocket, and so the browser's TCP window fills.
    let (inputs_tx, mut inputs) = mpsc::channel::<Input>(1);
    let reader = async move {
        let mut nothing = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            let input = match frames.read_frame(&mut nothing).await {
                Ok(frame) => match frame.opcode {
                    OpCode::Binary | OpCode::Continuation => Input::Data(frame.payload.to_vec()),
                    OpCode::Text => match serde_json::from_slice::<Control>(&frame.payload) {
                        Ok(c) if c.kind == "resize" && c.cols > 0 && c.rows > 0 => {
                            Input::Resize(c.cols.min(MAX_SIDE), c.rows.min(MAX_SIDE))
                        }
                        _ => continue,
                    },
                    OpCode::Ping => Input::Ping(frame.payload.to_vec()),
                    OpCode::Pong => continue,
                    OpCode::Close => Input::Gone("the browser closed the websocket".into()),
                },
                Err(WebSocketError::UnexpectedEOF) => {
                    Input::Gone("the browser's connection ended".into())
                }
                Err(e) => Input::Gone(format!("the browser's connection failed: {e}")),
            };
            let gone = matches!(input, Input::Gone(_));
            if inputs_tx.send(input).await.is_err() || gone {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let mut stopping = edge.stopping.clone();
    let work = async {
        let end = converse(&edge, &mut session, &mut write, &mut inputs).await;
        let (frame, code, reason) = match &end {
            End::Exit { status, signal } => (
                Some(serde_json::json!({
                    "type": "exit",
                    "status": status,
                    "signal": signal.as_ref().map(|s| &s.0),
                    "core_dumped": signal.as_ref().is_some_and(|s| s.1),
                    "message": signal.as_ref().map(|s| &s.2).filter(|m| !m.is_empty()),
                })),
                1000,
                "the session ended",
            ),
            End::Error { kind, message } => (
                Some(serde_json::json!({ "type": "error", "kind": kind, "message": message })),
                1011,
                "the session could not go on",
            ),
            End::Gone(_) | End::Stopping => (None, 1001, "the edge is stopping"),
        };
        if let Some(frame) = frame {
            let _ = send(&mut write, OpCode::Text, frame.to_string().as_bytes()).await;
        }
        if !matches!(end, End::Gone(_)) {
            let _ = send(&mut write, OpCode::Close, &close_payload(code, reason)).await;
        }
        end
    };
    let end = tokio::select! {
        end = work => end,
        () = reader => End::Gone("unreachable".into()),
        _ = stopping.wait_for(|stopped| *stopped) => End::Stopping,
    };
    let outcome = match &end {
        End::Exit { status, signal } => match (status, signal) {
            (_, Some((name, _, _))) => format!("killed by signal {name}"),
            (Some(status), None) => format!("exit status {status}"),
            (None, None) => "the origin closed the channel".to_owned(),
        },
        End::Error { message, .. } => message.clone(),
        End::Gone(why) => why.clone(),
        End::Stopping => "the edge stopped".to_owned(),
    };
    tracing::info!(app = %session.app, email = %session.email, origin = %session.origin, "terminal session ended: {outcome}");
    drop(session.active);
}

/// The session proper: connect, open, relay; returns how it ended, with
/// the SSH channel and connection closed.
async fn converse<W: AsyncWrite + Unpin>(
    edge: &EdgeState,
    session: &mut Session,
    write: &mut W,
    inputs: &mut mpsc::Receiver<Input>,
) -> End {
    let deadline = {
        let left = session.exp.saturating_sub(crate::auth::tokens::now());
        tokio::time::Instant::now() + Duration::from_secs(left)
    };
    let expired = || End::Error {
        kind: "expired",
        message: "your Access session expired: reload the page to log in again".into(),
    };
    let status =
        |message: String| serde_json::json!({"type": "status", "message": message}).to_string();
    let _ = send(
        write,
        OpCode::Text,
        status(format!(
            "Connecting to {} for {}…",
            session.origin, session.email
        ))
        .as_bytes(),
    )
    .await;
    let settings = edge.settings();
    let target = OriginTarget {
        app_hostname: &session.app,
        origin: &session.origin,
        email: &session.email,
        state_dir: edge.state.path(),
        cert_validity: settings.cert_validity,
    };
    let connected = tokio::select! {
        connected = origin::connect(target) => connected,
        () = tokio::time::sleep_until(deadline) => return expired(),
        input = wait_gone(inputs) => return End::Gone(input),
    };
    let origin = match connected {
        Ok(origin) => origin,
        Err(e) => return error_end(&e),
    };
    let pty = logs::Pty {
        term: TERM.to_owned(),
        width: session.size.0,
        height: session.size.1,
        modes: Vec::new(),
    };
    let program = logs::Program::Shell;
    let log = match session.log_key.take() {
        None => None,
        Some(key) => {
            let meta = logs::SessionMeta {
                id: uuid_like(),
                email: session.email.clone(),
                app: session.app.clone(),
                client_addr: session.client_addr.clone(),
                origin_addr: session.origin.clone(),
                program: program.clone(),
                pty: Some(pty.clone()),
            };
            let dir = edge.state.path().join("ssh-logs");
            match key.and_then(|key| {
                logs::SessionLog::start(&dir, meta, &key).map_err(|e| e.to_string())
            }) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::error!(app = %session.app, "cannot start the command log: {e}");
                    origin.disconnect().await;
                    return End::Error {
                        kind: "log",
                        message: format!(
                            "the session to {} is refused: its command log cannot be written ({e})",
                            session.app
                        ),
                    };
                }
            }
        }
    };
    let mut channel = match origin.open(Some(&pty), &program).await {
        Ok(channel) => channel,
        Err(e) => {
            origin.disconnect().await;
            if let Some(log) = log {
                let _ = log.finish(None);
            }
            return error_end(&e);
        }
    };
    let _ = send(
        write,
        OpCode::Text,
        serde_json::json!({
            "type": "status",
            "ready": true,
            "message": format!("{} on {} (as {})", session.email, session.app, origin.user()),
        })
        .to_string()
        .as_bytes(),
    )
    .await;
    let record = |source: Source, code: u32, data: &[u8]| match &log {
        Some(log) => log.record(source, code, data).map_err(|e| e.to_string()),
        None => Ok(()),
    };
    let mut exit_status = None;
    let mut exit_signal = None;
    let end = loop {
        tokio::select! {
            input = inputs.recv() => match input {
                Some(Input::Data(data)) => {
                    if let Err(e) = record(Source::Client, logs::codes::DATA, &data) {
                        break log_failed(&session.app, &e);
                    }
                    if channel.send(&data).await.is_err() {
                        break End::Exit { status: exit_status, signal: exit_signal.take() };
                    }
                }
                Some(Input::Resize(cols, rows)) => {
                    let _ = channel.resize(cols, rows).await;
                }
                Some(Input::Ping(payload)) => {
                    if send(write, OpCode::Pong, &payload).await.is_err() {
                        break End::Gone("the browser's connection failed".into());
                    }
                }
                Some(Input::Gone(why)) => break End::Gone(why),
                None => break End::Gone("the browser's connection ended".into()),
            },
            event = channel.next() => match event {
                Some(OriginEvent::Data(data)) | Some(OriginEvent::ExtendedData(data)) => {
                    if let Err(e) = record(Source::Origin, logs::codes::DATA, &data) {
                        break log_failed(&session.app, &e);
                    }
                    if let Err(e) = send(write, OpCode::Binary, &data).await {
                        break End::Gone(format!("the browser's connection failed: {e}"));
                    }
                }
                Some(OriginEvent::ExitStatus(status)) => exit_status = Some(status),
                Some(OriginEvent::ExitSignal { name, core_dumped, message }) => {
                    exit_signal = Some((name, core_dumped, message));
                }
                Some(OriginEvent::Eof) => {}
                None => break End::Exit { status: exit_status, signal: exit_signal.take() },
            },
            () = tokio::time::sleep_until(deadline) => break expired(),
        }
    };
    channel.close().await;
    origin.disconnect().await;
    if let Some(log) = log {
        let exit = match &end {
            End::Exit { status, signal } => logs::ExitData {
                status: *status,
                signal: signal.as_ref().map(|s| s.0.clone()),
                core_dumped: signal.as_ref().is_some_and(|s| s.1),
                error_msg: signal
                    .as_ref()
                    .map(|s| s.2.clone())
                    .filter(|m| !m.is_empty()),
            },
            End::Error { message, .. } | End::Gone(message) => logs::ExitData {
                error_msg: Some(message.clone()),
                ..logs::ExitData::default()
            },
            End::Stopping => logs::ExitData::default(),
        };
        if let Err(e) = log.finish(Some(exit)) {
            tracing::error!(app = %session.app, "cannot finish the command log: {e}");
        }
    }
    end
}

/// Waits for the browser to go while something else is awaited; other
/// input is dropped then (the shell is not there yet).
async fn wait_gone(inputs: &mut mpsc::Receiver<Input>) -> String {
    loop {
        match inputs.recv().await {
            Some(Input::Gone(why)) => return why,
            None => return "the browser's connection ended".into(),
            Some(_) => {}
        }
    }
}

fn log_failed(app: &str, e: &str) -> End {
    tracing::error!(%app, "the command log failed: {e}");
    End::Error {
        kind: "log",
        message: format!("the session to {app} is ended: its command log cannot be written ({e})"),
    }
}

fn error_end(e: &OriginError) -> End {
    let kind = match e {
        OriginError::Down(_) => "origin_down",
        OriginError::HostKeyChanged { .. } => "host_key_changed",
        OriginError::NoUser { .. } => "no_user",
        OriginError::Refused(_) => "refused",
        OriginError::Ssh(_) => "ssh",
    };
    End::Error {
        kind,
        message: e.to_string(),
    }
}

/// A session id: 32 hex digits.
fn uuid_like() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_come_from_the_query_within_bounds() {
        assert_eq!(size_of("cols=120&rows=40"), (120, 40));
        assert_eq!(size_of(""), DEFAULT_SIZE);
        assert_eq!(size_of("cols=0&rows=999999"), (1, MAX_SIDE));
        assert_eq!(size_of("cols=x"), DEFAULT_SIZE);
    }
}
