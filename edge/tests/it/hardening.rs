//! The edge against hostile and careless clients: connections that stall
//! after TLS, keep-alive connections left idle, oversized headers and bodies,
//! and login approvals forged from another site.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cfaccess::access::edge_profile::EdgeProfile;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;

use crate::common::*;
use crate::process::{terminate, wait_for_file};

/// An `access-edge` process on a seeded state dir, stopped when dropped.
pub struct Served {
    child: Option<Child>,
    pub profile: EdgeProfile,
    pub dir: TempDir,
}

impl Served {
    pub fn start(args: &[&str]) -> Served {
        let dir = seeded_state_dir();
        let mut child = Command::new(edge_bin())
            .arg("--state-dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let profile_path = dir.path().join("profile.json");
        wait_for_file(&profile_path, &mut child);
        let profile = EdgeProfile::load(&profile_path).unwrap();
        Served {
            child: Some(child),
            profile,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.profile.hosts[APP]
    }

    /// `kB` of a `/proc/<pid>/status` field (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A TLS client config that trusts the edge's CA, speaking `alpn`.
    pub fn tls(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.profile.ca_cert.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the app host, handshake done.
fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from(APP).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Waits until the edge closes `tls` (EOF, with or without `close_notify`,
/// or a reset), at most until `deadline`; false if it is still open then.
/// Whatever the edge sends first (an error page) is read and dropped.
fn closed_by(tls: &mut Tls, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tls.sock.set_read_timeout(Some(left)).unwrap();
        match tls.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

const STALLED: usize = 300;
/// The edge's default header timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn connections_that_stall_in_the_header_are_closed_and_cost_little_memory() {
    let edge = Served::start(&[]);
    let tls = edge.tls(b"http/1.1");
    // one whole request first, so the baseline has a served connection's cost
    let mut warm = connect(edge.addr(), &tls);
    warm.write_all(b"GET / HTTP/1.1\r\nHost: ssh.demo.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = warm.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 302"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let before = edge.memory_kib("VmRSS");

    let started = Instant::now();
    let mut stalled: Vec<Tls> = (0..STALLED)
        .map(|_| {
            let mut tls = connect(edge.addr(), &tls);
            tls.write_all(b"GET / HTTP/1.1\r\nHost: ssh.demo.test\r\nUser-Agent: hal")
                .unwrap();
            tls.flush().unwrap();
            tls
        })
        .collect();
    let opened = started.elapsed();
    // a fresh request is answered: the edge has read what came before it
    let mut probe = connect(edge.addr(), &tls);
    probe
        .write_all(b"GET / HTTP/1.1\r\nHost: ssh.demo.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let _ = probe.read_to_end(&mut Vec::new());
    let during = edge.memory_kib("VmRSS");
    eprintln!(
        "{STALLED} stalled connections opened in {opened:?}: edge RSS {before} KiB -> {during} KiB (+{} KiB, {} KiB each)",
        during.saturating_sub(before),
        during.saturating_sub(before) / STALLED as u64
    );

    let deadline = started + opened + HEADER_TIMEOUT + Duration::from_secs(5);
    let open = stalled
        .iter_mut()
        .map(|tls| closed_by(tls, deadline))
        .filter(|closed| !closed)
        .count();
    let closed_after = started.elapsed();
    let peak = edge.memory_kib("VmHWM");
    eprintln!(
        "closed by the edge: {} of {STALLED}, the last {closed_after:?} after the first was opened; edge peak RSS {peak} KiB",
        STALLED - open
    );
    assert_eq!(
        open, 0,
        "stalled connections still open after the header timeout"
    );
    assert!(
        closed_after >= HEADER_TIMEOUT,
        "closed before the header timeout: {closed_after:?}"
    );
    let growth = during.saturating_sub(before);
    assert!(
        growth < 15 * 1024,
        "{STALLED} stalled connections cost {growth} KiB of RSS"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let edge = Served::start(&["--idle-timeout", "2s"]);
    let mut tls = connect(edge.addr(), &edge.tls(b"http/1.1"));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: ssh.demo.test\r\n\r\n")
        .unwrap();
    let asked = Instant::now();
    let mut answer = [0u8; 12];
    tls.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 302");
    assert!(closed_by(&mut tls, asked + Duration::from_secs(10)));
    let idle = asked.elapsed();
    eprintln!("an idle keep-alive connection was closed after {idle:?} (--idle-timeout 2s)");
    assert!(
        idle >= Duration::from_secs(2) && idle < Duration::from_millis(3500),
        "{idle:?}"
    );
}

#[test]
fn a_request_head_over_the_cap_is_refused() {
    let edge = Served::start(&[]);
    let mut tls = connect(edge.addr(), &edge.tls(b"http/1.1"));
    let filler = "a".repeat(40 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: ssh.demo.test\r\nX-Filler: {filler}\r\n\r\n");
    // The edge may close before it has read everything: then the write or
    // the read fails, which is a refusal too, as long as no 302 comes back.
    let _ = tls.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(closed_by(&mut tls, Instant::now() + Duration::from_secs(5)));
}
