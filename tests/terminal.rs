//! The browser terminal (issue 14) in a real browser: headless Chromium
//! (tests/common/chromium.rs) signs in through the edge's login page and
//! uses the terminal page against a real sshd, reading the terminal's text
//! back from the page as assistive technology would.
//!
//! Skipped, with a note, where `/usr/bin/chromium` is missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::chromium::{self, Chromium};
use common::sshd::{self, Sshd};
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
    // back on the app, which is the terminal page for the signed-in user
    browser.wait_until(
        Duration::from_secs(20),
        "the app after signing in",
        &format!(
            "location.href === '{APP}/' && document.readyState === 'complete' && \
             document.body.dataset.email === '{EMAIL}'"
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
fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images")
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
    let Some(world) = World::new("screenshots", |_| {}) else {
        return;
    };
    let browser = &world.browser;
    // the light scheme, whatever the machine's
    browser.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "features": [{ "name": "prefers-color-scheme", "value": "light" }] }),
    );
    browser.resize(900, 1000);
    browser.navigate(&format!("{APP}/"));
    browser.wait_until(
        Duration::from_secs(20),
        "the sign-in page",
        "document.querySelector('form[data-access-edge=\"sign-in\"]') !== null",
    );
    let png = browser.screenshot(Some(element_box(browser, "main", 24.0)));
    std::fs::create_dir_all(images_dir()).unwrap();
    std::fs::write(images_dir().join("login.png"), png).unwrap();

    browser.resize(860, 520);
    let (user, email) = me();
    world.open_as(&email);
    world.wait_state("open");
    world.wait_screen("the shell's prompt", |t| !t.trim().is_empty());
    world.type_line("whoami; uname -sr; stty size");
    world.wait_screen("the commands' output", |t| {
        t.lines().any(|l| l.trim() == user)
    });
    let png = browser.screenshot(None);
    std::fs::write(images_dir().join("terminal.png"), png).unwrap();
}

// --- the terminal ----------------------------------------------------------

/// The page's terminal text, row by row, as assistive technology reads it
/// (xterm.js's screen-reader tree; its DOM renderer's rows if there is none).
const SCREEN: &str = "(() => {
    const tree = document.querySelector('#terminal .xterm-accessibility-tree');
    const rows = tree && tree.children.length
        ? [...tree.children]
        : [...document.querySelectorAll('#terminal .xterm-rows > div')];
    return rows.map(r => r.textContent.replace(/\\u00a0/g, ' ').trimEnd()).join('\\n');
})()";

/// An edge whose demo app's origin is a real sshd trusting only the app's
/// CA, and a browser in front of it; `None` (skipped) without Chromium.
struct World {
    env: TestEnv,
    sshd: Option<Sshd>,
    port: u16,
    ca: String,
    browser: Chromium,
}

impl World {
    fn new(test: &str, change: impl FnOnce(&mut EdgeOptions)) -> Option<World> {
        if !chromium::available(test) {
            return None;
        }
        let port = sshd::free_port();
        let env = TestEnv::with(|o| {
            o.auto_approve = None;
            o.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
            change(o);
        });
        let ca = env
            .edge
            .generate_ca(APP_HOST, access_edge::CaKeyType::Ed25519)
            .expect("the app's CA");
        let browser = Chromium::for_edge(&env.edge, WIDTH, HEIGHT);
        let mut world = World {
            env,
            sshd: None,
            port,
            ca,
            browser,
        };
        world.start_sshd();
        Some(world)
    }

    /// (Re)starts the origin's sshd on the same port, with a new host key.
    fn start_sshd(&mut self) {
        self.sshd = None;
        let ca_file = self.env.tmp.path().join("trusted_ca");
        self.sshd = Some(Sshd::trusting_ca(self.port, &ca_file, &self.ca));
    }

