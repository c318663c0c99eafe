//! The websocket carrier (docs/protocol.md 6): who gets a websocket, where it
//! goes, and how bytes and the end of input travel through it, for
//! cfaccess's way of closing and the official client's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use access_edge::{CarrierStats, Config, Endpoint};
use fastwebsockets::OpCode;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::common::*;
use crate::ws::*;

const HOUR: Duration = Duration::from_secs(3600);
const JUMP: &str = "jump.demo.test";
const BARE: &str = "bare.demo.test";
const LIMIT: Duration = Duration::from_secs(20);

/// Three apps: `ssh.demo.test` carried to `origin`, the bastion
/// `jump.demo.test` that allows `origin` as a destination, and
/// `bare.demo.test` with no origin at all.
fn carrier_config(origin: SocketAddr) -> Config {
    config(&format!(
        r#"
[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
service_tokens = ["ci"]
origin = "{origin}"
[[apps]]
hostname = "jump.demo.test"
allow = ["*@example.com"]
destinations = ["{origin}"]
[[apps]]
hostname = "bare.demo.test"
allow = ["*@example.com"]
[[service_tokens]]
name = "ci"
client_id = "ci-id.access"
client_secret = "ci-secret"
[[service_tokens]]
name = "other"
client_id = "other-id.access"
client_secret = "other-secret"
"#
    ))
}

async fn edge_for(origin: SocketAddr) -> TestEdge {
    TestEdge::start(carrier_config(origin)).await
}

fn token(t: &TestEdge, host: &str) -> String {
    t.edge.mint_app_token(host, "alice@example.com", HOUR)
}

/// A port with nothing listening on it.
fn dead_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn wait_inactive(t: &TestEdge) {
    wait_until(LIMIT, "no carried connection is active", || {
        t.edge.carried().active == 0
    })
    .await;
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
}

async fn assert_login_redirect(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::FOUND, "{what}");
    let location = url::Url::parse(header(&response, "location").unwrap_or_default()).unwrap();
    assert_eq!(location.host_str(), Some(AUTH), "{what}");
    assert!(
        location
            .path()
            .starts_with(&format!("/cdn-cgi/access/login/{APP}")),
        "{what}: {location}"
    );
}

