//! `access-edge fault …` against a running `access-edge`: each fault set
//! from the command line shows in what a client gets, and `list` and
//! `clear` say and undo what is in force.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::hardening::Served;
use crate::ws::*;

fn fault(edge: &Served, args: &[&str]) -> Output {
    Command::new(edge_bin())
        .arg("fault")
        .args(args)
        .arg("--state-dir")
        .arg(edge.state_dir())
        .output()
        .unwrap()
}

/// Runs `access-edge fault ARGS` and returns its stdout; it must succeed.
fn set(edge: &Served, args: &[&str]) -> String {
    let out = fault(edge, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fault {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// An app token, through the auto-approving login page and the sealed
/// transfer, as a client gets one.
async fn log_in(client: &reqwest::Client, aud: &str) -> String {
    let key = LoginKey::new();
    let page = client
        .get(login_url(APP, aud, &key, false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&page, "x-access-edge-page"), Some("approved"));
    let poll = client
        .get(format!("https://{LOGIN}/transfer/{}", key.public))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), StatusCode::OK);
    let service_key = header(&poll, "service-public-key").unwrap().to_owned();
    let result = key.open(&poll.text().await.unwrap(), &service_key);
    result["app_token"].as_str().unwrap().to_owned()
}

fn aud(edge: &Served) -> String {
    let auds = std::fs::read_to_string(edge.state_dir().join("auds.json")).unwrap();
    let auds: std::collections::BTreeMap<String, String> = serde_json::from_str(&auds).unwrap();
    auds[APP].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_set_from_the_command_line_change_what_clients_get() {
    let (origin_addr, origin_task) = origin(echo).await;
    let origin_arg = origin_addr.to_string();
    let edge = Served::start(&[
        "--origin",
        &origin_arg,
        "--auto-approve",
        "alice@example.com",
        "--poll-hold",
        "1s",
    ]);
    let client = cfaccess::access::http::client(Some(&edge.profile)).unwrap();
    let token = log_in(&client, &aud(&edge)).await;
    assert_eq!(set(&edge, &["list"]).trim(), "no faults");

    // the login service: fail twice with 502, then normal (404: not yet)
    set(
        &edge,
        &["login-service", "fail", "--status", "502", "--count", "2"],
    );
    let poll = format!("https://{LOGIN}/transfer/{}", LoginKey::new().public);
    for _ in 0..2 {
        let status = client.get(&poll).send().await.unwrap().status();
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        client.get(&poll).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // stall: the poll never answers, so the client's own timeout ends it
    set(&edge, &["login-service", "stall"]);
    let err = client
        .get(&poll)
        .timeout(Duration::from_millis(1500))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    set(&edge, &["login-service", "ok"]);
    assert_eq!(
        client.get(&poll).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // the origin refuses: 502 to an authorised upgrade
    set(&edge, &["origin", "refuse"]);
    let auth = [("cf-access-token", token.as_str())];
    let Err(refused) = upgrade_with(&client, APP, &auth).await else {
        panic!("a websocket while the origin refuses");
    };
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    set(&edge, &["origin", "ok"]);

    // the handshake is answered late, then the session is cut after 5 bytes
    set(&edge, &["handshake-delay", "700ms"]);
    set(&edge, &["cut-after", "5"]);
    let listed = set(&edge, &["list"]);
    assert!(listed.contains("handshake-delay: 700ms"), "{listed}");
    assert!(listed.contains("cut-after: 5 bytes"), "{listed}");
    let started = Instant::now();
    let Ok(mut ws) = upgrade_with(&client, APP, &auth).await else {
        panic!("no websocket");
    };
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    ws.tx.binary(b"0123456789", 1024).await.unwrap();
    let received = receive_all(&mut ws.rx).await;
    assert_eq!(received.data, b"01234");
    assert_eq!(received.close, None, "cut, no close frame");
    let _ = ws.tx.0.shutdown().await;
    let _ = origin_task.await;

    // cert_sign answers the error asked for
    set(
        &edge,
        &[
            "cert-sign",
            "error",
            "--status",
            "418",
            "--message",
            "CA offline",
        ],
    );
    let answer = client
        .post(format!("https://{AUTH}/cdn-cgi/access/cert_sign"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 418);
    assert!(answer.text().await.unwrap().contains("CA offline"));

    // app metadata carries a stale iat
    set(&edge, &["metadata", "stale-iat"]);
    let discovery = client
        .head(format!("https://{APP}/"))
        .header("cf-access-metadata-request", "true")
        .send()
        .await
        .unwrap();
    let jwt = header(&discovery, "cf-access-metadata").unwrap();
    let iat = claims(jwt)["iat"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - iat > 24 * 3600, "iat {iat} is not stale");

    // every Date header 5 minutes behind (what `cfaccess doctor` reads)
    assert!(set(&edge, &["date-skew", "-5m"]).contains("-300s"));
    let answer = client
        .get(format!("https://{AUTH}/cdn-cgi/access/certs"))
        .send()
        .await
        .unwrap();
    let date = httpdate::parse_http_date(header(&answer, "date").unwrap()).unwrap();
    let behind = std::time::SystemTime::now()
        .duration_since(date)
        .unwrap()
        .as_secs();
    assert!((298..=302).contains(&behind), "{behind} s behind");

    let listed = set(&edge, &["list"]);
    assert!(listed.contains("cert-sign: error 418"), "{listed}");
    assert!(listed.contains("metadata: stale-iat"), "{listed}");
    assert!(listed.contains("date-skew: -300s"), "{listed}");
    assert!(set(&edge, &["clear"]).contains("every fault cleared"));
    assert_eq!(set(&edge, &["list"]).trim(), "no faults");

    // mistakes are usage errors; no edge is a clear error
    let out = fault(&edge, &["metadata", "no-such-fault"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(edge_bin())
        .args(["fault", "list", "--state-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no access-edge is running"));
}