    /// The terminal's text.
    fn screen(&self) -> String {
        self.browser
            .try_eval(SCREEN)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits until the terminal's text satisfies `cond`, and returns it.
    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.screen();
            if cond(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the terminal shows:\n{text}\nsshd: {}",
                self.sshd.as_ref().map(Sshd::log_text).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    /// Waits for the page's state (`open`, `ended`, `error`).
    fn wait_state(&self, state: &str) {
        self.browser.wait_until(
            Duration::from_secs(30),
            &format!("the terminal to be {state}"),
            &format!("document.body.dataset.state === '{state}'"),
        );
    }

    /// Opens the terminal signed in as `email`, and waits for the shell.
    fn open_as(&self, email: &str) {
        sign_in(&self.browser, email);
        self.browser.wait_until(
            Duration::from_secs(20),
            "the terminal page",
            &format!("location.href === '{APP}/' && document.getElementById('terminal') !== null"),
        );
    }

    /// Types a line into the terminal.
    fn type_line(&self, line: &str) {
        self.browser
            .eval("document.querySelector('#terminal textarea').focus(), true");
        self.browser.type_text(line);
        self.browser.press_enter();
    }

    /// The overlay's title and message, once it shows.
    fn overlay(&self) -> String {
        self.browser
            .wait_until(
                Duration::from_secs(10),
                "the end overlay",
                "!document.getElementById('overlay').hidden && \
                 document.getElementById('overlay').innerText",
            )
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The rows and columns of the page's terminal, from its DOM.
fn dom_rows(browser: &Chromium) -> u64 {
    browser
        .eval("document.querySelectorAll('#terminal .xterm-rows > div').length")
        .as_u64()
        .unwrap_or(0)
}

/// What the PTY says its size is (`stty size`: rows, columns). Each call's
/// answer carries its own marker, so an earlier answer still on the screen
/// cannot be taken for it.
fn stty_size(world: &World) -> (u64, u64) {
    static ASKED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let marker = format!(
        "size{}:",
        ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    world.type_line(&format!("echo {marker} $(stty size)"));
    let answer = |text: &str| {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(&marker)?;
            let mut parts = rest.split_whitespace().map(|p| p.parse::<u64>().ok());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Some(rows)), Some(Some(cols)), None) => Some((rows, cols)),
                _ => None,
            }
        })
    };
    let text = world.wait_screen("stty size", |t| answer(t).is_some());
    answer(&text).unwrap()
}

/// Asks the PTY its size until its rows are the page's: the resize message
/// and the window change it becomes reach the shell with no answer to wait
/// for, so the PTY's own word is the condition.
fn stty_size_once_rows_are(world: &World, rows: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = stty_size(world);
        if size.0 == rows || Instant::now() >= deadline {
            return size;
        }
    }
}

/// The Unix user the tests run as, and the identity that maps to it.
fn me() -> (String, String) {
    let user = sshd::current_user();
    let email = format!("{user}@example.com");
    (user, email)
}

#[test]
fn whoami_resize_and_exit_in_the_browser_terminal() {
    let Some(world) = World::new("whoami_resize_and_exit", |_| {}) else {
        return;
    };
    let (user, email) = me();
    world.open_as(&email);
    world.wait_state("open");
    world.wait_screen("the shell's prompt", |t| !t.trim().is_empty());

    world.type_line("whoami");
    world.wait_screen("whoami's answer", |t| t.lines().any(|l| l.trim() == user));

    let (rows, cols) = stty_size(&world);
    assert_eq!(
        rows,
        dom_rows(&world.browser),
        "the PTY has the page's rows"
    );
    world.browser.resize(WIDTH + 300, HEIGHT + 200);
    world.browser.wait_until(
        Duration::from_secs(10),
        "the terminal to grow",
        &format!("document.querySelectorAll('#terminal .xterm-rows > div').length > {rows}"),
    );
    let grown = dom_rows(&world.browser);
    let (bigger_rows, bigger_cols) = stty_size_once_rows_are(&world, grown);
    assert!(
        bigger_rows > rows && bigger_cols > cols,
        "stty size follows the window: {rows}x{cols} then {bigger_rows}x{bigger_cols}"
    );
    assert_eq!(bigger_rows, grown, "the PTY has the page's new rows");

    world.type_line("exit");
    world.wait_state("ended");
    let overlay = world.overlay();
    assert!(overlay.contains("exit status 0"), "{overlay}");
}

