// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! Backpressure: a reader that stalls for 10 s on one side must slow the
//! writer on the other, with neither cfaccess nor the edge buffering without
//! bound, and every byte must still arrive once the reader reads again.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// How long the reader stalls.
const STALL: Duration = Duration::from_secs(10);
/// What may sit in buffers along the way (socket buffers on four sockets,
/// TLS and frame buffers): far below what an unbounded buffer would take in
/// 10 s of loopback writing (gigabytes).
const BOUND: u64 = 96 << 20;
/// cfaccess's resident memory may grow this much at most (debug build).
const RSS_GROWTH: u64 = 24 << 20;

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

/// A cfaccess listener in front of the demo app, whose origin is `origin`.
fn listener(origin: &TcpListener) -> (TestEnv, KillOnDrop, u16) {
    let origin = origin.local_addr().unwrap().to_string();
    let env = TestEnv::with(|opts| opts.config.apps[0].origin = Some(origin));
    let (child, port) = env.listener(APP_HOST, &[]);
    (env, child, port)
}

/// Writes to `stream` for `STALL`, as fast as it takes, sampling `pid`'s RSS;
/// returns the bytes written and the largest RSS seen.
fn write_while_stalled(stream: &mut TcpStream, pid: u32) -> (u64, u64) {
    // a blocked write gives up after a moment, to sample and go on
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let chunk = vec![7u8; 64 << 10];
    let (mut written, mut peak) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < STALL {
        match stream.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("write failed: {e}"),
        }
        peak = peak.max(rss_of(pid));
    }
    stream.set_write_timeout(None).unwrap();
    (written, peak)
}

/// The writer was held back, and cfaccess did not grow.
fn assert_held_back(written: u64, rss_before: u64, rss_peak: u64) {
    assert!(
        written < BOUND,
        "{written} bytes went into buffers somewhere"
    );
    assert!(
        rss_peak < rss_before + RSS_GROWTH,
        "cfaccess grew from {rss_before} to {rss_peak} bytes"
    );
}

fn drain(stream: &mut TcpStream, expected: u64) {
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while got < expected {
        let n = stream.read(&mut buf).expect("the rest arrives");
        assert!(n > 0, "ended after {got} of {expected} bytes");
        assert!(buf[..n].iter().all(|&b| b == 7), "bytes arrive unchanged");
        got += n as u64;
    }
}

#[test]
fn a_stalled_origin_slows_the_client_without_unbounded_buffering() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let (env, child, port) = listener(&origin);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"first").unwrap();
    let (mut stalled, _) = origin.accept().unwrap(); // accepted, then not read
    let before = rss_of(child.0.id());

    let (written, peak) = write_while_stalled(&mut client, child.0.id());
    assert_held_back(written, before, peak);
    assert!(env.edge.carried().bytes_to_origin < BOUND);

    let mut first = [0u8; 5];
    stalled.read_exact(&mut first).unwrap();
    drain(&mut stalled, written);
}

#[test]
fn a_stalled_client_slows_the_origin_without_unbounded_buffering() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let (env, child, port) = listener(&origin);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"hi").unwrap();
    let (mut writer, _) = origin.accept().unwrap();
    let before = rss_of(child.0.id());

    let (written, peak) = write_while_stalled(&mut writer, child.0.id());
    assert_held_back(written, before, peak);
    assert!(env.edge.carried().bytes_to_client < BOUND);

    drain(&mut client, written);
}
