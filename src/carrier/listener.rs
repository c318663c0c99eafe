//! Listener mode (`--url 127.0.0.1:2222`): each accepted TCP connection gets
//! its own websocket, concurrently, until the process is told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{Target, open, pump};
use crate::access::Access;
use crate::limits;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: String,
    pub source: std::io::Error,
}

/// Binds `addr` (`host:port`).
pub async fn bind(addr: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError {
        addr: addr.to_owned(),
        source,
    })
}

/// Accepts connections on `listener` and carries each to `target` until
/// `stop` completes. A failed connection is logged; the listener goes on.
pub async fn serve(
    listener: TcpListener,
    access: Arc<Access>,
    target: Arc<Target>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // out of file descriptors, say: the error comes back at
                    // once on every try, so pause rather than spin on it
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(limits::ACCEPT_RETRY) => {}
                        () = &mut stop => return,
                    }
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let access = access.clone();
        let target = target.clone();
        tokio::spawn(async move { carry(stream, peer, &access, &target).await });
    }
}

async fn carry(stream: tokio::net::TcpStream, peer: SocketAddr, access: &Access, target: &Target) {
    let _ = stream.set_nodelay(true);
    tracing::info!(%peer, host = %target.url.authority(), "connection accepted");
    let ws = match open(access, target).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::error!(%peer, "{}", crate::error::describe(&anyhow::Error::new(e)));
            return;
        }
    };
    let (read, write) = stream.into_split();
    match pump::run(ws, read, write).await {
        Ok(()) => tracing::info!(%peer, "connection closed"),
        Err(e) => tracing::warn!(%peer, "connection ended: {e}"),
    }
}
