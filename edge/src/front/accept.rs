//! Accepting connections: `TCP_NODELAY`, the deadlines of an HTTP
//! connection, and a large read buffer under TLS for carried ones only.
//!
//! Every connection is watched until it becomes a carrier: its request heads
//! must arrive within [`Timeouts::header`] of their first byte (for the first
//! request, of the ClientHello's), and it may sit with no request in flight
//! for [`Timeouts::idle`] at most (keep-alive, HTTP/1.1 and HTTP/2 alike).
//! Past either, reads and writes fail and the connection is dropped. Requests
//! in flight are bounded by their handlers (bodies by `router`), and a
//! carried websocket by the relay: an idle ssh session stays open.
//!
//! rustls pulls ciphertext from the socket at most 4 KiB at a time, so a
//! carried gigabyte would cost a quarter of a million `recv` calls. Reading
//! the socket in large chunks into a buffer that rustls then drains costs a
//! copy in memory instead, which is far cheaper; but a buffer per connection
//! is what a flood of stalled connections would pin, so it is allocated only
//! once the connection carries a websocket. Without `TCP_NODELAY` a small
//! answer can wait 40 ms for a delayed ACK.

use std::future::{Future, Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::http::{Request, Version};
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::limits;

/// The deadlines of a connection that is not (yet) a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Accept to the end of the TLS handshake.
    pub handshake: Duration,
    /// A request head's first byte to its last.
    pub header: Duration,
    /// No request in flight.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: limits::TLS_HANDSHAKE,
            header: limits::HEADER_READ,
            idle: limits::IDLE,
        }
    }
}

/// What the handlers tell a connection's watchdog, shared between the
/// stream and the requests on it (as a request extension).
#[derive(Debug)]
struct Shared {
    /// The client's address, for the SSH command log's index.
    peer: Option<SocketAddr>,
    carrier: AtomicBool,
    /// Requests whose handler has not answered yet.
    in_flight: AtomicUsize,
    /// HTTP/2: a request head is one frame, and frames that are no request
    /// (pings, window updates) come and go between requests.
    h2: AtomicBool,
    activity: Mutex<Activity>,
}

/// When a request last started or was answered.
#[derive(Debug)]
struct Activity {
    /// Bumped at each start and answer: the stream then knows that the head
    /// it was timing is done, or that idleness starts afresh (at `at`).
    epoch: u64,
    at: Instant,
    /// The stream's task, woken when the last request in flight is
    /// answered: hyper need not read again then, and the idle deadline must
    /// still be set.
    waker: Option<Waker>,
}

/// A connection's handle for its requests.
#[derive(Debug, Clone)]
pub(crate) struct Connection(Arc<Shared>);

impl Connection {
    fn new(peer: Option<SocketAddr>) -> Connection {
        Connection(Arc::new(Shared {
            peer,
            carrier: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            h2: AtomicBool::new(false),
            activity: Mutex::new(Activity {
                epoch: 0,
                at: Instant::now(),
                waker: None,
            }),
        }))
    }

    /// The client's address, as the socket saw it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// The connection now carries a websocket: no HTTP deadline applies to
    /// it any more, and its reads go through the large buffer.
    pub fn carrier(&self) {
        self.0.carrier.store(true, Ordering::Release);
    }

    fn started(&self, version: Version) -> InFlight {
        if version == Version::HTTP_2 {
            self.0.h2.store(true, Ordering::Relaxed);
        }
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.bump(false);
        InFlight(self.clone())
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.0.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request started or was answered; the stream's waker, if `take`.
    fn bump(&self, take: bool) -> Option<Waker> {
        let mut activity = self.activity();
        activity.epoch += 1;
        activity.at = Instant::now();
        if take { activity.waker.take() } else { None }
    }
}

/// The address of the client that sent `request`, as the index of the SSH
/// command logs records it; empty when the request came some other way.
pub(crate) fn client_addr<B>(request: &Request<B>) -> String {
    request
        .extensions()
        .get::<Connection>()
        .and_then(Connection::peer)
        .map(|peer| peer.to_string())
        .unwrap_or_default()
}

/// A request in flight; answered when dropped.
struct InFlight(Connection);

impl Drop for InFlight {
    fn drop(&mut self) {
        (self.0).0.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(waker) = self.0.bump(true) {
            waker.wake();
        }
    }
}

/// The acceptor under the TLS acceptor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientAcceptor {
    pub timeouts: Timeouts,
}