/// A refusal: its status and its one-line body.
async fn refusal(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    assert!(header(&response, "location").is_none(), "no login redirect");
    let body = response.text().await.unwrap();
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    (status, body.trim_end().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_websocket_is_carried_to_the_origin_and_back() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let token = token(&t, APP);
    let mut ws = open(&t, APP, &[("cf-access-token", &token)]).await;
    assert_eq!(t.edge.carried().active, 1);

    ws.tx.binary(b"hello, origin", 1024).await.unwrap();
    let frame = read_frame(&mut ws.rx).await.unwrap();
    assert_eq!(frame.opcode, OpCode::Binary);
    assert_eq!(&frame.payload[..], b"hello, origin");
    // a ping is answered, and nothing reaches the origin for it
    ws.tx
        .frame(true, OpCode::Ping, b"are you there")
        .await
        .unwrap();
    let pong = read_frame(&mut ws.rx).await.unwrap();
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (OpCode::Pong, &b"are you there"[..])
    );

    ws.tx.close().await.unwrap();
    assert_eq!(
        receive_all(&mut ws.rx).await,
        Received {
            data: Vec::new(),
            close: Some(1000)
        }
    );
    assert_eq!(within("the origin ends", origin).await.unwrap(), 13);
    wait_inactive(&t).await;
    assert_eq!(
        t.edge.carried(),
        CarrierStats {
            total: 1,
            active: 0,
            bytes_to_origin: 13,
            bytes_to_client: 13
        }
    );
    assert_eq!(t.edge.count(Endpoint::Websocket), 1);
    assert_eq!(t.edge.count(Endpoint::AppRequest), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browsers_cookie_is_as_good_as_the_header() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let cookie = format!("CF_Authorization={}", token(&t, APP));
    let mut ws = open(&t, APP, &[("cookie", &cookie)]).await;
    ws.tx.binary(b"x", 1).await.unwrap();
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.data, b"x");
    within("the origin ends", origin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_an_upgrade_gets_the_login_redirect() {
    let t = edge_for(dead_port()).await;
    let expired = t
        .edge
        .mint_app_token(APP, "alice@example.com", Duration::ZERO);
    let other_app = token(&t, JUMP);
    let revoked = t
        .edge
        .mint_app_token(APP, "bob@example.com", Duration::from_secs(60));
    t.edge.revoke_user("bob@example.com");
    for (what, token) in [
        ("missing", None),
        ("expired", Some(expired.as_str())),
        ("another app's", Some(other_app.as_str())),
        ("revoked", Some(revoked.as_str())),
        ("garbage", Some("a.b.c")),
    ] {
        let headers: Vec<(&str, &str)> =
            token.map(|t| ("cf-access-token", t)).into_iter().collect();
        match upgrade(&t, APP, &headers).await {
            Ok(_) => panic!("{what}: a websocket"),
            Err(response) => assert_login_redirect(response, what).await,
        }
    }
    assert_eq!(t.edge.count(Endpoint::Websocket), 5);
    assert_eq!(t.edge.carried().total, 0, "no origin was dialled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_are_carried_or_refused_outright() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let mut ws = open(
        &t,
        APP,
        &[
            ("Cf-Access-Client-Id", "ci-id.access"),
            ("Cf-Access-Client-Secret", "ci-secret"),
        ],
    )
    .await;
    ws.tx.binary(b"ci was here", 4).await.unwrap();
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.data, b"ci was here");
    within("the origin ends", origin).await.unwrap();

    for (what, id, secret, needle) in [
        ("bad secret", "ci-id.access", "nope", "wrong client secret"),
        (
            "not allowed",
            "other-id.access",
            "other-secret",
            "is not allowed to reach ssh.demo.test",
        ),
    ] {
        let headers = [
            ("Cf-Access-Client-Id", id),
            ("Cf-Access-Client-Secret", secret),
        ];
        let Err(response) = upgrade(&t, APP, &headers).await else {
            panic!("{what}: a websocket");
        };
        let (status, body) = refusal(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
        assert!(body.contains(needle), "{what}: {body}");
    }
    assert_eq!(t.edge.carried().total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_cannot_be_reached_is_a_502_and_no_websocket() {
    let dead = dead_port();
    let t = edge_for(dead).await;
    let token = token(&t, APP);
    let Err(response) = upgrade(&t, APP, &[("cf-access-token", &token)]).await else {
        panic!("a websocket to a dead origin");
    };
    let (status, body) = refusal(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        format!("access-edge: the origin {dead} refused the connection")
    );

    let bare = t.edge.mint_app_token(BARE, "alice@example.com", HOUR);
    let Err(response) = upgrade(&t, BARE, &[("cf-access-token", &bare)]).await else {
        panic!("a websocket with no origin");
    };
    let (status, body) = refusal(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "access-edge: no origin configured for bare.demo.test");
    assert_eq!(t.edge.carried().total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refuse_origin_fault_answers_502_until_cleared() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let token = token(&t, APP);
    t.edge.refuse_origin(true);
    let Err(response) = upgrade(&t, APP, &[("cf-access-token", &token)]).await else {
        panic!("a websocket despite the fault");
    };
    let (status, body) = refusal(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("refused the connection"), "{body}");

    t.edge.refuse_origin(false);
    let mut ws = open(&t, APP, &[("cf-access-token", &token)]).await;
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.close, Some(1000));
    within("the origin ends", origin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_goes_to_allowed_destinations_only() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let token = token(&t, JUMP);
    let auth = ("cf-access-token", token.as_str());

    let missing = upgrade(&t, JUMP, &[auth]).await.err().unwrap();
    let (status, body) = refusal(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("access-edge: no destination: use --destination"),
        "{body}"
    );

    let elsewhere = dead_port().to_string();
    let refused = upgrade(
        &t,
        JUMP,
        &[auth, ("Cf-Access-Jump-Destination", &elsewhere)],
    )
    .await
    .err()
    .unwrap();
    let (status, body) = refusal(refused).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        format!("access-edge: destination {elsewhere} is not allowed through {JUMP}")
    );

    // scheme and path are stripped, as the official ResolveBastionDest does
    let destination = format!("tcp://{addr}/ignored");
    let mut ws = open(
        &t,
        JUMP,
        &[auth, ("Cf-Access-Jump-Destination", &destination)],
    )
    .await;
    ws.tx.binary(b"jumped", 3).await.unwrap();
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.data, b"jumped");
    assert_eq!(within("the origin ends", origin).await.unwrap(), 6);
}

/// The official client: each read one message of 4096-byte frames, no
/// close frame, the connection dropped at the end of input (Go's TLS sends
/// `close_notify` then; a crash would not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_clients_framing_and_bare_close_deliver_every_byte() {
    for close_notify in [true, false] {
        let (addr, origin) = origin(sink).await;
        let t = edge_for(addr).await;
        let data = pattern(1024 * 1024 + 123);
        let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
        ws.tx.like_cloudflared(&data).await.unwrap();
        if close_notify {
            ws.tx.shutdown().await.unwrap();
        }
        drop(ws);
        let (len, digest) = within("the origin reads EOF", origin).await.unwrap();
        assert_eq!(len, data.len() as u64, "close_notify: {close_notify}");
        assert_eq!(digest, sha256(&data));
        wait_inactive(&t).await;
        assert_eq!(t.edge.carried().bytes_to_origin, data.len() as u64);
    }
}

/// cfaccess: a close frame at the end of input is a half-close. The origin
/// reads EOF, and what it sends after that still arrives, before the edge's
/// own close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_frame_is_a_half_close_and_the_origins_answer_still_arrives() {
    let (addr, origin) = origin(checksum).await;
    let t = edge_for(addr).await;
    let data = pattern(3 * 1024 * 1024 + 7);
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    ws.tx.binary(&data, 64 * 1024).await.unwrap();
    ws.tx.close().await.unwrap();
    let received = within("the edge closes", receive_all(&mut ws.rx)).await;
    assert_eq!(
        received,
        Received {
            data: sha256(&data),
            close: Some(1000)
        }
    );
    assert_eq!(
        within("the origin ends", origin).await.unwrap(),
        data.len() as u64
    );
    wait_inactive(&t).await;
}

/// The origin ends first: its bytes, then a close frame; the client may
/// still send (to an origin that only half-closed) until it closes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_ending_first_sends_its_bytes_then_a_close_frame() {
    let banner = pattern(200_000);
    let sent = banner.clone();
    let (addr, origin) = origin(move |stream| async move {
        let (mut read, write) = stream.into_split();
        write_then_close(write, &sent).await;
        let mut after = Vec::new();
        read.read_to_end(&mut after).await.unwrap();
        after
    })
    .await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let received = within("the edge closes", receive_all(&mut ws.rx)).await;
    assert_eq!(received.data, banner);
    assert_eq!(received.close, Some(1000));
    ws.tx.binary(b"one more thing", 5).await.unwrap();
    ws.tx.close().await.unwrap();
    assert_eq!(
        within("the origin reads EOF", origin).await.unwrap(),
        b"one more thing"
    );
    wait_inactive(&t).await;
}

