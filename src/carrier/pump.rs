//! Carrying bytes over an open websocket (docs/protocol.md 6.3).
//!
//! Local bytes go out as binary frames, one per read; the payload of every
//! data frame received goes to the local side. End of input travels like a
//! TCP half-close: on local EOF we send a close frame and keep writing what
//! still arrives until the edge closes; when the edge closes first we answer
//! its close, end the local output, and are done. The edge may answer our
//! close at once (the real one may), which ends the session just the same.

use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead, WebSocketWrite};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

/// Bytes read from the local side per frame: big enough to amortise the
/// per-frame cost and the wake-ups, small enough to keep memory flat.
const CHUNK: usize = 1024 * 1024;
/// Frames larger than this end the session: nothing legitimate sends them.
const MAX_FRAME: usize = 16 * 1024 * 1024;

type Writer<S> = Arc<Mutex<WebSocketWrite<WriteHalf<S>>>>;

/// What a server's masked frame fails the connection with.
const MASKED: &str = "the server sent a masked frame, which RFC 6455 forbids a server to do";

/// How a session ended, when it did not end well.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("the connection was cut without a websocket close ({0})")]
    Cut(String),
    #[error("the websocket failed: {0}")]
    Protocol(String),
    #[error("writing to the local side failed: {0}")]
    Local(std::io::Error),
}

/// Carries bytes between the local side and the websocket until both
/// directions are done (or the edge ends the session).
pub async fn run<S, R, W>(ws: S, mut local_in: R, mut local_out: W) -> Result<(), PumpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (read, write) = tokio::io::split(ws);
    let read = Unmasked::new(read);
    let (mut ws_in, ws_out) = fastwebsockets::after_handshake_split(read, write, Role::Client);
    ws_in.set_auto_close(true);
    ws_in.set_auto_pong(true);
    ws_in.set_max_message_size(MAX_FRAME);
    let writer: Writer<S> = Arc::new(Mutex::new(ws_out));

    let upstream = upstream(&mut local_in, writer.clone());
    let downstream = downstream(&mut ws_in, &mut local_out, writer.clone());
    tokio::pin!(upstream, downstream);

    // The session is over when the edge is done sending; our input ending
    // only means "close our half".
    let mut input_done = false;
    let mut closed_our_half = false;
    loop {
        tokio::select! {
            sent = &mut upstream, if !input_done => {
                input_done = true;
                match sent {
                    Ok(()) => closed_our_half = true,
                    Err(e) => tracing::debug!("sending to the edge failed: {e}"),
                }
            }
            received = &mut downstream => {
                return match received {
                    // after our close, a bare EOF is as good as the edge's close
                    Err(PumpError::Cut(_)) if closed_our_half => Ok(()),
                    other => other,
                };
            }
        }
    }
}

/// Local input → binary frames; a close frame at its end.
async fn upstream<S, R>(local_in: &mut R, writer: Writer<S>) -> Result<(), PumpError>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match local_in.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("reading local input: {e}");
                0
            }
        };
        let mut ws = writer.lock().await;
        if ws.is_closed() {
            return Ok(()); // the edge closed first; nothing more may be sent
        }
        if n == 0 {
            ws.write_frame(Frame::close(1000, b""))
                .await
                .map_err(protocol)?;
            return ws.flush().await.map_err(protocol);
        }
        ws.write_frame(Frame::new(
            true,
            OpCode::Binary,
            None,
            Payload::BorrowedMut(&mut buf[..n]),
        ))
        .await
        .map_err(protocol)?;
    }
}

/// Data frames → local output, until the edge closes.
async fn downstream<S, W>(
    ws_in: &mut WebSocketRead<Unmasked<ReadHalf<S>>>,
    local_out: &mut W,
    writer: Writer<S>,
) -> Result<(), PumpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    // pongs and the answer to a close go out through the shared writer
    let mut obligated = |frame: Frame<'static>| {
        let writer = writer.clone();
        async move {
            let mut ws = writer.lock().await;
            if ws.is_closed() {
                return Ok::<(), WebSocketError>(()); // our close already went
            }
            ws.write_frame(frame).await?;
            ws.flush().await
        }
    };
    loop {
        let frame = match ws_in.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(WebSocketError::UnexpectedEOF) => {
                return Err(PumpError::Cut("the server closed the connection".into()));
            }
            Err(e) => return Err(protocol(e)),
        };
        match frame.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                if let Err(e) = local_out.write_all(&frame.payload).await {
                    return local_failure(e);
                }
            }
            OpCode::Close => {
                if let Err(e) = local_out.flush().await {
                    return local_failure(e);
                }
                let _ = local_out.shutdown().await;
                return Ok(());
            }
            OpCode::Ping | OpCode::Pong => {}
        }
    }
}