impl<S> Accept<TcpStream, S> for ClientAcceptor {
    type Stream = ClientStream;
    type Service = Tracked<S>;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let connection = Connection::new(stream.peer_addr().ok());
        ready(stream.set_nodelay(true).map(|()| {
            (
                ClientStream::new(stream, connection.clone(), self.timeouts),
                Tracked {
                    inner: service,
                    connection,
                },
            )
        }))
    }
}

/// The per-connection service: counts requests in flight and hands each
/// request the [`Connection`].
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    connection: Connection,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let in_flight = self.connection.started(request.version());
        request.extensions_mut().insert(self.connection.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        })
    }
}

/// A client socket with its watchdog and (for carriers) its read buffer.
pub(crate) struct ClientStream {
    socket: TcpStream,
    connection: Connection,
    timeouts: Timeouts,
    /// Allocated when the connection becomes a carrier.
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The connection's `epoch` when last looked at.
    epoch: u64,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// When the first byte of the head being read came.
    head_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientStream {
    fn new(socket: TcpStream, connection: Connection, timeouts: Timeouts) -> ClientStream {
        ClientStream {
            socket,
            connection,
            timeouts,
            buffer: None,
            start: 0,
            end: 0,
            epoch: 0,
            idle_since: Instant::now(),
            head_since: None,
            timer: None,
        }
    }

    /// When the connection is to be dropped, as things stand; `None` while a
    /// request is in flight or once it carries a websocket.
    fn deadline(&mut self) -> Option<Instant> {
        let shared = &self.connection.0;
        if shared.carrier.load(Ordering::Acquire) {
            return None;
        }
        {
            let activity = self.connection.activity();
            if activity.epoch != self.epoch {
                self.epoch = activity.epoch;
                self.idle_since = activity.at;
                self.head_since = None;
            }
        }
        if shared.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = self.idle_since + self.timeouts.idle;
        Some(match self.head_since {
            Some(since) => idle.min(since + self.timeouts.header),
            None => idle,
        })
    }

    /// Bytes came in: with no request in flight, they start a head.
    fn received(&mut self) {
        let shared = &self.connection.0;
        if self.head_since.is_none()
            && !shared.h2.load(Ordering::Relaxed)
            && shared.in_flight.load(Ordering::Acquire) == 0
            && !shared.carrier.load(Ordering::Acquire)
        {
            self.head_since = Some(Instant::now());
        }
    }

    /// Called when the socket has nothing to give or take: `Ready(Err)` once
    /// the deadline has passed, else the timer is set to wake the task then.
    fn watch(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.connection.0.carrier.load(Ordering::Acquire) {
            self.timer = None;
            return Poll::Pending;
        }
        {
            let mut activity = self.connection.activity();
            if !activity
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                activity.waker = Some(cx.waker().clone());
            }
        }
        loop {
            let Some(deadline) = self.deadline() else {
                self.timer = None;
                return Poll::Pending;
            };
            if Instant::now() >= deadline {
                self.timer = None;
                let what = if self.head_since.is_some() {
                    "no complete request head in time"
                } else {
                    "idle for too long"
                };
                tracing::debug!("closing a client connection: {what}");
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // An elapsed timer is re-armed too, so a wake-up before the
            // deadline cannot turn into a busy loop.
            if timer.deadline() != deadline || timer.is_elapsed() {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn poll_socket(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.start < self.end {
            let n = out.remaining().min(self.end - self.start);
            if let Some(buffer) = &self.buffer {
                out.put_slice(&buffer[self.start..self.start + n]);
            }
            self.start += n;
            return Poll::Ready(Ok(()));
        }
        if self.buffer.is_none() && self.connection.0.carrier.load(Ordering::Acquire) {
            self.buffer = Some(vec![0; limits::CARRIER_READ_BUFFER].into_boxed_slice());
        }
        match &mut self.buffer {
            Some(buffer) if out.remaining() < buffer.len() => {
                let mut inner = ReadBuf::new(buffer);
                match Pin::new(&mut self.socket).poll_read(cx, &mut inner) {
                    Poll::Ready(Ok(())) => {
                        let n = inner.filled().len();
                        let take = n.min(out.remaining());
                        out.put_slice(&buffer[..take]);
                        self.start = take;
                        self.end = n;
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            }
            _ => Pin::new(&mut self.socket).poll_read(cx, out),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = out.filled().len();
        match this.poll_socket(cx, out) {
            Poll::Ready(Ok(())) => {
                if out.filled().len() > before {
                    this.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.watch(cx).map(Err),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.socket).poll_write(cx, data) {
            Poll::Pending => this.watch(cx).map(Err),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.socket).poll_write_vectored(cx, data) {
            Poll::Pending => this.watch(cx).map(Err),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}