#[test]
fn a_user_outside_the_policy_is_refused_on_the_page() {
    let Some(world) = World::new("a_user_outside_the_policy", |_| {}) else {
        return;
    };
    sign_in(&world.browser, "mallory@elsewhere.test");
    let text = world.browser.wait_until(
        Duration::from_secs(20),
        "the refusal",
        "document.body && document.body.innerText.includes('is not allowed to reach') && document.body.innerText",
    );
    assert!(
        text.as_str().unwrap().contains("mallory@elsewhere.test"),
        "{text}"
    );
    assert!(world.browser.cookie(APP, "CF_Authorization").is_none());
    // and the terminal is not reachable without signing in
    world.browser.navigate(&format!("{APP}/"));
    let href = world.browser.eval("location.href");
    assert!(
        href.as_str()
            .unwrap()
            .starts_with(&format!("https://{AUTH_DOMAIN}/")),
        "{href}"
    );
}

#[test]
fn a_user_without_a_unix_account_gets_the_clear_page() {
    let Some(world) = World::new("a_user_without_a_unix_account", |_| {}) else {
        return;
    };
    let out = std::process::Command::new("id")
        .arg("jdoe")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "this test needs no Unix user jdoe here"
    );
    world.open_as("jdoe@example.com");
    world.wait_state("error");
    let overlay = world.overlay();
    assert!(overlay.contains("no user jdoe on the server"), "{overlay}");
}

#[test]
fn a_changed_host_key_of_the_origin_is_refused() {
    let Some(mut world) = World::new("a_changed_host_key", |_| {}) else {
        return;
    };
    let (user, email) = me();
    world.open_as(&email);
    world.wait_state("open");
    world.type_line("whoami");
    world.wait_screen("whoami's answer", |t| t.lines().any(|l| l.trim() == user));

    // the same origin address, another host key
    world.start_sshd();
    world.browser.navigate(&format!("{APP}/"));
    world.wait_state("error");
    let overlay = world.overlay();
    assert!(overlay.to_lowercase().contains("host key"), "{overlay}");
    assert!(
        !world
            .sshd
            .as_ref()
            .unwrap()
            .log_text()
            .contains("Accepted publickey"),
        "the edge must not log in to a host whose key changed"
    );
}

// --- the benchmark's driver ---------------------------------------------------

/// How many times `c` shows in the terminal's rendered rows (the DOM
/// renderer's, drawn each frame; the screen-reader tree is debounced).
const COUNT_FN: &str = "window.__count = (c) => \
    [...document.querySelectorAll('#terminal .xterm-rows > div')] \
        .map(r => r.textContent).join('').split(c).length - 1; true";

