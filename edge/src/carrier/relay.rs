//! The byte pump of a carried connection (docs/protocol.md 6.3): websocket frames
//! from the client to a TCP origin, the origin's bytes back as binary frames,
//! and the end of input passed on like a TCP half-close in each direction.
//!
//! Client → origin: the payload of every data frame (binary, text or
//! continuation) is written to the origin as the frame arrives. Frames are
//! never gathered into messages: the official client splits each local read
//! into 4096-byte frames of one message, and a stream must flow as it comes.
//! A ping is answered with a pong. The client's input ends
//! - with a close frame (cfaccess): the origin's write side is shut down, so
//!   it reads EOF, and everything it still sends is relayed;
//! - with EOF and no close frame, TLS `close_notify` or not (the official
//!   client, which drops the connection when either direction ends): the same,
//!   and the client is probed with a ping every second, so that a client that
//!   is gone (its kernel answers with a reset) ends the session even when the
//!   origin is silent.
//!
//! Origin → client: each read (up to 64 KiB) goes out as one binary frame.
//! When the origin's output ends, a close frame follows the last data (1000,
//! or 1011 naming a read error); nothing else is sent after it. The client
//! may still send data after it, which goes on to the origin: an origin that
//! only shut down its write side still gets its input, until the client
//! closes (its answering close frame, or EOF).
//!
//! So the session is over when both inputs have ended; then the edge ends
//! TLS with `close_notify` and closes the connection. When the origin cannot
//! take more data (a write fails: it closed or reset), client data is no
//! longer read; after the edge's close frame, the client's close is awaited
//! for a moment so the connection is not reset under it. Anything that
//! breaks the client connection (a reset, a protocol error, a failed write)
//! ends everything at once, dropping the origin connection too.
//!
//! Backpressure holds in both directions: each side is read only when the
//! previous chunk has been written to the other, so a slow reader slows the
//! writer on the far side. Memory per connection is one 1 MiB origin read buffer, the 256 KiB socket
//! read buffer (`front::accept`),
//! the frame reader's buffer (at most one frame, frames over 2 MiB are
//! refused) and the TLS layer's bounded buffers.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::ops::counters::Carried;
use crate::ops::faults::Faults;

/// The origin read size, and so the largest frame sent.
const READ_BUF: usize = 1024 * 1024;
/// Frames larger than this are a protocol error: a stream has no need for
/// them, and the frame reader holds a whole frame in memory.
const MAX_FRAME: usize = crate::limits::CLIENT_FRAME;
/// How often a client whose input ended without a close frame is pinged.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long closing steps may take: the client's answering close frame, the
/// TLS `close_notify`.
const LINGER: Duration = Duration::from_secs(2);

/// How a relay ended, with the bytes it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub to_origin: u64,
    pub to_client: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Both inputs ended and each end was passed on.
    Finished {
        client: ClientEnd,
        origin: OriginEnd,
    },
    /// The `cut_websockets_after` fault dropped the connection.
    Cut,
    /// The client connection broke (the message says how).
    Broken(String),
}

/// How the client's input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientEnd {
    CloseFrame,
    /// EOF with no close frame.
    Eof,
    /// Not read to its end: the origin could take no more.
    OriginGone,
}

/// How the origin's output ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginEnd {
    Eof,
    Error(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Finished { client, origin } => {
                let client = match client {
                    ClientEnd::CloseFrame => "the client closed",
                    ClientEnd::Eof => "the client's input ended without a close frame",
                    ClientEnd::OriginGone => "the origin stopped taking data",
                };
                match origin {
                    OriginEnd::Eof => write!(f, "{client}, the origin closed"),
                    OriginEnd::Error(e) => write!(f, "{client}, the origin failed: {e}"),
                }
            }
            Outcome::Cut => f.write_str("cut by the cut_websockets_after fault"),
            Outcome::Broken(why) => f.write_str(why),
        }
    }
}

/// Why a direction stopped the whole session.
#[derive(Debug)]
enum Stop {
    Cut,
    Client(String),
}

/// What the client → origin direction asks the writer of client frames.
#[derive(Debug)]
enum ToClient {
    Pong(Vec<u8>),
    /// The client's input ended without a close frame: start probing.
    InputEnded,
}

/// This connection's byte counts, added to the edge's as they go.
struct Meter<'a> {
    carried: &'a Carried,
    to_origin: AtomicU64,
    to_client: AtomicU64,
}

