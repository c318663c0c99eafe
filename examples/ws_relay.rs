//! A neutral websocket relay, for measuring a carrier client's own cost
//! (`bench/bench.py --wstunnel … --official …`, the `carrier_peers` row):
//! TLS, any websocket upgrade accepted with no authentication, and each
//! connection's bytes relayed to one TCP origin. It is not access-edge, so
//! the figure measured through it is the client's alone, and it costs
//! little: the TLS socket is read in large chunks (rustls alone reads 4 KiB
//! at a time) and each origin read goes out as one frame.
//!
//! ```sh
//! cargo run --release --example ws_relay -- 127.0.0.1:443 127.0.0.1:9000 cert.pem key.pem
//! ```
//!
//! Not part of either program: a measuring tool that lives beside them.

use std::net::SocketAddr;
use std::sync::Arc;

use fastwebsockets::{Frame, OpCode, Payload, Role};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bytes read from the origin per frame, and from the TLS socket per call.
const CHUNK: usize = 1 << 20;
const SOCKET_READ: usize = 256 << 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, origin, cert, key] = args.as_slice() else {
        return Err("usage: ws_relay LISTEN_ADDR ORIGIN_ADDR CERT_PEM KEY_PEM".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let origin: SocketAddr = origin.parse()?;
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(listen).await?;
            loop {
                let (socket, _) = listener.accept().await?;
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(acceptor, socket, origin).await {
                        eprintln!("ws_relay: a connection ended: {e}");
                    }
                });
            }
        })
}

async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    socket: TcpStream,
    origin: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    socket.set_nodelay(true)?;
    let mut tls = acceptor
        .accept(BufReader::with_capacity(SOCKET_READ, socket))
        .await?;
    let key = read_upgrade(&mut tls).await?;
    let origin = TcpStream::connect(origin).await?;
    origin.set_nodelay(true)?;
    tls.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            cfaccess::carrier::handshake::accept_key(&key)
        )
        .as_bytes(),
    )
    .await?;
    tls.flush().await?;

    let (client_read, client_write) = tokio::io::split(tls);
    let (mut frames, mut out) =
        fastwebsockets::after_handshake_split(client_read, client_write, Role::Server);
    frames.set_auto_close(false);
    frames.set_auto_pong(false);
    let (mut origin_read, mut origin_write) = origin.into_split();
    let upstream = async move {
        loop {
            let frame = frames
                .read_frame(&mut |_: Frame<'_>| async { Ok::<_, std::io::Error>(()) })
                .await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                    origin_write.write_all(&frame.payload).await?;
                }
                OpCode::Ping | OpCode::Pong => {}
            }
        }
        origin_write.shutdown().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    let downstream = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = origin_read.read(&mut buf).await?;
            if n == 0 {
                out.write_frame(Frame::close(1000, b"")).await?;
                out.flush().await?;
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
            }
            out.write_frame(Frame::new(
                true,
                OpCode::Binary,
                None,
                Payload::Borrowed(&buf[..n]),
            ))
            .await?;
            out.flush().await?;
        }
    };
    // each direction on its own task, so the two can use both cores
    let upstream = tokio::spawn(upstream);
    downstream.await?;
    upstream.await??;
    Ok(())
}

/// Reads a request head and returns its `Sec-WebSocket-Key`. Byte by byte,
/// so nothing after the head is taken from the stream: a tool's shortcut,
/// once per connection.
async fn read_upgrade<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err("request head too long".into());
        }
        head.push(stream.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| "not a websocket upgrade".into())
}
