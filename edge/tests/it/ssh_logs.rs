//! `access-edge ssh-logs keygen|list|replay` on captures the library wrote,
//! and (with SSH_LOG_CLI=/path/to/ssh-log-cli) Cloudflare's own reader on
//! the same files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use access_edge::ssh::logs::{
    Capture, ExitData, LogKey, LogSecret, Program, Pty, SessionLog, SessionMeta, Source, codes,
    logs_dir,
};

use crate::common::edge_bin;

fn ssh_logs(args: &[&str], cwd: &Path) -> Output {
    Command::new(edge_bin())
        .arg("ssh-logs")
        .args(args)
        .current_dir(cwd)
        .env_remove("ACCESS_EDGE_STATE_DIR")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A key pair made by `ssh-logs keygen` in `dir`: (private key path, public key).
fn keygen(dir: &Path) -> (PathBuf, LogKey) {
    let out = ssh_logs(&["keygen", "--out", "audit"], dir);
    let printed = ok(&out);
    let public = LogKey::from_base64(printed.trim_end()).unwrap();
    let file = std::fs::read_to_string(dir.join("audit.pub")).unwrap();
    assert_eq!(printed, format!("{file}\n"), "stdout is the .pub line");
    (dir.join("audit"), public)
}

/// A PTY session as the terminal records it: a prompt, `echo hi`, its
/// output split mid-character, exit 0.
fn pty_session(state_dir: &Path, id: &str, key: &LogKey) -> PathBuf {
    let meta = SessionMeta {
        id: id.to_owned(),
        email: "alice@example.com".to_owned(),
        app: "ssh.demo.test".to_owned(),
        client_addr: "127.0.0.1:50000".to_owned(),
        origin_addr: "127.0.0.1:2222".to_owned(),
        program: Program::Shell,
        pty: None,
    };
    let log = SessionLog::start(&logs_dir(state_dir), meta, key).unwrap();
    log.set_pty(Pty {
        term: "xterm-256color".to_owned(),
        width: 100,
        height: 30,
        modes: vec![("ECHO".to_owned(), 1)],
    });
    let euro = "€".as_bytes();
    log.record(Source::Origin, codes::DATA, b"$ ").unwrap();
    log.record(Source::Client, codes::DATA, b"echo hi\r")
        .unwrap();
    log.record(Source::Origin, codes::DATA, b"echo hi\r\nhi ")
        .unwrap();
    log.record(Source::Origin, codes::DATA, &euro[..2]).unwrap();
    log.record(Source::Origin, codes::EXTENDED_DATA, &euro[2..])
        .unwrap();
    log.record(Source::Origin, codes::DATA, b"\r\n$ ").unwrap();
    log.finish(Some(ExitData {
        status: Some(0),
        ..ExitData::default()
    }))
    .unwrap()
}

const ORIGIN_OUTPUT: &str = "$ echo hi\r\nhi €\r\n$ ";

#[test]
fn keygen_list_and_replay_read_what_the_edge_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, public) = keygen(dir.path());
    let state = dir.path().join("state");
    pty_session(&state, "sess-1", &public);
    let state_arg = state.to_str().unwrap();

    let table = ok(&ssh_logs(&["list", "--state-dir", state_arg], dir.path()));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    for cell in [
        "sess-1",
        "alice@example.com",
        "ssh.demo.test",
        "shell",
        "sess-1.capture",
    ] {
        assert!(lines[1].contains(cell), "{cell} not in {table}");
    }

    let json = ok(&ssh_logs(
        &["list", "--json", "--state-dir", state_arg],
        dir.path(),
    ));
    let entry: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(entry["id"], "sess-1");
    assert_eq!(entry["exit_status"], 0);
    assert_eq!(entry["origin_addr"], "127.0.0.1:2222");
    assert!(entry["started_at"].as_str().unwrap().ends_with('Z'));

    let key_arg = key_path.to_str().unwrap();
    let played = ssh_logs(
        &[
            "replay",
            "sess-1",
            "--key",
            key_arg,
            "--state-dir",
            state_arg,
            "--no-wait",
        ],
        dir.path(),
    );
    assert_eq!(
        ok(&played),
        ORIGIN_OUTPUT,
        "the origin's output, not the client's"
    );

    let cast = ok(&ssh_logs(
        &[
            "replay",
            "sess-1",
            "--key",
            key_arg,
            "--state-dir",
            state_arg,
            "--asciicast",
        ],
        dir.path(),
    ));
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(100), Some(30))
    );
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    assert!(header["timestamp"].as_u64().unwrap() > 1_600_000_000);
    let mut shown = String::new();
    let mut last = 0.0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = event[0].as_f64().unwrap();
        assert!(at >= last, "{cast}");
        last = at;
        assert_eq!(event[1], "o");
        shown.push_str(event[2].as_str().unwrap());
    }
    assert_eq!(shown, ORIGIN_OUTPUT, "the € split across packets is whole");
}

