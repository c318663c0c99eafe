//! Carrying bytes over an open websocket (PROTOCOL.md 6.3).
//!
//! Local bytes go out as binary frames, one per read; the payload of every
//! data frame received goes to the local side. End of input travels like a
//! TCP half-close: on local EOF we send a close frame and keep writing what
//! still arrives until the edge closes; when the edge closes first we answer
//! its close, end the local output, and are done. The edge may answer our
//! close at once (the real one may), which ends the session just the same.

use std::io::ErrorKind;
use std::sync::Arc;

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead, WebSocketWrite};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

/// Bytes read from the local side per frame: big enough to amortise the
/// per-frame cost and the wake-ups, small enough to keep memory flat.
const CHUNK: usize = 1024 * 1024;
/// Frames larger than this end the session: nothing legitimate sends them.
const MAX_FRAME: usize = 16 * 1024 * 1024;

type Writer<S> = Arc<Mutex<WebSocketWrite<WriteHalf<S>>>>;

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
    ws_in: &mut WebSocketRead<ReadHalf<S>>,
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
            Err(WebSocketError::IoError(e)) => return Err(PumpError::Cut(e.to_string())),
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
        WebSocketError::IoError(e) => PumpError::Cut(e.to_string()),
        WebSocketError::UnexpectedEOF => PumpError::Cut("the server closed the connection".into()),
        other => PumpError::Protocol(other.to_string()),
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
}
