//! The token check (docs/protocol.md 5), authenticated requests and service
//! tokens.

use std::time::Duration;

use access_edge::Endpoint;
use reqwest::StatusCode;

use crate::common::*;

const WITH_SERVICE_TOKENS: &str = r#"
[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
service_tokens = ["ci"]
[[apps]]
hostname = "db.demo.test"
allow = ["*@example.com"]
[[service_tokens]]
name = "ci"
client_id = "ci-id.access"
client_secret = "ci-secret"
[[service_tokens]]
name = "other"
client_id = "other-id.access"
client_secret = "other-secret"
"#;

fn is_login_redirect(response: &reqwest::Response) -> bool {
    response.status() == StatusCode::FOUND
        && url::Url::parse(header(response, "location").unwrap_or_default())
            .is_ok_and(|u| u.path().starts_with("/cdn-cgi/access/login"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_check_accepts_valid_tokens_only() {
    let t = TestEdge::start(config(WITH_SERVICE_TOKENS)).await;
    let check = format!("https://{APP}/?cloudflared_token_check=true");
    let hour = Duration::from_secs(3600);

    let good = t.edge.mint_app_token(APP, "alice@example.com", hour);
    let response = t.get(&check, &[("cf-access-token", &good)]).await;
    assert_eq!(response.status(), StatusCode::OK);

    let expired = t
        .edge
        .mint_app_token(APP, "alice@example.com", Duration::ZERO);
    let other_app = t
        .edge
        .mint_app_token("db.demo.test", "alice@example.com", hour);
    let org = t.edge.mint_org_token("alice@example.com", hour);
    for (what, token) in [
        ("missing", None),
        ("expired", Some(expired.as_str())),
        ("wrong aud", Some(other_app.as_str())),
        ("org token", Some(org.as_str())),
        ("garbage", Some("a.b.c")),
    ] {
        let headers: Vec<(&str, &str)> =
            token.map(|t| ("cf-access-token", t)).into_iter().collect();
        let response = t.get(&check, &headers).await;
        assert!(
            is_login_redirect(&response),
            "{what}: {}",
            response.status()
        );
    }

    // revoked: every token issued so far is refused, a later one is fine
    t.edge.revoke_user("alice@example.com");
    let response = t.get(&check, &[("cf-access-token", &good)]).await;
    assert!(is_login_redirect(&response), "revoked");
    let fresh = t.edge.mint_app_token(APP, "alice@example.com", hour);
    let response = t.get(&check, &[("cf-access-token", &fresh)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(t.edge.count(Endpoint::TokenCheck), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_requests_reach_the_demo_origin() {
    let t = TestEdge::demo().await;
    let token = t
        .edge
        .mint_app_token(APP, "alice@example.com", Duration::from_secs(60));
    let response = t
        .get(
            &format!("https://{APP}/a/b?c=d"),
            &[("cf-access-token", &token)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = json(response).await;
    assert_eq!(
        body,
        serde_json::json!({"email": "alice@example.com", "aud": t.aud(), "path": "/a/b"})
    );
    assert_eq!(t.edge.count(Endpoint::AppRequest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_are_let_through_or_refused_outright() {
    let t = TestEdge::start(config(WITH_SERVICE_TOKENS)).await;
    let url = format!("https://{APP}/x");
    let response = t
        .get(
            &url,
            &[
                ("Cf-Access-Client-Id", "ci-id.access"),
                ("Cf-Access-Client-Secret", "ci-secret"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = json(response).await;
    assert_eq!(
        body,
        serde_json::json!({"email": "", "aud": t.aud(), "path": "/x", "service_token": "ci"})
    );

    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Headers, &str); 4] = [
        (
            "bad secret",
            &[
                ("Cf-Access-Client-Id", "ci-id.access"),
                ("Cf-Access-Client-Secret", "nope"),
            ],
            "wrong client secret",
        ),
        (
            "unknown id",
            &[
                ("Cf-Access-Client-Id", "who.access"),
                ("Cf-Access-Client-Secret", "ci-secret"),
            ],
            "unknown service token",
        ),
        (
            "not allowed",
            &[
                ("Cf-Access-Client-Id", "other-id.access"),
                ("Cf-Access-Client-Secret", "other-secret"),
            ],
            "is not allowed to reach ssh.demo.test",
        ),
        (
            "half",
            &[("Cf-Access-Client-Id", "ci-id.access")],
            "needs both",
        ),
    ];
    for (what, headers, needle) in cases {
        let response = t.get(&url, headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(
            header(&response, "location").is_none(),
            "{what}: no login redirect"
        );
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{what}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{what}: one line");
    }
    // the token is for this app only
    let response = t
        .get(
            "https://db.demo.test/",
            &[
                ("Cf-Access-Client-Id", "ci-id.access"),
                ("Cf-Access-Client-Secret", "ci-secret"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// The official client sends a cached token back with its header
/// re-serialized by go-jose (keys sorted, no spaces): it must still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_go_jose_reserialized_header_still_verifies() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let t = TestEdge::demo().await;
    let token = t
        .edge
        .mint_app_token(APP, "alice@example.com", Duration::from_secs(60));
    let (header_b64, rest) = token.split_once('.').unwrap();
    let header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
    let resorted = URL_SAFE_NO_PAD.encode(serde_json::to_string(&header).unwrap());
    assert_eq!(
        resorted, header_b64,
        "the header is already in go-jose's form"
    );
    let response = t
        .get(
            &format!("https://{APP}/?cloudflared_token_check=true"),
            &[("cf-access-token", &format!("{resorted}.{rest}"))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}
