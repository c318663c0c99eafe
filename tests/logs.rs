//! Logs as the official client takes them, with the real binary against a
//! real access-edge: `--logfile`, `--log-directory` (created, rotated at
//! 1 MiB with 5 kept, as cloudflared's lumberjack does), `--output json`, the
//! `TUNNEL_*` variables, colour only on a terminal and never with NO_COLOR,
//! and no token in any log.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{APP, Run, TestEnv, mode, run_with_deadline};

/// Every line of `text` is one of cloudflared's JSON log records.
fn assert_json_lines(text: &str) -> Vec<serde_json::Value> {
    assert!(!text.trim().is_empty(), "no log lines");
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            let level = record["level"].as_str().unwrap_or_default();
            assert!(
                ["trace", "debug", "info", "warn", "error"].contains(&level),
                "{line}"
            );
            assert!(record["message"].is_string(), "{line}");
            // RFC 3339 in UTC, to the second: 2026-12-02T00:45:58Z
            let time = record["time"].as_str().unwrap_or_default();
            assert_eq!(time.len(), 20, "{line}");
            assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
            record
        })
        .collect()
}

fn run_env(env: &TestEnv, vars: &[(&str, &Path)], args: &[&str]) -> Run {
    let mut cmd = env.cmd(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_with_deadline(cmd, Duration::from_secs(120))
}

#[test]
fn output_json_is_one_record_a_line_on_stderr() {
    let env = TestEnv::new();
    env.login();
    let flags = env.run(&[
        "--output",
        "json",
        "--log-level",
        "debug",
        "curl",
        "https://ssh.demo.test/whoami",
        "-sS",
    ]);
    flags.success();
    let records = assert_json_lines(&flags.stderr);
    assert!(records.iter().any(|r| r["level"] == "debug"), "{records:?}");
    // the same from the official client's variables, level in any case
    let mut cmd = env.cmd(&["curl", "https://ssh.demo.test/whoami", "-sS"]);
    cmd.env("TUNNEL_LOG_OUTPUT", "json")
        .env("TUNNEL_LOGLEVEL", "DEBUG");
    let vars = run_with_deadline(cmd, Duration::from_secs(60));
    vars.success();
    assert_eq!(assert_json_lines(&vars.stderr).len(), records.len());
    // an empty variable is the default, as for the official client
    let mut cmd = env.cmd(&["token", APP]);
    cmd.env("TUNNEL_LOGLEVEL", "").env("TUNNEL_LOG_OUTPUT", "");
    run_with_deadline(cmd, Duration::from_secs(60)).success();
}

#[test]
fn a_logfile_gets_json_lines_and_never_a_token() {
    let env = TestEnv::new();
    let file = env.tmp.path().join("logs/new/cfaccess-debug.log");
    let run = env.run(&[
        "--log-level",
        "debug",
        "--logfile",
        file.to_str().unwrap(),
        "login",
        "--no-verbose",
        APP,
    ]);
    run.success();
    let token = run.stdout.clone();
    assert!(common::is_jwt(&token));
    let text = std::fs::read_to_string(&file).expect("the log file, its directories created");
    assert_eq!(mode(&file), 0o600);
    let records = assert_json_lines(&text);
    assert!(records.len() > 3, "{text}");
    // stderr keeps its text lines beside the file
    assert!(run.stderr.contains(" DEBUG "), "{}", run.stderr);
    // no secret anywhere: the token, nor its signature, nor the login's key
    let signature = token.rsplit('.').next().unwrap();
    for log in [&text, &run.stderr] {
        assert!(!log.contains(&token) && !log.contains(signature), "{log}");
    }
    // appended by the next run, through TUNNEL_LOGFILE this time
    let mut cmd = env.cmd(&[
        "--log-level",
        "debug",
        "curl",
        "https://ssh.demo.test/",
        "-sS",
    ]);
    cmd.env("TUNNEL_LOGFILE", &file);
    run_with_deadline(cmd, Duration::from_secs(60)).success();
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(after.starts_with(&text) && after.len() > text.len());
    assert!(!after.contains(signature));
}

#[test]
fn a_log_directory_is_created_and_rotates_as_cloudflared_s() {
    let env = TestEnv::new();
    env.login();
    let dir = env.tmp.path().join("var/log/cfaccess");
    let run = run_env(
        &env,
        &[("TUNNEL_LOGDIRECTORY", &dir)],
        &[
            "--log-level",
            "debug",
            "curl",
            "https://ssh.demo.test/",
            "-sS",
        ],
    );
    run.success();
    let log = dir.join("cfaccess.log");
    let first = std::fs::read_to_string(&log).expect("cfaccess.log in the new directory");
    assert_json_lines(&first);
    assert_eq!(mode(&dir), 0o700);

    // A file just under 1 MiB and six old ones: the next run's lines push
    // it over, so it is renamed with lumberjack's UTC time stamp, a new one
    // starts, and only the five newest old ones stay.
    let near_full = "x".repeat((1 << 20) - 64) + "\n";
    std::fs::write(&log, &near_full).unwrap();
    let old: Vec<String> = (1..=6)
        .map(|d| format!("cfaccess-2020-01-0{d}T00-00-00.000.log"))
        .collect();
    for name in &old {
        std::fs::write(dir.join(name), "old\n").unwrap();
    }
    let run = env.run(&[
        "--log-directory",
        dir.to_str().unwrap(),
        "--log-level",
        "debug",
        "curl",
        "https://ssh.demo.test/",
        "-sS",
    ]);
    run.success();
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(fresh.len() < 1 << 20, "not rotated: {} bytes", fresh.len());
    assert_json_lines(&fresh);
    let mut backups: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "cfaccess.log")
        .collect();
    backups.sort();
    assert_eq!(backups.len(), 5, "{backups:?}");
    // the oldest two went (one at open, one at the rotation); the rotated one is the newest
    assert_eq!(backups[..4], old[2..], "{backups:?}");
    let rotated = &backups[4];
    assert!(
        rotated.starts_with("cfaccess-20")
            && rotated.ends_with(".log")
            && rotated.len() == old[0].len(),
        "{rotated}"
    );
    let kept = std::fs::read_to_string(dir.join(rotated)).unwrap();
    assert!(
        kept.starts_with(&near_full),
        "the rotated file holds the old lines"
    );
    assert!(kept.len() <= 1 << 20, "{} bytes", kept.len());
}

