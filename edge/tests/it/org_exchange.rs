//! The org-token exchange (docs/protocol.md 4.3), hop by hop.

use std::time::{Duration, SystemTime};

use access_edge::Endpoint;
use reqwest::StatusCode;

use crate::common::*;

const TWO_APPS: &str = r#"
identities = ["alice@example.com"]
[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
[[apps]]
hostname = "web.demo.test"
allow = ["alice@example.com"]
"#;

/// Hop 1: the app host's 302, its login URL and the session cookie.
async fn start_session(t: &TestEdge, host: &str) -> (String, String) {
    let response = t.head(&format!("https://{host}/docs?page=2"), &[]).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let login = header(&response, "location").unwrap().to_owned();
    let cookie = header(&response, "set-cookie").unwrap();
    let nonce = cookie
        .strip_prefix("CF_AppSession=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    (login, nonce)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_token_signs_in_to_a_second_app_without_a_browser() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let org = t
        .edge
        .mint_org_token("alice@example.com", Duration::from_secs(3600));
    let (login, nonce) = start_session(&t, "web.demo.test").await;
    assert!(login.starts_with(&format!(
        "https://{AUTH}/cdn-cgi/access/login/web.demo.test?"
    )));

    // hop 2: the auth domain, with the org token
    let response = t
        .head(&login, &[("cookie", &format!("CF_Authorization={org}"))])
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let authorized = url::Url::parse(header(&response, "location").unwrap()).unwrap();
    assert_eq!(authorized.host_str(), Some("web.demo.test"));
    assert_eq!(authorized.path(), "/cdn-cgi/access/authorized");
    let query: std::collections::HashMap<_, _> = authorized.query_pairs().into_owned().collect();
    assert!(!query["code"].is_empty());
    assert_eq!(query["redirect_url"], "/docs?page=2");

    // hop 3: the app host, with the session cookie
    let response = t
        .head(
            authorized.as_str(),
            &[("cookie", &format!("CF_AppSession={nonce}"))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(header(&response, "location"), Some("/docs?page=2"));
    let cookie = header(&response, "set-cookie").unwrap().to_owned();
    let token = cookie
        .strip_prefix("CF_Authorization=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    assert!(
        cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=None"),
        "{cookie}"
    );
    let expires = cookie
        .split("; ")
        .find_map(|part| part.strip_prefix("Expires="))
        .expect("the cookie carries Expires");
    let expires = httpdate::parse_http_date(expires).unwrap();
    assert!(
        expires > SystemTime::now() + Duration::from_secs(86000),
        "{cookie}"
    );
    assert!(
        expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            == claims(&token)["exp"].as_u64().unwrap()
    );

    let app = claims(&token);
    assert_eq!(
        app["aud"],
        serde_json::json!([t.edge.app_aud("web.demo.test").unwrap()])
    );
    assert_eq!(app["email"], "alice@example.com");
    assert_eq!(app["type"], "app");
    let check = t
        .get(
            "https://web.demo.test/?cloudflared_token_check=true",
            &[("cf-access-token", &token)],
        )
        .await;
    assert_eq!(check.status(), StatusCode::OK);
    // the browser form of the same token: the cookie
    let body: serde_json::Value = json(
        t.get(
            "https://web.demo.test/x",
            &[("cookie", &format!("CF_Authorization={token}"))],
        )
        .await,
    )
    .await;
    assert_eq!(body["email"], "alice@example.com");

    // the code is one-time
    let again = t
        .head(
            authorized.as_str(),
            &[("cookie", &format!("CF_AppSession={nonce}"))],
        )
        .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert_eq!(t.edge.count(Endpoint::OrgLogin), 1);
    assert_eq!(t.edge.count(Endpoint::Authorized), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_session_cookie_the_exchange_fails() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let org = t
        .edge
        .mint_org_token("alice@example.com", Duration::from_secs(3600));
    let (login, nonce) = start_session(&t, "web.demo.test").await;
    let response = t
        .head(&login, &[("cookie", &format!("CF_Authorization={org}"))])
        .await;
    let authorized = header(&response, "location").unwrap().to_owned();

    let response = t.get(&authorized, &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(header(&response, "set-cookie").is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("CF_AppSession cookie is missing")
    );

    // a wrong cookie fails too (the code is spent either way: start again)
    let (login, _) = start_session(&t, "web.demo.test").await;
    let response = t
        .head(&login, &[("cookie", &format!("CF_Authorization={org}"))])
        .await;
    let authorized = header(&response, "location").unwrap().to_owned();
    let response = t
        .get(
            &authorized,
            &[("cookie", &format!("CF_AppSession={nonce}"))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(header(&response, "set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_org_token_the_auth_domain_shows_its_sign_in_page() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let (login, _) = start_session(&t, "web.demo.test").await;
    let expired = t.edge.mint_org_token("alice@example.com", Duration::ZERO);
    let app_token = t.edge.mint_app_token(
        "web.demo.test",
        "alice@example.com",
        Duration::from_secs(60),
    );
    for cookie in [
        None,
        Some(expired),
        Some(app_token),
        Some("garbage".to_owned()),
    ] {
        let headers: Vec<(&str, String)> = cookie
            .iter()
            .map(|c| ("cookie", format!("CF_Authorization={c}")))
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = t.get(&login, &headers).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-access-edge-page"), Some("sign-in"));
        // only the sign-in form's nonce: no session of any kind
        let cookies: Vec<&str> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert!(cookies[0].starts_with("CF_LoginNonce_"), "{cookies:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_token_outside_the_apps_policy_is_refused() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let org = t
        .edge
        .mint_org_token("bob@example.com", Duration::from_secs(3600));
    let (login, _) = start_session(&t, "web.demo.test").await;
    let response = t
        .get(&login, &[("cookie", &format!("CF_Authorization={org}"))])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("is not allowed to reach")
    );

    // a revoked org token is no session at all
    let org = t
        .edge
        .mint_org_token("alice@example.com", Duration::from_secs(3600));
    t.edge.revoke_user("alice@example.com");
    let (login, _) = start_session(&t, "web.demo.test").await;
    let response = t
        .get(&login, &[("cookie", &format!("CF_Authorization={org}"))])
        .await;
    assert_eq!(header(&response, "x-access-edge-page"), Some("sign-in"));
}

/// The sign-in page's nonce cookie (`name=value`) and field.
async fn sign_in_form(t: &TestEdge, login: &str) -> (String, String) {
    let page = t.get(login, &[]).await;
    assert_eq!(header(&page, "x-access-edge-page"), Some("sign-in"));
    let cookie = header(&page, "set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("data-access-edge=\"sign-in\""), "{html}");
    let marker = "name=\"nonce\" value=\"";
    let start = html.find(marker).expect("the form has a nonce") + marker.len();
    let nonce = html[start..][..html[start..].find('"').unwrap()].to_owned();
    (cookie, nonce)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_on_the_auth_domain_from_the_form_it_was_served() {
    let t = TestEdge::start(config(TWO_APPS)).await;
    let (login, session) = start_session(&t, "web.demo.test").await;

    // a post without the served form's nonce and cookie is refused: no session
    let forged = t
        .post_form(
            &login,
            &[("email", "alice@example.com"), ("action", "approve")],
            None,
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&forged, "x-access-edge-page"), Some("stale-form"));
    assert!(header(&forged, "set-cookie").is_none());

    // outside the app's policy: refused, no session
    let (cookie, nonce) = sign_in_form(&t, &login).await;
    let fields = [
        ("email_typed", "bob@example.com"),
        ("action", "approve"),
        ("nonce", nonce.as_str()),
    ];
    let refused = t.post_form(&login, &fields, Some(&cookie)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&refused, "x-access-edge-page"), Some("forbidden"));
    assert!(header(&refused, "set-cookie").is_none());

    // the served form, once: the org cookie and on to /authorized
    let (cookie, nonce) = sign_in_form(&t, &login).await;
    let fields = [
        ("email", "alice@example.com"),
        ("action", "approve"),
        ("nonce", nonce.as_str()),
    ];
    let approved = t.post_form(&login, &fields, Some(&cookie)).await;
    assert_eq!(approved.status(), StatusCode::FOUND);
    let org_cookie = header(&approved, "set-cookie").unwrap().to_owned();
    let org = org_cookie
        .strip_prefix("CF_Authorization=")
        .and_then(|c| c.split(';').next())
        .unwrap();
    assert_eq!(claims(org)["email"], "alice@example.com");
    assert_eq!(claims(org)["type"], "org");
    let authorized = header(&approved, "location").unwrap().to_owned();
    assert!(authorized.starts_with("https://web.demo.test/cdn-cgi/access/authorized?"));
    let again = t.post_form(&login, &fields, Some(&cookie)).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "a nonce works once");

    let response = t
        .head(
            &authorized,
            &[("cookie", &format!("CF_AppSession={session}"))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(header(&response, "location"), Some("/docs?page=2"));
    let app_cookie = header(&response, "set-cookie").unwrap();
    let app_token = app_cookie
        .strip_prefix("CF_Authorization=")
        .and_then(|c| c.split(';').next())
        .unwrap();
    assert_eq!(claims(app_token)["email"], "alice@example.com");
}
