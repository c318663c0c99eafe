//! Accepting connections: `TCP_NODELAY`, and a read buffer under TLS.
//!
//! rustls pulls ciphertext from the socket at most 4 KiB at a time, so a
//! carried gigabyte would cost a quarter of a million `recv` calls. Reading
//! the socket in large chunks into a buffer that rustls then drains costs a
//! copy in memory instead, which is far cheaper. Without `TCP_NODELAY` a
//! small answer can wait 40 ms for a delayed ACK.

use std::future::{Ready, ready};
use std::io;

use axum_server::accept::Accept;
use tokio::io::BufReader;
use tokio::net::TcpStream;

/// Bytes read from a client socket at once.
const READ_BUFFER: usize = 256 * 1024;

/// The acceptor under the TLS acceptor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BufferedAcceptor;

impl<S> Accept<TcpStream, S> for BufferedAcceptor {
    type Stream = BufReader<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        ready(
            stream
                .set_nodelay(true)
                .map(|()| (BufReader::with_capacity(READ_BUFFER, stream), service)),
        )
    }
}