impl Meter<'_> {
    fn to_origin(&self, n: usize) {
        self.to_origin.fetch_add(n as u64, Ordering::Relaxed);
        self.carried.to_origin(n);
    }

    fn to_client(&self, n: usize) {
        self.to_client.fetch_add(n as u64, Ordering::Relaxed);
        self.carried.to_client(n);
    }
}

/// Relays between `client` (a websocket after its handshake, server side)
/// and an origin given as its two halves, until both inputs have ended or
/// something breaks. Both connections are closed when it returns.
pub(crate) async fn relay<C, OR, OW>(
    client: C,
    origin_read: OR,
    origin_write: OW,
    carried: &Carried,
    faults: &Faults,
) -> Report
where
    C: AsyncRead + AsyncWrite + Unpin,
    OR: AsyncRead + Unpin,
    OW: AsyncWrite + Unpin,
{
    let (client_read, client_write) = tokio::io::split(client);
    // Only the reading half of fastwebsockets is used: frames to the client
    // are written here, so that flushing and the TLS shutdown stay in hand.
    let (mut frames, _) =
        fastwebsockets::after_handshake_split(client_read, tokio::io::sink(), Role::Server);
    frames.set_auto_close(false);
    frames.set_auto_pong(false);
    frames.set_max_message_size(MAX_FRAME);
    let meter = Meter {
        carried,
        to_origin: AtomicU64::new(0),
        to_client: AtomicU64::new(0),
    };
    let (to_client, from_upstream) = mpsc::channel(4);
    let outcome = match tokio::try_join!(
        upstream(frames, origin_write, to_client, &meter),
        downstream(client_write, origin_read, from_upstream, &meter, faults),
    ) {
        Ok(((frames, client), (mut client_write, origin))) => {
            if client == ClientEnd::OriginGone {
                // Our close frame is out: let the client answer it rather
                // than reset a connection it is still writing to.
                let _ = tokio::time::timeout(LINGER, drain(frames)).await;
            }
            let _ = tokio::time::timeout(LINGER, client_write.shutdown()).await;
            Outcome::Finished { client, origin }
        }
        Err(Stop::Cut) => Outcome::Cut,
        Err(Stop::Client(why)) => Outcome::Broken(why),
    };
    Report {
        to_origin: meter.to_origin.load(Ordering::Relaxed),
        to_client: meter.to_client.load(Ordering::Relaxed),
        outcome,
    }
}

/// Client → origin, until the client's input ends (or the origin can take
/// no more); then the origin's write side is shut down.
async fn upstream<R, W>(
    mut frames: WebSocketRead<R>,
    mut origin: W,
    to_client: mpsc::Sender<ToClient>,
    meter: &Meter<'_>,
) -> Result<(WebSocketRead<R>, ClientEnd), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Automatic pongs and closes are off, so the reader never asks to send.
    let mut nothing_to_send = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
    let end = loop {
        let frame = match frames.read_frame(&mut nothing_to_send).await {
            Ok(frame) => frame,
            Err(e) if is_eof(&e) => break ClientEnd::Eof,
            Err(WebSocketError::IoError(e)) => return Err(client_gone("reading", &e)),
            Err(e) => return Err(Stop::Client(format!("the client broke the protocol: {e}"))),
        };
        match frame.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                if let Err(e) = origin.write_all(&frame.payload).await {
                    tracing::debug!("the origin takes no more data: {e}");
                    break ClientEnd::OriginGone;
                }
                meter.to_origin(frame.payload.len());
            }
            OpCode::Ping => {
                // After the edge's close frame no pong may follow: the
                // writer is gone then, and the ping is dropped.
                let _ = to_client.send(ToClient::Pong(frame.payload.to_vec())).await;
            }
            OpCode::Pong => {}
            OpCode::Close => break ClientEnd::CloseFrame,
        }
    };
    if end == ClientEnd::Eof {
        let _ = to_client.send(ToClient::InputEnded).await;
    }
    // The half-close: the origin reads EOF and may still answer.
    let _ = origin.shutdown().await;
    Ok((frames, end))
}

