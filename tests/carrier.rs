// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! `cfaccess access ssh` as the ssh ProxyCommand and as a local listener,
//! with the real OpenSSH client and server, through a real access-edge.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{Sshd, free_port};
use common::*;

/// An sshd as the demo app's origin, and an edge in front of it.
fn setup() -> (Sshd, TestEnv) {
    setup_with(|_| {})
}

fn setup_with(change: impl FnOnce(&mut EdgeOptions)) -> (Sshd, TestEnv) {
    let sshd = Sshd::start(&[]);
    let origin = sshd.addr();
    let env = TestEnv::with(|opts| {
        opts.config.apps[0].origin = Some(origin);
        change(opts);
    });
    (sshd, env)
}

fn run(cmd: Command) -> Run {
    run_with_deadline(cmd, Duration::from_secs(120))
}

#[test]
fn ssh_runs_a_command_through_the_edge_logging_in_once() {
    let (sshd, env) = setup();
    let first = run(env.ssh(&sshd.user_key, "", &[APP_HOST, "echo", "hello from sshd"]));
    first.success();
    assert_eq!(first.stdout, "hello from sshd\n");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
    assert!(env.token_file().exists());

    let second = run(env.ssh(&sshd.user_key, "", &[APP_HOST, "true"]));
    second.success();
    assert_eq!(
        env.edge.count(Endpoint::LoginPage),
        1,
        "the cached token is used"
    );
    assert_eq!(
        env.edge.count(Endpoint::Discovery),
        1,
        "known app info saves the discovery"
    );
    assert_eq!(env.edge.carried().total, 2);
}

#[test]
fn a_revoked_token_leads_to_exactly_one_new_login() {
    let (sshd, env) = setup();
    run(env.ssh(&sshd.user_key, "", &[APP_HOST, "true"])).success();
    env.edge.revoke_user(EMAIL);
    run(env.ssh(&sshd.user_key, "", &[APP_HOST, "true"])).success();
    assert_eq!(env.edge.count(Endpoint::LoginPage), 2);
    run(env.ssh(&sshd.user_key, "", &[APP_HOST, "true"])).success();
    assert_eq!(env.edge.count(Endpoint::LoginPage), 2);
}

/// A file of `len` pseudo-random bytes and its SHA-256.
fn random_file(dir: &Path, len: usize) -> (std::path::PathBuf, String) {
    let path = dir.join("payload");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&path, &data).unwrap();
    let sum = sha256_of(&path);
    (path, sum)
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_hundred_mib_arrive_intact_both_ways() {
    let (sshd, env) = setup();
    let (payload, sum) = random_file(env.tmp.path(), 100 << 20);
    // up: our stdin to the server's sha256sum
    let mut up = env.ssh(&sshd.user_key, "", &[APP_HOST, "sha256sum"]);
    up.stdin(std::fs::File::open(&payload).unwrap());
    let up = run(up);
    up.success();
    assert_eq!(up.stdout.split_whitespace().next(), Some(sum.as_str()));
    // down: the server sends the file, we hash what arrives
    let received = env.tmp.path().join("received");
    let mut down = env.ssh(
        &sshd.user_key,
        "",
        &[APP_HOST, "cat", payload.to_str().unwrap()],
    );
    down.stdout(std::fs::File::create(&received).unwrap());
    let status = down.status().unwrap();
    assert!(status.success());
    assert_eq!(sha256_of(&received), sum);
    assert!(env.edge.carried().bytes_to_client > 100 << 20);
}

#[test]
fn debug_logging_never_reaches_stdout() {
    let (sshd, env) = setup();
    let out = run(env.ssh(
        &sshd.user_key,
        " --log-level debug",
        &[APP_HOST, "echo", "clean"],
    ));
    out.success();
    assert_eq!(out.stdout, "clean\n");
    assert!(
        out.stderr.contains("DEBUG"),
        "debug logs go to stderr: {out:#?}"
    );
    assert!(
        !out.stderr.contains(&env.login()),
        "the token is never logged"
    );
}

