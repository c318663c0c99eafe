// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! `cfaccess doctor` (issue 12, section 7) against a real access-edge, the
//! real `ssh -G` and `ssh -V`: a healthy setup passes every check; each
//! breakage a user meets (a config dir others may enter, a missing or
//! expired token, an ssh config that does not go through cfaccess, the edge
//! stopped, a clock off, a dead proxy) fails its own check, with its fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use access_edge::CaKeyType;
use common::*;

/// Every check, in the order doctor runs them.
const IDS: [&str; 13] = [
    "ssh-client",
    "config-dir",
    "edge-profile",
    "proxy",
    "dns-app",
    "tls-app",
    "clock",
    "app",
    "dns-auth",
    "tls-auth",
    "token",
    "ssh-config",
    "certificate",
];

/// A world where everything works: logged in, a certificate, and an ssh
/// config installed by cfaccess (behind a `Host *` of the user's).
fn healthy() -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    env.login();
    env.run(&["ssh-gen", "--hostname", APP_HOST]).success();
    let config = env.tmp.path().join("ssh_config");
    std::fs::write(&config, "Host *\n  ServerAliveInterval 30\n").unwrap();
    env.run(&[
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--short-lived-cert",
        "--install",
        "--config",
        config.to_str().unwrap(),
    ])
    .success();
    (env, config)
}

fn doctor_cmd(env: &TestEnv, config: &Path, extra: &[&str]) -> Command {
    let mut cmd = env.cmd(&[&["doctor", APP, "-F", config.to_str().unwrap()][..], extra].concat());
    cmd.env_remove("BROWSER");
    cmd
}

fn doctor(env: &TestEnv, config: &Path, extra: &[&str]) -> Run {
    run_with_deadline(doctor_cmd(env, config, extra), Duration::from_secs(120))
}

/// The line of check `id`.
fn line<'a>(run: &'a Run, id: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(id))
        .unwrap_or_else(|| panic!("no {id} line: {run:#?}"))
}

fn assert_fails(run: &Run, id: &str, says: &str, fix: &str) {
    assert_eq!(run.code, Some(1), "{run:#?}");
    let l = line(run, id);
    assert!(l.starts_with("FAIL"), "{id} fails: {run:#?}");
    assert!(l.contains(says), "{id} says {says:?}: {l}");
    let (_, given) = l
        .split_once("; fix: ")
        .unwrap_or_else(|| panic!("{id} has a fix: {l}"));
    assert!(given.contains(fix), "{id}'s fix is {fix:?}: {l}");
    assert!(run.stdout.ends_with("failed.\n"), "{run:#?}");
}

#[test]
fn a_healthy_setup_passes_every_check_in_text_and_json() {
    let (env, config) = healthy();
    let run = doctor(&env, &config, &[]);
    run.success();
    assert!(
        run.stdout
            .starts_with(&format!("cfaccess doctor for {APP}/\n")),
        "{run:#?}"
    );
    let ids: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ids, [&IDS[..], &["check"]].concat(), "{run:#?}");
    for id in IDS {
        assert!(line(&run, id).starts_with("ok "), "{id}: {run:#?}");
    }
    assert!(run.stdout.ends_with("No check failed.\n"), "{run:#?}");
    assert!(line(&run, "ssh-client").contains("OpenSSH"), "{run:#?}");
    assert!(
        line(&run, "token").contains(EMAIL) && line(&run, "token").contains("accepted by the edge")
    );
    assert!(
        line(&run, "certificate").contains("principals tester"),
        "{run:#?}"
    );
    let ssh = line(&run, "ssh-config");
    assert!(
        ssh.contains(env!("CARGO_BIN_EXE_cfaccess")) && ssh.contains("CertificateFile"),
        "{ssh}"
    );
    // nothing was logged in, signed or written: doctor only looks
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
    assert_eq!(env.edge.count(Endpoint::CertSign), 1);

    let json = doctor(&env, &config, &["--json"]);
    json.success();
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["schema"], 1);
    assert_eq!(report["ok"], true);
    assert_eq!(report["url"], format!("{APP}/"));
    let checks = report["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, IDS);
    for c in checks {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["summary"].is_string() && c["fix"].is_null(), "{c}");
    }
    let token = checks.iter().find(|c| c["id"] == "token").unwrap();
    assert_eq!(token["data"]["email"], EMAIL);
    assert!(token["data"]["expires"].as_i64().unwrap() > 0);
    let cert = checks.iter().find(|c| c["id"] == "certificate").unwrap();
    assert_eq!(cert["data"]["principals"][0], "tester");
    let clock = checks.iter().find(|c| c["id"] == "clock").unwrap();
    assert!(clock["data"]["skew_seconds"].as_i64().unwrap().abs() <= 2);
}

