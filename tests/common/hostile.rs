//! A hostile server posing as the edge: TLS with its own CA on 127.0.0.1:0,
//! reached through an edge profile like the real one, answering chosen paths
//! with a huge body, a hang, a redirect, garbage or a masked websocket frame.
//! Whatever it does, it does it without buffering: a 2 GiB body is streamed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The names a hostile profile sends to the server.
pub const NAMES: &[&str] = &[
    "ssh.demo.test",
    "demo.cloudflareaccess.com",
    "login.cloudflareaccess.org",
];

/// How the server answers a path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `status` and then `size` bytes of body, with no length: the body
    /// ends only when the connection does.
    Huge { status: u16, size: u64 },
    /// Reads the request and says nothing.
    Hang,
    /// `status` and its headers (a short body length), then nothing.
    HeadersThenHang { status: u16 },
    /// A redirect to `location`.
    Redirect { status: u16, location: String },
    /// Bytes that are not HTTP.
    Garbage,
    /// A valid `101`, then a masked binary frame, then silence.
    MaskedFrame,
}

/// The running server; it stops with the test process.
pub struct Hostile {
    pub addr: SocketAddr,
    /// Its CA certificate, PEM.
    pub ca_pem: String,
    /// `METHOD path` of every request it read.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    /// Serves `rules` (path prefix, answer); other paths get an empty 404.
    pub fn start(rules: Vec<(&'static str, Answer)>) -> Self {
        let (ca_pem, config) = tls_config();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let rules = Arc::new(rules);
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let rules = rules.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            serve(tls, &rules, &seen).await;
                        }
                    });
                }
            });
        });
        Hostile {
            addr,
            ca_pem,
            requests,
        }
    }

    /// The requests read so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Writes an edge profile in `dir` sending [`NAMES`] to this server.
    pub fn profile(&self, dir: &Path) -> PathBuf {
        let hosts = NAMES.iter().map(|n| (n.to_string(), self.addr)).collect();
        write_profile(dir, "hostile-profile.json", &self.ca_pem, hosts)
    }

    /// A profile that sends only `names` to this server and every other
    /// name of the real edge's profile at `edge_profile` to the edge,
    /// trusting both CAs.
    pub fn profile_beside(&self, dir: &Path, edge_profile: &Path, names: &[&str]) -> PathBuf {
        let edge: serde_json::Value =
            serde_json::from_slice(&std::fs::read(edge_profile).expect("edge profile"))
                .expect("profile json");
        let mut hosts: BTreeMap<String, SocketAddr> = edge["hosts"]
            .as_object()
            .expect("hosts")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("addr").parse().expect("addr")))
            .collect();
        for name in names {
            hosts.insert(name.to_string(), self.addr);
        }
        let cas = format!(
            "{}\n{}",
            self.ca_pem,
            edge["ca_cert"].as_str().expect("ca_cert")
        );
        write_profile(dir, "mixed-profile.json", &cas, hosts)
    }
}

/// A profile sending [`NAMES`] to `addr` (a [`Plain`] listener, say: a
/// server that never gets through the TLS handshake), trusting `ca`.
pub fn profile_to(dir: &Path, ca: &str, addr: SocketAddr) -> PathBuf {
    let hosts = NAMES.iter().map(|n| (n.to_string(), addr)).collect();
    write_profile(dir, "plain-profile.json", ca, hosts)
}

fn write_profile(dir: &Path, name: &str, ca: &str, hosts: BTreeMap<String, SocketAddr>) -> PathBuf {
    let path = dir.join(name);
    let json = serde_json::json!({ "ca_cert": ca, "hosts": hosts });
    std::fs::write(&path, json.to_string()).expect("write profile");
    path
}

/// A plain-text listener that counts the bytes anyone sends it: where a
/// token must never arrive.
pub struct Plain {
    pub port: u16,
    received: Arc<AtomicUsize>,
}

impl Plain {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        count.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        Plain { port, received }
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// The CA (PEM) and a server config with one certificate for [`NAMES`].
fn tls_config() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hostile test CA");
    let ca_cert = ca_params.clone().self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    // and `localhost`, no profile name: the profile's CA must not vouch for it
    let names = NAMES.iter().chain(&["localhost"]).map(|n| n.to_string());
    let params = CertificateParams::new(names.collect::<Vec<_>>()).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key_der)
    .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), Arc::new(config))
}

/// One connection: read a request head, answer by the first matching rule.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    rules: &[(&'static str, Answer)],
    seen: &Mutex<Vec<String>>,
) {
    loop {
        let Some(head) = read_head(&mut io).await else {
            return;
        };
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        if let Ok(mut seen) = seen.lock() {
            seen.push(format!("{method} {path}"));
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        // drain a request body so the next request on the connection parses
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = (&mut io).take(length);
        let _ = tokio::io::copy(&mut body, &mut tokio::io::sink()).await;
        let answer = rules
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, a)| a.clone());
        let status_line = |status: u16| format!("HTTP/1.1 {status} Hostile\r\n");
        match answer {
            None => {
                let _ = io
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
                continue;
            }
            Some(Answer::Huge { status, size }) => {
                let head = format!("{}connection: close\r\n\r\n", status_line(status));
                if io.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = 0u64;
                while sent < size {
                    let n = chunk.len().min((size - sent) as usize);
                    if io.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                }
                let _ = io.shutdown().await;
                return;
            }
            Some(Answer::Hang) => return hold(io).await,
            Some(Answer::HeadersThenHang { status }) => {
                let head = format!("{}content-length: 100\r\n\r\n", status_line(status));
                let _ = io.write_all(head.as_bytes()).await;
                let _ = io.flush().await;
                return hold(io).await;
            }
            Some(Answer::Redirect { status, location }) => {
                let head = format!(
                    "{}location: {location}\r\ncontent-length: 0\r\n\r\n",
                    status_line(status)
                );
                let _ = io.write_all(head.as_bytes()).await;
                continue;
            }
            Some(Answer::Garbage) => {
                let _ = io
                    .write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 0xff])
                    .await;
                let _ = io.shutdown().await;
                return;
            }
            Some(Answer::MaskedFrame) => {
                let key = header("sec-websocket-key").unwrap_or_default();
                let accept = cfaccess::carrier::handshake::accept_key(&key);
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                     connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
                );
                let mask = [1u8, 2, 3, 4];
                let mut frame = vec![0x82, 0x80 | 6];
                frame.extend_from_slice(&mask);
                frame.extend(b"masked".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                let _ = io.write_all(head.as_bytes()).await;
                let _ = io.write_all(&frame).await;
                let _ = io.flush().await;
                return hold(io).await;
            }
        }
    }
}

/// Keeps the connection open, reading and dropping whatever comes, until
/// the peer goes.
async fn hold<S: AsyncRead + Unpin>(mut io: S) {
    let mut buf = [0u8; 4096];
    while io.read(&mut buf).await.is_ok_and(|n| n > 0) {}
}

/// A request head, up to its empty line (at most 64 KiB).
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
