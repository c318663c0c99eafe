//! The capture as ssh-log-cli reads it, written and read back for real on
//! a temp dir.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::{Deserializable, OpModeR};

use super::capture::Options;
use super::key::{self, Aead, Kdf, Kem};
use super::*;

fn meta(id: &str, program: Program) -> SessionMeta {
    SessionMeta {
        id: id.to_owned(),
        email: "alice@example.com".to_owned(),
        app: "ssh.demo.test".to_owned(),
        client_addr: "127.0.0.1:50000".to_owned(),
        origin_addr: "127.0.0.1:22".to_owned(),
        program,
        pty: None,
    }
}

fn pty() -> Pty {
    Pty {
        term: "xterm-256color".to_owned(),
        width: 120,
        height: 40,
        modes: vec![("ECHO".to_owned(), 1), ("ICANON".to_owned(), 0)],
    }
}

/// The header and the raw sealed blocks of a capture file.
fn split_file(path: &Path) -> (serde_json::Value, Vec<Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let json = STANDARD.decode(&bytes[4..4 + n]).unwrap();
    let header = serde_json::from_slice(&json).unwrap();
    let mut blocks = Vec::new();
    let mut rest = &bytes[4 + n..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        blocks.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    (header, blocks)
}

#[test]
fn a_session_reads_back_packet_for_packet() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("ssh-logs");
    let (secret, public) = key::generate();
    let log = SessionLog::start_with(
        &logs,
        meta("s1", Program::Shell),
        &public,
        Options {
            block_size: 300,
            ..Options::default()
        },
    )
    .unwrap();
    log.set_pty(pty());
    let big = vec![b'x'; 1000];
    let sent: Vec<(Source, u32, Vec<u8>)> = vec![
        (Source::Origin, codes::DATA, b"$ ".to_vec()),
        (Source::Client, codes::DATA, b"ls\r".to_vec()),
        (Source::Origin, codes::DATA, b"ls\r\nfile\r\n$ ".to_vec()),
        (Source::Origin, codes::EXTENDED_DATA, b"warning\n".to_vec()),
        (Source::Origin, codes::DATA, big.clone()),
        (Source::Client, codes::DATA, Vec::new()),
    ];
    for (source, code, data) in &sent {
        log.clone().record(*source, *code, data).unwrap();
    }
    let path = log
        .finish(Some(ExitData {
            status: Some(3),
            ..ExitData::default()
        }))
        .unwrap();
    assert_eq!(path, logs.join("s1.capture"));
    assert!(!logs.join("s1.capture.part").exists(), "the .part is gone");

    let capture = Capture::open(&path, &secret).unwrap();
    let got: Vec<(Source, u32, Vec<u8>)> = capture
        .packets
        .iter()
        .map(|p| (p.source, p.code, p.data.clone()))
        .collect();
    assert_eq!(got, sent);
    let times: Vec<Duration> = capture.packets.iter().map(|p| p.elapsed).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(capture.header.pty.as_ref().unwrap().width, 120);
    assert_eq!(capture.header.exit_data.as_ref().unwrap().status, Some(3));

    let listing = index::list(&logs).unwrap();
    assert_eq!(listing.entries.len(), 1);
    let entry = &listing.entries[0];
    assert_eq!(
        (entry.id.as_str(), entry.program.as_str(), entry.exit_status),
        ("s1", "shell", Some(3))
    );
    assert_eq!(entry.capture, "s1.capture");
    assert!(listing.unfinished.is_empty());
}

#[test]
fn the_header_has_every_field_ssh_log_cli_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    let mut m = meta("h1", Program::Shell);
    m.pty = Some(pty());
    let log = SessionLog::start(dir.path(), m, &public).unwrap();
    log.record(Source::Origin, codes::DATA, b"hello").unwrap();
    let path = log
        .finish(Some(ExitData {
            status: None,
            signal: Some("KILL".to_owned()),
            core_dumped: true,
            error_msg: None,
        }))
        .unwrap();
    let (header, blocks) = split_file(&path);
    let started = header["started_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && now - started < 60, "{header}");
    let size: u64 = blocks.iter().map(|b| 4 + b.len() as u64).sum();
    assert_eq!(header["data_size"].as_u64(), Some(size));
    let key = header["encapsulated_key"].as_str().unwrap();
    assert_eq!(key.len(), 64, "32 bytes in hex: {key}");
    assert!(hex::decode(key).is_ok());
    assert_eq!(
        header["pty"],
        serde_json::json!({"term": "xterm-256color", "width": 120, "height": 40,
            "modes": [["ECHO", 1], ["ICANON", 0]]})
    );
    let exit = &header["exit_data"];
    assert!(exit["timestamp"].as_u64().unwrap() >= started);
    assert_eq!(exit["status"], serde_json::Value::Null);
    assert_eq!(exit["signal"], "KILL");
    assert_eq!(exit["core_dumped"], true);
    assert_eq!(exit["error_msg"], serde_json::Value::Null);
}