/// The keystroke-to-echo time of the browser terminal, for bench/bench.py:
/// each key is sent over the DevTools protocol (`Input.dispatchKeyEvent`) and
/// timed in the page from its keydown event until the shell's echo of it is
/// in the terminal's DOM (through the websocket, the edge, SSH and the
/// origin's PTY and back). Prints
/// `BENCH_JSON {"samples_s": […]}`. Needs the edge of the benchmarks:
/// `CFACCESS_BENCH_PROFILE` (its profile), `CFACCESS_BENCH_EMAIL` (who signs
/// in) and optionally `CFACCESS_BENCH_KEYS` (default 200).
#[test]
#[ignore = "a benchmark: bench/bench.py runs it against its own edge"]
fn keystroke_to_echo() {
    let (Some(profile), Some(email)) = (
        std::env::var_os("CFACCESS_BENCH_PROFILE"),
        std::env::var("CFACCESS_BENCH_EMAIL").ok(),
    ) else {
        eprintln!("skipping keystroke_to_echo: run by bench/bench.py (CFACCESS_BENCH_PROFILE)");
        return;
    };
    if !chromium::available("keystroke_to_echo") {
        return;
    }
    let keys: usize = std::env::var("CFACCESS_BENCH_KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(200);
    let browser = Chromium::for_profile(Path::new(&profile), WIDTH, HEIGHT);
    sign_in(&browser, &email);
    browser.wait_until(
        Duration::from_secs(30),
        "the terminal to open",
        "document.body.dataset.state === 'open' && \
         document.querySelector('#terminal .xterm-rows').textContent.trim() !== ''",
    );
    browser.eval(COUNT_FN);
    browser.eval("document.querySelector('#terminal textarea').focus(), true");
    let mut samples = Vec::with_capacity(keys);
    const BATCH: usize = 40;
    for i in 0..keys {
        if i % BATCH == 0 {
            // a fresh screen: `clear`, then a no-op command line to type into
            browser.type_text("clear");
            browser.press_enter();
            // the screen is then the prompt alone: one row, one ':'
            // (`user@host:~# `), and after ": " is echoed, two
            browser.wait_until(
                Duration::from_secs(10),
                "the screen to clear",
                "[...document.querySelectorAll('#terminal .xterm-rows > div')] \
                    .filter(r => r.textContent.trim() !== '').length === 1 && \
                 window.__count(':') === 1 && window.__count('clear') === 0",
            );
            browser.type_text(": ");
            browser.wait_until(
                Duration::from_secs(10),
                "the echo of ': '",
                "window.__count(':') === 2",
            );
        }
        let c = char::from(b'a' + (i % 26) as u8);
        // Timed in the page, from the key's arrival (its keydown event) to the
        // mutation that puts its echo in the DOM: the DevTools round trips
        // that carry the key and the answer are the harness's, not the page's.
        browser.eval(&format!(
            "window.__echo = new Promise(done => {{
                const want = window.__count('{c}') + 1; window.__want = want;
                let start = null;
                document.addEventListener('keydown', e => {{ start = e.timeStamp; }},
                    {{ once: true, capture: true }});
                const rows = document.querySelector('#terminal .xterm-rows');
                const seen = new MutationObserver(() => {{
                    if (start !== null && window.__count('{c}') >= want) {{
                        seen.disconnect(); done(performance.now() - start);
                    }}
                }});
                seen.observe(rows, {{ subtree: true, childList: true, characterData: true }});
                setTimeout(() => {{ seen.disconnect(); done(null); }}, 10000);
            }}); true"
        ));
        browser.key(c);
        let echoed = browser.eval("window.__echo");
        assert!(
            echoed.is_number(),
            "key {i} ({c:?}) was not echoed within 10 s (count {}, wanted {}); the terminal shows:\n{}",
            browser.eval(&format!("window.__count('{c}')")),
            browser.eval("window.__want"),
            browser
                .try_eval(SCREEN)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        samples.push(echoed.as_f64().unwrap_or_default() / 1000.0);
        if i % BATCH == BATCH - 1 || i == keys - 1 {
            browser.press_enter();
        }
    }
    println!(
        "BENCH_JSON {}",
        serde_json::json!({ "samples_s": samples, "keys": keys })
    );
}

// --- the command log of a terminal session ---------------------------------------

/// The `access-edge` binary Cargo built beside this test binary (as the
/// edge's `browser` script finds it); `cargo test --workspace` builds it.
fn edge_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let binary = target.join("access-edge");
    assert!(
        binary.is_file(),
        "{} is missing: build it (cargo build -p access-edge; cargo test --workspace does)",
        binary.display()
    );
    binary
}

