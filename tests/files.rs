// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! The config dir holds exactly the official client's files: the same names,
//! modes and contents, so the two clients share one login.

mod common;

use common::*;

#[test]
fn the_config_dir_looks_like_cloudflareds() {
    let env = TestEnv::new();
    let token = env.login();
    assert_eq!(mode(&env.dir), 0o700);
    let aud = env.aud();
    assert_eq!(
        env.dir_entries(),
        [
            format!("{AUTH_DOMAIN}-jwks"),
            format!("{AUTH_DOMAIN}-org-token"),
            format!("{APP_HOST}-{aud}-token"),
            // cfaccess's own: the signed app metadata, checked again offline
            format!("{APP_HOST}-metadata"),
        ]
    );
    for name in env.dir_entries() {
        assert_eq!(mode(&env.dir.join(&name)), 0o600, "{name}");
    }
    // the token files hold the bare JWT, no newline
    assert_eq!(std::fs::read_to_string(env.token_file()).unwrap(), token);
    let org = std::fs::read_to_string(env.org_token_file()).unwrap();
    assert!(is_jwt(&org));
    assert_eq!(claims(&org)["type"], "org");
    assert_eq!(claims(&token)["type"], "app");
    assert_eq!(claims(&token)["iss"], format!("https://{AUTH_DOMAIN}"));
    // the key set is cached as served: a JWKS with the edge's RSA keys
    let jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.join(format!("{AUTH_DOMAIN}-jwks"))).unwrap(),
    )
    .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] == "RSA")
    );
}

#[test]
fn a_token_the_official_client_wrote_is_used_as_is() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.dir).unwrap();
    let token = env
        .edge
        .mint_app_token(APP_HOST, EMAIL, std::time::Duration::from_secs(600));
    std::fs::write(env.token_file(), &token).unwrap();
    let run = env.run(&["token", APP]);
    run.success();
    assert_eq!(run.stdout, token);
    let login = env.run(&["login", "--no-verbose", APP]);
    login.success();
    assert_eq!(login.stdout, token, "an accepted cached token is kept");
    assert_eq!(env.edge.count(Endpoint::LoginPage), 0);
}

#[test]
fn the_jwks_cache_is_reused_and_refreshed_after_a_key_rotation() {
    let env = TestEnv::new();
    env.login();
    assert_eq!(env.edge.count(Endpoint::Jwks), 1);
    env.login();
    assert_eq!(env.edge.count(Endpoint::Jwks), 1, "a fresh cache is used");

    // the edge rotates twice: the cached set knows neither signing key now
    env.edge.rotate_keys();
    env.edge.rotate_keys();
    let jwks = env.dir.join(format!("{AUTH_DOMAIN}-jwks"));
    let two_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&jwks)
        .unwrap()
        .set_modified(two_minutes_ago)
        .unwrap();
    env.login();
    assert_eq!(
        env.edge.count(Endpoint::Jwks),
        2,
        "refetched once after the failure"
    );
}