#[test]
fn no_pty_and_no_exit_are_null() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    let log = SessionLog::start(dir.path(), meta("n1", Program::Shell), &public).unwrap();
    let path = log.finish(None).unwrap();
    let (header, blocks) = split_file(&path);
    assert_eq!(header["pty"], serde_json::Value::Null);
    assert_eq!(header["exit_data"], serde_json::Value::Null);
    assert!(blocks.is_empty(), "no packet, no (empty) block");
    assert_eq!(header["data_size"], 0);
}

/// ssh-log-cli reads a packet's length with one `read` of its decrypting
/// reader, which fills from at most one more block: so a block holds whole
/// packets, and each one opened alone parses.
#[test]
fn every_block_holds_whole_packets() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key::generate();
    let log = SessionLog::start_with(
        dir.path(),
        meta("b1", Program::Shell),
        &public,
        Options {
            block_size: 100,
            ..Options::default()
        },
    )
    .unwrap();
    for i in 0..50u8 {
        log.record(Source::Origin, codes::DATA, &vec![i; (i as usize * 7) % 61])
            .unwrap();
    }
    let path = log.finish(None).unwrap();
    let (header, blocks) = split_file(&path);
    assert!(blocks.len() > 5, "{} blocks", blocks.len());
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(
        &hex::decode(header["encapsulated_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let mut ctx =
        hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &secret.0, &encapped, &[]).unwrap();
    let mut count = 0;
    for block in &blocks {
        let plain = ctx.open(block, &[]).unwrap();
        assert!(!plain.is_empty());
        let mut rest = plain.as_slice();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(
                len >= 13 && 4 + len <= rest.len(),
                "a packet crosses a block"
            );
            rest = &rest[4 + len..];
            count += 1;
        }
    }
    assert_eq!(count, 50);
}

#[test]
fn an_exec_command_is_sealed_in_the_capture_not_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key::generate();
    let command = "mysql -pHUNTER2 -e 'select 1'";
    let log = SessionLog::start(
        dir.path(),
        meta("e1", Program::Exec(command.to_owned())),
        &public,
    )
    .unwrap();
    log.record(Source::Origin, codes::DATA, b"1\n").unwrap();
    let path = log.finish(Some(ExitData::default())).unwrap();
    let capture = Capture::open(&path, &secret).unwrap();
    let first = &capture.packets[0];
    assert_eq!(
        (first.source, first.code, first.data.as_slice()),
        (Source::Client, codes::CHANNEL_REQUEST, command.as_bytes())
    );
    let index = std::fs::read_to_string(dir.path().join("index.jsonl")).unwrap();
    assert!(index.contains(r#""program":"exec""#), "{index}");
    assert!(!index.contains("HUNTER2"), "{index}");
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(7).any(|w| w == b"HUNTER2"), "sealed");
}

#[test]
fn a_writer_that_cannot_keep_up_makes_record_fail_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key::generate();
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let limit = 4096;
    let log = SessionLog::start_with(
        dir.path(),
        meta("q1", Program::Shell),
        &public,
        Options {
            block_size: 512,
            flush_after: Duration::from_millis(1),
            queue_limit: limit,
            gate: Some(Arc::clone(&gate)),
        },
    )
    .unwrap();
    let mut accepted = 0;
    let refused = loop {
        match log.record(Source::Origin, codes::DATA, &[b'y'; 100]) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(
            accepted < 1000,
            "record never refused: the queue is unbounded"
        );
        assert!(log.queued_bytes() <= limit);
    };
    assert!(
        matches!(refused, LogError::QueueFull { limit: 4096 }),
        "{refused}"
    );
    assert!(refused.to_string().contains("queue is full"));
    // The writer holds at most one block beside the queue.
    assert!(accepted * 117 <= limit + 512, "{accepted} packets accepted");
    drop(held);
    let path = log.finish(None).unwrap();
    let capture = Capture::open(&path, &secret).unwrap();
    assert_eq!(
        capture.packets.len(),
        accepted,
        "every accepted packet is logged"
    );
}

