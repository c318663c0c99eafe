// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! Many processes, one login: the lock files shared with the official client.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn twenty_logins_at_once_make_one_login_page_visit() {
    let env = TestEnv::new();
    let children: Vec<_> = (0..20)
        .map(|_| {
            env.cmd(&["login", "--no-verbose", APP])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
    assert!(tokens.iter().all(|t| t == &tokens[0] && is_jwt(t)));
    let leftovers: Vec<String> = env
        .dir_entries()
        .into_iter()
        .filter(|n| n.ends_with(".lock") || n.ends_with(".url") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The start time the lock protocol records for `pid`.
fn start_time(pid: u32) -> i64 {
    cfaccess::platform::process::start_time_ms(i64::from(pid)).expect("running process")
}

#[test]
fn stale_locks_are_cleared_by_themselves() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.dir).unwrap();
    let lock = format!("{}.lock", env.token_file().display());
    let init = start_time(1);
    let cases = [
        (
            "a dead process",
            format!("{{\"pid\":{},\"start_time\":1}}\n", i32::MAX),
        ),
        (
            "a recycled pid",
            format!("{{\"pid\":1,\"start_time\":{}}}\n", init - 5_000),
        ),
        ("garbage", "}{ not a lock".to_owned()),
        ("an empty file", String::new()),
    ];
    for (i, (what, content)) in cases.iter().enumerate() {
        std::fs::write(&lock, content).unwrap();
        std::fs::write(format!("{}.url", env.token_file().display()), "https://old").unwrap();
        let run = env.run(&["login", "-q", APP]);
        run.success();
        assert_eq!(env.edge.count(Endpoint::LoginPage), i as u64 + 1, "{what}");
        assert!(
            !std::path::Path::new(&lock).exists(),
            "{what}: lock left behind"
        );
        std::fs::remove_file(env.token_file()).unwrap();
        std::fs::remove_file(env.org_token_file()).unwrap();
    }
    // a lock of a live process, but older than ten minutes
    std::fs::write(&lock, format!("{{\"pid\":1,\"start_time\":{init}}}\n")).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(11 * 60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    env.run(&["login", "-q", APP]).success();
}

#[test]
fn a_waiter_shows_the_owners_url_and_goes_on_when_the_owner_dies() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.dir).unwrap();
    // a live "owner": some other process, with its real start time
    let mut owner = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let lock = format!("{}.lock", env.token_file().display());
    std::fs::write(
        &lock,
        format!(
            "{{\"pid\":{},\"start_time\":{}}}\n",
            owner.id(),
            start_time(owner.id())
        ),
    )
    .unwrap();
    std::fs::write(
        format!("{}.url", env.token_file().display()),
        "https://owner-url\n",
    )
    .unwrap();

    let mut waiter = env
        .cmd(&["login", "--no-verbose", APP])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(waiter.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("https://owner-url") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "waiter ended: {seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains(&format!("(pid {})", owner.id())), "{seen}");
    assert_eq!(
        env.edge.count(Endpoint::LoginPage),
        0,
        "the waiter must not log in meanwhile"
    );

    owner.kill().unwrap();
    owner.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(is_jwt(&String::from_utf8_lossy(&out.stdout)));
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
}
