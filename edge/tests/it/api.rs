//! The Cloudflare API at `api.cloudflare.com` (docs/protocol.md 11), over
//! real TLS through the edge profile as a script reaches it: apps listed per
//! account and zone, an app's SSH CA made, read, listed and removed (the same
//! CA `ca generate` makes and `cert_sign` signs with), the credentials and
//! scopes refused, and the faults a client test injects.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use access_edge::{ApiFault, Config, Edge, Endpoint};
use cfaccess::access::edge_profile::EdgeProfile;
use reqwest::StatusCode;
use serde_json::Value;
use ssh_key::certificate::Certificate;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};

use crate::common::*;
use crate::process::{Running, wait_for_file};

const BASE: &str = "https://api.cloudflare.com/client/v4";
const ZONE: &str = "aaaabbbbccccddddeeeeffff00001111";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// A request's status and JSON body.
async fn call(
    edge: &TestEdge,
    method: reqwest::Method,
    path: &str,
    auth: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = edge.client.request(method, format!("{BASE}{path}"));
    for (name, value) in auth {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// The one error of a failed answer, checked to be an envelope.
fn error_of(body: &Value) -> (u64, String) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["result"], Value::Null, "{body}");
    assert_eq!(body["messages"], serde_json::json!([]), "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    (
        errors[0]["code"].as_u64().unwrap(),
        errors[0]["message"].as_str().unwrap().to_owned(),
    )
}

/// The result of a successful answer, checked to be an envelope.
fn result_of(status: StatusCode, body: &Value) -> Value {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["errors"], serde_json::json!([]), "{body}");
    body["result"].clone()
}

