//! The connection a websocket is carried on (docs/protocol.md 6.1).
//!
//! With no proxy in the environment, cfaccess connects to the edge itself:
//! TCP without Nagle, TLS with the HTTP client's own settings
//! ([`http::tls_config`]: the same trust, the same edge-profile names), and
//! the upgrade over one hyper HTTP/1.1 connection. Holding the socket is
//! what lets it read in large chunks: rustls pulls at most 4 KiB of
//! ciphertext per read, which is a quarter of a million `recv` calls for a
//! carried GiB; reading up to [`SOCKET_READ`] at a time into a buffer that
//! rustls then drains costs a copy in memory instead, which is far cheaper.
//! (The edge does the same on its side, in `front::accept`.)
//!
//! Through a proxy (`HTTPS_PROXY`, `ALL_PROXY`), the upgrade goes through the
//! shared HTTP client, which speaks to the proxy; the stream is then
//! reqwest's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reqwest::header::{HOST, HeaderMap, USER_AGENT};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;

use crate::access::edge_profile::EdgeProfile;
use crate::access::host::AppUrl;
use crate::access::http;
use crate::error::describe_cause;
use crate::limits;

/// The most read from the socket in one call, once the websocket carries.
pub const SOCKET_READ: usize = 256 * 1024;

/// The TLS records rustls may hold before they are written: a whole frame
/// of the carrier's (1 MiB, `pump`), so that one frame is one vectored write
/// of its records rather than sixteen (rustls' default is 64 KiB).
const SEND_BUFFER: usize = 512 * 1024 + 64 * 1024;

/// The proxy variables that make reqwest send an `https` request through a
/// proxy (it reads no system proxy settings as built here).
const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// Whether the environment names a proxy for https: then the upgrade goes
/// through the shared HTTP client.
pub fn proxied() -> bool {
    PROXY_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

type Tls = tokio_rustls::client::TlsStream<BufReader<TcpStream>>;

/// A carried websocket's byte stream.
pub enum Stream {
    /// cfaccess's own connection, with what hyper read past the 101.
    Direct { early: Bytes, tls: Box<Tls> },
    /// Through a proxy, by way of the shared HTTP client.
    Proxied(reqwest::Upgraded),
}

/// A response to the upgrade from the direct connection.
pub struct Answer {
    response: hyper::Response<hyper::body::Incoming>,
}

impl Answer {
    pub fn status(&self) -> reqwest::StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The stream, after a 101.
    pub async fn upgrade(self) -> Result<Stream, String> {
        let upgraded = hyper::upgrade::on(self.response)
            .await
            .map_err(|e| e.to_string())?;
        match upgraded.downcast::<TokioIo<Tls>>() {
            Ok(parts) => Ok(Stream::Direct {
                early: parts.read_buf,
                tls: Box::new(parts.io.into_inner()),
            }),
            Err(_) => Err("the upgraded connection is not the one opened".into()),
        }
    }

    /// An error answer's text (see [`http::error_text`]).
    pub async fn error_text(self, limit: std::time::Duration) -> String {
        http::error_text_of(self.response.into_body(), limit).await
    }
}

/// Sends the upgrade request to `url` over a new connection of our own.
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    profile: Option<&EdgeProfile>,
    url: &AppUrl,
    headers: HeaderMap,
) -> Result<Answer, String> {
    let stream = tokio::time::timeout(limits::CONNECT, connect(tls, profile, url))
        .await
        .map_err(|_| {
            format!(
                "no connection within {} (TCP connect and TLS handshake)",
                limits::show(limits::CONNECT)
            )
        })??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| describe_cause(&e))?;
    // polled on the runtime until the upgrade takes the connection over
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("the upgrade connection ended: {e}");
        }
    });
    let target = match url.url().query() {
        Some(q) => format!("{}?{q}", url.url().path()),
        None => url.url().path().to_owned(),
    };
    let mut request = hyper::Request::get(target)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let host = reqwest::header::HeaderValue::from_str(&url.authority())
        .map_err(|_| "the host is not a valid header value".to_owned())?;
    request.headers_mut().insert(HOST, host);
    request.headers_mut().insert(
        USER_AGENT,
        reqwest::header::HeaderValue::from_static(http::USER_AGENT),
    );
    request.headers_mut().extend(headers);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| describe_cause(&e))?;
    tracing::debug!(status = %response.status(), "the edge answered the websocket upgrade");
    Ok(Answer { response })
}

/// TCP to the first address that answers, then TLS.
async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    profile: Option<&EdgeProfile>,
    url: &AppUrl,
) -> Result<Tls, String> {
    let host = url.hostname();
    let port = url.url().port_or_known_default().unwrap_or(443);
    let addrs = http::addresses(profile, &host)
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    let mut socket = None;
    for mut addr in addrs {
        // a port in the URL wins; else the profile's, else https's
        if url.url().port().is_some() || addr.port() == 0 {
            addr.set_port(port);
        }
        tracing::debug!(%host, %addr, "connecting to the edge");
        match TcpStream::connect(addr).await {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => {
                tracing::debug!(%addr, "cannot connect: {e}");
                last = describe_cause(&e);
            }
        }
    }
    let socket = socket.ok_or(last)?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, BufReader::with_capacity(SOCKET_READ, socket))
        .await
        .map_err(|e| describe_cause(&e))?;
    stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
    Ok(stream)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct { early, tls } => {
                if !early.is_empty() {
                    let n = early.len().min(buf.remaining());
                    buf.put_slice(&early.split_to(n));
                    return Poll::Ready(Ok(()));
                }
                Pin::new(tls.as_mut()).poll_read(cx, buf)
            }
            Stream::Proxied(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Direct { tls, .. } => Pin::new(tls.as_mut()).poll_write(cx, data),
            Stream::Proxied(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Direct { tls, .. } => Pin::new(tls.as_mut()).poll_write_vectored(cx, data),
            Stream::Proxied(s) => Pin::new(s).poll_write_vectored(cx, data),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Direct { tls, .. } => tls.is_write_vectored(),
            Stream::Proxied(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct { tls, .. } => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Proxied(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct { tls, .. } => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Proxied(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
