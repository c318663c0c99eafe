// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! `login`, `token` and `curl` against a real access-edge: the browser flow,
//! the cache, single sign-on with the org token, the token check, and the
//! official client's argument forms and output formats.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

#[test]
fn login_goes_through_the_browser_and_caches_the_token() {
    let env = TestEnv::new();
    let run = env.run(&["login", APP]);
    run.success();
    let token = run
        .stdout
        .strip_prefix("Successfully fetched your token:\n\n")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("chatty output expected: {run:#?}"));
    assert!(is_jwt(token), "{token}");
    assert!(
        run.stderr
            .contains("A browser window should have opened at the following URL:")
    );
    assert!(
        run.stderr
            .contains("https://ssh.demo.test/cdn-cgi/access/cli?aud=")
    );
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);

    let claims = claims(token);
    assert_eq!(claims["email"], EMAIL);
    assert_eq!(claims["aud"][0], env.aud());
    assert_eq!(std::fs::read_to_string(env.token_file()).unwrap(), token);

    // `token` prints it back, bare, from the files alone: the app info
    // verified at login is checked again offline
    let requests = env.edge.total_requests();
    let again = env.run(&["token", APP]);
    again.success();
    assert_eq!(again.stdout, token);
    assert_eq!(env.edge.total_requests(), requests, "no request at all");
}

#[test]
fn a_second_login_uses_the_cached_token_after_checking_it() {
    let env = TestEnv::new();
    let first = env.login();
    let second = env.login();
    assert_eq!(first, second);
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
    assert_eq!(env.edge.count(Endpoint::TokenCheck), 2);
}

#[test]
fn output_forms_are_the_official_clients() {
    let env = TestEnv::new();
    let token = env.login();
    let quiet = env.run(&["login", "-q", APP]);
    quiet.success();
    assert_eq!(quiet.stdout, "");
    let app_flag = env.run(&["access", "login", "--app", APP]);
    app_flag.success();
    assert_eq!(app_flag.stdout, token, "--app prints the bare token");
    let go_style = env.run(&["access", "token", &format!("-app={APP}")]);
    go_style.success();
    assert_eq!(go_style.stdout, token);
    let forward = env.run(&["forward", "login", "--no-verbose", "ssh.demo.test"]);
    forward.success();
    assert_eq!(forward.stdout, token);
}

#[test]
fn token_without_a_cached_token_says_how_to_log_in() {
    let env = TestEnv::new();
    let run = env.run(&["token", APP]);
    run.failure(1);
    assert!(
        run.error_line()
            .contains("cfaccess login https://ssh.demo.test/"),
        "{run:#?}"
    );
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn a_second_app_of_the_team_logs_in_with_the_org_token_and_no_browser() {
    let env = TestEnv::with(|opts| {
        let mut second = opts.config.apps[0].clone();
        second.hostname = "web.demo.test".into();
        second.aud = None;
        opts.config.apps.push(second);
    });
    env.login();
    assert!(env.org_token_file().exists());
    let run = env.run(&["login", "--no-verbose", "https://web.demo.test"]);
    run.success();
    assert_eq!(
        env.edge.count(Endpoint::LoginPage),
        1,
        "no second browser login"
    );
    assert_eq!(env.edge.count(Endpoint::Authorized), 1);
    let claims = claims(&run.stdout);
    assert_eq!(claims["aud"][0], env.edge.app_aud("web.demo.test").unwrap());
    assert_eq!(claims["email"], EMAIL);
    let aud = env.edge.app_aud("web.demo.test").unwrap();
    assert!(env.dir.join(format!("web.demo.test-{aud}-token")).exists());
}

#[test]
fn a_revoked_token_is_refused_by_the_check_and_one_fresh_login_follows() {
    let env = TestEnv::new();
    let first = env.login();
    env.edge.revoke_user(EMAIL);
    let second = env.login();
    assert_ne!(first, second);
    // the org token was revoked too, so the browser was needed again
    assert_eq!(env.edge.count(Endpoint::LoginPage), 2);
    assert_eq!(std::fs::read_to_string(env.token_file()).unwrap(), second);
}

#[test]
fn no_browser_prints_the_url_for_someone_else_to_open() {
    let env = TestEnv::new();
    let mut child = env
        .cmd(&["login", "--no-browser", "--no-verbose", APP])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    let mut seen = String::new();
    while url.is_none() && stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.starts_with("https://") {
            url = Some(line.trim().to_owned());
        }
        line.clear();
    }
    let url = url.expect("a login URL on stderr");
    assert!(
        seen.contains("Please open the following URL and log in"),
        "{seen}"
    );
    assert_eq!(
        env.edge.count(Endpoint::LoginPage),
        0,
        "no browser was started"
    );
    // someone opens it elsewhere
    let opened = std::process::Command::new(&env.browser)
        .arg(&url)
        .output()
        .unwrap();
    assert!(opened.status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(is_jwt(&String::from_utf8_lossy(&out.stdout)));
}

#[test]
fn curl_sends_the_token_to_the_app() {
    let env = TestEnv::new();
    let ca = env.tmp.path().join("ca.pem");
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.edge.profile_path()).unwrap()).unwrap();
    std::fs::write(&ca, profile["ca_cert"].as_str().unwrap()).unwrap();
    let connect_to = format!("::127.0.0.1:{}", env.edge.addr().port());
    let run = env.run(&[
        "curl",
        "https://ssh.demo.test/whoami",
        "-sS",
        "--cacert",
        ca.to_str().unwrap(),
        "--connect-to",
        &connect_to,
    ]);
    run.success();
    let body: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON from the app");
    assert_eq!(body["email"], EMAIL);
    assert_eq!(body["path"], "/whoami");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
}

#[test]
fn curl_allow_request_never_logs_in() {
    let env = TestEnv::with(|opts| opts.auto_approve = None);
    let run = env.run(&["curl", "-ar", "https://ssh.demo.test/", "--version"]);
    run.success();
    assert!(run.stdout.starts_with("curl "), "{run:#?}");
    assert!(run.stderr.contains("running curl without one"));
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn a_wildcard_app_keeps_its_token_under_the_wildcard_name() {
    let env = TestEnv::with(|opts| {
        let mut wild = opts.config.apps[0].clone();
        wild.hostname = "*.wild.test".into();
        wild.aud = None;
        opts.config.apps.push(wild);
    });
    let run = env.run(&["login", "--no-verbose", "https://a.wild.test"]);
    run.success();
    let aud = env.edge.app_aud("*.wild.test").unwrap();
    assert!(
        env.dir.join(format!("-.wild.test-{aud}-token")).exists(),
        "{:?}",
        env.dir_entries()
    );
    // another host under the same wildcard shares the token
    let other = env.run(&["token", "https://b.wild.test"]);
    other.success();
    assert_eq!(other.stdout, run.stdout);
}