#[test]
fn logfile_wins_over_log_directory_and_says_so() {
    let env = TestEnv::new();
    let file = env.tmp.path().join("one.log");
    let dir = env.tmp.path().join("dir");
    let run = run_env(
        &env,
        &[("TUNNEL_LOGDIRECTORY", &dir)],
        &["--logfile", file.to_str().unwrap(), "status"],
    );
    run.success();
    assert!(run.stderr.contains("--logfile wins"), "{}", run.stderr);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("--logfile wins")
    );
    assert!(!dir.exists());
}

/// ssh shows a ProxyCommand's stderr in the user's terminal: with a log
/// file, the carrier's logs go there alone (its error line still reaches the
/// user), as the official client's do.
#[test]
fn a_carrier_on_stdio_logs_to_the_file_alone() {
    let env = TestEnv::new();
    env.login();
    let file = env.tmp.path().join("ssh.log");
    let run = env.run(&[
        "access",
        "ssh",
        "--hostname",
        "ssh.demo.test",
        "--log-level",
        "debug",
        "--logfile",
        file.to_str().unwrap(),
    ]);
    // the demo app's origin (127.0.0.1:22) has no sshd here: it fails, in one line
    run.failure(1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let records = assert_json_lines(&std::fs::read_to_string(&file).unwrap());
    assert!(records.iter().any(|r| r["level"] == "debug"));
}

/// `cfaccess …` run under a pseudo-terminal (`script`), its output as seen there.
fn on_terminal(env: &TestEnv, no_color: Option<&str>, args: &str) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_cfaccess")),
        "/dev/null",
    ]);
    env.isolate(&mut cmd);
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    run.success();
    run.stdout
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = TestEnv::new();
    env.login();
    let args = "--log-level debug curl https://ssh.demo.test/ -sS -o /dev/null";
    let coloured = on_terminal(&env, None, args);
    assert!(coloured.contains("DEBUG"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colour: {coloured:?}"
    );
    for value in ["1", "true"] {
        let plain = on_terminal(&env, Some(value), args);
        assert!(plain.contains("DEBUG"), "{plain}");
        assert!(!plain.contains('\x1b'), "NO_COLOR={value}: {plain:?}");
    }
    // into a pipe: none
    let piped = env.run(&args.split(' ').collect::<Vec<_>>());
    piped.success();
    assert!(piped.stderr.contains("DEBUG"));
    assert!(!piped.stderr.contains('\x1b'), "{:?}", piped.stderr);
}
