//! The harness every test shares: an edge on 127.0.0.1:0 in a temp state dir
//! (seeded with keys made once per run), a client that reaches it through its
//! edge profile, and helpers for the login flow.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use access_edge::{Config, Edge, EdgeOptions};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use cfaccess::access::edge_profile::EdgeProfile;
use crypto_box::aead::{Aead, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use tempfile::TempDir;
use url::form_urlencoded;

pub const APP: &str = "ssh.demo.test";
pub const AUTH: &str = "demo.cloudflareaccess.com";
pub const LOGIN: &str = "login.cloudflareaccess.org";

/// The access-edge binary Cargo built for these tests.
pub fn edge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_access-edge"))
}

/// A state dir holding a CA and signing keys, made once: RSA key generation
/// is slow in debug builds, and every test would pay for it.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let edge = Edge::spawn(EdgeOptions {
                state_dir: Some(dir.path().to_owned()),
                ..EdgeOptions::demo()
            })
            .unwrap();
            edge.shutdown();
            dir
        })
        .path()
}

/// A fresh state dir with the template's secrets.
pub fn seeded_state_dir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    access_edge::copy_secrets(template(), dir.path()).unwrap();
    dir
}

/// Options for `config` in a fresh seeded state dir, with a short poll hold.
pub fn options(config: Config, state_dir: &Path) -> EdgeOptions {
    EdgeOptions {
        state_dir: Some(state_dir.to_owned()),
        poll_hold: Duration::from_secs(2),
        edge_binary: Some(edge_bin()),
        ..EdgeOptions::new(config)
    }
}

/// A running edge and a client pointed at it.
pub struct TestEdge {
    pub edge: Edge,
    pub client: reqwest::Client,
    /// Dropped after the edge: its state dir.
    _dir: TempDir,
}

impl TestEdge {
    /// The demo edge.
    pub async fn demo() -> TestEdge {
        Self::start(Config::demo()).await
    }

    /// An edge serving `config`.
    pub async fn start(config: Config) -> TestEdge {
        Self::start_with(config, |_| {}).await
    }

    /// An edge serving `config`, options adjusted by `tweak`.
    pub async fn start_with(config: Config, tweak: impl FnOnce(&mut EdgeOptions)) -> TestEdge {
        let dir = seeded_state_dir();
        let mut opts = options(config, dir.path());
        tweak(&mut opts);
        let edge = Edge::start(opts).await.unwrap();
        let profile = EdgeProfile::load(&edge.profile_path()).unwrap();
        let client = cfaccess::access::http::client(Some(&profile)).unwrap();
        TestEdge {
            edge,
            client,
            _dir: dir,
        }
    }

    pub fn aud(&self) -> String {
        self.edge.app_aud(APP).unwrap()
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    pub async fn head(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.head(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Opens the login page of `login_url` and posts its form with `fields`
    /// added, as a browser does: with the form's nonce field and cookie.
    pub async fn submit(&self, login_url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let form = self.open_form(login_url).await;
        let mut fields = fields.to_vec();
        fields.push(("nonce", &form.nonce));
        self.post_form(login_url, &fields, Some(&form.cookie)).await
    }

    /// Opens the login page and returns its form's nonce and cookie.
    pub async fn open_form(&self, login_url: &str) -> LoginForm {
        let page = self.get(login_url, &[]).await;
        assert_eq!(header(&page, "x-access-edge-page"), Some("login"));
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("CF_LoginNonce_"))
            .expect("the login page sets its nonce cookie")
            .to_owned();
        let html = page.text().await.unwrap();
        let marker = "name=\"nonce\" value=\"";
        let start = html.find(marker).expect("the form has a nonce") + marker.len();
        let nonce = html[start..][..html[start..].find('"').unwrap()].to_owned();
        LoginForm {
            nonce,
            cookie: cookie.split(';').next().unwrap().to_owned(),
            set_cookie: cookie,
        }
    }

    /// Posts the login form of `login_url` with `fields` added, and the
    /// `Cookie` header `cookie` if any (nothing else: a forged post).
    pub async fn post_form(
        &self,
        login_url: &str,
        fields: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let url = url::Url::parse(login_url).unwrap();
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(url.query_pairs());
        body.extend_pairs(fields.iter().copied());
        let mut action = url.clone();
        action.set_query(None);
        let mut request = self
            .client
            .post(action)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.body(body.finish()).send().await.unwrap()
    }

    /// One transfer poll for `client`.
    pub async fn poll(&self, client: &LoginKey) -> reqwest::Response {
        self.get(&format!("https://{LOGIN}/transfer/{}", client.public), &[])
            .await
    }
}

/// A login form as served: its nonce, and its cookie as `name=value` and
/// as set.
pub struct LoginForm {
    pub nonce: String,
    pub cookie: String,
    pub set_cookie: String,
}

/// A client's login keypair, as cfaccess and the official client make it.
pub struct LoginKey {
    pub secret: SecretKey,
    /// base64url with padding: 44 characters.
    pub public: String,
}

impl LoginKey {
    pub fn new() -> LoginKey {
        let secret = SecretKey::generate(&mut OsRng);
        let public = URL_SAFE.encode(secret.public_key().as_bytes());
        LoginKey { secret, public }
    }

    /// Opens a transfer body with the `service-public-key` header's key.
    pub fn open(&self, body: &str, service_public_key: &str) -> serde_json::Value {
        let raw = STANDARD.decode(body.trim()).unwrap();
        let sender = PublicKey::from_slice(&URL_SAFE.decode(service_public_key).unwrap()).unwrap();
        let opener = SalsaBox::new(&sender, &self.secret);
        let plain = opener
            .decrypt(crypto_box::Nonce::from_slice(&raw[..24]), &raw[24..])
            .unwrap();
        serde_json::from_slice(&plain).unwrap()
    }
}

/// The login URL a client builds (docs/protocol.md 4.4.2), keys in sorted order.
pub fn login_url(
    host: &str,
    aud: &str,
    key: &LoginKey,
    send_org_token: bool,
    close: bool,
) -> String {
    let redirect = format!(
        "https://{host}/?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("aud", aud)
            .append_pair("token", &key.public)
            .finish()
    );
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("aud", aud);
    if close {
        query.append_pair("close_interstitial", "true");
    }
    query.append_pair("edge_token_transfer", "true");
    query.append_pair("redirect_url", &redirect);
    if send_org_token {
        query.append_pair("send_org_token", "true");
    }
    query.append_pair("token", &key.public);
    format!("https://{host}/cdn-cgi/access/cli?{}", query.finish())
}

/// The claims of a JWT, read without verifying (as clients read them).
pub fn claims(jwt: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode_claims(jwt).unwrap()
}

/// A response header as text.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Waits until `condition` holds, failing the test after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A config parsed from TOML text.
pub fn config(text: &str) -> Config {
    Config::parse(text).unwrap()
}

/// A response body as JSON.
pub async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}