#[test]
fn a_config_dir_others_may_enter_fails_and_is_not_repaired() {
    let (env, config) = healthy();
    std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = doctor(&env, &config, &[]);
    let dir = env.dir.display().to_string();
    assert_fails(&run, "config-dir", "mode 0755", &format!("chmod 700 {dir}"));
    assert_eq!(mode(&env.dir), 0o755, "doctor repairs nothing");
    // a token file others may read
    std::fs::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(env.token_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = doctor(&env, &config, &[]);
    assert_fails(&run, "config-dir", "others may read", "chmod 600");
}

#[test]
fn a_missing_or_expired_token_fails_with_the_login_to_run() {
    let (env, config) = healthy();
    std::fs::remove_file(env.token_file()).unwrap();
    let run = doctor(&env, &config, &[]);
    assert_fails(
        &run,
        "token",
        "app token: none",
        &format!("cfaccess login {APP}"),
    );
    // an expired one (its claims as the edge wrote them, exp long past)
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let expired = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","kid":"k"}"#),
        b64(&format!(
            r#"{{"aud":["{}"],"email":"{EMAIL}","exp":1000}}"#,
            env.aud()
        ))
    );
    std::fs::write(env.token_file(), &expired).unwrap();
    let run = doctor(&env, &config, &[]);
    assert_fails(&run, "token", "expired", &format!("cfaccess login {APP}"));
    assert!(env.token_file().exists(), "doctor deletes no token");
}

#[test]
fn an_ssh_config_that_does_not_go_through_cfaccess_fails_with_the_install_command() {
    let env = TestEnv::new();
    env.login();
    let config = env.tmp.path().join("ssh_config");
    std::fs::write(&config, "").unwrap();
    let run = doctor(&env, &config, &[]);
    let install = format!(
        "cfaccess ssh-config --hostname {APP_HOST} --install --config {}",
        config.display()
    );
    assert_fails(&run, "ssh-config", "connects directly", &install);
    // a block appended after a `Host *` with its own ProxyCommand loses
    let printed = env.run(&["ssh-config", "--hostname", APP_HOST]);
    std::fs::write(
        &config,
        format!("Host *\n  ProxyCommand nc %h %p\n\n{}", printed.stdout),
    )
    .unwrap();
    let run = doctor(&env, &config, &[]);
    assert_fails(
        &run,
        "ssh-config",
        "another program: ProxyCommand nc %h %p",
        &install,
    );
    // a cfaccess that is no longer where the config says
    std::fs::write(
        &config,
        "Host *\n  ProxyCommand /gone/cfaccess access ssh --hostname %h\n",
    )
    .unwrap();
    let run = doctor(&env, &config, &[]);
    assert_fails(
        &run,
        "ssh-config",
        "/gone/cfaccess, which does not exist",
        &install,
    );
    // and the fix fixes it
    let mut fix = env.cmd(&[]);
    fix.args([
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--install",
        "--config",
    ])
    .arg(&config);
    run_with_deadline(fix, Duration::from_secs(30)).success();
    assert!(line(&doctor(&env, &config, &[]), "ssh-config").starts_with("ok "));
}

