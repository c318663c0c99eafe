//! The browser terminal's websocket (docs/protocol.md 13), driven by a Rust
//! client against a real sshd that trusts only the app's CA.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use access_edge::{CaKeyType, Config};
use fastwebsockets::OpCode;

use crate::common::*;
use crate::ws::{Ws, read_frame, upgrade_at};

const SESSION: &str = "/cdn-cgi/access/ssh/session";

/// sshd on 127.0.0.1 trusting only `ca` (no authorized keys), started by the
/// test and stopped when dropped (by its own PID).
struct Sshd {
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Child,
}

impl Sshd {
    fn trusting(port: u16, ca: &str) -> Sshd {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let ca_file = dir.join("ca.pub");
        std::fs::write(&ca_file, format!("{ca}\n")).unwrap();
        let config = [
            format!("Port {port}"),
            "ListenAddress 127.0.0.1".into(),
            format!("HostKey {}", host_key.display()),
            "PidFile none".into(),
            "UsePAM no".into(),
            "StrictModes no".into(),
            "PasswordAuthentication no".into(),
            "KbdInteractiveAuthentication no".into(),
            "PermitRootLogin prohibit-password".into(),
            "AuthorizedKeysFile none".into(),
            format!("TrustedUserCAKeys {}", ca_file.display()),
            "LogLevel VERBOSE".into(),
        ];
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config.join("\n") + "\n").unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sshd (apt-get install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd {
            dir: tmp,
            log,
            child,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.dir.path();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The demo edge with its app's origin at `port`, and the app's CA.
async fn edge_for(port: u16) -> (TestEdge, String) {
    let mut config = Config::demo();
    config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
    let t = TestEdge::start(config).await;
    let ca = t.edge.generate_ca(APP, CaKeyType::Ed25519).unwrap();
    (t, ca)
}

fn cookie_for(t: &TestEdge, email: &str, lifetime: Duration) -> String {
    format!(
        "CF_Authorization={}",
        t.edge.mint_app_token(APP, email, lifetime)
    )
}

async fn open_session(t: &TestEdge, cookie: &str, cols: u32, rows: u32) -> Ws {
    match upgrade_at(
        &t.client,
        APP,
        &format!("{SESSION}?cols={cols}&rows={rows}"),
        &[("cookie", cookie)],
    )
    .await
    {
        Ok(ws) => ws,
        Err(r) => panic!("no websocket: {} {}", r.status(), r.text().await.unwrap()),
    }
}

/// What the edge sent, as the page sees it.
#[derive(Default, Debug)]
struct Screen {
    output: Vec<u8>,
    messages: Vec<serde_json::Value>,
    closed: bool,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn last(&self, kind: &str) -> Option<&serde_json::Value> {
        self.messages.iter().rev().find(|m| m["type"] == kind)
    }
}

/// Reads frames until `done` holds (or the close frame), within 20 s.
async fn read_until(ws: &mut Ws, screen: &mut Screen, done: impl Fn(&Screen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(screen) && !screen.closed {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, read_frame(&mut ws.rx))
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {:?}", screen.text()));
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => {
                screen.closed = true;
                break;
            }
        };
        match frame.opcode {
            OpCode::Binary => screen.output.extend_from_slice(&frame.payload),
            OpCode::Text => screen
                .messages
                .push(serde_json::from_slice(&frame.payload).unwrap()),
            OpCode::Close => screen.closed = true,
            _ => {}
        }
    }
}

async fn ready(ws: &mut Ws) -> Screen {
    let mut screen = Screen::default();
    read_until(ws, &mut screen, |s| {
        s.messages.iter().any(|m| m["ready"] == true) || s.last("error").is_some()
    })
    .await;
    assert!(
        screen.last("error").is_none(),
        "the session failed: {:?}",
        screen.messages
    );
    screen
}

#[tokio::test]
async fn a_shell_runs_whoami_follows_resizes_and_reports_its_exit_status() {
    let port = free_port();
    let (t, ca) = edge_for(port).await;
    let sshd = Sshd::trusting(port, &ca);
    let user = current_user();
    let cookie = cookie_for(&t, &format!("{user}@example.com"), Duration::from_secs(300));

    // The page itself, then the session.
    let page = t
        .get(&format!("https://{APP}/"), &[("cookie", &cookie)])
        .await;
    assert_eq!(page.status(), 200);
    let csp = header(&page, "content-security-policy").unwrap().to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"id="terminal""#) && body.contains("terminal.js"));
    let js = t
        .get(
            &format!("https://{APP}/cdn-cgi/access/ssh/assets/xterm.js"),
            &[],
        )
        .await;
    assert_eq!(js.status(), 200);

    let mut ws = open_session(&t, &cookie, 100, 30).await;
    let mut screen = ready(&mut ws).await;
    ws.tx.binary(b"whoami; stty size\n", 4096).await.unwrap();
    read_until(&mut ws, &mut screen, |s| s.text().contains("30 100")).await;
    // whoami's answer, then stty's (the PTY ends lines with CR LF).
    assert!(
        screen.text().contains(&format!("\r{user}\r\n30 100")),
        "{}",
        screen.text()
    );

    ws.tx
        .frame(
            true,
            OpCode::Text,
            br#"{"type":"resize","cols":132,"rows":43}"#,
        )
        .await
        .unwrap();
    ws.tx.binary(b"stty size\n", 4096).await.unwrap();
    read_until(&mut ws, &mut screen, |s| s.text().contains("43 132")).await;

    ws.tx.binary(b"exit 7\n", 4096).await.unwrap();
    read_until(&mut ws, &mut screen, |s| s.last("exit").is_some()).await;
    let exit = screen.last("exit").unwrap();
    assert_eq!(exit["status"], 7, "{exit}");
    assert!(exit["signal"].is_null());
    read_until(&mut ws, &mut screen, |_| false).await;
    assert!(screen.closed);
    wait_until(Duration::from_secs(10), "the session to end", || {
        t.edge.terminals().active == 0
    })
    .await;
    assert_eq!(t.edge.terminals().total, 1);
    drop(sshd);
}

#[tokio::test]
async fn a_user_without_a_unix_account_gets_no_user_on_the_server() {
    let port = free_port();
    let (t, ca) = edge_for(port).await;
    let _sshd = Sshd::trusting(port, &ca);
    let cookie = cookie_for(&t, "jdoe-nobody@example.com", Duration::from_secs(300));
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    let mut screen = Screen::default();
    read_until(&mut ws, &mut screen, |s| s.last("error").is_some()).await;
    let error = screen.last("error").unwrap();
    assert_eq!(error["kind"], "no_user");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("no user jdoe-nobody on the server"),
        "{message}"
    );
}

#[tokio::test]
async fn a_changed_host_key_is_refused_and_an_origin_down_said_so() {
    let port = free_port();
    let (t, ca) = edge_for(port).await;
    let user = current_user();
    let cookie = cookie_for(&t, &format!("{user}@example.com"), Duration::from_secs(300));
    let sshd = Sshd::trusting(port, &ca);
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    ready(&mut ws).await;
    ws.tx.close().await.unwrap();
    drop(sshd);

    // The same port, another sshd: another host key.
    let mut screen = Screen::default();
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    read_until(&mut ws, &mut screen, |s| s.last("error").is_some()).await;
    assert_eq!(screen.last("error").unwrap()["kind"], "origin_down");

    let sshd = Sshd::trusting(port, &ca);
    let mut screen = Screen::default();
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    read_until(&mut ws, &mut screen, |s| s.last("error").is_some()).await;
    let error = screen.last("error").unwrap();
    assert_eq!(error["kind"], "host_key_changed", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("has changed"),
        "{error}"
    );
    // Refused before logging in: sshd saw no accepted certificate.
    assert!(!sshd.log_text().contains("Accepted"), "{}", sshd.log_text());
}

#[tokio::test]
async fn the_browser_going_ends_the_ssh_session() {
    let port = free_port();
    let (t, ca) = edge_for(port).await;
    let sshd = Sshd::trusting(port, &ca);
    let user = current_user();
    let cookie = cookie_for(&t, &format!("{user}@example.com"), Duration::from_secs(300));
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    ready(&mut ws).await;
    assert!(
        sshd.log_text().contains("Accepted publickey"),
        "{}",
        sshd.log_text()
    );
    assert_eq!(t.edge.terminals().active, 1);
    ws.tx.close().await.unwrap();
    drop(ws);
    wait_until(
        Duration::from_secs(10),
        "sshd to see the disconnect",
        || {
            let log = sshd.log_text();
            log.contains("Disconnected from user") || log.contains("disconnected by user")
        },
    )
    .await;
    wait_until(Duration::from_secs(10), "the session to end", || {
        t.edge.terminals().active == 0
    })
    .await;
}

#[tokio::test]
async fn the_session_ends_when_the_token_expires() {
    let port = free_port();
    let (t, ca) = edge_for(port).await;
    let _sshd = Sshd::trusting(port, &ca);
    let user = current_user();
    let cookie = cookie_for(&t, &format!("{user}@example.com"), Duration::from_secs(3));
    let mut ws = open_session(&t, &cookie, 80, 24).await;
    let mut screen = ready(&mut ws).await;
    read_until(&mut ws, &mut screen, |s| s.last("error").is_some()).await;
    let error = screen.last("error").unwrap();
    assert_eq!(error["kind"], "expired");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("your Access session expired")
    );
}

#[tokio::test]
async fn no_cookie_or_another_users_refused_before_the_upgrade() {
    let (t, _ca) = edge_for(free_port()).await;
    let refused = upgrade_at(&t.client, APP, SESSION, &[])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status(), 401);
    let outsider = cookie_for(&t, "mallory@evil.test", Duration::from_secs(300));
    let refused = upgrade_at(&t.client, APP, SESSION, &[("cookie", &outsider)])
        .await
        .err()
        .unwrap();
    assert_eq!(refused.status(), 403);
    // Without a cookie, the page is the login redirect.
    let page = t.get(&format!("https://{APP}/"), &[]).await;
    assert_eq!(page.status(), 302);
}
