// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! Bad input and faults (issue 3, section 5): each gives one error line that
//! says what to do, a non-zero exit (2 for usage), nothing on stdout, no
//! panic, and no half-written file.

mod common;

use std::time::Duration;

use access_edge::MetadataFault;
use common::*;

/// No temp files, lock or URL files left in the config dir.
fn assert_clean(env: &TestEnv) {
    let junk: Vec<String> = env
        .dir_entries()
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".lock") || n.ends_with(".url"))
        .collect();
    assert!(junk.is_empty(), "left behind: {junk:?}");
}

#[test]
fn arguments_that_are_not_hosts_are_usage_errors() {
    let env = TestEnv::new();
    for arg in [
        ":8080",
        "bad host",
        "ftp://ssh.demo.test",
        "https://",
        "a<b.test",
    ] {
        let run = env.run(&["login", arg]);
        run.failure(2);
        assert!(
            run.error_line().contains(arg.trim_end_matches("://")),
            "{arg}: {run:#?}"
        );
    }
    env.run(&["token"]).failure(2);
    env.run(&["curl", "ssh.demo.test"]).failure(2);
    assert_eq!(env.edge.total_requests(), 0);
}

#[test]
fn a_host_without_an_access_app_is_named() {
    let env = TestEnv::new();
    let run = env.run(&["login", "https://demo.cloudflareaccess.com"]);
    run.failure(1);
    assert!(
        run.error_line().contains("no Access application"),
        "{run:#?}"
    );
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn an_auth_domain_outside_cloudflareaccess_com_is_refused_before_any_key_fetch() {
    let env = TestEnv::new();
    env.edge
        .set_metadata_fault(Some(MetadataFault::ForeignAuthDomain));
    let run = env.run(&["login", APP]);
    run.failure(1);
    assert!(run.error_line().contains("access.evil.test"), "{run:#?}");
    assert_eq!(env.edge.count(Endpoint::Jwks), 0);
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn metadata_that_does_not_check_out_is_refused() {
    let env = TestEnv::new();
    for (fault, says) in [
        (MetadataFault::BadSignature, "signature"),
        (MetadataFault::WrongHostname, "not for 'ssh.demo.test'"),
        (MetadataFault::StaleIat, "24 hours"),
        (MetadataFault::FutureIat, "future"),
        (MetadataFault::UnknownKid, "no key"),
    ] {
        env.edge.set_metadata_fault(Some(fault));
        let run = env.run(&["login", APP]);
        run.failure(1);
        assert!(run.error_line().contains(says), "{fault:?}: {run:#?}");
    }
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
    env.edge.set_metadata_fault(None);
    env.login();
}

#[test]
fn garbage_and_expired_token_files_count_as_absent() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.dir).unwrap();
    std::fs::write(env.token_file(), "garbage\n").unwrap();
    env.run(&["token", APP]).failure(1);
    // an expired token (signed by nobody: the client reads exp unverified)
    let expired = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(&format!(r#"{{"aud":["{}"],"exp":1000}}"#, env.aud()))
    );
    std::fs::write(env.token_file(), &expired).unwrap();
    env.run(&["token", APP]).failure(1);
    assert!(!env.token_file().exists(), "an expired token is deleted");
    // login replaces whatever was there
    std::fs::write(env.token_file(), "garbage").unwrap();
    let token = env.login();
    assert_eq!(std::fs::read_to_string(env.token_file()).unwrap(), token);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn a_failing_login_service_ends_the_login_with_its_status() {
    let env = TestEnv::new();
    env.edge.fail_login_service(1, 503);
    let run = env.run(&["login", APP]);
    run.failure(1);
    assert!(run.error_line().contains("503"), "{run:#?}");
    assert!(!env.token_file().exists());
    assert_clean(&env);
}

#[test]
fn a_login_service_that_never_answers_ends_the_login() {
    let env = TestEnv::new();
    env.edge.stall_login_service(1);
    let run = env.run(&["login", APP]);
    run.failure(1);
    assert!(run.error_line().contains("login service"), "{run:#?}");
    assert!(!env.token_file().exists());
    assert_clean(&env);
}

#[test]
fn a_login_refused_on_the_page_ends_without_a_token() {
    let mut env = TestEnv::with(|opts| {
        opts.auto_approve = None;
        opts.poll_hold = Duration::from_millis(100);
    });
    // the edge's browser passes its flags on to `access-edge browse`
    let deny = format!("exec '{}' --deny \"$1\"", env.browser.display());
    env.browser = env.script("deny-browser", &deny);
    // the client cannot tell a refusal from a user who has not got round
    // to it: the wait (shortened here) runs out
    let mut cmd = env.cmd(&["login", APP]);
    cmd.env("CFACCESS_LOGIN_WAIT", "3s");
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    run.failure(1);
    assert!(
        run.error_line()
            .contains("nobody approved the login at https://ssh.demo.test/cdn-cgi/access/cli?")
            && run
                .error_line()
                .ends_with(" within 3s; hint: run the command again"),
        "{run:#?}"
    );
    assert_eq!(env.edge.count(Endpoint::LoginSubmit), 1);
    assert!(!env.token_file().exists());
    assert_clean(&env);
}

#[test]
fn an_identity_outside_the_policy_gets_no_token() {
    let mut env = TestEnv::with(|opts| {
        opts.auto_approve = None;
        opts.poll_hold = Duration::from_millis(100);
    });
    let outsider = format!(
        "exec '{}' --as mallory@evil.test \"$1\"",
        env.browser.display()
    );
    env.browser = env.script("outsider-browser", &outsider);
    let mut cmd = env.cmd(&["login", APP]);
    cmd.env("CFACCESS_LOGIN_WAIT", "3s");
    run_with_deadline(cmd, Duration::from_secs(60)).failure(1);
    assert!(!env.token_file().exists());
}

#[test]
fn an_edge_that_is_down_is_named() {
    let env = TestEnv::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.edge.profile_path()).unwrap()).unwrap();
    for addr in profile["hosts"].as_object_mut().unwrap().values_mut() {
        *addr = format!("127.0.0.1:{port}").into();
    }
    let down = env.tmp.path().join("down.json");
    std::fs::write(&down, profile.to_string()).unwrap();
    let run = run_with_deadline(
        {
            let mut cmd = env.cmd(&["login", APP]);
            cmd.env("CFACCESS_EDGE", &down);
            cmd
        },
        Duration::from_secs(30),
    );
    run.failure(1);
    assert!(run.error_line().contains("connection refused"), "{run:#?}");
    assert!(run.error_line().contains("ssh.demo.test"), "{run:#?}");
}

#[test]
fn a_config_dir_that_cannot_be_written_stops_before_the_login() {
    let env = TestEnv::new();
    let file = env.tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let run = run_with_deadline(
        {
            let mut cmd = env.cmd(&["login", APP]);
            cmd.env("CFACCESS_DIR", file.join("cloudflared"));
            cmd
        },
        Duration::from_secs(30),
    );
    run.failure(1);
    assert!(run.error_line().contains("config dir"), "{run:#?}");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn a_broken_edge_profile_is_named() {
    let env = TestEnv::new();
    let bad = env.tmp.path().join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let mut cmd = env.cmd(&["token", APP]);
    cmd.env("CFACCESS_EDGE", &bad);
    let run = run_with_deadline(cmd, Duration::from_secs(30));
    run.failure(1);
    assert!(run.error_line().contains("CFACCESS_EDGE"), "{run:#?}");
}