/// A failed write to the local side. Whoever read our output (ssh, say)
/// having gone is how sessions end, not a failure.
fn local_failure(e: std::io::Error) -> Result<(), PumpError> {
    match e.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => Ok(()),
        _ => Err(PumpError::Local(e)),
    }
}

fn protocol(e: WebSocketError) -> PumpError {
    match e {
        WebSocketError::IoError(e) if e.kind() == ErrorKind::InvalidData => {
            PumpError::Protocol(e.to_string())
        }
        WebSocketError::IoError(e) => PumpError::Cut(e.to_string()),
        WebSocketError::UnexpectedEOF => PumpError::Cut("the server closed the connection".into()),
        other => PumpError::Protocol(other.to_string()),
    }
}

/// The server's byte stream, checked frame by frame for the mask bit as it
/// passes: fastwebsockets unmasks only as a server and hides a frame's mask,
/// so a masked frame would reach the local side still masked. RFC 6455 5.1:
/// a client must fail the connection on one.
struct Unmasked<R> {
    inner: R,
    /// The frame header read so far (2 to 10 bytes: servers send no mask key).
    head: [u8; 10],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// A masked frame was seen: every read from now on fails.
    failed: bool,
}

impl<R> Unmasked<R> {
    fn new(inner: R) -> Self {
        Unmasked {
            inner,
            head: [0; 10],
            have: 0,
            payload_left: 0,
            failed: false,
        }
    }