/// Data both ways at once, several MiB each, checked end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_flow_both_ways_at_once() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let data = pattern(8 * 1024 * 1024);
    let Ws { mut rx, mut tx } = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let send = async {
        tx.binary(&data, 48 * 1024).await.unwrap();
        tx.close().await.unwrap();
    };
    let (_, received) = within("the echo comes back", async {
        tokio::join!(send, receive_all(&mut rx))
    })
    .await;
    assert_eq!(received.close, Some(1000));
    assert_eq!(received.data.len(), data.len());
    assert_eq!(sha256(&received.data), sha256(&data));
    within("the origin ends", origin).await.unwrap();
}

/// A client that goes away without a word (no close frame, no
/// `close_notify`) while the origin stays silent: the origin reads EOF, and
/// the edge drops the origin connection too rather than wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_ends_the_origin_connection() {
    let (eof_tx, eof_rx) = oneshot::channel();
    let (check_tx, check_rx) = oneshot::channel::<()>();
    let (addr, origin) = origin(move |mut stream| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            got += n;
        }
        let _ = eof_tx.send(got);
        // silent until the edge has ended the session, then: is it gone?
        let _ = check_rx.await;
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if stream.write_all(b"?").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    })
    .await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    ws.tx.binary(&pattern(100_000), 16 * 1024).await.unwrap();
    drop(ws);
    assert_eq!(
        within("the origin reads EOF", eof_rx).await.unwrap(),
        100_000
    );
    wait_inactive(&t).await;
    check_tx.send(()).unwrap();
    assert!(
        within("the origin's connection is closed", origin)
            .await
            .unwrap(),
        "the origin connection stayed open"
    );
}

