//! `access-edge ca generate|show`: an app's SSH CA made on the state dir,
//! with or without a running edge, as an operator (or a script that then
//! starts the edge) uses it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use cfaccess::access::edge_profile::EdgeProfile;
use ssh_key::certificate::Certificate;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey};

use crate::common::*;
use crate::process::{Running, wait_for_file};

const TWO_APPS: &str = "team = \"demo\"\n[[apps]]\nhostname = \"ssh.demo.test\"\nallow = [\"*@example.com\"]\n[[apps]]\nhostname = \"db.demo.test\"\nallow = [\"*@example.com\"]\n";

fn ca(args: &[&str], state_dir: &Path) -> Output {
    Command::new(edge_bin())
        .arg("ca")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one line a successful command printed, parsed.
fn ca_line(out: &Output) -> (String, PublicKey) {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    let line = stdout.trim_end().to_owned();
    let key = PublicKey::from_openssh(&line).unwrap();
    (line, key)
}

/// A one-line error with this exit status.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn generate_makes_a_ca_once_and_prints_the_same_line_again() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let first = ca(&["generate"], &dir);
    let (line, key) = ca_line(&first);
    assert_eq!(
        key.algorithm(),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256
        }
    );
    assert_eq!(key.comment(), "access-edge CA for ssh.demo.test");
    assert!(text(&first.stderr).contains("made a new ECDSA P-256 SSH CA for ssh.demo.test"));

    let again = ca(&["generate", "--app", "ssh.demo.test"], &dir);
    assert_eq!(ca_line(&again).0, line);
    assert!(text(&again.stderr).contains("already has this"));
    assert_eq!(ca_line(&ca(&["show"], &dir)).0, line);
    assert_eq!(
        std::fs::read_to_string(dir.join("ssh-ca/ssh.demo.test.pub")).unwrap(),
        format!("{line}\n")
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("ssh-ca/ssh.demo.test.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // the private key is one OpenSSH reads
    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(dir.join("ssh-ca/ssh.demo.test.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        line.starts_with(
            text(&out.stdout)
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
                .as_str()
        )
    );

    // another type for an existing CA is refused, and the CA stays
    assert_fails(
        &ca(&["generate", "--key-type", "ed25519"], &dir),
        2,
        "ssh.demo.test already has an ECDSA P-256 SSH CA",
    );
    assert_eq!(
        ca_line(&ca(&["generate", "--key-type", "ecdsa"], &dir)).0,
        line
    );
    assert_eq!(
        ca(&["generate", "--key-type", "rsa"], &dir).status.code(),
        Some(2)
    );
}

#[test]
fn each_app_of_the_config_gets_its_own_ca_and_unknown_apps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, TWO_APPS).unwrap();
    let config = config.to_str().unwrap();
    let state = dir.path().join("state");

    let (ssh, _) = ca_line(&ca(&["generate", "--config", config], &state));
    let db = ca(
        &[
            "generate",
            "--config",
            config,
            "--app",
            "DB.demo.test",
            "--key-type",
            "ed25519",
        ],
        &state,
    );
    let (db, db_key) = ca_line(&db);
    assert_ne!(ssh, db);
    assert_eq!(db_key.algorithm(), Algorithm::Ed25519);
    assert_eq!(db_key.comment(), "access-edge CA for db.demo.test");
    // without --key-type, whatever the app has
    assert_eq!(
        ca_line(&ca(
            &["generate", "--config", config, "--app", "db.demo.test"],
            &state
        ))
        .0,
        db
    );

    assert_fails(
        &ca(
            &["generate", "--config", config, "--app", "nope.test"],
            &state,
        ),
        2,
        "no Access application nope.test in",
    );
    assert_fails(
        &ca(
            &["generate", "--app", "db.demo.test"],
            &dir.path().join("demo-state"),
        ),
        2,
        "the built-in demo (its apps: ssh.demo.test)",
    );
    // the config an edge keeps in its state dir names the apps
    std::fs::copy(dir.path().join("edge.toml"), state.join("config.toml")).unwrap();
    assert_eq!(
        ca_line(&ca(&["show", "--app", "db.demo.test"], &state)).0,
        db
    );

    let empty = dir.path().join("empty");
    assert_fails(&ca(&["show"], &empty), 1, "ssh.demo.test has no SSH CA in");
    assert!(!empty.exists(), "show makes nothing");
}