/// Origin → client, until the origin's output ends; then the close frame.
async fn downstream<W, R>(
    mut client: W,
    mut origin: R,
    mut from_upstream: mpsc::Receiver<ToClient>,
    meter: &Meter<'_>,
    faults: &Faults,
) -> Result<(W, OriginEnd), Stop>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; READ_BUF];
    let mut sent: u64 = 0;
    let mut upstream_open = true;
    let mut probe: Option<tokio::time::Interval> = None;
    let end = loop {
        tokio::select! {
            biased;
            message = from_upstream.recv(), if upstream_open => match message {
                Some(ToClient::Pong(payload)) => {
                    send(&mut client, OpCode::Pong, &payload).await.map_err(write_failed)?;
                }
                Some(ToClient::InputEnded) => probe = Some(tokio::time::interval(PROBE_EVERY)),
                None => upstream_open = false,
            },
            _ = tick(&mut probe), if probe.is_some() => {
                send(&mut client, OpCode::Ping, b"").await.map_err(write_failed)?;
            }
            read = origin.read(&mut buf) => match read {
                Ok(0) => break OriginEnd::Eof,
                Ok(n) => {
                    let (n, cut) = match faults.cut_after() {
                        Some(limit) if sent.saturating_add(n as u64) >= limit => {
                            (usize::try_from(limit.saturating_sub(sent)).unwrap_or(n).min(n), true)
                        }
                        _ => (n, false),
                    };
                    if n > 0 {
                        send(&mut client, OpCode::Binary, &buf[..n]).await.map_err(write_failed)?;
                        sent += n as u64;
                        meter.to_client(n);
                    }
                    if cut {
                        return Err(Stop::Cut);
                    }
                }
                Err(e) => break OriginEnd::Error(e.to_string()),
            },
        }
    };
    let close = match &end {
        OriginEnd::Eof => close_payload(1000, ""),
        OriginEnd::Error(e) => close_payload(1011, &format!("origin: {e}")),
    };
    send(&mut client, OpCode::Close, &close)
        .await
        .map_err(write_failed)?;
    Ok((client, end))
}

/// Reads and drops frames until the client's close frame or EOF.
async fn drain<R: AsyncRead + Unpin>(mut frames: WebSocketRead<R>) {
    let mut nothing_to_send = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
    while let Ok(frame) = frames.read_frame(&mut nothing_to_send).await {
        if frame.opcode == OpCode::Close {
            return;
        }
    }
}