/// A client that goes away while the origin streams to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_download_stops_the_origin() {
    let (addr, origin) = origin(|mut stream| async move {
        let chunk = pattern(64 * 1024);
        let mut written = 0u64;
        while stream.write_all(&chunk).await.is_ok() {
            written += chunk.len() as u64;
        }
        written
    })
    .await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let mut got = 0;
    while got < 1024 * 1024 {
        got += read_frame(&mut ws.rx).await.unwrap().payload.len();
    }
    drop(ws);
    let written = within("the origin's writes fail", origin).await.unwrap();
    assert!(written >= 1024 * 1024);
    wait_inactive(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_fault_drops_the_websocket_after_n_bytes() {
    let data = pattern(1024 * 1024);
    let sent = data.clone();
    let (addr, origin) = origin(move |mut stream| async move {
        let _ = stream.write_all(&sent).await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.is_ok()
    })
    .await;
    let t = edge_for(addr).await;
    t.edge.cut_websockets_after(Some(100_000));
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let received = within("the edge cuts", receive_all(&mut ws.rx)).await;
    assert_eq!(received.close, None, "cut with no close frame");
    assert_eq!(received.data, data[..100_000]);
    // the origin's side of the session ends too
    within("the origin's connection ends", origin)
        .await
        .unwrap();
    wait_inactive(&t).await;
    assert_eq!(t.edge.carried().bytes_to_client, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_fault_holds_the_handshake() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let token = token(&t, APP);
    let delay = Duration::from_millis(400);
    t.edge.delay_handshake(Some(delay));
    let started = Instant::now();
    let Err(response) = upgrade(&t, APP, &[]).await else {
        panic!("a websocket without a token");
    };
    assert_login_redirect(response, "no token").await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token)]).await;
    assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    t.edge.delay_handshake(None);
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.close, Some(1000));
    within("the origin ends", origin).await.unwrap();
}

/// Polls `count` until it stops growing for a while, and returns it.
async fn settled(count: &AtomicU64) -> u64 {
    let deadline = Instant::now() + LIMIT;
    let mut last = count.load(Ordering::Relaxed);
    loop {
        assert!(Instant::now() < deadline, "the writer never stalled");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count.load(Ordering::Relaxed);
        if now == last && now > 0 {
            return now;
        }
        last = now;
    }
}

/// Bounded by the socket buffers of two loopback connections, the edge's
/// one read buffer and TLS's bounded buffers: far under this.
const BUFFERED_AT_MOST: u64 = 32 * 1024 * 1024;

/// A client that stops reading stalls the origin's writes: the edge does
/// not buffer what the client does not take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stalls_the_origin() {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let (addr, origin) = origin(move |mut stream| async move {
        let chunk = pattern(64 * 1024);
        while stream.write_all(&chunk).await.is_ok() {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    })
    .await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let stalled = settled(&written).await;
    assert!(
        stalled < BUFFERED_AT_MOST,
        "the origin wrote {stalled} bytes to a client that reads nothing"
    );
    // reading again lets the origin go on, and nothing was lost
    let mut got = 0u64;
    while got < stalled + 4 * 1024 * 1024 {
        let frame = within("data flows again", read_frame(&mut ws.rx))
            .await
            .unwrap();
        got += frame.payload.len() as u64;
    }
    assert!(written.load(Ordering::Relaxed) > stalled);
    drop(ws);
    within("the origin stops", origin).await.unwrap();
}

