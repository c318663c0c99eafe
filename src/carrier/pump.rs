//! Carrying bytes over an open websocket (docs/protocol.md 6.3).
//!
//! Local bytes go out as binary frames, one per read; the payload of every
//! data frame received goes to the local side. End of input travels like a
//! TCP half-close: on local EOF we send a close frame and keep writing what
//! still arrives until the edge closes; when the edge closes first we answer
//! its close, end the local output, and are done. The edge may answer our
//! close at once (the real one may), which ends the session just the same.
//!
//! The edge's frames are parsed here rather than by fastwebsockets, which
//! gathers each frame whole before handing it over: a data frame's payload
//! goes to the local side piece by piece as it arrives, through one fixed
//! buffer of [`READ`] bytes, so memory stays flat whatever size the frames
//! are (the edge sends up to a MiB per frame, and a hostile server may
//! announce any length). fastwebsockets still writes our frames.

use std::io::ErrorKind;
use std::sync::Arc;

use fastwebsockets::{CloseCode, Frame, OpCode, Payload, Role, WebSocketError, WebSocketWrite};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::Mutex;

/// Bytes read from the local side per frame: big enough to amortise the
/// per-frame cost and the wake-ups, small enough to keep memory flat.
const CHUNK: usize = 512 * 1024;
/// Bytes read from the edge per call, and all the memory its frames take.
const READ: usize = 256 * 1024;
/// The longest control frame (RFC 6455 5.5).
const CONTROL_MAX: u64 = 125;

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
    // Only the writing half of fastwebsockets is used: the edge's frames
    // are read by [`Frames`].
    let (_, ws_out) =
        fastwebsockets::after_handshake_split(tokio::io::empty(), write, Role::Client);
    let writer: Writer<S> = Arc::new(Mutex::new(ws_out));
    let mut frames = Frames::new(read);

    let upstream = upstream(&mut local_in, writer.clone());
    let downstream = downstream(&mut frames, &mut local_out, writer.clone());
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
async fn downstream<R, W, S>(
    frames: &mut Frames<R>,
    local_out: &mut W,
    writer: Writer<S>,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: AsyncWrite + Unpin,
{
    // pongs and the answer to a close go out through the shared writer
    let obligated = |frame: Frame<'static>| {
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
        let head = frames.head().await?;
        match head.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                let mut left = head.len;
                while left > 0 {
                    let piece = frames.piece(left).await?;
                    left -= piece.len() as u64;
                    if let Err(e) = local_out.write_all(piece).await {
                        return local_failure(e);
                    }
                }
            }
            OpCode::Ping => {
                let payload = frames.control(head.len).await?;
                obligated(Frame::pong(payload.into()))
                    .await
                    .map_err(protocol)?;
            }
            OpCode::Pong => {
                frames.control(head.len).await?;
            }
            OpCode::Close => {
                let payload = frames.control(head.len).await?;
                let answer = close_answer(&payload);
                obligated(answer.0).await.map_err(protocol)?;
                if let Some(problem) = answer.1 {
                    return Err(PumpError::Protocol(problem.into()));
                }
                if let Err(e) = local_out.flush().await {
                    return local_failure(e);
                }
                let _ = local_out.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// What answers the edge's close frame (its own code echoed, as RFC 6455
/// 5.5.1 asks), and what was wrong with it, if anything.
fn close_answer(payload: &[u8]) -> (Frame<'static>, Option<&'static str>) {
    match payload.len() {
        0 => (Frame::close_raw(Vec::new().into()), None),
        1 => (
            Frame::close(1002, b""),
            Some("the server's close frame is one byte long"),
        ),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if std::str::from_utf8(&payload[2..]).is_err() {
                (
                    Frame::close(1007, b""),
                    Some("the server's close reason is not UTF-8"),
                )
            } else if !CloseCode::from(code).is_allowed() {
                (
                    Frame::close(1002, b""),
                    Some("the server closed with a code no endpoint may send"),
                )
            } else {
                (Frame::close_raw(payload.to_vec().into()), None)
            }
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

/// A frame's head, as [`Frames::head`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    opcode: OpCode,
    len: u64,
}

/// The server's frames, parsed in one fixed buffer as they arrive, and
/// checked as RFC 6455 5 asks of a client: no mask (5.1: a client fails the
/// connection on a masked frame), no reserved bits without an extension,
/// known opcodes, control frames final and short.
struct Frames<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    fn new(inner: R) -> Self {
        Frames {
            inner,
            buf: vec![0; READ].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads until `n` bytes are buffered (n is at most a frame head).
    async fn fill(&mut self, n: usize) -> Result<(), PumpError> {
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n {
            let read = self.inner.read(&mut self.buf[self.end..]).await;
            match read.map_err(io_failure)? {
                0 => return Err(PumpError::Cut("the server closed the connection".into())),
                got => self.end += got,
            }
        }
        Ok(())
    }

    /// The next frame's head.
    async fn head(&mut self) -> Result<Head, PumpError> {
        self.fill(2).await?;
        let (b0, b1) = (self.buf[self.start], self.buf[self.start + 1]);
        let extra = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if b1 & 0x80 != 0 {
            return Err(PumpError::Protocol(MASKED.into()));
        }
        if b0 & 0x70 != 0 {
            return Err(PumpError::Protocol(
                "the server set reserved bits of a frame, with no extension agreed".into(),
            ));
        }
        let opcode = OpCode::try_from(b0 & 0x0f).map_err(protocol)?;
        self.fill(2 + extra).await?;
        let bytes = &self.buf[self.start + 2..self.start + 2 + extra];
        let len = match extra {
            0 => u64::from(b1 & 0x7f),
            2 => u64::from(u16::from_be_bytes([bytes[0], bytes[1]])),
            _ => u64::from_be_bytes(bytes.try_into().unwrap_or_default()),
        };
        self.start += 2 + extra;
        if len >> 63 != 0 {
            return Err(PumpError::Protocol(
                "the server sent a frame length with its top bit set".into(),
            ));
        }
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && (b0 & 0x80 == 0 || len > CONTROL_MAX) {
            return Err(PumpError::Protocol(
                "the server sent a fragmented or overlong control frame".into(),
            ));
        }
        Ok(Head { opcode, len })
    }

    /// The next piece of a payload with `left` bytes still to come: what is
    /// buffered, else one read's worth.
    async fn piece(&mut self, left: u64) -> Result<&[u8], PumpError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.fill(1).await?;
        }
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(self.end - self.start);
        let piece = &self.buf[self.start..self.start + n];
        self.start += n;
        Ok(piece)
    }

    /// A control frame's whole payload (at most [`CONTROL_MAX`] bytes).
    async fn control(&mut self, len: u64) -> Result<Vec<u8>, PumpError> {
        let len = len as usize; // checked against CONTROL_MAX by `head`
        self.fill(len).await?;
        let payload = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        Ok(payload)
    }
}

/// A failed read from the edge.
fn io_failure(e: std::io::Error) -> PumpError {
    protocol(WebSocketError::IoError(e))
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

    /// A reader that gives one byte per read, as a slow server would.
    struct Trickle(std::collections::VecDeque<u8>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(b) = self.0.pop_front() {
                buf.put_slice(&[b]);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Every payload of `stream`, read as [`downstream`] reads them.
    async fn payloads(stream: Vec<u8>) -> (Vec<(OpCode, Vec<u8>)>, Option<PumpError>) {
        let mut frames = Frames::new(Trickle(stream.into()));
        let mut seen = Vec::new();
        loop {
            let head = match frames.head().await {
                Ok(head) => head,
                Err(e) => return (seen, Some(e)),
            };
            let mut data = Vec::new();
            let mut left = head.len;
            while left > 0 {
                let piece = frames.piece(left).await.unwrap();
                left -= piece.len() as u64;
                data.extend_from_slice(piece);
            }
            seen.push((head.opcode, data));
        }
    }

    #[tokio::test]
    async fn frame_lengths_of_every_size_are_followed_byte_by_byte() {
        let mut stream = vec![0x82, 3, b'a', b'b', b'c', 0x82, 126, 0x01, 0x00];
        stream.extend(std::iter::repeat_n(7u8, 256));
        stream.extend([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 1, b'x', 0x89, 0]);
        let (seen, end) = payloads(stream).await;
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (OpCode::Binary, b"abc".to_vec()));
        assert_eq!(seen[1], (OpCode::Binary, vec![7u8; 256]));
        assert_eq!(seen[2], (OpCode::Binary, b"x".to_vec()));
        assert_eq!(seen[3], (OpCode::Ping, Vec::new()));
        assert!(matches!(end, Some(PumpError::Cut(_))), "{end:?}");
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_buffer_passes_in_pieces() {
        let len = READ * 3 + 17;
        let mut stream = vec![0x82, 127];
        stream.extend((len as u64).to_be_bytes());
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        stream.extend(&data);
        let mut frames = Frames::new(&stream[..]);
        let head = frames.head().await.unwrap();
        assert_eq!(head.len, len as u64);
        let mut got = Vec::new();
        let mut left = head.len;
        while left > 0 {
            let piece = frames.piece(left).await.unwrap();
            assert!(piece.len() <= READ);
            left -= piece.len() as u64;
            got.extend_from_slice(piece);
        }
        assert!(got == data);
    }

    #[tokio::test]
    async fn frames_a_client_must_refuse_fail_the_connection() {
        for (stream, why) in [
            (vec![0x82, 0x80 | 1, 1, 2, 3, 4, b'x'], "masked"),
            (vec![0xc2, 1, b'x'], "reserved bits"),
            (vec![0x83, 0], "opcode"),
            (vec![0x09, 0], "control"),
            (vec![0x89, 126, 0, 200], "control"),
            (vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], "top bit"),
        ] {
            let (seen, end) = payloads(stream).await;
            assert!(seen.is_empty(), "{why}");
            let end = end.unwrap();
            assert!(matches!(end, PumpError::Protocol(_)), "{why}: {end}");
        }
    }

    #[test]
    fn a_close_is_answered_with_its_own_code_or_refused() {
        let (answer, problem) = close_answer(&[0x03, 0xe8, b'o', b'k']);
        assert_eq!(&answer.payload[..], &[0x03, 0xe8, b'o', b'k']);
        assert!(problem.is_none());
        assert!(close_answer(&[0x03]).1.is_some());
        assert!(close_answer(&[0x03, 0xe8, 0xff]).1.is_some());
        // 1005 (no status) is for no frame to carry
        assert!(close_answer(&[0x03, 0xed]).1.is_some());
        assert!(close_answer(&[]).1.is_none());
    }
}
