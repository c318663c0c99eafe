//! The text users see, as snapshots: help, errors, `status` and `ssh-config`.
//! A change to any of it shows up in review as a diff of `tests/snapshots/`.
//!
//! Run `INSTA_UPDATE=always cargo test --test snapshots` after an intended
//! change and read the diff before committing; in CI (`CI=true`) a mismatch
//! fails. The filters replace what differs per run: the temp dir, the
//! binary's path, ports, dates, durations, audience tags and tokens.

#![cfg(unix)]

mod common;

use access_edge::ssh_ca::CaKeyType;
use common::{APP, APP_HOST, Run, TestEnv};

/// The filters shared by every snapshot of `env`'s world.
fn filters(env: &TestEnv) -> Vec<(String, &'static str)> {
    let tmp = env.tmp.path().display().to_string();
    vec![
        (regex_escape(env!("CARGO_BIN_EXE_cfaccess")), "[CFACCESS]"),
        (regex_escape(&tmp), "[TMP]"),
        (r"\b[0-9a-f]{64}\b".into(), "[AUD]"),
        (
            r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+".into(),
            "[JWT]",
        ),
        (r"127\.0\.0\.1:\d+".into(), "127.0.0.1:[PORT]"),
        // RFC 2822 dates (certificate and token expiry)
        (
            r"\b[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\b".into(),
            "[DATE]",
        ),
        // RFC 3339 dates (JSON, logs)
        (
            r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})".into(),
            "[DATE]",
        ),
        // what is left of a lifetime ("23h59m", "4m0s", "59s")
        (r"\b\d+[dhms](\d+[hms])*\b".into(), "[DURATION]"),
        (
            r"cfaccess \d+\.\d+\.\d+ \([^)]*\)".into(),
            "cfaccess [VERSION]",
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Snapshots stdout and stderr of `run` (and its exit code) under `name`.
fn snapshot(env: &TestEnv, name: &str, run: &Run) {
    let text = format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    );
    let filters = filters(env);
    let filters: Vec<(&str, &str)> = filters.iter().map(|(r, s)| (r.as_str(), *s)).collect();
    insta::with_settings!({ filters => filters, prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn help_of_every_command() {
    let env = TestEnv::new();
    snapshot(&env, "help", &env.run(&["--help"]));
    for command in [
        "login",
        "token",
        "ssh",
        "tcp",
        "ssh-gen",
        "ssh-config",
        "status",
        "logout",
        "doctor",
        "completions",
        "version",
    ] {
        let run = env.run(&[command, "--help"]);
        run.success();
        snapshot(&env, &format!("help-{command}"), &run);
    }
    snapshot(&env, "help-access", &env.run(&["access", "--help"]));
}

#[test]
fn errors_users_meet() {
    let env = TestEnv::new();
    let cases: &[(&str, &[&str])] = &[
        ("error-no-url", &["token"]),
        ("error-not-a-url", &["token", "ht!tp://x"]),
        ("error-no-token", &["token", APP]),
        ("error-unknown-flag", &["login", "--no-such-flag", APP]),
        ("error-ssh-gen-no-hostname", &["ssh-gen"]),
        (
            "error-bad-hostname",
            &["ssh-config", "--hostname", "a;b.example.com"],
        ),
        ("error-unknown-app", &["login", "https://nobody.demo.test"]),
    ];
    for (name, args) in cases {
        let run = env.run(args);
        assert_ne!(run.code, Some(0), "{name} must fail: {run:#?}");
        snapshot(&env, name, &run);
    }
}

#[test]
fn status_before_and_after_login() {
    let env = TestEnv::new();
    snapshot(&env, "status-empty", &env.run(&["status"]));
    env.login();
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    env.run(&["ssh-gen", "--hostname", APP_HOST]).success();
    let run = env.run(&["status"]);
    run.success();
    snapshot(&env, "status-logged-in", &run);
}

#[test]
fn ssh_config_as_printed() {
    let env = TestEnv::new();
    let plain = env.run(&["ssh-config", "--hostname", APP_HOST]);
    plain.success();
    snapshot(&env, "ssh-config", &plain);
    let cert = env.run(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
    cert.success();
    snapshot(&env, "ssh-config-short-lived-cert", &cert);
}