/// An origin that stops reading stalls the client's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_stops_reading_stalls_the_client() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (addr, origin) = origin(move |stream| async move {
        let _ = go_rx.await;
        sink(stream).await
    })
    .await;
    let t = edge_for(addr).await;
    let Ws { rx: _rx, mut tx } = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let chunk = pattern(64 * 1024);
    let writer = tokio::spawn(async move {
        let mut total = 0u64;
        // Twice what may be buffered: enough to see the stall, and short
        // enough for a debug build on a loaded machine.
        while total < 2 * BUFFERED_AT_MOST {
            tx.binary(&chunk, chunk.len()).await.unwrap();
            total += chunk.len() as u64;
            counter.store(total, Ordering::Relaxed);
        }
        tx.close().await.unwrap();
        total
    });
    let stalled = settled(&written).await;
    assert!(
        stalled < BUFFERED_AT_MOST,
        "the client wrote {stalled} bytes to an origin that reads nothing"
    );
    go_tx.send(()).unwrap();
    let total = within("the client's writes go through", writer)
        .await
        .unwrap();
    let (len, _) = within("the origin reads it all", origin).await.unwrap();
    assert_eq!(len, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_edge_ends_its_carried_connections() {
    let (addr, origin) = origin(echo).await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    ws.tx.binary(b"ping", 4).await.unwrap();
    assert_eq!(&read_frame(&mut ws.rx).await.unwrap().payload[..], b"ping");
    drop(t);
    assert_eq!(within("the origin reads EOF", origin).await.unwrap(), 4);
    assert_eq!(receive_all(&mut ws.rx).await.close, None);
}

/// Throughput of 1 GiB each way through the edge, against a direct loopback
/// copy. A measurement, not a check: run it in a release build with
/// `cargo test --release -p access-edge --test it -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand in a release build"]
async fn throughput() {
    const TOTAL: u64 = 1 << 30;
    let chunk = pattern(64 * 1024);
    let rate = |bytes: u64, took: Duration| bytes as f64 / took.as_secs_f64() / 1e9;

    // direct loopback copy
    let (addr, origin_task) = origin(sink).await;
    let started = Instant::now();
    let mut direct = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sent = 0;
    while sent < TOTAL {
        direct.write_all(&chunk).await.unwrap();
        sent += chunk.len() as u64;
    }
    direct.shutdown().await.unwrap();
    origin_task.await.unwrap();
    let direct_rate = rate(TOTAL, started.elapsed());

    // client → origin through the edge
    let (addr, origin_task) = origin(sink).await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let started = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        ws.tx.binary(&chunk, chunk.len()).await.unwrap();
        sent += chunk.len() as u64;
    }
    ws.tx.close().await.unwrap();
    let (len, _) = origin_task.await.unwrap();
    let up_rate = rate(len, started.elapsed());

    // origin → client through the edge
    let (addr, origin_task) = origin(move |mut stream| async move {
        let mut sent = 0;
        while sent < TOTAL {
            stream.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        stream.shutdown().await.unwrap();
    })
    .await;
    let t = edge_for(addr).await;
    let mut ws = open(&t, APP, &[("cf-access-token", &token(&t, APP))]).await;
    let started = Instant::now();
    let mut got = 0u64;
    loop {
        let frame = read_frame(&mut ws.rx).await.unwrap();
        if frame.opcode == OpCode::Close {
            break;
        }
        got += frame.payload.len() as u64;
    }
    let down_rate = rate(got, started.elapsed());
    origin_task.await.unwrap();
    assert_eq!(got, TOTAL);
    println!(
        "1 GiB: direct loopback {direct_rate:.2} GB/s; through the edge: client→origin {up_rate:.2} GB/s, origin→client {down_rate:.2} GB/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_carried_session_outlives_the_http_idle_and_header_timeouts() {
    let (addr, origin) = origin(echo).await;
    let t = TestEdge::start_with(carrier_config(addr), |opts| {
        opts.timeouts.idle = Duration::from_millis(300);
        opts.timeouts.header = Duration::from_millis(300);
    })
    .await;
    let token = token(&t, APP);
    let mut ws = open(&t, APP, &[("cf-access-token", &token)]).await;
    // Idleness is what is tested here: nothing to wait for but time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ws.tx.binary(b"still there?", 1024).await.unwrap();
    let frame = read_frame(&mut ws.rx).await.unwrap();
    assert_eq!(&frame.payload[..], b"still there?");
    ws.tx.close().await.unwrap();
    assert_eq!(receive_all(&mut ws.rx).await.close, Some(1000));
    assert_eq!(within("the origin ends", origin).await.unwrap(), 12);
}