#[test]
fn a_service_token_connects_without_a_login_and_a_wrong_one_is_refused() {
    let (sshd, env) = setup_with(|opts| {
        opts.auto_approve = None;
        opts.config
            .service_tokens
            .push(access_edge::ServiceTokenConfig {
                name: "ci".into(),
                client_id: "ci-id.access".into(),
                client_secret: "ci-secret".into(),
            });
        opts.config.apps[0].service_tokens.push("ci".into());
    });
    let good = run(env.ssh(
        &sshd.user_key,
        " --service-token-id ci-id.access --service-token-secret ci-secret",
        &[APP_HOST, "echo", "robot"],
    ));
    good.success();
    assert_eq!(good.stdout, "robot\n");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
    assert_eq!(env.edge.count(Endpoint::Discovery), 0);

    // the environment variables of the official client work too
    let mut cmd = env.cmd(&["access", "ssh", "--hostname", APP_HOST]);
    cmd.env("TUNNEL_SERVICE_TOKEN_ID", "ci-id.access")
        .env("TUNNEL_SERVICE_TOKEN_SECRET", "wrong");
    let bad = run(cmd);
    bad.failure(1);
    assert!(
        bad.error_line()
            .contains("Access refused the connection to ssh.demo.test"),
        "{bad:#?}"
    );
    assert!(bad.error_line().contains("403"), "{bad:#?}");
    assert!(bad.error_line().contains("service token"), "{bad:#?}");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn a_listener_carries_two_sessions_at_once() {
    let (sshd, env) = setup();
    let (mut listener, port) = env.listener(APP_HOST, &[]);
    let ssh_direct = |cmd: &str| {
        common::sshd::ssh_client(&sshd.user_key)
            .args(["-p", &port.to_string(), "127.0.0.1", cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // both sessions are open at the same time: each waits for the other's file
    let a_file = env.tmp.path().join("a");
    let b_file = env.tmp.path().join("b");
    let script = |mine: &Path, theirs: &Path| {
        format!(
            "touch {}; for i in $(seq 300); do [ -e {} ] && echo ok && exit 0; sleep 0.1; done; exit 1",
            mine.display(),
            theirs.display()
        )
    };
    let a = ssh_direct(&script(&a_file, &b_file));
    let b = ssh_direct(&script(&b_file, &a_file));
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    assert!(a.status.success() && b.status.success());
    assert_eq!(String::from_utf8_lossy(&a.stdout), "ok\n");
    assert_eq!(String::from_utf8_lossy(&b.stdout), "ok\n");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);

    // Ctrl-C ends it cleanly
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(listener.0.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = listener.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn ten_sessions_at_once_share_one_login() {
    let (sshd, env) = setup();
    let children: Vec<_> = (0..10)
        .map(|i| {
            let mut cmd = env.ssh(
                &sshd.user_key,
                "",
                &[APP_HOST, "echo", &format!("session {i}")],
            );
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("session {i}\n")
        );
    }
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
}

#[test]
fn a_bastion_reaches_allowed_destinations_only() {
    let sshd = Sshd::start(&[]);
    let env = TestEnv::with(|opts| {
        opts.config.apps[0].origin = None;
        // a bastion has no one origin for a browser terminal
        opts.config.apps[0].browser_rendering = None;
        opts.config.apps[0].destinations = vec![sshd.addr()];
    });
    let allowed = run(env.ssh(
        &sshd.user_key,
        &format!(" --destination {}", sshd.addr()),
        &[APP_HOST, "echo", "via bastion"],
    ));
    allowed.success();
    assert_eq!(allowed.stdout, "via bastion\n");

    let refused = run(env.cmd(&[
        "access",
        "ssh",
        "--hostname",
        APP_HOST,
        "--destination",
        "127.0.0.1:1",
    ]));
    refused.failure(1);
    assert!(
        refused
            .error_line()
            .contains("Access refused the connection"),
        "{refused:#?}"
    );
}

/// Runs `cfaccess access ssh` by itself (no ssh), as a failing ProxyCommand would.
fn proxy_alone(env: &TestEnv, extra_env: &[(&str, &Path)], args: &[&str]) -> Run {
    let mut cmd = env.cmd(&[&["access", "ssh", "--hostname"][..], args].concat());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let run = run_with_deadline(cmd, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it must fail promptly"
    );
    run
}

#[test]
fn every_failure_names_the_host_and_what_to_do() {
    let (sshd, env) = setup();
    // the edge is down
    let down = env.tmp.path().join("down.json");
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.edge.profile_path()).unwrap()).unwrap();
    let closed = free_port();
    for addr in profile["hosts"].as_object_mut().unwrap().values_mut() {
        *addr = format!("127.0.0.1:{closed}").into();
    }
    std::fs::write(&down, profile.to_string()).unwrap();
    let run = proxy_alone(&env, &[("CFACCESS_EDGE", &down)], &[APP_HOST]);
    run.failure(1);
    assert!(
        run.error_line()
            .contains("cannot reach ssh.demo.test: connection refused"),
        "{run:#?}"
    );
    assert!(run.error_line().contains("hint:"));

    // TLS: an edge whose CA we do not trust
    let stranger = TestEnv::new();
    let mut untrusted = profile.clone();
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stranger.edge.profile_path()).unwrap())
            .unwrap();
    untrusted["ca_cert"] = theirs["ca_cert"].clone();
    for addr in untrusted["hosts"].as_object_mut().unwrap().values_mut() {
        *addr = env.edge.addr().to_string().into();
    }
    let untrusted_path = env.tmp.path().join("untrusted.json");
    std::fs::write(&untrusted_path, untrusted.to_string()).unwrap();
    let run = proxy_alone(&env, &[("CFACCESS_EDGE", &untrusted_path)], &[APP_HOST]);
    run.failure(1);
    assert!(run.error_line().contains("TLS"), "{run:#?}");

    // a host with no Access application behind it
    let run = proxy_alone(&env, &[], &[AUTH_DOMAIN]);
    run.failure(1);
    assert!(run.error_line().contains(AUTH_DOMAIN), "{run:#?}");
    assert!(run.error_line().contains("Access application"), "{run:#?}");

    // the origin refuses
    drop(sshd);
    let run = proxy_alone(&env, &[], &[APP_HOST]);
    run.failure(1);
    assert!(
        run.error_line().contains("could not connect ssh.demo.test"),
        "{run:#?}"
    );
    assert!(run.error_line().contains("502"), "{run:#?}");

    // usage errors
    let run = proxy_alone(&env, &[], &["bad host"]);
    run.failure(2);
    let run = run_with_deadline(env.cmd(&["access", "ssh"]), Duration::from_secs(10));
    run.failure(2);
    let run = run_with_deadline(
        env.cmd(&["access", "ssh", "--hostname", APP_HOST, "-H", "Host: evil"]),
        Duration::from_secs(10),
    );
    run.failure(2);
}

#[test]
fn a_session_cut_mid_transfer_ends_ssh_and_cfaccess_with_an_error() {
    let (sshd, env) = setup();
    run(env.ssh(&sshd.user_key, "", &[APP_HOST, "true"])).success();
    env.edge.cut_websockets_after(Some(2 << 20));
    let status_file = env.tmp.path().join("proxy-status");
    let proxy = env.script(
        "proxy",
        &format!(
            "\"{}\" access ssh --hostname \"$1\"; echo $? > {}",
            env!("CARGO_BIN_EXE_cfaccess"),
            status_file.display()
        ),
    );
    let cut = env.ssh_via(
        &format!("{} %h", proxy.display()),
        &sshd.user_key,
        &[APP_HOST, "head", "-c", "50000000", "/dev/zero"],
    );
    let started = Instant::now();
    let out = run(cut);
    assert_ne!(out.code, Some(0), "ssh must fail: {out:#?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    wait_for(Duration::from_secs(10), "cfaccess to exit", || {
        status_file.exists()
    });
    let status = std::fs::read_to_string(&status_file).unwrap();
    assert_ne!(status.trim(), "0", "cfaccess must exit non-zero");
}

