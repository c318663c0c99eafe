//! The browser terminal (issue 14) in a real browser: headless Chromium
//! (tests/common/chromium.rs) signs in through the edge's login page and
//! uses the terminal page against a real sshd, reading the terminal's text
//! back from the page as assistive technology would.
//!
//! Skipped, with a note, where `/usr/bin/chromium` is missing.

mod common;

use std::time::Duration;

use common::chromium::{self, Chromium};
use common::*;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;

/// The demo edge with no auto-approve: a person signs in on the page.
fn edge() -> TestEnv {
    TestEnv::with(|o| o.auto_approve = None)
}

/// Opens the app in `browser` and signs in as `email` on the login page, the
/// way a person does: pick (or type) the identity, press the button.
fn sign_in(browser: &Chromium, email: &str) {
    browser.navigate(&format!("{APP}/"));
    browser.wait_until(
        Duration::from_secs(20),
        "the sign-in page",
        "document.querySelector('form[data-access-edge=\"sign-in\"]') !== null",
    );
    let email = serde_json::to_string(email).unwrap();
    browser.eval(&format!(
        "(() => {{
            const pick = [...document.querySelectorAll('input[name=email]')].find(i => i.value === {email});
            if (pick) {{ pick.checked = true; }} else {{ document.getElementById('email_typed').value = {email}; }}
            document.querySelector('button[name=action][value=approve]').click();
            return true;
        }})()"
    ));
}

#[test]
fn the_browser_signs_in_on_the_login_page_and_holds_the_access_cookie() {
    if !chromium::available("the_browser_signs_in_on_the_login_page") {
        return;
    }
    let env = edge();
    let browser = Chromium::for_edge(&env.edge, WIDTH, HEIGHT);
    browser.navigate(&format!("{APP}/"));
    let page = browser.wait_until(
        Duration::from_secs(20),
        "the sign-in page",
        "document.querySelector('form[data-access-edge=\"sign-in\"]') && location.href",
    );
    assert!(
        page.as_str().unwrap().starts_with(&format!(
            "https://{AUTH_DOMAIN}/cdn-cgi/access/login/{APP_HOST}?"
        )),
        "{page}"
    );
    assert!(
        browser.cookie(APP, "CF_Authorization").is_none(),
        "no session before signing in"
    );
    sign_in(&browser, EMAIL);
    browser.wait_until(
        Duration::from_secs(20),
        "the app after signing in",
        &format!(
            "location.href === '{APP}/' && document.readyState === 'complete' && \
             document.body.innerText.includes('{EMAIL}')"
        ),
    );
    let token = browser
        .cookie(APP, "CF_Authorization")
        .expect("the app's CF_Authorization cookie");
    let claims = claims(&token);
    assert_eq!(claims["email"], EMAIL);
    assert_eq!(claims["aud"], serde_json::json!([env.aud()]));
    let org = browser
        .cookie(&format!("https://{AUTH_DOMAIN}/"), "CF_Authorization")
        .expect("the team's org cookie");
    assert_eq!(common::claims(&org)["email"], EMAIL);
}

#[test]
fn the_spki_is_found_in_a_certificate() {
    use rcgen::PublicKeyData;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let spki = chromium::spki_of(cert.der()).unwrap();
    assert_eq!(spki, key.subject_public_key_info().as_slice());
}

/// Where the README's screenshots go.
fn images_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images")
}

/// The box of the element `selector` grown by `margin` CSS pixels, for a crop.
fn element_box(browser: &Chromium, selector: &str, margin: f64) -> (f64, f64, f64, f64) {
    let rect = browser.eval(&format!(
        "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); \
           return [r.x, r.y, r.width, r.height]; }})()",
        serde_json::to_string(selector).unwrap()
    ));
    let n = |i: usize| rect[i].as_f64().expect("a number");
    let (x, y) = ((n(0) - margin).max(0.0), (n(1) - margin).max(0.0));
    (x, y, n(2) + 2.0 * margin, n(3) + 2.0 * margin)
}

/// Writes the README's screenshots: `cargo test --test terminal screenshots -- --ignored`.
#[test]
#[ignore = "writes docs/images/*.png: run it to refresh the README's screenshots"]
fn screenshots() {
    if !chromium::available("screenshots") {
        return;
    }
    let env = edge();
    let browser = Chromium::for_edge(&env.edge, 900, 1000);
    // the light scheme, whatever the machine's
    browser.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "features": [{ "name": "prefers-color-scheme", "value": "light" }] }),
    );
    browser.navigate(&format!("{APP}/"));
    browser.wait_until(
        Duration::from_secs(20),
        "the sign-in page",
        "document.querySelector('form[data-access-edge=\"sign-in\"]') !== null",
    );
    let png = browser.screenshot(Some(element_box(&browser, "main", 24.0)));
    std::fs::create_dir_all(images_dir()).unwrap();
    std::fs::write(images_dir().join("login.png"), png).unwrap();
}
