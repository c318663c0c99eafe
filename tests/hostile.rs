// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! A hostile server posing as the edge (issue 10): huge bodies, hangs,
//! redirects that would take the token away, masked frames, and an app
//! re-created under a new aud. Each test logs in against the real edge
//! first, so the config dir holds a valid token, the verified app info and
//! the key set; then the next command goes to the hostile server through an
//! edge profile, straight to the step under test.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hostile::{Answer, Hostile, Plain};
use common::proc::{Measured, measure};
use common::*;

const GIB: u64 = 1 << 30;
/// What cfaccess may hold, whatever a server sends: 16 MiB (issue 10's
/// contract) for an optimised build. An unoptimised one needs ~10 MiB more
/// for any TLS request at all (a failed `login`: 15.4 MiB debug, 5.9 MiB
/// release), so it gets that much headroom; a body held whole is 2 GiB.
const RSS_LIMIT_MIB: f64 = if cfg!(debug_assertions) { 26.0 } else { 16.0 };

/// A world logged in to the demo app (token, org token, app info, key set).
fn logged_in() -> TestEnv {
    let env = TestEnv::new();
    env.login();
    env
}

/// `cfaccess args` in `env`'s world, but pointed at `profile`.
fn via(env: &TestEnv, profile: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = env.cmd(args);
    cmd.env("CFACCESS_EDGE", profile);
    cmd
}

fn report(what: &str, m: &Measured) {
    eprintln!(
        "{what}: exit {:?} after {:.2} s, peak RSS {:.1} MiB, cpu {:.2} s; stderr: {}",
        m.run.code,
        m.wall.as_secs_f64(),
        m.peak_rss_mib(),
        m.cpu.as_secs_f64(),
        m.run.stderr.trim()
    );
}

/// Fails as every error must, within `within`.
/// Asserts the run stayed within the memory bound, whatever the server sent.
fn assert_small(m: &Measured) {
    assert!(
        m.peak_rss_mib() < RSS_LIMIT_MIB,
        "{:.1} MiB",
        m.peak_rss_mib()
    );
}

fn assert_failed_within(m: &Measured, within: Duration) {
    assert!(!m.timed_out, "still running at the deadline: {m:#?}");
    assert!(m.wall < within, "took {:?}: {m:#?}", m.wall);
    m.run.failure(1);
}

// ---- point 2: every body is capped -----------------------------------------