const FIVE_APPS: &str = r#"
team = "demo"
account_id = "0123456789ABCDEF0123456789abcdef"
[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
[[apps]]
hostname = "db.demo.test"
name = "Database"
[[apps]]
hostname = "*.web.demo.test"
[[apps]]
hostname = "z1.zone.test"
zone_id = "AAAABBBBCCCCDDDDEEEEFFFF00001111"
[[apps]]
hostname = "z2.zone.test"
zone_id = "aaaabbbbccccddddeeeeffff00001111"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_listed_per_account_and_zone_in_pages() {
    let edge = TestEdge::start(config(FIVE_APPS)).await;
    assert_eq!(edge.edge.account_id(), ACCOUNT);
    let token = edge.edge.api_token().expect("a generated token");
    let (name, value) = bearer(&token);
    let auth = [(name, value.as_str())];
    let get = reqwest::Method::GET;

    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/accounts/{ACCOUNT}/access/apps"),
        &auth,
    )
    .await;
    let apps = result_of(status, &body);
    let apps = apps.as_array().unwrap();
    assert_eq!(apps.len(), 3, "only the account-level apps: {body}");
    for (app, (host, name)) in apps.iter().zip([
        ("ssh.demo.test", "ssh.demo.test"),
        ("db.demo.test", "Database"),
        ("*.web.demo.test", "*.web.demo.test"),
    ]) {
        assert_eq!(app["domain"], host);
        assert_eq!(app["name"], name);
        assert_eq!(app["type"], "self_hosted");
        assert_eq!(app["aud"], edge.edge.app_aud(host).unwrap());
        assert_eq!(app["id"], edge.edge.app_id(host).unwrap());
        uuid::Uuid::parse_str(app["id"].as_str().unwrap()).unwrap();
    }
    assert_eq!(
        body["result_info"],
        serde_json::json!({"page": 1, "per_page": 25, "count": 3, "total_count": 3, "total_pages": 1})
    );

    // pages
    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/accounts/{ACCOUNT}/access/apps?per_page=2&page=2"),
        &auth,
    )
    .await;
    let page = result_of(status, &body);
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["domain"], "*.web.demo.test");
    assert_eq!(
        body["result_info"],
        serde_json::json!({"page": 2, "per_page": 2, "count": 1, "total_count": 3, "total_pages": 2})
    );
    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/accounts/{ACCOUNT}/access/apps?page=0"),
        &auth,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).1.contains("page"));

    // the zone's apps, under the zone only (its id in any case)
    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/zones/{ZONE}/access/apps"),
        &auth,
    )
    .await;
    let zone: Vec<String> = result_of(status, &body)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["domain"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(zone, ["z1.zone.test", "z2.zone.test"]);
    let z1 = edge.edge.app_id("z1.zone.test").unwrap();
    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/accounts/{ACCOUNT}/access/apps/{z1}/ca"),
        &auth,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a zone app is not in the account scope"
    );
    assert_eq!(error_of(&body).0, 12045);
    let (status, body) = call(
        &edge,
        get.clone(),
        &format!("/zones/{}/access/apps/{z1}/ca", ZONE.to_uppercase()),
        &auth,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no CA yet");
    assert_eq!(error_of(&body).0, 12046);

    // another account or zone: 403
    for path in [
        "/accounts/ffffffffffffffffffffffffffffffff/access/apps".to_owned(),
        "/zones/ffffffffffffffffffffffffffffffff/access/apps".to_owned(),
    ] {
        let (status, body) = call(&edge, get.clone(), &path, &auth).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(error_of(&body), (10000, "Authentication error".to_owned()));
    }
    // no token, a bad one: 401
    let apps_path = format!("/accounts/{ACCOUNT}/access/apps");
    for auth in [vec![], vec![("authorization", "Bearer not-the-token")]] {
        let (status, body) = call(&edge, get.clone(), &apps_path, &auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_of(&body), (10000, "Authentication error".to_owned()));
    }
    // an unknown path, an unknown app, a wrong method
    let (status, body) = call(&edge, get.clone(), "/accounts/x/access/groups", &auth).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&body),
        (
            7003,
            "Could not route to /client/v4/accounts/x/access/groups, perhaps your object identifier is invalid?"
                .to_owned()
        )
    );
    let (status, body) = call(
        &edge,
        reqwest::Method::POST,
        &format!("/accounts/{ACCOUNT}/access/apps/00000000-0000-0000-0000-000000000000/ca"),
        &auth,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body).0, 12045);
    let response = edge
        .client
        .delete(format!("{BASE}{apps_path}"))
        .header(name, &value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow"), Some("GET"));
    assert_eq!(error_of(&json(response).await).0, 7001);

    assert_eq!(edge.edge.count(Endpoint::Api), 13);
    assert_eq!(edge.edge.count(Endpoint::Unknown), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_makes_the_ca_that_ca_generate_and_cert_sign_use_and_delete_removes_it() {
    let edge = TestEdge::demo().await;
    let account = edge.edge.account_id().to_owned();
    let token = edge.edge.api_token().unwrap();
    let (name, value) = bearer(&token);
    let auth = [(name, value.as_str())];
    let id = edge.edge.app_id(APP).unwrap();
    let ca_path = format!("/accounts/{account}/access/apps/{id}/ca");
    let all_path = format!("/accounts/{account}/access/apps/ca");

    let (status, body) = call(&edge, reqwest::Method::GET, &all_path, &auth).await;
    assert_eq!(result_of(status, &body), serde_json::json!([]));
    let (status, body) = call(&edge, reqwest::Method::GET, &ca_path, &auth).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).1.contains("has no SSH CA"), "{body}");

    // POST makes it: the very CA `ca generate` reads
    let (status, body) = call(&edge, reqwest::Method::POST, &ca_path, &auth).await;
    let ca = result_of(status, &body);
    let public_key = ca["public_key"].as_str().unwrap().to_owned();
    assert_eq!(Some(public_key.clone()), edge.edge.ca_public_key(APP));
    assert_eq!(ca["aud"], edge.aud());
    let ca_id = ca["id"].as_str().unwrap().to_owned();
    assert_eq!(ca_id.len(), 48);
    assert!(ca_id.chars().all(|c| c.is_ascii_hexdigit()));
    let key = PublicKey::from_openssh(&public_key).unwrap();
    assert!(matches!(key.algorithm(), Algorithm::Ecdsa { .. }));
    assert_eq!(
        edge.edge
            .generate_ca(APP, access_edge::CaKeyType::Ecdsa)
            .unwrap(),
        public_key
    );
    // again: the same CA, 200
    let (status, body) = call(&edge, reqwest::Method::POST, &ca_path, &auth).await;
    assert_eq!(result_of(status, &body), ca);
    let (status, body) = call(&edge, reqwest::Method::GET, &ca_path, &auth).await;
    assert_eq!(result_of(status, &body), ca);
    let (status, body) = call(&edge, reqwest::Method::GET, &all_path, &auth).await;
    assert_eq!(result_of(status, &body), serde_json::json!([ca]));

    // cert_sign signs with the key the API showed
    let (status, cert) = cert_sign(&edge).await;
    assert_eq!(status, StatusCode::OK, "{cert}");
    let cert = Certificate::from_openssh(cert["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert.signature_key(), key.key_data());
    cert.validate([&key.fingerprint(HashAlg::Sha256)]).unwrap();

    // DELETE removes it: cert_sign then answers as for an app without CA
    let (status, body) = call(&edge, reqwest::Method::DELETE, &ca_path, &auth).await;
    assert_eq!(result_of(status, &body), serde_json::json!({ "id": ca_id }));
    assert_eq!(edge.edge.ca_public_key(APP), None);
    let (status, body) = call(&edge, reqwest::Method::GET, &ca_path, &auth).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(&edge, reqwest::Method::DELETE, &ca_path, &auth).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = cert_sign(&edge).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"].as_str().unwrap().contains("has no SSH CA"));
    let pub_file = edge.edge.state_dir().join("ssh-ca/ssh.demo.test.pub");
    assert!(!pub_file.exists());

    // a new POST makes a new CA
    let (status, body) = call(&edge, reqwest::Method::POST, &ca_path, &auth).await;
    let fresh = result_of(status, &body);
    assert_ne!(fresh["public_key"], ca["public_key"]);
    assert_ne!(fresh["id"], ca["id"]);
    assert!(pub_file.exists());
}

/// `cert_sign` for a fresh user key, with a fresh app token of the demo app.
async fn cert_sign(edge: &TestEdge) -> (StatusCode, Value) {
    let jwt = edge
        .edge
        .mint_app_token(APP, "alice@example.com", Duration::from_secs(600));
    let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let request = serde_json::json!({
        "public_key": user.public_key().to_openssh().unwrap(),
        "jwt": jwt,
        "issuer": format!("https://{AUTH}"),
    });
    let response = edge
        .client
        .post(format!("https://{AUTH}/cdn-cgi/access/cert_sign"))
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), json(response).await)
}

