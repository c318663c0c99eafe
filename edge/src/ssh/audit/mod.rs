//! Audited SSH (docs/protocol.md 14): for an app with `audit_ssh = true`,
//! the edge does not relay the client's bytes to the origin; it is the SSH
//! server the client talks to, and an SSH client of the origin, so that it
//! sees (and records, `ssh::logs`) what goes through, as Cloudflare's SSH
//! proxy does.
//!
//! - Before the websocket's 101, the edge connects to the origin as the
//!   token's user (`ssh::origin`: a short-lived certificate for the email's
//!   local part, as `cert_sign` makes it). An origin that is down, refuses
//!   the certificate or has no such user gets the 502 a plain app gets for
//!   an origin that is down, with the origin's reason: `cfaccess` prints it.
//! - After the 101, the websocket's bytes are a byte stream (the carrier's
//!   relay into an in-memory pipe) and russh serves SSH on it (`server`),
//!   with the edge's host key and a host certificate from its host CA
//!   (`host`), which the client trusts by `cfaccess ssh-config`'s
//!   `@cert-authority` line.

pub(crate) mod host;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::{MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ssh::logs::LogKey;
use crate::ssh::origin::Origin;
use host::HostIdentity;

/// What one audited connection needs to know.
pub(crate) struct Audited {
    /// The app's configured hostname.
    pub app: String,
    /// The name the client dialled: the host certificate's principal.
    pub host: String,
    /// The user the token names.
    pub email: String,
    /// The Unix user at the origin: the email's local part (`Origin::user`).
    pub principal: String,
    pub client_addr: String,
    pub origin_addr: String,
    /// `<state dir>/ssh-logs`.
    pub logs_dir: PathBuf,
    /// The app's log key: `None` records nothing (no `ssh_log_public_key`).
    pub log_key: Option<LogKey>,
    /// The connection to the origin, made before the 101.
    pub origin: Origin,
    /// When the Access token that opened the websocket expires (unix
    /// seconds): the session ends then, as Access ends it.
    pub expires: u64,
}

/// Serves SSH on `stream` until the client goes; one line on failure.
pub(crate) async fn serve<S>(stream: S, identity: &HostIdentity, ctx: Audited) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (key, cert) = identity.for_host(&ctx.host).map_err(|e| e.to_string())?;
    let config = russh::server::Config {
        keys: vec![key],
        certificates: vec![cert],
        methods: MethodSet::from(&[MethodKind::None, MethodKind::PublicKey][..]),
        // Access let the user in already: no failed-login delay to impose.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    };
    let ctx = Arc::new(ctx);
    let handler = server::Server {
        ctx: ctx.clone(),
        user: None,
        channels: HashMap::new(),
    };
    let left = ctx.expires.saturating_sub(crate::auth::tokens::now());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(left);
    let session = async {
        match russh::server::run_stream(Arc::new(config), stream, handler).await {
            Ok(running) => running
                .await
                .map_err(|e| format!("the SSH session failed: {e}")),
            Err(e) => Err(format!("the SSH handshake failed: {e}")),
        }
    };
    let served = tokio::select! {
        served = session => served,
        () = tokio::time::sleep_until(deadline) => {
            tracing::info!(app = %ctx.app, email = %ctx.email, "audited session ended: the Access token expired");
            Ok(())
        }
    };
    // The client is gone: nothing of its session stays open at the origin.
    ctx.origin.disconnect().await;
    served
}

/// The lines a refused feature prints on the client's terminal.
pub(crate) mod refusal {
    pub(crate) fn port_forwarding(host: &str) -> String {
        format!(
            "access-edge: port forwarding is not supported through {host}: it is an audited app (audit_ssh), whose sessions are recorded"
        )
    }

    pub(crate) fn agent_forwarding(host: &str) -> String {
        format!(
            "access-edge: agent forwarding is not supported through {host}: it is an audited app (audit_ssh); the session goes on without it"
        )
    }

    pub(crate) fn x11_forwarding(host: &str) -> String {
        format!(
            "access-edge: X11 forwarding is not supported through {host}: it is an audited app (audit_ssh)"
        )
    }

    pub(crate) fn subsystem(name: &str, host: &str) -> String {
        format!(
            "access-edge: the {name} subsystem is not supported through {host}: it is an audited app (audit_ssh); use a shell or a command"
        )
    }

    pub(crate) fn unlogged(why: &str) -> String {
        format!("access-edge: the session is refused: its command log cannot be written ({why})")
    }
}

/// `GET /cdn-cgi/access/ssh/host-ca` on an app host (access-edge's own
/// route, not Cloudflare's; docs/protocol.md 14.3): for an audited app, the
/// `known_hosts` line that makes `ssh` trust the edge as this host, as
/// text; for any other app a 404, which tells `cfaccess ssh-config` that
/// ssh goes to the origin's own host key. No login: it is a public key,
/// and `ssh-config` runs before any login.
pub(crate) async fn host_ca(
    axum::extract::State(edge): axum::extract::State<Arc<crate::edge::EdgeState>>,
    axum::Extension(target): axum::Extension<crate::front::router::AppHost>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let Some(app) = edge.site.apps.get(target.app) else {
        return crate::auth::html::text(StatusCode::NOT_FOUND, "access-edge: no such app");
    };
    if !app.audit_ssh {
        return crate::auth::html::text(
            StatusCode::NOT_FOUND,
            &format!(
                "access-edge: {} is not an audited app: ssh reaches the origin's own host key",
                app.hostname
            ),
        );
    }
    match HostIdentity::load_or_create(edge.state.path()) {
        Ok(identity) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            format!("{}\n", identity.known_hosts_line(&target.host)),
        )
            .into_response(),
        Err(e) => crate::auth::html::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("access-edge: {e}"),
        ),
    }
}
