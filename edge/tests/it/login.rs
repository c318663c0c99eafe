//! The browser login: the login page and the login service (docs/protocol.md 4.4).

use std::time::{Duration, Instant};

use access_edge::Endpoint;
use reqwest::StatusCode;

use crate::common::*;

/// Collects the sealed result for `key` (it must be ready).
async fn collect(t: &TestEdge, key: &LoginKey) -> serde_json::Value {
    let response = t.poll(key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let service_key = header(&response, "service-public-key").unwrap().to_owned();
    assert_eq!(service_key.len(), 44, "base64url with padding");
    key.open(&response.text().await.unwrap(), &service_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_on_the_page_delivers_both_tokens_sealed_to_the_client() {
    let t = TestEdge::demo().await;
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, true, false);

    let page = t.get(&url, &[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "x-access-edge-page"), Some("login"));
    assert!(
        header(&page, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in to ssh.demo.test"));
    assert!(html.contains("demo.cloudflareaccess.com"));
    assert!(html.contains("value=\"alice@example.com\""));
    assert!(html.contains("action=\"/cdn-cgi/access/cli\""));
    assert!(
        !html.contains("http://") && !html.contains("src="),
        "no external assets"
    );

    let done = t
        .submit(
            &url,
            &[("email", "alice@example.com"), ("action", "approve")],
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(header(&done, "x-access-edge-page"), Some("approved"));
    assert_eq!(
        header(&done, "x-access-edge-email"),
        Some("alice@example.com")
    );
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("You can close this window")
    );

    let result = collect(&t, &key).await;
    let app = claims(result["app_token"].as_str().unwrap());
    assert_eq!(app["aud"], serde_json::json!([t.aud()]));
    assert_eq!(app["email"], "alice@example.com");
    assert_eq!(app["type"], "app");
    assert_eq!(app["iss"], format!("https://{AUTH}"));
    assert_eq!(app["country"], "XX");
    assert_eq!(app["sub"].as_str().unwrap().len(), 36);
    assert!(
        app["identity_nonce"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert_eq!(
        app["exp"].as_u64().unwrap() - app["iat"].as_u64().unwrap(),
        86400
    );
    assert_eq!(app["nbf"], app["iat"]);
    let org = claims(result["org_token"].as_str().unwrap());
    assert_eq!(org["aud"], serde_json::json!([AUTH]));
    assert_eq!(org["type"], "org");
    assert_eq!(org["sub"], app["sub"]);

    // the app token passes the token check
    let check = t
        .get(
            &format!("https://{APP}/?cloudflared_token_check=true"),
            &[("cf-access-token", result["app_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(check.status(), StatusCode::OK);

    // delivered once
    let again = t.poll(&key).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    // the page looked at above, and the one whose form was posted
    assert_eq!(t.edge.count(Endpoint::LoginPage), 2);
    assert_eq!(t.edge.count(Endpoint::LoginSubmit), 1);
    assert_eq!(t.edge.count(Endpoint::TransferPoll), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_identity_wins_and_the_key_may_come_percent_encoded() {
    let t = TestEdge::demo().await;
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, false, true);
    let done = t
        .submit(
            &url,
            &[
                ("email", "alice@example.com"),
                ("email_typed", " zoe@example.com "),
                ("action", "approve"),
            ],
        )
        .await;
    assert_eq!(
        header(&done, "x-access-edge-email"),
        Some("zoe@example.com")
    );
    assert!(
        done.text().await.unwrap().contains("window.close()"),
        "close_interstitial"
    );

    let encoded = key.public.replace('=', "%3D");
    let response = t
        .get(&format!("https://{LOGIN}/transfer/{encoded}"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let service_key = header(&response, "service-public-key").unwrap().to_owned();
    let result = key.open(&response.text().await.unwrap(), &service_key);
    assert_eq!(
        claims(result["app_token"].as_str().unwrap())["email"],
        "zoe@example.com"
    );
    assert!(
        result.get("org_token").is_none(),
        "no send_org_token, no org token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_is_held_then_answered_not_yet() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_millis(400));
    let key = LoginKey::new();
    let started = Instant::now();
    let response = t.poll(&key).await;
    let held = started.elapsed();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(held >= Duration::from_millis(400), "held {held:?}");
    assert!(held < Duration::from_secs(5), "held {held:?}");
    assert!(response.text().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_poll_answers_as_soon_as_the_login_completes() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_secs(30));
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, true, false);
    let started = Instant::now();
    let (response, ()) = tokio::join!(t.poll(&key), async {
        wait_until(Duration::from_secs(10), "the poll is held", || {
            t.edge.count(Endpoint::TransferPoll) == 1
        })
        .await;
        let done = t
            .submit(
                &url,
                &[("email", "alice@example.com"), ("action", "approve")],
            )
            .await;
        assert_eq!(done.status(), StatusCode::OK);
    });
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!response.text().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approve_answers_the_page_with_the_outcome() {
    let t = TestEdge::start_with(access_edge::Config::demo(), |o| {
        o.auto_approve = Some("alice@example.com".into())
    })
    .await;
    let key = LoginKey::new();
    let page = t
        .get(&login_url(APP, &t.aud(), &key, true, false), &[])
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "x-access-edge-page"), Some("approved"));
    let result = collect(&t, &key).await;
    assert_eq!(
        claims(result["app_token"].as_str().unwrap())["email"],
        "alice@example.com"
    );

    // an identity outside the policy is refused even when auto-approved
    t.edge.set_auto_approve(Some("mallory@evil.test".into()));
    let key = LoginKey::new();
    let page = t
        .get(&login_url(APP, &t.aud(), &key, true, false), &[])
        .await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    t.edge.set_poll_hold(Duration::from_millis(100));
    assert_eq!(t.poll(&key).await.status(), StatusCode::NOT_FOUND);

    t.edge.set_auto_approve(None);
    let page = t
        .get(
            &login_url(APP, &t.aud(), &LoginKey::new(), true, false),
            &[],
        )
        .await;
    assert_eq!(header(&page, "x-access-edge-page"), Some("login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_outside_the_policy_gets_a_clear_page_and_nothing_is_delivered() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_millis(100));
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, true, false);
    let page = t
        .submit(
            &url,
            &[("email_typed", "bob@other.test"), ("action", "approve")],
        )
        .await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&page, "x-access-edge-page"), Some("forbidden"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<b>bob@other.test</b> is not allowed to reach <b>ssh.demo.test</b>"),
        "{html}"
    );
    assert_eq!(t.poll(&key).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_refuses_the_login_and_delivers_nothing() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_millis(100));
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, true, false);
    let page = t
        .submit(&url, &[("email", "alice@example.com"), ("action", "deny")])
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "x-access-edge-page"), Some("denied"));
    assert!(page.text().await.unwrap().contains("Login refused"));
    assert_eq!(t.poll(&key).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_links_get_a_clear_400_page() {
    let t = TestEdge::demo().await;
    let key = LoginKey::new();
    let good = login_url(APP, &t.aud(), &key, true, false);
    let cases = [
        (
            good.replace(
                &format!("token={}", key.public.replace('=', "%3D")),
                "token=abc",
            ),
            "not a public key",
        ),
        (
            good.replace(&format!("&token={}", key.public.replace('=', "%3D")), ""),
            "is missing",
        ),
        (
            good.replace(&format!("aud={}", t.aud()), "aud=0000"),
            "does not name the application",
        ),
    ];
    for (url, needle) in cases {
        assert_ne!(url, good);
        let page = t.get(&url, &[]).await;
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(header(&page, "x-access-edge-page"), Some("bad-request"));
        assert!(page.text().await.unwrap().contains(needle), "{needle}");
    }
    // a form with no usable email
    let page = t.submit(&good, &[("action", "approve")]).await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    // a transfer key that is not a key
    let response = t.get(&format!("https://{LOGIN}/transfer/nope"), &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_service_fails_and_stalls_on_request() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_millis(50));
    let key = LoginKey::new();
    t.edge.fail_login_service(2, 503);
    for _ in 0..2 {
        let response = t.poll(&key).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(t.poll(&key).await.status(), StatusCode::NOT_FOUND);

    // a stalled poll never answers: the client's own timeout ends it
    t.edge.stall_login_service(1);
    let url = format!("https://{LOGIN}/transfer/{}", key.public);
    let started = Instant::now();
    let err = t
        .client
        .get(&url)
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // and the next poll is normal again, even with a result waiting
    t.edge.set_poll_hold(Duration::from_secs(5));
    t.submit(
        &login_url(APP, &t.aud(), &key, true, false),
        &[("email", "alice@example.com"), ("action", "approve")],
    )
    .await;
    assert_eq!(t.poll(&key).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_can_change_at_run_time() {
    let t = TestEdge::demo().await;
    t.edge
        .set_token_lifetimes(Duration::from_secs(60), Duration::from_secs(120));
    let key = LoginKey::new();
    t.submit(
        &login_url(APP, &t.aud(), &key, true, false),
        &[("email", "alice@example.com"), ("action", "approve")],
    )
    .await;
    let result = collect(&t, &key).await;
    let app = claims(result["app_token"].as_str().unwrap());
    let org = claims(result["org_token"].as_str().unwrap());
    assert_eq!(
        app["exp"].as_u64().unwrap() - app["iat"].as_u64().unwrap(),
        60
    );
    assert_eq!(
        org["exp"].as_u64().unwrap() - org["iat"].as_u64().unwrap(),
        120
    );
}

/// A forged post: what it is, its fields, its `Cookie` header.
type Forged<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_form_served_for_a_login_can_approve_it_and_only_once() {
    let t = TestEdge::demo().await;
    t.edge.set_poll_hold(Duration::from_millis(50));
    let key = LoginKey::new();
    let url = login_url(APP, &t.aud(), &key, true, false);
    let approve = [("email", "alice@example.com"), ("action", "approve")];
    let form = t.open_form(&url).await;
    assert!(form.set_cookie.contains("HttpOnly"), "{}", form.set_cookie);
    assert!(form.set_cookie.contains("Secure"));
    assert!(form.set_cookie.contains("SameSite=Strict"));
    let nonce_field = ("nonce", form.nonce.as_str());
    let with_nonce = [approve[0], approve[1], nonce_field];
    let other = t
        .open_form(&login_url(APP, &t.aud(), &LoginKey::new(), true, false))
        .await;

    let forged: [Forged<'_>; 5] = [
        // a cross-site post: no nonce, no cookie
        ("no nonce nor cookie", approve.to_vec(), None),
        ("the field without the cookie", with_nonce.to_vec(), None),
        (
            "the cookie without the field",
            approve.to_vec(),
            Some(&form.cookie),
        ),
        (
            "a wrong nonce",
            vec![
                approve[0],
                approve[1],
                ("nonce", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ],
            Some(&form.cookie),
        ),
        (
            "another login's nonce and cookie",
            vec![approve[0], approve[1], ("nonce", other.nonce.as_str())],
            Some(&other.cookie),
        ),
    ];
    for (what, fields, cookie) in forged {
        let page = t.post_form(&url, &fields, cookie).await;
        assert_eq!(page.status(), StatusCode::FORBIDDEN, "{what}");
        assert_eq!(
            header(&page, "x-access-edge-page"),
            Some("stale-form"),
            "{what}"
        );
        assert!(
            page.text()
                .await
                .unwrap()
                .contains("This login form was not accepted"),
            "{what}"
        );
        assert_eq!(
            t.poll(&key).await.status(),
            StatusCode::NOT_FOUND,
            "{what}: no token"
        );
    }

    // the form as served approves once
    let page = t.post_form(&url, &with_nonce, Some(&form.cookie)).await;
    assert_eq!(header(&page, "x-access-edge-page"), Some("approved"));
    assert_eq!(t.poll(&key).await.status(), StatusCode::OK);
    // and not twice
    let page = t.post_form(&url, &with_nonce, Some(&form.cookie)).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN, "a replayed form");
    assert_eq!(t.poll(&key).await.status(), StatusCode::NOT_FOUND);
}