#[test]
fn a_logs_dir_that_cannot_be_made_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let (_, public) = key::generate();
    let err =
        SessionLog::start(&file.join("ssh-logs"), meta("d1", Program::Shell), &public).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot create the logs dir"),
        "{err}"
    );
}

#[test]
fn a_logs_dir_removed_mid_session_fails_finish() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("ssh-logs");
    let (_, public) = key::generate();
    let log = SessionLog::start(&logs, meta("d2", Program::Shell), &public).unwrap();
    log.record(Source::Origin, codes::DATA, b"x").unwrap();
    std::fs::remove_dir_all(&logs).unwrap();
    let err = log.finish(None).unwrap_err();
    assert!(err.to_string().contains("d2.capture"), "{err}");
    assert!(
        !logs.join("index.jsonl").exists(),
        "no index line for a lost capture"
    );
}

#[test]
fn a_bad_session_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    for id in ["", "../x", ".hidden", "a/b"] {
        let err = SessionLog::start(dir.path(), meta(id, Program::Shell), &public).unwrap_err();
        assert!(matches!(err, LogError::BadId(_)), "{id:?}: {err}");
    }
}

#[test]
fn a_session_dropped_unfinished_is_listed_as_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    let log = SessionLog::start(dir.path(), meta("u1", Program::Shell), &public).unwrap();
    log.record(Source::Origin, codes::DATA, b"x").unwrap();
    drop(log);
    let listing = index::list(dir.path()).unwrap();
    assert_eq!(listing.unfinished, vec!["u1".to_owned()]);
    assert!(listing.entries.is_empty());
    let err = index::find_capture(dir.path(), "u1").unwrap_err();
    assert!(err.to_string().contains("never finished"), "{err}");
}

#[test]
fn record_after_finish_and_a_second_finish_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    let log = SessionLog::start(dir.path(), meta("f1", Program::Shell), &public).unwrap();
    let other = log.clone();
    log.finish(None).unwrap();
    assert!(matches!(
        other.record(Source::Client, codes::DATA, b"late"),
        Err(LogError::Finished)
    ));
    assert!(matches!(other.finish(None), Err(LogError::Finished)));
}

#[test]
fn another_key_cannot_open_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key::generate();
    let (other, _) = key::generate();
    let log = SessionLog::start(dir.path(), meta("k1", Program::Shell), &public).unwrap();
    log.record(Source::Origin, codes::DATA, b"secret").unwrap();
    let path = log.finish(None).unwrap();
    let err = Capture::open(&path, &other).unwrap_err();
    assert!(matches!(err, LogError::Decrypt { .. }), "{err}");
}

#[test]
fn a_cut_capture_is_reported_as_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key::generate();
    let log = SessionLog::start_with(
        dir.path(),
        meta("c1", Program::Shell),
        &public,
        Options {
            block_size: 64,
            ..Options::default()
        },
    )
    .unwrap();
    for _ in 0..10 {
        log.record(Source::Origin, codes::DATA, &[b'z'; 50])
            .unwrap();
    }
    let path = log.finish(None).unwrap();
    let (_, blocks) = split_file(&path);
    // Drop the last block whole: every remaining block still opens.
    let len = std::fs::metadata(&path).unwrap().len() - 4 - blocks[9].len() as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    let err = Capture::open(&path, &secret).unwrap_err();
    assert!(err.to_string().contains("where the header says"), "{err}");
}

#[test]
fn keygen_writes_the_files_of_ssh_log_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    let (public, pub_path) = generate_key_pair(&path).unwrap();
    assert_eq!(pub_path, dir.path().join("audit.pub"));
    let private = std::fs::read_to_string(&path).unwrap();
    let public_text = std::fs::read_to_string(&pub_path).unwrap();
    assert!(!private.ends_with('\n') && !public_text.ends_with('\n'));
    assert_eq!(STANDARD.decode(&private).unwrap().len(), 32);
    assert_eq!(public_text, public.to_base64());
    assert_eq!(LogKey::from_base64(&public_text).unwrap(), public);
    assert_eq!(LogSecret::read(&path).unwrap().public(), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = generate_key_pair(&path).unwrap_err();
    assert!(again.to_string().contains("will not overwrite"), "{again}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), private);
    let mut f = std::fs::File::open(&path).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert!(!format!("{:?}", LogSecret::read(&path).unwrap()).contains(&s));
}

#[test]
fn a_public_key_that_is_not_one_is_refused() {
    for text in ["", "not base64!", "AAAA", &STANDARD.encode([0u8; 31])] {
        assert!(
            matches!(LogKey::from_base64(text), Err(LogError::BadPublicKey)),
            "{text:?}"
        );
    }
}