#[test]
fn a_stopped_edge_fails_the_network_checks_and_the_token_is_still_read() {
    let (env, config) = healthy();
    // an edge killed outright leaves its profile behind: keep a copy, as dropping it removes it
    let profile = env.tmp.path().join("profile.json");
    std::fs::copy(env.edge.profile_path(), &profile).unwrap();
    let mut cmd = doctor_cmd(&env, &config, &[]);
    cmd.env("CFACCESS_EDGE", &profile);
    let mut json = doctor_cmd(&env, &config, &["--json"]);
    json.env("CFACCESS_EDGE", &profile);
    let TestEnv {
        edge, tmp: _tmp, ..
    } = env;
    drop(edge);
    let run = run_with_deadline(cmd, Duration::from_secs(120));
    assert_fails(
        &run,
        "tls-app",
        "connection refused",
        "is the access-edge behind CFACCESS_EDGE running?",
    );
    assert!(line(&run, "clock").starts_with("skip"), "{run:#?}");
    // what an earlier discovery left names the team; its edge is gone too
    assert_fails(&run, "tls-auth", "connection refused", "access-edge");
    let token = line(&run, "token");
    assert!(
        token.starts_with("ok ") && token.contains("not checked with the edge"),
        "{token}"
    );
    let json = run_with_deadline(json, Duration::from_secs(120));
    assert_eq!(json.code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let tls = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tls-app")
        .unwrap();
    assert_eq!(tls["status"], "fail");
    assert!(
        tls["fix"].as_str().unwrap().contains("access-edge"),
        "{tls}"
    );
}

#[test]
fn a_clock_off_against_the_edge_date_fails_with_how_to_sync() {
    let (env, config) = healthy();
    // the edge's Date 10 minutes behind: this clock is 10 minutes ahead
    env.edge.skew_date(-600);
    let run = doctor(&env, &config, &[]);
    assert_fails(
        &run,
        "clock",
        "ahead of the edge's Date",
        "timedatectl set-ntp true",
    );
    // (a Date has whole seconds: the figure may be a second off)
    let clock = |run: &Run| {
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "clock")
            .unwrap()
            .clone()
    };
    let ahead = clock(&doctor(&env, &config, &["--json"]));
    let skew = ahead["data"]["skew_seconds"].as_i64().unwrap();
    assert!((598..=602).contains(&skew), "{ahead}");
    env.edge.skew_date(3600);
    let behind = clock(&doctor(&env, &config, &["--json"]));
    assert_eq!(behind["status"], "fail");
    let skew = behind["data"]["skew_seconds"].as_i64().unwrap();
    assert!((-3602..=-3598).contains(&skew), "{behind}");
    assert!(
        behind["summary"]
            .as_str()
            .unwrap()
            .contains("behind the edge's Date"),
        "{behind}"
    );
    env.edge.skew_date(0);
    assert!(line(&doctor(&env, &config, &[]), "clock").starts_with("ok "));
}

#[test]
fn a_dead_proxy_is_named_with_its_password_hidden() {
    let (env, config) = healthy();
    let port = common::sshd::free_port();
    let mut cmd = doctor_cmd(&env, &config, &[]);
    cmd.env("HTTPS_PROXY", format!("http://me:s3cret@127.0.0.1:{port}"));
    let run = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(!run.stdout.contains("s3cret"), "{run:#?}");
    let proxy = line(&run, "proxy");
    assert!(
        proxy.contains(&format!("HTTPS_PROXY=http://me:***@127.0.0.1:{port}")),
        "{proxy}"
    );
    assert_fails(
        &run,
        "tls-app",
        "cannot reach",
        "check the proxy HTTPS_PROXY=",
    );
}

#[test]
fn without_an_app_only_the_local_checks_run() {
    let env = TestEnv::new();
    let run = env.run(&["doctor"]);
    run.success();
    assert!(line(&run, "ssh-client").starts_with("ok "), "{run:#?}");
    assert!(
        line(&run, "config-dir").starts_with("warn"),
        "not made yet: {run:#?}"
    );
    assert!(line(&run, "app").starts_with("skip"), "{run:#?}");
    assert!(!env.dir.exists(), "doctor creates no config dir");
    let bad = env.run(&["doctor", "ftp://x"]);
    bad.failure(2);
}

#[test]
fn an_ssh_that_is_missing_or_hangs_fails_its_check_within_the_deadline() {
    let env = TestEnv::new();
    // a PATH with no ssh at all
    let empty = env.tmp.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = env.cmd(&["doctor"]);
    cmd.env("PATH", &empty);
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(run.code, Some(1), "{run:#?}");
    let l = line(&run, "ssh-client");
    assert!(
        l.starts_with("FAIL") && l.contains("fix: install the OpenSSH client"),
        "{l}"
    );

    // an ssh that never answers is stopped at the deadline (limits::SSH_PROBE)
    let bin = env.tmp.path().join("hung-bin");
    std::fs::create_dir(&bin).unwrap();
    let hung = env.script("ssh", "exec sleep 600");
    std::fs::rename(&hung, bin.join("ssh")).unwrap();
    let mut cmd = env.cmd(&["doctor"]);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    let started = std::time::Instant::now();
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        line(&run, "ssh-client").contains("did not finish within 10s"),
        "{run:#?}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
