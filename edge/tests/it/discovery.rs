//! App discovery (docs/protocol.md 2) and the JWKS.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;

use crate::common::*;

/// Verifies `jwt` against the JWKS the edge serves, as the official client
/// does (by `kid`), and returns its claims.
async fn verify_with_jwks(t: &TestEdge, jwt: &str) -> serde_json::Value {
    let jwks: JwkSet = json(
        t.get(&format!("https://{AUTH}/cdn-cgi/access/certs"), &[])
            .await,
    )
    .await;
    let kid = jsonwebtoken::decode_header(jwt)
        .unwrap()
        .kid
        .expect("a kid header");
    let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_jwt_verifies_against_the_jwks_and_has_exactly_the_claims() {
    let t = TestEdge::demo().await;
    let response = t
        .head(
            &format!("https://{APP}/some/path?x=1"),
            &[("cf-access-metadata-request", "true")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);

    let location = url::Url::parse(header(&response, "location").unwrap()).unwrap();
    assert_eq!(location.host_str(), Some(AUTH));
    assert_eq!(location.path(), format!("/cdn-cgi/access/login/{APP}"));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["kid"], t.aud());
    assert_eq!(query["redirect_url"], "/some/path?x=1");
    assert!(!query["meta"].is_empty());
    assert_eq!(header(&response, "cf-access-domain"), Some(APP));
    let cookie = header(&response, "set-cookie").unwrap();
    assert!(cookie.starts_with("CF_AppSession="), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=None"),
        "{cookie}"
    );

    let jwt = header(&response, "cf-access-metadata").expect("metadata header");
    let header_json: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header_json["alg"], "RS256");
    assert_eq!(header_json["typ"], "JWT");
    let claims = verify_with_jwks(&t, jwt).await;
    let iat = claims["iat"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && now - iat < 60);
    assert_eq!(
        claims,
        serde_json::json!({
            "type": "match",
            "hostname": APP,
            "auth_domain": AUTH,
            "aud": t.aud(),
            "app_hostname": APP,
            "iat": iat,
        })
    );
    assert_eq!(t.edge.count(access_edge::Endpoint::Discovery), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_app_names_the_host_asked_and_the_pattern() {
    let t = TestEdge::start(config(
        "[[apps]]\nhostname = \"*.apps.test\"\nallow = [\"*\"]\n",
    ))
    .await;
    // GET works as well as HEAD, and the host is lower-cased
    let response = t
        .get(
            "https://Web.Apps.test/",
            &[("cf-access-metadata-request", "true")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let jwt = header(&response, "cf-access-metadata").unwrap().to_owned();
    let claims = verify_with_jwks(&t, &jwt).await;
    assert_eq!(claims["hostname"], "web.apps.test");
    assert_eq!(claims["app_hostname"], "*.apps.test");
    assert_eq!(header(&response, "cf-access-domain"), Some("web.apps.test"));
    assert!(
        header(&response, "location")
            .unwrap()
            .contains("/cdn-cgi/access/login/web.apps.test?")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_get_the_same_302_without_metadata() {
    let t = TestEdge::demo().await;
    let response = t.get(&format!("https://{APP}/"), &[]).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(header(&response, "cf-access-metadata").is_none());
    assert!(
        header(&response, "location")
            .unwrap()
            .starts_with(&format!("https://{AUTH}/cdn-cgi/access/login/{APP}?kid="))
    );
    assert_eq!(header(&response, "cf-access-domain"), Some(APP));
    assert!(
        header(&response, "set-cookie")
            .unwrap()
            .starts_with("CF_AppSession=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_without_an_app_never_send_metadata() {
    let t = TestEdge::demo().await;
    for url in [
        format!("https://{AUTH}/"),
        format!("https://{AUTH}/cdn-cgi/access/certs"),
        format!("https://{LOGIN}/"),
    ] {
        let response = t
            .head(&url, &[("cf-access-metadata-request", "true")])
            .await;
        assert!(header(&response, "cf-access-metadata").is_none(), "{url}");
    }
    let response = t.get(&format!("https://{AUTH}/nothing/here"), &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_is_misdirected() {
    let t = TestEdge::demo().await;
    // reach the edge under a name it does not serve (the demo CA covers only
    // its own names, so trust is not the point here: skip verification)
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .resolve("other.test", t.edge.addr())
        .build()
        .unwrap();
    let response = client.get("https://other.test/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("no Access application at other.test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_holds_two_rsa_keys_and_their_certificates() {
    let t = TestEdge::demo().await;
    let jwks: serde_json::Value = json(
        t.get(&format!("https://{AUTH}/cdn-cgi/access/certs"), &[])
            .await,
    )
    .await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for key in keys {
        let fields: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);
        let kid = key["kid"].as_str().unwrap();
        assert_eq!(kid.len(), 64);
        assert!(
            kid.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["e"], "AQAB");
    }
    assert_ne!(keys[0]["kid"], keys[1]["kid"]);
    assert_eq!(jwks["public_cert"]["kid"], keys[0]["kid"]);
    assert!(
        jwks["public_cert"]["cert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let certs = jwks["public_certs"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1]["kid"], keys[1]["kid"]);
    assert_eq!(t.edge.count(access_edge::Endpoint::Jwks), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_previous_key_and_expiry_drops_it() {
    let t = TestEdge::demo().await;
    let url = format!("https://{AUTH}/cdn-cgi/access/certs");
    let kids = |jwks: &serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before: serde_json::Value = json(t.get(&url, &[]).await).await;
    let token = t.edge.mint_app_token(
        APP,
        "alice@example.com",
        std::time::Duration::from_secs(600),
    );
    let check = format!("https://{APP}/?cloudflared_token_check=true");

    t.edge.rotate_keys();
    let after: serde_json::Value = json(t.get(&url, &[]).await).await;
    let (old, new) = (kids(&before), kids(&after));
    assert_eq!(new.len(), 2);
    assert_eq!(new[1], old[0], "the current key became the previous one");
    assert!(!old.contains(&new[0]), "a fresh current key");
    assert_eq!(after["public_cert"]["kid"].as_str().unwrap(), new[0]);
    // a token signed before the rotation still passes
    let response = t.get(&check, &[("cf-access-token", &token)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    // and new metadata is signed with the new key
    let response = t
        .head(
            &format!("https://{APP}/"),
            &[("cf-access-metadata-request", "true")],
        )
        .await;
    let jwt = header(&response, "cf-access-metadata").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap(),
        new[0]
    );

    t.edge.expire_previous_key();
    let expired: serde_json::Value = json(t.get(&url, &[]).await).await;
    assert_eq!(kids(&expired), vec![new[0].clone()]);
    let response = t.get(&check, &[("cf-access-token", &token)]).await;
    assert_eq!(response.status(), StatusCode::FOUND, "its key is gone");
}