const CREDENTIALS: &str = r#"
team = "demo"
[[apps]]
hostname = "ssh.demo.test"
[[api_tokens]]
name = "reader"
token = "read-only-token"
permission = "read"
[[api_tokens]]
name = "old"
token = "expired-token"
permission = "edit"
expires = "2001-02-03T04:05:06Z"
[[api_tokens]]
name = "deploy"
token = "edit-token"
permission = "edit"
expires = "2999-01-01T00:00:00Z"
[[api_keys]]
email = "admin@example.com"
key = "global-key"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_held_to_their_permission_and_expiry_and_legacy_keys_work() {
    let edge = TestEdge::start(config(CREDENTIALS)).await;
    let account = edge.edge.account_id().to_owned();
    let id = edge.edge.app_id(APP).unwrap();
    let ca_path = format!("/accounts/{account}/access/apps/{id}/ca");
    let apps_path = format!("/accounts/{account}/access/apps");
    // the profile names the first edit token that is configured; none is made
    assert_eq!(edge.edge.api_token().as_deref(), Some("expired-token"));
    let profile = EdgeProfile::load(&edge.edge.profile_path()).unwrap();
    let api = profile.api.unwrap();
    assert_eq!(
        (api.account_id.as_str(), api.token.as_str()),
        (account.as_str(), "expired-token")
    );
    // a token made by an earlier zero-config run (here: the template's) is
    // not accepted once the config names credentials
    let kept = std::fs::read_to_string(edge.edge.state_dir().join("api-token")).unwrap();
    let (name, value) = bearer(kept.trim());
    let (status, _) = call(&edge, reqwest::Method::GET, &apps_path, &[(name, &value)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let read = [("authorization", "Bearer read-only-token")];
    let (status, body) = call(&edge, reqwest::Method::GET, &apps_path, &read).await;
    assert_eq!(result_of(status, &body).as_array().unwrap().len(), 1);
    let (status, body) = call(&edge, reqwest::Method::POST, &ca_path, &read).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_of(&body), (10000, "Authentication error".to_owned()));
    assert_eq!(
        edge.edge.ca_public_key(APP),
        None,
        "a refused POST makes nothing"
    );

    let expired = [("authorization", "Bearer expired-token")];
    let (status, body) = call(&edge, reqwest::Method::GET, &apps_path, &expired).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&body).0, 10000);

    let legacy = [
        ("x-auth-email", "admin@example.com"),
        ("x-auth-key", "global-key"),
    ];
    let (status, body) = call(&edge, reqwest::Method::POST, &ca_path, &legacy).await;
    let ca = result_of(status, &body);
    assert_eq!(
        Some(ca["public_key"].as_str().unwrap().to_owned()),
        edge.edge.ca_public_key(APP)
    );
    let (status, body) = call(&edge, reqwest::Method::GET, &ca_path, &read).await;
    assert_eq!(result_of(status, &body), ca, "a read token reads the CA");
    let wrong = [
        ("x-auth-email", "admin@example.com"),
        ("x-auth-key", "other"),
    ];
    let (status, _) = call(&edge, reqwest::Method::GET, &apps_path, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let edit = [("authorization", "Bearer edit-token")];
    let (status, body) = call(&edge, reqwest::Method::DELETE, &ca_path, &edit).await;
    result_of(status, &body);
    assert_eq!(edge.edge.ca_public_key(APP), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_make_the_api_answer_garbage_an_error_page_or_nothing() {
    let edge = TestEdge::demo().await;
    let url = format!("{BASE}/accounts/{}/access/apps", edge.edge.account_id());
    let token = edge.edge.api_token().unwrap();
    let get = || edge.client.get(&url).bearer_auth(&token).send();

    edge.edge.set_api_fault(Some(ApiFault::Garbage));
    let response = get().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    edge.edge.set_api_fault(Some(ApiFault::Status(503)));
    let response = get().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("<html>"));

    edge.edge.set_api_fault(Some(ApiFault::Stall));
    let stalled = tokio::time::timeout(Duration::from_millis(500), get()).await;
    assert!(stalled.is_err(), "a stalled API answered");

    edge.edge.set_api_fault(None);
    let response = get().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json::<Value>(response).await["success"], true);
    assert_eq!(edge.edge.count(Endpoint::Api), 4);
}