#[test]
fn replay_errors_are_one_line_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, public) = keygen(dir.path());
    let state = dir.path().join("state");
    pty_session(&state, "sess-2", &public);
    let state_arg = state.to_str().unwrap();

    // Another key pair: the capture is not sealed for it.
    let other = ssh_logs(&["keygen", "--out", "other"], dir.path());
    ok(&other);
    let out = ssh_logs(
        &[
            "replay",
            "sess-2",
            "--key",
            "other",
            "--state-dir",
            state_arg,
        ],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot decrypt"), "{err}");

    let key_arg = key_path.to_str().unwrap();
    let out = ssh_logs(
        &["replay", "nope", "--key", key_arg, "--state-dir", state_arg],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("no such session") && err.contains("ssh-logs list"),
        "{err}"
    );

    // keygen never overwrites a private key.
    let out = ssh_logs(&["keygen", "--out", "audit"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("will not overwrite"));
    assert_eq!(LogSecret::read(&key_path).unwrap().public(), public);
}

#[test]
fn an_unfinished_capture_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keygen(dir.path());
    let state = dir.path().join("state");
    let meta = SessionMeta {
        id: "cut-1".to_owned(),
        email: "bob@example.com".to_owned(),
        app: "ssh.demo.test".to_owned(),
        client_addr: "127.0.0.1:1".to_owned(),
        origin_addr: "127.0.0.1:2".to_owned(),
        program: Program::Shell,
        pty: None,
    };
    let log = SessionLog::start(&logs_dir(&state), meta, &public).unwrap();
    log.record(Source::Origin, codes::DATA, b"x").unwrap();
    drop(log); // as a killed edge leaves it
    let table = ok(&ssh_logs(
        &["list", "--state-dir", state.to_str().unwrap()],
        dir.path(),
    ));
    assert!(
        table
            .lines()
            .any(|l| l.contains("cut-1") && l.contains("unfinished")),
        "{table}"
    );
}

/// Cloudflare's ssh-log-cli, built from its source, when SSH_LOG_CLI names it.
fn ssh_log_cli() -> Option<PathBuf> {
    match std::env::var_os("SSH_LOG_CLI") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!(
                "skipped: set SSH_LOG_CLI=/path/to/ssh-log-cli to check against Cloudflare's reader"
            );
            None
        }
    }
}

/// The members of the zip ssh-log-cli wrote, by name (stored or deflated:
/// read with `unzip -p`, which the machine has).
fn unzip(zip: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("unzip")
        .arg("-p")
        .arg(zip)
        .arg(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unzip {member}: {}",
        text(&out.stderr)
    );
    out.stdout
}

#[test]
fn ssh_log_cli_decrypts_what_the_edge_wrote() {
    let Some(cli) = ssh_log_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (key_path, public) = keygen(dir.path());
    let state = dir.path().join("state");
    let capture = pty_session(&state, "sess-3", &public);
    let zip = dir.path().join("out.zip");
    let out = Command::new(&cli)
        .args(["decrypt", "-i"])
        .arg(&capture)
        .arg("-k")
        .arg(&key_path)
        .arg("-o")
        .arg(&zip)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = text(&unzip(&zip, "term_data.txt"));
    assert!(data.starts_with("Session started on "), "{data}");
    assert!(
        data.contains("[TERM=\"xterm-256color\" COLUMNS=\"100\" LINES=\"30\"]\n"),
        "{data}"
    );
    assert!(data.contains(ORIGIN_OUTPUT), "{data}");
    assert!(data.contains("[COMMAND_EXIT_CODE=\"0\"]"), "{data}");
    let times = text(&unzip(&zip, "term_times.txt"));
    assert_eq!(
        times.lines().count(),
        5,
        "one line per origin packet: {times}"
    );
}

#[test]
fn ssh_log_cli_keys_and_ours_are_the_same_files() {
    let Some(cli) = ssh_log_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Its key pair, our capture, our reader.
    let out = Command::new(&cli)
        .args(["generate-key-pair", "-o"])
        .arg(dir.path().join("theirs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let public =
        LogKey::from_base64(&std::fs::read_to_string(dir.path().join("theirs.pub")).unwrap())
            .unwrap();
    let secret = LogSecret::read(&dir.path().join("theirs")).unwrap();
    assert_eq!(secret.public(), public);
    let state = dir.path().join("state");
    let capture = pty_session(&state, "sess-4", &public);
    let read = Capture::open(&capture, &secret).unwrap();
    assert_eq!(read.packets.len(), 6);

    // Our key pair, our capture, its reader (no PTY: the raw files).
    let (key_path, ours) = keygen(dir.path());
    let meta = SessionMeta {
        id: "sess-5".to_owned(),
        email: "alice@example.com".to_owned(),
        app: "ssh.demo.test".to_owned(),
        client_addr: "127.0.0.1:1".to_owned(),
        origin_addr: "127.0.0.1:2".to_owned(),
        program: Program::Exec("uname".to_owned()),
        pty: None,
    };
    let log = SessionLog::start(&logs_dir(&state), meta, &ours).unwrap();
    log.record(Source::Client, codes::DATA, b"stdin").unwrap();
    log.record(Source::Origin, codes::DATA, b"Linux\n").unwrap();
    let capture = log.finish(Some(ExitData::default())).unwrap();
    let zip = dir.path().join("raw.zip");
    let out = Command::new(&cli)
        .args(["decrypt", "-i"])
        .arg(&capture)
        .arg("-k")
        .arg(&key_path)
        .arg("-o")
        .arg(&zip)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(unzip(&zip, "data_from_server.txt"), b"Linux\n");
    assert_eq!(unzip(&zip, "data_from_client.txt"), b"unamestdin");
}
