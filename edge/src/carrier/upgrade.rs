//! The websocket carrier's front door (docs/protocol.md 6.1–6.2): an HTTP/1.1
//! websocket upgrade on an app host, answered the way the real edge answers.
//!
//! - No valid app token for this app (missing, expired, revoked, another
//!   app's) and no service token: the same 302 to the login path as every
//!   unauthenticated request. Only that 302 makes a client log in and dial
//!   again; a 401 or 403 makes the official client fail without logging in.
//! - A bad service token: 403 with one line, so no client starts a browser
//!   login for it (as for plain requests, see `app_host`).
//! - Nowhere to go (`destination`): 400, 403 or 502 with one line.
//! - The origin is dialled before the 101 is sent, so an origin that is down
//!   gets a `502 Bad Gateway` naming the problem (as the real edge and tunnel
//!   answer) rather than a websocket that closes at once.
//! - Then `101 Switching Protocols`, no compression, no subprotocol, and the
//!   relay (`relay`) runs on a task of its own until the session ends or the
//!   edge stops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, Version};
use axum::response::Response;
use tokio::net::TcpStream;

use crate::auth::discovery;
use crate::auth::html;
use crate::carrier::destination::{self, JUMP_HEADER};
use crate::carrier::relay;
use crate::edge::EdgeState;
use crate::front::accept::Connection;
use crate::front::app_host::{self, Principal};
use crate::front::router::{AppHost, header_str};
use crate::ops::counters::{ActiveGuard, Endpoint};
use crate::ssh::audit::{self, host::HostIdentity};
use crate::ssh::origin::{self, OriginTarget};

/// How long dialling an origin may take before the upgrade gets a 502.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client may take to receive the 101 before the session is
/// given up.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `request` asks for a websocket (RFC 6455: a GET with `Connection:
/// Upgrade` and `Upgrade: websocket`).
pub(crate) fn is_upgrade(request: &Request) -> bool {
    request.method() == Method::GET && fastwebsockets::upgrade::is_upgrade_request(request)
}

/// Answers a websocket upgrade on the app host `target`.
pub(crate) async fn upgrade(
    edge: Arc<EdgeState>,
    target: AppHost,
    mut request: Request,
) -> Response {
    edge.counters.hit(Endpoint::Websocket);
    if let Some(delay) = edge.faults.handshake_delay() {
        tokio::time::sleep(delay).await;
    }
    let Some(app) = edge.site.apps.get(target.app) else {
        return html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "access-edge: no such app",
        );
    };
    let principal = match app_host::authenticate(&edge, app, request.headers()) {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
            return discovery::login_redirect(&edge, app, &target.host, path_and_query, false);
        }
        Err(refusal) => {
            tracing::info!(app = %app.hostname, "refused a service token: {refusal}");
            return html::text(StatusCode::FORBIDDEN, &format!("access-edge: {refusal}"));
        }
    };
    let destination = match destination::resolve(app, header_str(request.headers(), JUMP_HEADER)) {
        Ok(destination) => destination,
        Err(refusal) => {
            tracing::info!(app = %app.hostname, "no websocket: {}", refusal.message);
            return html::text(refusal.status, &format!("access-edge: {}", refusal.message));
        }
    };
    if request.version() != Version::HTTP_11 {
        return html::text(
            StatusCode::BAD_REQUEST,
            "access-edge: a websocket upgrade needs HTTP/1.1",
        );
    }
    let (switching, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(answer) => answer,
        Err(e) => {
            return html::text(
                StatusCode::BAD_REQUEST,
                &format!("access-edge: not a websocket upgrade: {e}"),
            );
        }
    };
    if app.audit_ssh {
        let client_addr = crate::front::accept::client_addr(&request);
        return match audited(
            &edge,
            app,
            &target.host,
            &principal,
            destination,
            client_addr,
        )
        .await
        {
            Ok(audited) => {
                if let Some(connection) = request.extensions().get::<Connection>() {
                    connection.carrier();
                }
                let session = Session {
                    app: app.hostname.clone(),
                    destination: audited.1.origin_addr.clone(),
                    who: principal,
                    active: edge.carried.start(),
                };
                tokio::spawn(carry_audited(edge.clone(), upgraded, audited, session));
                switching.map(Body::new)
            }
            Err((status, problem)) => {
                tracing::info!(app = %app.hostname, "no audited websocket: {problem}");
                html::text(status, &format!("access-edge: {problem}"))
            }
        };
    }
    let origin = match dial(&edge, &destination).await {
        Ok(origin) => origin,
        Err(problem) => {
            tracing::info!(app = %app.hostname, "no websocket: {problem}");
            return html::text(StatusCode::BAD_GATEWAY, &format!("access-edge: {problem}"));
        }
    };
    // From the 101 on, the connection is a carried session: no HTTP
    // deadline ends it, and its reads take the large buffer.
    if let Some(connection) = request.extensions().get::<Connection>() {
        connection.carrier();
    }
    let session = Session {
        app: app.hostname.clone(),
        destination,
        who: principal,
        active: edge.carried.start(),
    };
    tokio::spawn(carry(edge.clone(), upgraded, origin, session));
    switching.map(Body::new)
}

/// Connects to the origin, with a one-line reason when it cannot.
async fn dial(edge: &EdgeState, destination: &str) -> Result<TcpStream, String> {
    if edge.faults.origin_refused() {
        return Err(format!(
            "the origin {destination} refused the connection (refuse_origin fault)"
        ));
    }
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(destination)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(format!("the origin {destination} refused the connection"));
        }
        Ok(Err(e)) => return Err(format!("cannot reach the origin {destination}: {e}")),
        Err(_) => {
            return Err(format!(
                "cannot reach the origin {destination}: no answer in {}s",
                DIAL_TIMEOUT.as_secs()
            ));
        }
    };
    // Interactive sessions (ssh keystrokes) must not wait for delayed ACKs.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on the origin connection: {e}");
    }
    Ok(stream)
}