#[test]
fn the_terminal_session_is_logged_and_its_capture_decrypts() {
    use access_edge::ssh::logs::{self, capture::Capture, index::Entry, key::LogSecret};

    let keys = tempfile::tempdir().unwrap();
    let secret_path = keys.path().join("audit-key");
    let (public, _) = logs::key::generate_key_pair(&secret_path).unwrap();
    let Some(world) = World::new("the_terminal_session_is_logged", |o| {
        o.config.apps[0].ssh_log_public_key = Some(public.to_base64());
    }) else {
        return;
    };
    let (user, email) = me();
    world.open_as(&email);
    world.wait_state("open");
    world.wait_screen("the shell's prompt", |t| !t.trim().is_empty());
    let (rows, cols) = stty_size(&world);
    world.type_line("whoami");
    world.wait_screen("whoami's answer", |t| t.lines().any(|l| l.trim() == user));
    world.type_line("exit");
    world.wait_state("ended");

    let dir = logs::logs_dir(world.env.edge.state_dir());
    let index = dir.join("index.jsonl");
    wait_for(Duration::from_secs(10), "the session's index line", || {
        std::fs::read_to_string(&index).is_ok_and(|t| t.lines().count() == 1)
    });
    let line = std::fs::read_to_string(&index).unwrap();
    let entry: Entry = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(entry.email, email);
    assert_eq!(entry.app, APP_HOST);
    assert_eq!(entry.program, "shell");
    assert_eq!(entry.exit_status, Some(0));
    assert_eq!(entry.origin_addr, format!("127.0.0.1:{}", world.port));
    assert!(entry.client_addr.starts_with("127.0.0.1:"), "{entry:?}");
    assert_eq!(entry.capture, format!("{}.capture", entry.id));
    assert!(entry.started_at <= entry.ended_at, "{entry:?}");

    let secret = LogSecret::read(&secret_path).unwrap();
    let capture = Capture::open(&dir.join(&entry.capture), &secret).unwrap();
    let sent: Vec<u8> = capture
        .packets
        .iter()
        .filter(|p| p.source == logs::Source::Client)
        .flat_map(|p| p.data.clone())
        .collect();
    let shown: Vec<u8> = capture
        .packets
        .iter()
        .filter(|p| p.source == logs::Source::Origin)
        .flat_map(|p| p.data.clone())
        .collect();
    let sent = String::from_utf8_lossy(&sent);
    let shown = String::from_utf8_lossy(&shown);
    assert!(sent.contains("whoami\r"), "typed: {sent:?}");
    assert!(sent.contains("exit\r"), "typed: {sent:?}");
    // the shell's output is a terminal's: lines end in CR LF, and a prompt's
    // escapes (bracketed paste) end in a bare CR before the answer
    let answered = |text: &str| text.split(['\r', '\n']).any(|l| l.trim() == user);
    assert!(
        answered(&shown),
        "whoami's answer in the origin's output: {shown:?}"
    );
    let pty = capture.header.pty.as_ref().expect("the session's PTY");
    assert!(
        pty.term.as_deref().is_some_and(|t| t.starts_with("xterm")),
        "{pty:?}"
    );
    assert_eq!(
        (pty.height as u64, pty.width as u64),
        (rows, cols),
        "{pty:?}"
    );
    let exit = capture.header.exit_data.as_ref().expect("the exit");
    assert_eq!(exit.status, Some(0), "{exit:?}");

    let mut replay = std::process::Command::new(edge_binary());
    replay
        .args(["ssh-logs", "replay", &entry.id, "--no-wait", "--key"])
        .arg(&secret_path)
        .arg("--state-dir")
        .arg(world.env.edge.state_dir());
    let run = run_with_deadline(replay, Duration::from_secs(30));
    run.success();
    assert!(run.stdout.contains("whoami"), "{run:?}");
    assert!(answered(&run.stdout), "{run:?}");
}