async fn tick(probe: &mut Option<tokio::time::Interval>) {
    match probe {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The end of the client's input: EOF between frames, with or without TLS
/// `close_notify` (rustls reports its absence as `UnexpectedEof`).
fn is_eof(e: &WebSocketError) -> bool {
    match e {
        WebSocketError::UnexpectedEOF => true,
        WebSocketError::IoError(io) => io.kind() == io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

fn write_failed(e: io::Error) -> Stop {
    client_gone("writing", &e)
}

/// The client connection failed under a read or write: usually the client
/// went away (the official client drops the connection when it is done).
fn client_gone(doing: &str, e: &io::Error) -> Stop {
    Stop::Client(format!("the client connection ended ({doing}: {e})"))
}

/// A close frame's payload: the code, then a reason cut to fit a control
/// frame (125 bytes) on a character boundary.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// Writes one unmasked final frame, header and payload in one vectored write
/// (so TLS makes no record for the header alone), and flushes it: TLS may
/// hold bytes back until flushed, and the next origin read may take a while.
pub(crate) async fn send<W: AsyncWrite + Unpin>(
    out: &mut W,
    opcode: OpCode,
    payload: &[u8],
) -> io::Result<()> {
    let mut head = [0u8; 16];
    let head_len = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    let total = head_len + payload.len();
    let mut written = 0;
    while written < total {
        let n = if written < head_len {
            out.write_vectored(&[
                IoSlice::new(&head[written..head_len]),
                IoSlice::new(payload),
            ])
            .await?
        } else {
            out.write(&payload[written - head_len..]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    use fastwebsockets::WebSocketWrite;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    /// The client's end of a relay over in-memory pipes. Split, because an
    /// unsplit fastwebsockets socket reads nothing but a close once it has
    /// sent one.
    struct Client {
        rx: WebSocketRead<ReadHalf<DuplexStream>>,
        tx: WebSocketWrite<WriteHalf<DuplexStream>>,
    }

    impl Client {
        async fn read(&mut self) -> Result<Frame<'_>, WebSocketError> {
            self.rx
                .read_frame(&mut |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) })
                .await
        }

        async fn send(&mut self, fin: bool, opcode: OpCode, data: &[u8]) {
            let frame = Frame::new(fin, opcode, None, Payload::Owned(data.to_vec()));
            self.tx.write_frame(frame).await.unwrap();
        }
    }

    /// A relay on a task between a client and an origin, both in memory.
    fn rig(faults: Faults) -> (Client, DuplexStream, tokio::task::JoinHandle<Report>) {
        let (client, edge_side) = tokio::io::duplex(256 * 1024);
        let (origin, origin_side) = tokio::io::duplex(256 * 1024);
        let relay = tokio::spawn(async move {
            let carried = Carried::default();
            let (read, write) = tokio::io::split(origin_side);
            relay(edge_side, read, write, &carried, &faults).await
        });
        let (read, write) = tokio::io::split(client);
        let (mut rx, tx) = fastwebsockets::after_handshake_split(read, write, Role::Client);
        rx.set_auto_close(false);
        rx.set_auto_pong(false);
        (Client { rx, tx }, origin, relay)
    }

    #[tokio::test]
    async fn fragments_flow_as_they_come_and_a_close_is_a_half_close() {
        let (mut client, mut origin, relay) = rig(Faults::default());
        // a message of three frames: the origin gets the first before the
        // message is over
        client.send(false, OpCode::Binary, b"abc").await;
        let mut got = [0u8; 3];
        origin.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
        client.send(false, OpCode::Continuation, b"de").await;
        client.send(true, OpCode::Continuation, b"f").await;
        client.send(true, OpCode::Ping, b"hi").await;
        let pong = client.read().await.unwrap();
        assert_eq!((pong.opcode, &pong.payload[..]), (OpCode::Pong, &b"hi"[..]));

        // the client's close: the origin reads EOF, then still answers
        client
            .tx
            .write_frame(Frame::close(1000, b""))
            .await
            .unwrap();
        let mut rest = Vec::new();
        origin.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"def");
        origin.write_all(b"after your close").await.unwrap();
        origin.shutdown().await.unwrap();
        let data = client.read().await.unwrap();
        assert_eq!(
            (data.opcode, &data.payload[..]),
            (OpCode::Binary, &b"after your close"[..])
        );
        let close = client.read().await.unwrap();
        assert_eq!(close.opcode, OpCode::Close);
        assert_eq!(&close.payload[..], &1000u16.to_be_bytes());

        let report = relay.await.unwrap();
        assert_eq!(
            report,
            Report {
                to_origin: 6,
                to_client: 16,
                outcome: Outcome::Finished {
                    client: ClientEnd::CloseFrame,
                    origin: OriginEnd::Eof
                }
            }
        );
    }

    #[tokio::test]
    async fn the_origin_closing_first_leaves_the_client_free_to_send() {
        let (mut client, mut origin, relay) = rig(Faults::default());
        origin.write_all(b"bye").await.unwrap();
        let (mut origin_read, mut origin_write) = tokio::io::split(origin);
        origin_write.shutdown().await.unwrap(); // its read side stays open
        let data = client.read().await.unwrap();
        assert_eq!(&data.payload[..], b"bye");
        assert_eq!(client.read().await.unwrap().opcode, OpCode::Close);
        client.send(true, OpCode::Binary, b"still here").await;
        client
            .tx
            .write_frame(Frame::close(1000, b""))
            .await
            .unwrap();
        let mut got = Vec::new();
        origin_read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still here");
        assert_eq!(
            relay.await.unwrap().outcome,
            Outcome::Finished {
                client: ClientEnd::CloseFrame,
                origin: OriginEnd::Eof
            }
        );
    }

    #[tokio::test]
    async fn the_cut_fault_drops_the_connection_after_exactly_n_bytes() {
        let faults = Faults::default();
        faults.cut_websockets_after(Some(5));
        let (mut client, mut origin, relay) = rig(faults);
        origin.write_all(b"0123456789").await.unwrap();
        let data = client.read().await.unwrap();
        assert_eq!(&data.payload[..], b"01234");
        assert!(matches!(
            client.read().await,
            Err(WebSocketError::UnexpectedEOF)
        ));
        assert_eq!(relay.await.unwrap().outcome, Outcome::Cut);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let payload = close_payload(1011, &"é".repeat(100));
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(close_payload(1000, ""), vec![0x03, 0xe8]);
    }
}