#[test]
fn the_binary_prints_writes_and_keeps_its_account_and_token() {
    let dir = seeded_state_dir();
    // the token is made by this edge, not copied from the template
    std::fs::remove_file(dir.path().join("api-token")).unwrap();
    let state = dir.path().to_str().unwrap().to_owned();
    let mut child = Running::spawn(
        Command::new(edge_bin())
            .args(["--state-dir", &state])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let profile_path = dir.path().join("profile.json");
    wait_for_file(&profile_path, &mut child);
    let account = std::fs::read_to_string(dir.path().join("account-id")).unwrap();
    let account = account.trim().to_owned();
    assert_eq!(account.len(), 32);
    let token_file = dir.path().join("api-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 40);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&profile_path), 0o600, "the profile holds the token");
    let profile = EdgeProfile::load(&profile_path).unwrap();
    let api = profile.api.clone().expect("the profile names the API");
    assert_eq!(
        (api.account_id.as_str(), api.token.as_str()),
        (account.as_str(), token.as_str())
    );
    assert!(profile.hosts.contains_key("api.cloudflare.com"));

    // the CLI's api fault, then a normal answer again
    let fault = |args: &[&str]| {
        let out = Command::new(edge_bin())
            .args(["fault", "api"])
            .args(args)
            .args(["--state-dir", &state])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(fault(&["status", "502"]).contains("answers 502"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = cfaccess::access::http::client(Some(&profile)).unwrap();
    let url = format!("{BASE}/accounts/{account}/access/apps");
    let status = |client: &reqwest::Client| {
        runtime.block_on(async {
            let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        })
    };
    assert_eq!(status(&client).0, StatusCode::BAD_GATEWAY);
    fault(&["off"]);
    let (code, body) = status(&client);
    assert_eq!(code, StatusCode::OK, "{body}");
    let out = Command::new(edge_bin())
        .args(["fault", "api", "status", "--state-dir", &state])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "status needs its N");

    let out = child.terminate();
    let banner = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "API            https://api.cloudflare.com/client/v4".to_owned(),
        format!("  account id   {account}"),
        format!("  token        {token} (may edit)"),
        format!("export CLOUDFLARE_ACCOUNT_ID={account}\n"),
        format!("export CLOUDFLARE_API_TOKEN={token}\n"),
    ] {
        assert!(
            banner.contains(&needle),
            "banner lacks {needle:?}:\n{banner}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&token),
        "the log shows the token"
    );

    // a restart on the state dir is the same account, token and apps
    let app_id = {
        let edge = Edge::spawn(options(Config::demo(), dir.path())).unwrap();
        assert_eq!(edge.account_id(), account);
        assert_eq!(edge.api_token().as_deref(), Some(token.as_str()));
        edge.app_id(APP).unwrap()
    };
    let again = Edge::spawn(options(Config::demo(), dir.path())).unwrap();
    assert_eq!(again.app_id(APP).unwrap(), app_id);
    assert_eq!(again.account_id(), account);
}
