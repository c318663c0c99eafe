//! A small websocket client over the shared HTTP client (as cfaccess dials:
//! HTTP/1.1 upgrade through reqwest, then fastwebsockets on the raw stream),
//! and TCP origins on 127.0.0.1:0 for the carrier tests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::*;

/// The official client's frame size: gorilla's default write buffer.
pub const GORILLA_FRAME: usize = 4096;
/// The official client's local read size: each read is one message.
pub const GORILLA_READ: usize = 16 * 1024;

/// The client end of a carried connection. The halves are public so a test
/// can read and write at once.
pub struct Ws {
    pub rx: WebSocketRead<ReadHalf<reqwest::Upgraded>>,
    pub tx: WsWriter,
}

/// The writing half: frames masked as a client must.
pub struct WsWriter(pub WriteHalf<reqwest::Upgraded>);

/// What a client saw until the session ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub data: Vec<u8>,
    /// The close frame's code; `None` when the connection ended without one.
    pub close: Option<u16>,
}

/// Asks for a websocket on `https://<host>/` with `headers`; the response
/// when it is not a 101.
pub async fn upgrade(
    t: &TestEdge,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, reqwest::Response> {
    upgrade_with(&t.client, host, headers).await
}

/// [`upgrade`] through any client.
pub async fn upgrade_with(
    client: &reqwest::Client,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, reqwest::Response> {
    upgrade_at(client, host, "/", headers).await
}

/// [`upgrade_with`] at `path` (with its query).
pub async fn upgrade_at(
    client: &reqwest::Client,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, reqwest::Response> {
    let key = STANDARD.encode(rand::random::<[u8; 16]>());
    let mut request = client
        .get(format!("https://{host}{path}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", &key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        return Err(response);
    }
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    assert_eq!(
        header(&response, "sec-websocket-accept"),
        Some(STANDARD.encode(sha.finalize()).as_str())
    );
    assert!(header(&response, "sec-websocket-extensions").is_none());
    assert!(header(&response, "sec-websocket-protocol").is_none());
    let stream = response.upgrade().await.unwrap();
    let (read, write) = tokio::io::split(stream);
    let (mut rx, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Client);
    rx.set_auto_close(false);
    rx.set_auto_pong(false);
    Ok(Ws {
        rx,
        tx: WsWriter(write),
    })
}

/// [`upgrade`] that must succeed.
pub async fn open(t: &TestEdge, host: &str, headers: &[(&str, &str)]) -> Ws {
    match upgrade(t, host, headers).await {
        Ok(ws) => ws,
        Err(response) => panic!(
            "no websocket: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ),
    }
}

/// Reads one frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rx: &mut WebSocketRead<R>,
) -> Result<Frame<'_>, WebSocketError> {
    rx.read_frame(&mut |_: Frame<'_>| async { Ok::<(), Infallible>(()) })
        .await
}

/// Reads data frames until a close frame or the end of the connection.
pub async fn receive_all<R: AsyncRead + Unpin>(rx: &mut WebSocketRead<R>) -> Received {
    let mut data = Vec::new();
    loop {
        match read_frame(rx).await {
            Ok(frame) => match frame.opcode {
                OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                    data.extend_from_slice(&frame.payload)
                }
                OpCode::Close => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    return Received {
                        data,
                        close: code.or(Some(1005)),
                    };
                }
                OpCode::Ping | OpCode::Pong => {}
            },
            Err(_) => return Received { data, close: None },
        }
    }
}

impl WsWriter {
    /// Writes one frame, masked.
    pub async fn frame(&mut self, fin: bool, opcode: OpCode, data: &[u8]) -> std::io::Result<()> {
        let mut frame = Frame::new(fin, opcode, None, Payload::Owned(data.to_vec()));
        frame.mask();
        let mut head = [0u8; 16];
        let n = frame.fmt_head(&mut head);
        self.0.write_all(&head[..n]).await?;
        self.0.write_all(&frame.payload).await?;
        self.0.flush().await
    }

    /// `data` in binary frames of `size` bytes, one message each.
    pub async fn binary(&mut self, data: &[u8], size: usize) -> std::io::Result<()> {
        for chunk in data.chunks(size) {
            self.frame(true, OpCode::Binary, chunk).await?;
        }
        Ok(())
    }

    /// `data` as the official client sends it: each 16 KiB read one message
    /// of 4096-byte frames (a binary frame, then continuations).
    pub async fn like_cloudflared(&mut self, data: &[u8]) -> std::io::Result<()> {
        for message in data.chunks(GORILLA_READ) {
            let frames: Vec<&[u8]> = message.chunks(GORILLA_FRAME).collect();
            for (i, frame) in frames.iter().enumerate() {
                let opcode = if i == 0 {
                    OpCode::Binary
                } else {
                    OpCode::Continuation
                };
                self.frame(i + 1 == frames.len(), opcode, frame).await?;
            }
        }
        Ok(())
    }

    /// A close frame: cfaccess's end of input.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.frame(true, OpCode::Close, &1000u16.to_be_bytes())
            .await
    }

    /// Ends TLS (`close_notify`) and the TCP write side, with no close frame.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.0.shutdown().await
    }
}

/// An origin on 127.0.0.1:0 that takes one connection and runs `serve` on
/// it; the task gives back what `serve` returns.
pub async fn origin<T, F, Fut>(serve: F) -> (SocketAddr, JoinHandle<T>)
where
    T: Send + 'static,
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream).await
    });
    (addr, task)
}

/// Echoes until EOF, then closes; gives back how many bytes it echoed.
pub async fn echo(stream: TcpStream) -> u64 {
    let (mut read, mut write) = stream.into_split();
    let echoed = tokio::io::copy(&mut read, &mut write).await.unwrap_or(0);
    let _ = write.shutdown().await;
    echoed
}

/// Reads until EOF; gives back the length and SHA-256 of what it read.
pub async fn sink(mut stream: TcpStream) -> (u64, Vec<u8>) {
    let (len, digest) = digest_to_eof(&mut stream).await;
    (len, digest)
}

/// Reads until EOF, then answers with the SHA-256 of what it read and
/// closes: data an origin sends after its input ended.
pub async fn checksum(mut stream: TcpStream) -> u64 {
    let (len, digest) = digest_to_eof(&mut stream).await;
    stream.write_all(&digest).await.unwrap();
    stream.shutdown().await.unwrap();
    len
}

async fn digest_to_eof<S: AsyncRead + Unpin>(stream: &mut S) -> (u64, Vec<u8>) {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sha.update(&buf[..n]);
                len += n as u64;
            }
        }
    }
    (len, sha.finalize().to_vec())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// `len` bytes that are not all the same.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes everything to `out`, then shuts its write side down.
pub async fn write_then_close<W: AsyncWrite + Unpin>(mut out: W, data: &[u8]) {
    out.write_all(data).await.unwrap();
    out.shutdown().await.unwrap();
}
