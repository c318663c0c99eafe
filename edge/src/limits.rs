//! Every deadline and size cap of access-edge, in one place.
//!
//! The edge faces clients it cannot trust to behave: one that stalls after
//! TLS, leaves a keep-alive connection idle, dribbles a header or a body, or
//! sends far more than any Access client would. These numbers bound what each
//! may cost (the README's edge section lists them). Carried websockets are
//! exempt from the HTTP deadlines: an idle ssh session is a session, not a
//! stalled request.

use std::time::Duration;

// ---- deadlines ------------------------------------------------------------

/// From accept to the end of the TLS handshake.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// From a request's first byte (the ClientHello's, for the first request of
/// a connection) to the end of its head; nginx's `client_header_timeout`.
pub const HEADER_READ: Duration = Duration::from_secs(10);
/// How long a connection may wait with no request in flight before it is
/// closed: HTTP/1.1 keep-alive and HTTP/2 alike (Go's client keeps idle
/// connections 90 s and retries on a new one when the edge has closed it).
pub const IDLE: Duration = Duration::from_secs(60);
/// A request body (every POST), from the handler's first read to its end.
pub const BODY_READ: Duration = Duration::from_secs(10);
/// A control socket connection may wait this long for each command line.
pub const CONTROL_IDLE: Duration = Duration::from_secs(60);

// ---- size caps ------------------------------------------------------------

/// A request head (request line and headers) over HTTP/1.1, and the header
/// list over HTTP/2. Cloudflare's own limit is 32 KiB of request headers.
pub const REQUEST_HEAD: usize = 32 << 10;
/// A request body: the login form and `cert_sign`'s JSON are a few KiB.
pub const REQUEST_BODY: usize = 64 << 10;
/// A websocket frame from a client. cfaccess sends at most 1 MiB per frame,
/// the official client 4 KiB; the frame reader holds a whole frame.
pub const CLIENT_FRAME: usize = 2 << 20;
/// The read buffer under TLS of a carried connection (see `front::accept`).
pub const CARRIER_READ_BUFFER: usize = 256 << 10;
/// A control socket connection's input in all.
pub const CONTROL_INPUT: u64 = 64 << 10;
/// Login page nonces kept at once (each a few dozen bytes); the oldest go.
pub const LOGIN_NONCES: usize = 4096;
/// How long a login page's nonce can approve its login.
pub const LOGIN_NONCE_TTL: Duration = Duration::from_secs(10 * 60);