#[test]
fn a_huge_cert_sign_answer_is_refused_without_holding_it() {
    let env = logged_in();
    let hostile = Hostile::start(vec![(
        "/cdn-cgi/access/cert_sign",
        Answer::Huge {
            status: 200,
            size: 2 * GIB,
        },
    )]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["ssh-gen", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("cert_sign with a 2 GiB answer", &m);
    assert_failed_within(&m, Duration::from_secs(10));
    assert_small(&m);
    assert!(m.run.error_line().contains("larger than 64 KiB"), "{m:#?}");
}

#[test]
fn a_huge_login_service_transfer_is_refused_without_holding_it() {
    let env = logged_in();
    // a login must start: no token left, but the app as the edge serves it
    std::fs::remove_file(env.token_file()).unwrap();
    std::fs::remove_file(env.org_token_file()).unwrap();
    let hostile = Hostile::start(vec![(
        "/transfer/",
        Answer::Huge {
            status: 200,
            size: 2 * GIB,
        },
    )]);
    let profile = hostile.profile_beside(
        env.tmp.path(),
        &env.edge.profile_path(),
        &["login.cloudflareaccess.org"],
    );
    let mut cmd = via(&env, &profile, &["login", APP]);
    cmd.env("BROWSER", "true");
    let m = measure(cmd, Duration::from_secs(90));
    report("a 2 GiB transfer", &m);
    assert_failed_within(&m, Duration::from_secs(10));
    assert_small(&m);
    assert!(m.run.error_line().contains("larger than 64 KiB"), "{m:#?}");
    assert!(
        m.run
            .stderr
            .contains("Waiting up to 4m for the login to be approved"),
        "{m:#?}"
    );
}

#[test]
fn a_huge_refusal_of_the_websocket_is_not_held() {
    let env = logged_in();
    let hostile = Hostile::start(vec![(
        "/",
        Answer::Huge {
            status: 403,
            size: 2 * GIB,
        },
    )]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("a 403 with a 2 GiB body", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    assert_small(&m);
    assert!(m.run.error_line().contains("403"), "{m:#?}");
}

#[test]
fn a_refusal_whose_body_never_comes_ends_at_the_upgrade_deadline() {
    let env = logged_in();
    let hostile = Hostile::start(vec![("/", Answer::HeadersThenHang { status: 403 })]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("a 403 whose body never comes", &m);
    assert_failed_within(&m, Duration::from_secs(15));
    assert!(m.wall >= Duration::from_secs(9), "the body was waited for");
    assert!(m.run.error_line().contains(APP_HOST), "{m:#?}");
}

// ---- point 3: the upgrade and the open are bounded --------------------------

#[test]
fn an_upgrade_never_answered_ends_with_the_host_and_the_step() {
    let env = logged_in();
    let hostile = Hostile::start(vec![("/", Answer::Hang)]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("an upgrade never answered", &m);
    assert_failed_within(&m, Duration::from_secs(15));
    let line = m.run.error_line();
    assert!(line.contains(APP_HOST), "{line}");
    assert!(line.contains("websocket upgrade"), "{line}");
    assert!(line.contains("within 10s"), "{line}");
}

#[test]
fn a_listener_ends_every_connection_whose_open_stalls() {
    use std::io::BufRead;
    let env = logged_in();
    let hostile = Hostile::start(vec![("/", Answer::Hang)]);
    let profile = hostile.profile(env.tmp.path());
    let port = common::sshd::free_port();
    let url = format!("127.0.0.1:{port}");
    let mut child = via(
        &env,
        &profile,
        &["access", "tcp", "--hostname", APP_HOST, "--url", &url],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn the listener");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let _child = KillOnDrop(child);
    let mut line = String::new();
    while !line.starts_with("Listening on") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the listener died"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    let start = Instant::now();
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let addr = url.clone();
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let mut buf = [0u8; 64];
                // the listener closes a connection it could not carry
                let ended = matches!(stream.read(&mut buf), Ok(0) | Err(_));
                (ended, start.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (ended, after) = client.join().unwrap();
        eprintln!(
            "a stalled connection ended after {:.2} s",
            after.as_secs_f64()
        );
        assert!(ended);
        assert!(after < Duration::from_secs(15), "{after:?}");
    }
}

#[test]
fn a_server_that_never_finishes_the_tls_handshake_is_given_up_on() {
    let env = logged_in();
    let hostile = Hostile::start(vec![]);
    let plain = Plain::start();
    let addr = format!("127.0.0.1:{}", plain.port).parse().unwrap();
    let profile = common::hostile::profile_to(env.tmp.path(), &hostile.ca_pem, addr);
    let m = measure(
        via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("a TLS handshake never answered", &m);
    assert_failed_within(&m, Duration::from_secs(15));
    let line = m.run.error_line();
    assert!(line.contains(APP_HOST), "{line}");
    // the connect limit and the upgrade's are both 10 s: either may name it
    assert!(line.contains("TLS handshake"), "{line}");
    assert!(plain.received() > 0, "the client said hello");
}

// ---- point 6: redirects never take the token away ---------------------------

#[test]
fn cert_sign_redirected_to_plain_http_sends_nothing_there() {
    let env = logged_in();
    let plain = Plain::start();
    let steal = format!("http://127.0.0.1:{}/steal", plain.port);
    let hostile = Hostile::start(vec![(
        "/cdn-cgi/access/cert_sign",
        Answer::Redirect {
            status: 307,
            location: steal,
        },
    )]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["ssh-gen", "--hostname", APP_HOST]),
        Duration::from_secs(30),
    );
    report("cert_sign redirected to http", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    let line = m.run.error_line();
    assert!(line.contains("https://demo.cloudflareaccess.com"), "{line}");
    assert!(
        line.contains(&format!("http://127.0.0.1:{}", plain.port)),
        "{line}"
    );
    // give a request sent anyway every chance to arrive
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(plain.received(), 0, "the token went out in clear text");
}

#[test]
fn cert_sign_redirected_to_another_origin_sends_nothing_there() {
    let env = logged_in();
    let hostile = Hostile::start(vec![(
        "/cdn-cgi/access/cert_sign",
        Answer::Redirect {
            status: 307,
            location: "https://login.cloudflareaccess.org/steal".into(),
        },
    )]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["ssh-gen", "--hostname", APP_HOST]),
        Duration::from_secs(30),
    );
    report("cert_sign redirected to another origin", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    assert!(
        m.run
            .error_line()
            .contains("https://login.cloudflareaccess.org"),
        "{m:#?}"
    );
    let requests = hostile.requests();
    assert!(
        !requests.iter().any(|r| r.contains("/steal")),
        "{requests:?}"
    );
}

#[test]
fn a_login_service_poll_redirected_elsewhere_is_not_followed() {
    let env = logged_in();
    std::fs::remove_file(env.token_file()).unwrap();
    std::fs::remove_file(env.org_token_file()).unwrap();
    let plain = Plain::start();
    let hostile = Hostile::start(vec![(
        "/transfer/",
        Answer::Redirect {
            status: 302,
            location: format!("http://127.0.0.1:{}/steal", plain.port),
        },
    )]);
    let profile = hostile.profile_beside(
        env.tmp.path(),
        &env.edge.profile_path(),
        &["login.cloudflareaccess.org"],
    );
    let mut cmd = via(&env, &profile, &["login", APP]);
    cmd.env("BROWSER", "true");
    let m = measure(cmd, Duration::from_secs(60));
    report("a transfer poll redirected to http", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    assert!(
        m.run
            .error_line()
            .contains(&format!("http://127.0.0.1:{}", plain.port)),
        "{m:#?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        plain.received(),
        0,
        "the login's key went out in clear text"
    );
}

// ---- point 12: a masked frame fails the connection --------------------------

#[test]
fn a_masked_frame_from_the_server_fails_the_connection() {
    let env = logged_in();
    let hostile = Hostile::start(vec![("/", Answer::MaskedFrame)]);
    let profile = hostile.profile(env.tmp.path());
    let cmd = via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]);
    // the input stays open: the session ends because of the frame alone
    let (_keep, input) = std::io::pipe().unwrap();
    let m = common::proc::measure_with_input(cmd, input.into(), Duration::from_secs(30));
    report("a masked frame", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    assert!(m.run.error_line().contains("masked frame"), "{m:#?}");
}

#[test]
fn garbage_instead_of_an_answer_is_an_error_naming_the_host() {
    let env = logged_in();
    let hostile = Hostile::start(vec![("/", Answer::Garbage)]);
    let profile = hostile.profile(env.tmp.path());
    let m = measure(
        via(&env, &profile, &["access", "ssh", "--hostname", APP_HOST]),
        Duration::from_secs(30),
    );
    report("garbage", &m);
    assert_failed_within(&m, Duration::from_secs(5));
    assert!(m.run.error_line().contains(APP_HOST), "{m:#?}");
}

// ---- trust: the profile's CA vouches for the profile's names alone ---------

#[test]
fn the_profile_ca_does_not_vouch_for_a_name_outside_the_profile() {
    let env = TestEnv::new();
    let hostile = Hostile::start(vec![]);
    let profile = hostile.profile(env.tmp.path());
    // `localhost` is no profile name, so the system resolver sends it to the
    // hostile server, whose certificate names it, signed by the profile's CA
    let url = format!("https://localhost:{}/", hostile.addr.port());
    let run = run_with_deadline(
        via(&env, &profile, &["login", &url]),
        Duration::from_secs(30),
    );
    run.failure(1);
    let line = run.error_line();
    assert!(line.contains("certificate"), "{line}");
    assert_eq!(hostile.requests(), Vec::<String>::new(), "nothing was sent");
}

// ---- point 9: an app re-created under a new aud -----------------------------

/// The world `old` left (tokens, app info, key set, key pair), now served
/// by `new`, a new edge (new aud, new keys) on the same names.
fn in_dir_of(new: &TestEnv, old: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = new.cmd(args);
    cmd.env("CFACCESS_DIR", &old.dir);
    cmd
}

#[test]
fn an_app_recreated_with_a_new_aud_is_found_again_and_the_old_token_dropped() {
    use access_edge::CaKeyType;
    let old = TestEnv::new();
    old.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    old.run(&["ssh-gen", "--hostname", APP_HOST]).success();
    let old_token = std::fs::read_to_string(old.token_file()).unwrap();

    let new = TestEnv::new();
    new.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    assert_ne!(old.aud(), new.aud());
    // the certificate has run out, as it does after minutes
    std::fs::remove_file(old.dir.join(format!("{APP_HOST}-cf_key-cert.pub"))).unwrap();
    // the cached key set is more than a minute old, so an unknown key
    // makes cfaccess fetch it again (issue 10 point 7 removes the wait)
    let jwks = std::fs::File::options()
        .write(true)
        .open(old.dir.join(format!("{AUTH_DOMAIN}-jwks")))
        .unwrap();
    jwks.set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();

    let m = measure(
        in_dir_of(&new, &old, &["ssh-gen", "--hostname", APP_HOST]),
        Duration::from_secs(60),
    );
    report("ssh-gen after the app was re-created", &m);
    assert!(!m.timed_out, "ssh-gen hung: {m:#?}");
    assert_eq!(m.run.code, Some(0), "{m:#?}");
    assert!(m.wall < Duration::from_secs(20), "{:?}", m.wall);
    // the old token refused, then the new app's signed
    assert_eq!(new.edge.count(Endpoint::CertSign), 2);
    assert_eq!(new.edge.count(Endpoint::Discovery), 1);

    // the old app's token is gone; `token` and `status` show the new one only
    let token = run_with_deadline(
        in_dir_of(&new, &old, &["token", APP]),
        Duration::from_secs(30),
    );
    token.success();
    assert_ne!(token.stdout, old_token);
    assert_eq!(claims(&token.stdout)["aud"][0], new.aud(), "{token:#?}");
    assert!(!old.token_file().exists());
    let status = run_with_deadline(in_dir_of(&new, &old, &["status"]), Duration::from_secs(30));
    status.success();
    let app_lines = status
        .stdout
        .lines()
        .filter(|l| l.contains(APP_HOST) && l.contains(EMAIL))
        .count();
    assert_eq!(app_lines, 1, "{}", status.stdout);
}

#[test]
fn ssh_through_the_short_lived_cert_config_survives_an_app_recreated_with_a_new_aud() {
    use access_edge::CaKeyType;
    use common::sshd::{Sshd, current_user, free_port, ssh_with_config};
    let me = current_user();
    let port = free_port();
    let email = format!("{me}@example.com");
    let edge_for_sshd = || {
        TestEnv::with(|opts| {
            opts.auto_approve = Some(email.clone());
            opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
        })
    };
    let old = edge_for_sshd();
    let ca_file = old.tmp.path().join("trusted_user_ca_keys");
    let old_ca = old.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let _sshd = Sshd::trusting_ca(port, &ca_file, &old_ca);
    let printed = old.run(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
    printed.success();
    let ssh_config = old.tmp.path().join("ssh_config");
    std::fs::write(&ssh_config, &printed.stdout).unwrap();
    let ssh = |env: &TestEnv| {
        let mut cmd = ssh_with_config(&ssh_config);
        cmd.arg(APP_HOST).arg("whoami");
        env.isolate(&mut cmd);
        cmd.env("CFACCESS_DIR", &old.dir);
        cmd
    };
    run_with_deadline(ssh(&old), Duration::from_secs(60)).success();

    // the app is re-created: a new edge, new aud, new keys, a new SSH CA
    // that sshd now trusts instead of the old one
    let new = edge_for_sshd();
    let new_ca = new.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    std::fs::write(&ca_file, format!("{new_ca}\n")).unwrap();
    std::fs::remove_file(old.dir.join(format!("{APP_HOST}-cf_key-cert.pub"))).unwrap();
    let jwks = std::fs::File::options()
        .write(true)
        .open(old.dir.join(format!("{AUTH_DOMAIN}-jwks")))
        .unwrap();
    jwks.set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();

    let m = measure(ssh(&new), Duration::from_secs(90));
    report("ssh after the app was re-created", &m);
    assert!(!m.timed_out, "ssh hung: {m:#?}");
    assert_eq!(m.run.code, Some(0), "{m:#?}");
    assert_eq!(m.run.stdout, format!("{me}\n"));
    assert!(m.wall < Duration::from_secs(30), "{:?}", m.wall);
}
