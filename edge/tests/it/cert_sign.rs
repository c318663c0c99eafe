//! Per-app SSH CAs and `cert_sign` (docs/protocol.md 7): the certificate a
//! client gets, each refusal, and each fault a client must catch.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use access_edge::{CaKeyType, CertSignFault, Config, Endpoint};
use reqwest::StatusCode;
use ssh_key::certificate::{CertType, Certificate};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey};

use crate::common::*;

const ISSUER: &str = "https://demo.cloudflareaccess.com";
const CERT_SIGN: &str = "https://demo.cloudflareaccess.com/cdn-cgi/access/cert_sign";
const P256: Algorithm = Algorithm::Ecdsa {
    curve: EcdsaCurve::NistP256,
};
const HOUR: Duration = Duration::from_secs(3600);

const TWO_APPS: &str = r#"
team = "demo"
[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
[[apps]]
hostname = "*.hosts.test"
allow = ["*@example.com"]
"#;

/// A user's key, as a client makes it, and its `.pub` line (newline
/// included, no comment: what the official client sends).
fn user_key(algorithm: Algorithm) -> (PrivateKey, String) {
    let key = PrivateKey::random(&mut OsRng, algorithm).unwrap();
    let line = format!("{}\n", key.public_key().to_openssh().unwrap());
    (key, line)
}

fn body(public_key: &str, jwt: &str) -> String {
    serde_json::json!({"public_key": public_key, "jwt": jwt, "issuer": ISSUER}).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POSTs `body` as the official client does; the status and the JSON body.
async fn post(t: &TestEdge, body: impl Into<reqwest::Body>) -> (StatusCode, serde_json::Value) {
    let response = t
        .client
        .post(CERT_SIGN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text:?}"));
    (status, json)
}

/// Checks an error answer: `{"status":N,"message":…}` with HTTP status N.
fn assert_error(answer: &(StatusCode, serde_json::Value), status: u16, needle: &str) {
    let (http, json) = answer;
    assert_eq!(http.as_u16(), status, "{json}");
    assert_eq!(json["status"], status, "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert_eq!(json.as_object().map(|o| o.len()), Some(2), "{json}");
}

/// What `ssh-keygen -L` (the real OpenSSH) says about a certificate line.
fn ssh_keygen_l(certificate: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id-cert.pub");
    std::fs::write(&path, format!("{certificate}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks for a certificate for `key_line` and checks every field of it
/// against what the real service issues; returns it.
async fn good_certificate(t: &TestEdge, ca_line: &str, key_line: &str, token: &str) -> Certificate {
    let before = now();
    let (status, json) = post(t, body(key_line, token)).await;
    let after = now();
    assert_eq!(status, StatusCode::OK, "{json}");
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["certificate", "expires_at", "id"]);

    let line = json["certificate"].as_str().unwrap();
    let sent = PublicKey::from_openssh(key_line.trim()).unwrap();
    assert_eq!(
        line.split(' ').next(),
        Some(sent.algorithm().to_certificate_type().as_str())
    );
    assert_eq!(line.split(' ').count(), 2, "no comment: {line}");
    let cert = Certificate::from_openssh(line).unwrap();
    assert_eq!(cert.cert_type(), CertType::User);
    assert_eq!(cert.public_key(), sent.key_data(), "the key sent");
    assert_eq!(cert.valid_principals(), ["alice"]);
    assert_eq!(cert.valid_before() - cert.valid_after(), 180);
    assert!(
        (before - 10..=after - 10).contains(&cert.valid_after()),
        "valid after {} for a request at {before}..{after}",
        cert.valid_after()
    );
    let id = json["id"].as_str().unwrap();
    assert_eq!(cert.key_id(), id);
    assert_eq!(id.len(), 32);
    assert!(
        id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{id}"
    );
    assert_ne!(cert.serial(), 0);
    let extensions: Vec<&str> = cert.extensions().keys().map(String::as_str).collect();
    assert_eq!(
        extensions,
        [
            "permit-agent-forwarding",
            "permit-port-forwarding",
            "permit-pty",
            "permit-user-rc"
        ]
    );
    assert!(cert.extensions().values().all(String::is_empty));
    assert!(cert.critical_options().is_empty());
    assert_eq!(cert.comment(), "");
    let ca = PublicKey::from_openssh(ca_line).unwrap();
    assert_eq!(cert.signature_key(), ca.key_data());
    cert.validate_at(now(), [&ca.fingerprint(HashAlg::Sha256)])
        .expect("signed by the app's CA and valid now");
    let expires_at = humantime::parse_rfc3339(json["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at, cert.valid_before_time());
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
    cert
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_what_the_real_service_issues() {
    let t = TestEdge::demo().await;
    let ca_line = t.edge.generate_ca(APP, CaKeyType::Ecdsa).unwrap();
    assert_eq!(t.edge.ca_public_key(APP).as_deref(), Some(ca_line.as_str()));
    assert!(ca_line.starts_with("ecdsa-sha2-nistp256 AAAA"), "{ca_line}");
    assert!(ca_line.ends_with(" access-edge CA for ssh.demo.test"));
    let token = t.edge.mint_app_token(APP, "alice@example.com", HOUR);

    for algorithm in [P256, Algorithm::Ed25519] {
        let (_, key_line) = user_key(algorithm.clone());
        let cert = good_certificate(&t, &ca_line, &key_line, &token).await;
        let shown = ssh_keygen_l(&cert.to_openssh().unwrap());
        for needle in [
            format!("Type: {} user certificate", algorithm.to_certificate_type()),
            format!("Key ID: \"{}\"", cert.key_id()),
            format!("Serial: {}", cert.serial()),
            "Signing CA: ECDSA SHA256:".to_owned(),
            "Principals: \n                alice".to_owned(),
            "Critical Options: (none)".to_owned(),
            "permit-port-forwarding".to_owned(),
            "permit-user-rc".to_owned(),
        ] {
            assert!(shown.contains(&needle), "{needle:?} not in:\n{shown}");
        }
        assert!(!shown.contains("X11"), "{shown}");
    }

    // RSA keys too, as ssh-keygen makes them
    let dir = tempfile::tempdir().unwrap();
    let rsa = dir.path().join("id_rsa");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&rsa)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rsa_line = std::fs::read_to_string(rsa.with_extension("pub")).unwrap();
    let cert = good_certificate(&t, &ca_line, &rsa_line, &token).await;
    assert!(
        ssh_keygen_l(&cert.to_openssh().unwrap())
            .contains("ssh-rsa-cert-v01@openssh.com user certificate")
    );

    // a shorter validity from now on
    t.edge.set_cert_validity(Duration::from_secs(35));
    let (_, key_line) = user_key(P256);
    let (status, json) = post(&t, body(&key_line, &token)).await;
    assert_eq!(status, StatusCode::OK);
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.valid_before() - cert.valid_after(), 35);
    assert_eq!(t.edge.count(Endpoint::CertSign), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_has_its_own_ca_of_either_type() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let first = t.edge.generate_ca(APP, CaKeyType::Ecdsa).unwrap();
    // a host the wildcard protects names the wildcard app
    let wildcard = t
        .edge
        .generate_ca("a.hosts.test", CaKeyType::Ed25519)
        .unwrap();
    assert_ne!(first, wildcard);
    assert!(wildcard.starts_with("ssh-ed25519 AAAA"));
    assert!(wildcard.ends_with(" access-edge CA for *.hosts.test"));
    assert_eq!(
        t.edge
            .generate_ca("*.hosts.test", CaKeyType::Ed25519)
            .unwrap(),
        wildcard
    );
    assert_eq!(
        t.edge.ca_public_key("b.hosts.test").as_deref(),
        Some(wildcard.as_str())
    );
    let err = t.edge.generate_ca(APP, CaKeyType::Ed25519).unwrap_err();
    assert!(err.is_usage());
    assert!(
        err.to_string()
            .contains("already has an ECDSA P-256 SSH CA"),
        "{err}"
    );
    let err = t
        .edge
        .generate_ca("nope.test", CaKeyType::Ecdsa)
        .unwrap_err();
    assert!(
        err.to_string().contains("no Access application nope.test"),
        "{err}"
    );
    assert_eq!(t.edge.ca_public_key("nope.test"), None);

    // each app's token gets a certificate from that app's CA
    let token = t
        .edge
        .mint_app_token("x.hosts.test", "alice@example.com", HOUR);
    let (_, key_line) = user_key(P256);
    let cert = good_certificate(&t, &wildcard, &key_line, &token).await;
    assert!(ssh_keygen_l(&cert.to_openssh().unwrap()).contains("Signing CA: ED25519 SHA256:"));
    let token = t.edge.mint_app_token(APP, "alice@example.com", HOUR);
    good_certificate(&t, &first, &key_line, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_made_by_the_command_while_the_edge_runs_is_used_at_once() {
    let t = TestEdge::demo().await;
    assert_eq!(t.edge.ca_public_key(APP), None);
    let token = t.edge.mint_app_token(APP, "alice@example.com", HOUR);
    let (_, key_line) = user_key(P256);
    let answer = post(&t, body(&key_line, &token)).await;
    assert_error(
        &answer,
        404,
        &format!(
            "has no SSH CA: create one with `access-edge ca generate --app ssh.demo.test --state-dir {}`",
            t.edge.state_dir().display()
        ),
    );

    let out = Command::new(edge_bin())
        .args(["ca", "generate", "--state-dir"])
        .arg(t.edge.state_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca_line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        t.edge.ca_public_key(APP),
        Some(ca_line.trim_end().to_owned())
    );
    good_certificate(&t, ca_line.trim_end(), &key_line, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_do_with_the_status_in_the_json() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    t.edge.generate_ca(APP, CaKeyType::Ecdsa).unwrap();
    let token = t.edge.mint_app_token(APP, "alice@example.com", HOUR);
    let (_, key_line) = user_key(P256);

    // tokens to log in again for: 401
    let expired = t
        .edge
        .mint_app_token(APP, "bob@example.com", Duration::ZERO);
    let org = t.edge.mint_org_token("alice@example.com", HOUR);
    for (jwt, needle) in [
        ("garbage", "not valid"),
        ("a.b.c", "not valid"),
        (expired.as_str(), "expired"),
        (org.as_str(), "no Access application"),
    ] {
        assert_error(&post(&t, body(&key_line, jwt)).await, 401, needle);
    }
    let mut forged: Vec<String> = token.split('.').map(str::to_owned).collect();
    forged[2] = forged[2].chars().rev().collect();
    assert_error(
        &post(&t, body(&key_line, &forged.join("."))).await,
        401,
        "not valid",
    );
    let carol = t.edge.mint_app_token(APP, "carol@example.com", HOUR);
    t.edge.revoke_user("carol@example.com");
    assert_error(&post(&t, body(&key_line, &carol)).await, 401, "revoked");

    // requests that never work as sent: 400
    let wrong_issuer = serde_json::json!({
        "public_key": key_line, "jwt": token, "issuer": "https://other.cloudflareaccess.com"
    });
    assert_error(
        &post(&t, wrong_issuer.to_string()).await,
        400,
        "is not the token's issuer",
    );
    assert_error(&post(&t, "{\"public_key\":").await, 400, "not JSON");
    assert_error(&post(&t, "").await, 400, "not JSON");
    let no_jwt = serde_json::json!({"public_key": key_line, "issuer": ISSUER});
    assert_error(&post(&t, no_jwt.to_string()).await, 400, "no \"jwt\"");
    let numbers = serde_json::json!({"public_key": 1, "jwt": token, "issuer": ISSUER});
    assert_error(
        &post(&t, numbers.to_string()).await,
        400,
        "no \"public_key\"",
    );
    for bad_key in [
        "",
        "ecdsa-sha2-nistp256 AAAAnotakey\n",
        "hello\n",
        // a certificate is not a key to sign
        "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t\n",
    ] {
        let answer = post(&t, body(bad_key, &token)).await;
        assert_error(&answer, 400, "public_key");
    }

    // an app without a CA: 404, saying how to make one
    let other = t
        .edge
        .mint_app_token("x.hosts.test", "alice@example.com", HOUR);
    assert_error(
        &post(&t, body(&key_line, &other)).await,
        404,
        "access-edge ca generate --app '*.hosts.test' --state-dir",
    );

    // only POST
    let response = t.get(CERT_SIGN, &[]).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("POST"));
    let json: serde_json::Value = json(response).await;
    assert_eq!(json["status"], 405);

    // the content type is not looked at
    let response = t
        .client
        .post(CERT_SIGN)
        .header("content-type", "text/plain")
        .body(body(&key_line, &token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(t.edge.count(Endpoint::CertSign), 18);
    assert_eq!(t.edge.count(Endpoint::Unknown), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_answer_what_a_client_must_refuse_until_cleared() {
    let t = TestEdge::demo().await;
    let ca_line = t.edge.generate_ca(APP, CaKeyType::Ecdsa).unwrap();
    let ca = PublicKey::from_openssh(&ca_line).unwrap();
    let token = t.edge.mint_app_token(APP, "alice@example.com", HOUR);
    let (key, key_line) = user_key(P256);
    let request = body(&key_line, &token);

    t.edge.cert_sign_fault(Some(CertSignFault::Error {
        status: 503,
        message: "try later".into(),
    }));
    for _ in 0..2 {
        assert_error(&post(&t, request.clone()).await, 503, "try later");
    }
    // whatever the request
    assert_error(&post(&t, "junk").await, 503, "try later");

    t.edge.cert_sign_fault(Some(CertSignFault::OtherKey));
    let (status, json) = post(&t, request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_ne!(cert.public_key(), key.public_key().key_data());
    assert_eq!(cert.algorithm(), P256, "a key of the same type");
    assert_eq!(cert.cert_type(), CertType::User);
    cert.validate_at(now(), [&ca.fingerprint(HashAlg::Sha256)])
        .unwrap();

    t.edge.cert_sign_fault(Some(CertSignFault::Garbage));
    let response = t
        .client
        .post(CERT_SIGN)
        .body(request.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "{text}"
    );

    t.edge.cert_sign_fault(Some(CertSignFault::BadCertificate));
    let (status, json) = post(&t, request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let line = json["certificate"].as_str().unwrap();
    assert!(
        line.starts_with("ecdsa-sha2-nistp256-cert-v01@openssh.com "),
        "{line}"
    );
    assert!(Certificate::from_openssh(line).is_err(), "{line}");
    assert_eq!(json["id"].as_str().map(str::len), Some(32));
    assert!(json["expires_at"].is_string());

    t.edge.cert_sign_fault(Some(CertSignFault::HostCertificate));
    let (status, json) = post(&t, request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.cert_type(), CertType::Host);
    assert_eq!(cert.public_key(), key.public_key().key_data());
    assert!(ssh_keygen_l(json["certificate"].as_str().unwrap()).contains("host certificate"));

    t.edge.cert_sign_fault(Some(CertSignFault::Expired));
    let (status, json) = post(&t, request.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.cert_type(), CertType::User);
    assert_eq!(cert.public_key(), key.public_key().key_data());
    assert!(cert.valid_before() < now(), "validity already ended");
    assert!(
        cert.validate_at(now(), [&ca.fingerprint(HashAlg::Sha256)])
            .is_err()
    );
    let expires_at = humantime::parse_rfc3339(json["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at, cert.valid_before_time());

    // a refused request is refused, fault or not
    assert_error(&post(&t, body(&key_line, "a.b.c")).await, 401, "not valid");

    t.edge.cert_sign_fault(None);
    good_certificate(&t, &ca_line, &key_line, &token).await;
}

#[test]
fn the_validity_comes_from_the_config() {
    let dir = seeded_state_dir();
    let mut config = Config::demo();
    config.ssh_cert_validity = Duration::from_secs(600);
    let edge = access_edge::Edge::spawn(options(config, dir.path())).unwrap();
    edge.generate_ca(APP, CaKeyType::Ed25519).unwrap();
    let profile = cfaccess::access::edge_profile::EdgeProfile::load(&edge.profile_path()).unwrap();
    let client = cfaccess::access::http::client(Some(&profile)).unwrap();
    let token = edge.mint_app_token(APP, "alice@example.com", HOUR);
    let (_, key_line) = user_key(Algorithm::Ed25519);
    let json: serde_json::Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let response = client
                .post(CERT_SIGN)
                .body(body(&key_line, &token))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            serde_json::from_str(&response.text().await.unwrap()).unwrap()
        });
    let cert = Certificate::from_openssh(json["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.valid_before() - cert.valid_after(), 600);
}