    /// Follows the frames through `bytes`; on a masked frame, the offset in
    /// `bytes` where its header starts (0 when it started in an earlier read).
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let all = bytes.len();
        let mut bytes = bytes;
        let mut header_at = 0;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= take;
                bytes = &bytes[take as usize..];
                continue;
            }
            if self.have == 0 {
                header_at = all - bytes.len();
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            if self.head[1] & 0x80 != 0 {
                self.failed = true;
                return Some(header_at);
            }
            let extra = match self.head[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.have < 2 + extra {
                continue;
            }
            self.payload_left = match extra {
                0 => u64::from(self.head[1] & 0x7f),
                2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                _ => {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&self.head[2..10]);
                    u64::from_be_bytes(len)
                }
            };
            self.have = 0;
        }
        None
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Unmasked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let failed = || Poll::Ready(Err(std::io::Error::new(ErrorKind::InvalidData, MASKED)));
        if self.failed {
            return failed();
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => match this.scan(&buf.filled()[before..]) {
                None => Poll::Ready(Ok(())),
                // the frames before it still go through; the next read fails
                Some(cut) if cut > 0 => {
                    buf.set_filled(before + cut);
                    Poll::Ready(Ok(()))
                }
                Some(_) => {
                    buf.set_filled(before);
                    failed()
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwebsockets::WebSocket;
    use std::time::Duration;
    use tokio::io::{DuplexStream, duplex};

    /// A server end that sends `greeting`, then echoes data frames; on the
    /// client's close it sends `after_close` and closes.
    async fn echo_server(
        stream: DuplexStream,
        greeting: &'static [u8],
        after_close: &'static [u8],
    ) {
        let mut ws = WebSocket::after_handshake(stream, Role::Server);
        ws.set_auto_close(false);
        if !greeting.is_empty() {
            ws.write_frame(Frame::binary(Payload::Borrowed(greeting)))
                .await
                .unwrap();
        }
        loop {
            let frame = ws.read_frame().await.unwrap();
            match frame.opcode {
                OpCode::Close => {
                    ws.write_frame(Frame::binary(Payload::Borrowed(after_close)))
                        .await
                        .unwrap();
                    ws.write_frame(Frame::close(1000, b"")).await.unwrap();
                    return;
                }
                OpCode::Binary => {
                    let data = frame.payload.to_vec();
                    ws.write_frame(Frame::binary(Payload::Owned(data)))
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    }

    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("no hang")
    }

    #[tokio::test]
    async fn end_of_input_closes_our_half_and_the_rest_still_arrives() {
        let (client, server) = duplex(1 << 16);
        let server = tokio::spawn(echo_server(server, b"hi ", b" and bye"));
        let mut out = Vec::new();
        within(run(client, &b"ping"[..], &mut out)).await.unwrap();
        assert_eq!(out, b"hi ping and bye");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_edge_closing_first_ends_the_session_while_input_is_still_open() {
        let (client, server) = duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut ws = WebSocket::after_handshake(server, Role::Server);
            ws.write_frame(Frame::binary(Payload::Borrowed(b"bye")))
                .await
                .unwrap();
            ws.write_frame(Frame::close(1000, b"")).await.unwrap();
            // the client answers the close
            let frame = ws.read_frame().await.unwrap();
            assert_eq!(frame.opcode, OpCode::Close);
        });
        let (_keep_open, local_in) = duplex(64);
        let mut out = Vec::new();
        within(run(client, local_in, &mut out)).await.unwrap();
        assert_eq!(out, b"bye");
        within(server).await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_without_a_close_is_an_error() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut ws = WebSocket::after_handshake(server, Role::Server);
            ws.write_frame(Frame::binary(Payload::Borrowed(b"partial")))
                .await
                .unwrap();
            // dropped: no close frame
        });
        let (_keep_open, local_in) = duplex(64);
        let mut out = Vec::new();
        let err = within(run(client, local_in, &mut out)).await.unwrap_err();
        assert!(matches!(err, PumpError::Cut(_)), "{err}");
        assert_eq!(out, b"partial");
    }

    #[tokio::test]
    async fn an_edge_that_drops_the_connection_after_our_close_is_a_normal_end() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut ws = WebSocket::after_handshake(server, Role::Server);
            ws.set_auto_close(false);
            while ws.read_frame().await.unwrap().opcode != OpCode::Close {}
            // dropped without answering: the official client does this too
        });
        let mut out = Vec::new();
        within(run(client, &b"x"[..], &mut out)).await.unwrap();
    }

    #[tokio::test]
    async fn large_transfers_keep_every_byte_in_order() {
        let (client, server) = duplex(1 << 20);
        let server = tokio::spawn(echo_server(server, b"", b""));
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        within(run(client, &data[..], &mut out)).await.unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out == data);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_ends_the_session_quietly() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut ws = WebSocket::after_handshake(server, Role::Server);
            ws.write_frame(Frame::binary(Payload::Borrowed(b"banner")))
                .await
                .unwrap();
            let _ = ws.read_frame().await; // the client's close
        });
        let (_keep_open, local_in) = duplex(64);
        let (local_out, reader) = duplex(64);
        drop(reader); // ssh exited
        let outcome =
            tokio::time::timeout(Duration::from_secs(5), run(client, local_in, local_out)).await;
        let outcome = outcome.expect("no hang");
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_masked_frame_from_the_server_fails_the_connection() {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut ws = WebSocket::after_handshake(server, Role::Server);
            ws.write_frame(Frame::binary(Payload::Borrowed(b"plain")))
                .await
                .unwrap();
            // a server end told to mask, as a client would
            ws.set_auto_apply_mask(true);
            let mut masked = Frame::binary(Payload::Owned(b"masked".to_vec()));
            masked.mask();
            ws.write_frame(masked).await.unwrap();
            let _ = ws.read_frame().await;
        });
        let (_keep_open, local_in) = duplex(64);
        let mut out = Vec::new();
        let err = within(run(client, local_in, &mut out)).await.unwrap_err();
        assert!(matches!(err, PumpError::Protocol(_)), "{err}");
        assert!(err.to_string().contains("masked"), "{err}");
        assert_eq!(out, b"plain");
    }

    #[test]
    fn frame_lengths_of_every_size_are_followed() {
        let mut u = Unmasked::new(());
        let mut stream = vec![0x82, 3, b'a', b'b', b'c', 0x82, 126, 0x01, 0x00];
        stream.extend(std::iter::repeat_n(0u8, 256));
        stream.extend([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 1, b'x', 0x88, 0]);
        // byte by byte, as a slow server would deliver it
        for b in &stream {
            assert_eq!(u.scan(std::slice::from_ref(b)), None);
        }
        assert_eq!(u.scan(&[0x82, 0, 0x82, 0x80 | 1]), Some(2));
    }
}