#[test]
fn an_edge_started_after_ca_generate_signs_with_that_ca() {
    // the order of the official client check: the CA first, then the edge
    let dir = seeded_state_dir();
    let state = dir.path().to_str().unwrap();
    let (_, ca_key) = ca_line(&ca(&["generate"], dir.path()));

    let mut child = Running::spawn(
        Command::new(edge_bin())
            .args(["--state-dir", state, "--cert-validity", "1m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let profile_path = dir.path().join("profile.json");
    wait_for_file(&profile_path, &mut child);
    let client =
        cfaccess::access::http::client(Some(&EdgeProfile::load(&profile_path).unwrap())).unwrap();

    // a token as the binary's own login would give it
    let token = mint_for_state_dir(dir.path());
    let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let request = serde_json::json!({
        "public_key": format!("{}\n", user.public_key().to_openssh().unwrap()),
        "jwt": token,
        "issuer": "https://demo.cloudflareaccess.com",
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = runtime.block_on(async {
        let response = client
            .post("https://demo.cloudflareaccess.com/cdn-cgi/access/cert_sign")
            .body(request.to_string())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    });
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.valid_before() - cert.valid_after(), 60);
    cert.validate([&ca_key.fingerprint(HashAlg::Sha256)])
        .unwrap();

    let out = Command::new(edge_bin())
        .args(["stats", "--state-dir", state])
        .output()
        .unwrap();
    let stats = text(&out.stdout);
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().eq(["cert_sign", "1"])),
        "{stats}"
    );
    let out = child.terminate();
    let banner = text(&out.stdout);
    assert!(
        banner.contains(&format!(
            "ssh CA       ECDSA P-256 {}",
            ca_key.fingerprint(HashAlg::Sha256)
        )),
        "{banner}"
    );
    assert!(
        banner.contains("ssh certs      valid 1m (cert_sign)"),
        "{banner}"
    );
    let log = text(&out.stderr);
    assert!(log.contains("issued an SSH certificate"), "{log}");
    assert!(log.contains("principal=alice"), "{log}");
    assert!(!log.contains(&token), "the log shows the token");
}

/// An app token for the demo app of the edge running on `state_dir`: signed
/// with its kept key, for its kept aud, as its own login would mint it.
fn mint_for_state_dir(state_dir: &Path) -> String {
    // An edge on a copy of the state dir shares its keys and auds.
    let copy = tempfile::tempdir().unwrap();
    access_edge::copy_secrets(state_dir, copy.path()).unwrap();
    std::fs::copy(state_dir.join("auds.json"), copy.path().join("auds.json")).unwrap();
    let edge = access_edge::Edge::spawn(options(access_edge::Config::demo(), copy.path())).unwrap();
    edge.mint_app_token(
        APP,
        "alice@example.com",
        std::time::Duration::from_secs(600),
    )
}

#[test]
fn without_a_ca_the_banner_says_how_to_make_one_and_help_names_the_commands() {
    let dir = seeded_state_dir();
    let state = dir.path().to_str().unwrap();
    let mut child = Running::spawn(
        Command::new(edge_bin())
            .args(["--state-dir", state])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_for_file(&dir.path().join("profile.json"), &mut child);
    let banner = text(&child.terminate().stdout);
    assert!(
        banner.contains(&format!(
            "ssh CA       none (access-edge ca generate --app ssh.demo.test --state-dir {state})"
        )),
        "{banner}"
    );
    assert!(
        banner.contains("ssh certs      valid 3m (cert_sign)"),
        "{banner}"
    );

    let out = Command::new(edge_bin()).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    for needle in [
        "ca generate",
        "--cert-validity",
        "cert_sign",
        "TrustedUserCAKeys",
        "ssh-ca/",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
    let out = Command::new(edge_bin())
        .args(["--cert-validity", "0s", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_fails(&out, 2, "--cert-validity: must be at least 1s");
}