#[test]
fn a_listener_out_of_file_descriptors_pauses_instead_of_spinning() {
    use std::io::BufRead;
    let env = TestEnv::new();
    env.login();
    let port = free_port();
    // few descriptors: a handful of held connections exhaust them, and every
    // accept then fails at once with EMFILE while connections wait in the queue
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n 20 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_cfaccess"))
        .args(["access", "tcp", "--hostname", APP_HOST])
        .arg("--url")
        .arg(format!("127.0.0.1:{port}"));
    env.isolate(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let _child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let next_line = |what: &str| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) if line.contains(what) => return at,
            Ok(_) => {}
            Err(_) => panic!("no '{what}' line from the listener"),
        }
    };
    next_line("Listening on");
    let held: Vec<_> = (0..40)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let first = next_line("accepting a connection failed");
    // what a second of failing accepts looks like: one try per pause, not a
    // busy loop that logs thousands of lines
    let window = Duration::from_secs(1);
    let mut failures = 0;
    while let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(2)) {
        if at > first + window {
            break;
        }
        if line.contains("accepting a connection failed") {
            failures += 1;
        }
    }
    eprintln!("failed accepts logged in the first second: {failures}");
    assert!(
        failures <= 20,
        "the accept loop spins: {failures} failures in {window:?}"
    );
    drop(held);
}

/// With `HTTPS_PROXY` set, the websocket goes through the proxy (a CONNECT
/// tunnel to the edge), as every other request does; without it, the carrier
/// makes its own connection, and the proxy sees nothing.
#[test]
fn the_carrier_goes_through_an_https_proxy_when_one_is_set() {
    let (sshd, env) = setup();
    // every name the edge serves, as DNS would give them to the proxy
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.edge.profile_path()).unwrap()).unwrap();
    let names = profile["hosts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| (format!("{name}:443"), env.edge.addr()))
        .collect();
    let proxy = common::proxy::ConnectProxy::start(names);
    let mut through = env.ssh(&sshd.user_key, "", &[APP_HOST, "echo", "via the proxy"]);
    through.env("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port));
    let run_through = run(through);
    run_through.success();
    assert_eq!(run_through.stdout, "via the proxy\n");
    let tunnels = proxy.tunnels();
    assert!(tunnels >= 1, "the websocket went through the proxy");
    assert_eq!(env.edge.carried().total, 1);

    let direct = run(env.ssh(&sshd.user_key, "", &[APP_HOST, "echo", "direct"]));
    direct.success();
    assert_eq!(direct.stdout, "direct\n");
    assert_eq!(proxy.tunnels(), tunnels, "no proxy set, no tunnel");
    assert_eq!(env.edge.carried().total, 2);
}