/// What a carried connection is, for its log line; counted active while it
/// lives.
struct Session {
    app: String,
    destination: String,
    who: Principal,
    active: ActiveGuard,
}

/// Waits for the upgrade to complete, then relays until the session ends or
/// the edge stops (which drops both connections).
async fn carry(
    edge: Arc<EdgeState>,
    upgraded: fastwebsockets::upgrade::UpgradeFut,
    origin: TcpStream,
    session: Session,
) {
    let work = async {
        let Some(client) = completed(upgraded, &session.app, "the").await else {
            return;
        };
        tracing::debug!(app = %session.app, origin = %session.destination, who = %session.who, "carrying");
        let (origin_read, origin_write) = origin.into_split();
        let report = relay::relay(
            client,
            origin_read,
            origin_write,
            &edge.carried,
            &edge.faults,
        )
        .await;
        tracing::info!(
            app = %session.app,
            origin = %session.destination,
            who = %session.who,
            to_origin = report.to_origin,
            to_client = report.to_client,
            "carried connection ended: {}",
            report.outcome
        );
    };
    until_stopped(&edge, &session.app, "carried", work).await;
    drop(session.active);
}

/// For an audited app: the edge's host identity and the connection to the
/// origin as the token's user, made before the 101 so that a refusal is an
/// HTTP answer `cfaccess` prints (docs/protocol.md 14.1).
async fn audited(
    edge: &EdgeState,
    app: &crate::site::App,
    host: &str,
    principal: &Principal,
    destination: String,
    client_addr: String,
) -> Result<(HostIdentity, audit::Audited), (StatusCode, String)> {
    let Principal::User(email, expires) = principal else {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} is an audited app: its SSH sessions are a user's, and a service token has no user; log in instead",
                app.hostname
            ),
        ));
    };
    let identity = HostIdentity::load_or_create(edge.state.path())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if edge.faults.origin_refused() {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!("the origin {destination} refused the connection (refuse_origin fault)"),
        ));
    }
    let origin = origin::connect(OriginTarget {
        app_hostname: &app.hostname,
        origin: &destination,
        email,
        state_dir: edge.state.path(),
        cert_validity: edge.settings().cert_validity,
    })
    .await
    .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok((
        identity,
        audit::Audited {
            app: app.hostname.clone(),
            host: host.to_owned(),
            email: email.clone(),
            principal: origin.user().to_owned(),
            client_addr,
            origin_addr: destination,
            logs_dir: edge.state.path().join("ssh-logs"),
            log_key: app.ssh_log_key.clone(),
            expires: *expires,
            origin,
        },
    ))
}

/// Bytes the in-memory pipe between the carrier's relay and the SSH server
/// holds in each direction.
const PIPE: usize = 256 * 1024;

/// An audited session: the relay carries the websocket into a pipe, and the
/// SSH server serves on the pipe's other end.
async fn carry_audited(
    edge: Arc<EdgeState>,
    upgraded: fastwebsockets::upgrade::UpgradeFut,
    (identity, audited): (HostIdentity, audit::Audited),
    session: Session,
) {
    let work = async {
        let Some(client) = completed(upgraded, &session.app, "the").await else {
            return;
        };
        tracing::debug!(app = %session.app, origin = %session.destination, who = %session.who, "serving audited ssh");
        let (relay_end, ssh_end) = tokio::io::duplex(PIPE);
        let (pipe_read, pipe_write) = tokio::io::split(relay_end);
        let relay = relay::relay(client, pipe_read, pipe_write, &edge.carried, &edge.faults);
        let ssh = audit::serve(ssh_end, &identity, audited);
        let (report, served) = tokio::join!(relay, ssh);
        if let Err(e) = served {
            tracing::info!(app = %session.app, who = %session.who, "audited ssh ended: {e}");
        }
        tracing::info!(
            app = %session.app,
            origin = %session.destination,
            who = %session.who,
            to_origin = report.to_origin,
            to_client = report.to_client,
            "audited connection ended: {}",
            report.outcome
        );
    };
    until_stopped(&edge, &session.app, "audited", work).await;
    drop(session.active);
}

/// The upgraded connection once the client's side of the 101 completes
/// within [`UPGRADE_TIMEOUT`]; `None`, logged, when it does not. `what`
/// names the connection in the log line (`the`, `the terminal's`).
pub(crate) async fn completed(
    upgraded: fastwebsockets::upgrade::UpgradeFut,
    app: &str,
    what: &str,
) -> Option<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + use<>> {
    match tokio::time::timeout(UPGRADE_TIMEOUT, upgraded).await {
        Ok(Ok(ws)) => Some(ws.into_inner()),
        Ok(Err(e)) => {
            tracing::info!(%app, "{what} upgrade did not complete: {e}");
            None
        }
        Err(_) => {
            tracing::info!(%app, "{what} upgrade did not complete in time");
            None
        }
    }
}

/// Runs `work` until it ends or the edge stops, whichever comes first.
async fn until_stopped(edge: &EdgeState, app: &str, kind: &str, work: impl Future<Output = ()>) {
    let mut stopping = edge.stopping.clone();
    tokio::select! {
        () = work => {}
        _ = stopping.wait_for(|stopped| *stopped) => {
            tracing::debug!(%app, "the edge stops: {kind} connection dropped");
        }
    }
}
