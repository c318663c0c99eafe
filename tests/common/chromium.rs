//! Headless Chromium for the browser tests (issue 14): Debian's `chromium`,
//! driven over the DevTools protocol (CDP) through `--remote-debugging-pipe`:
//! the browser reads commands on fd 3 and writes answers and events on fd 4,
//! each message one JSON object ended by a NUL byte.
//!
//! Hand-written over serde_json rather than a CDP crate (chromiumoxide,
//! headless_chrome): those generate bindings for the whole protocol, tens of
//! thousands of lines that cost minutes of compile time on every clean build
//! of the test suite, for the dozen commands used here. The pipe, unlike
//! `--remote-debugging-port`, opens no TCP port other processes could reach.
//!
//! The browser stays on loopback: a temp profile (and `HOME`), no background
//! networking, component updates, sync, first run or default-browser check,
//! no proxy; `--host-resolver-rules` sends every name of the edge profile to
//! the edge and every other name nowhere. It trusts the edge's certificates
//! and nothing else besides the system roots: each name's leaf is fetched over
//! TLS verified against the edge's CA (from its profile), and the base64
//! SHA-256 of its SubjectPublicKeyInfo goes to
//! `--ignore-certificate-errors-spki-list` (honoured with a `--user-data-dir`;
//! an NSS database would need `certutil`, one package more). The leaves are
//! made afresh at each edge start, so the list is made per edge.
//!
//! The browser and its helpers run in their own process group, which is
//! killed (by its id) when the [`Chromium`] is dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// Debian's launcher; the tests skip without it.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The browser binary the launcher runs. Started directly, it does not load
/// the launcher's extensions, API keys and flags from `/etc/chromium.d`.
const CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";

/// How long one DevTools command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// Whether the browser is installed; says why a test is skipped when not.
pub fn available(test: &str) -> bool {
    let here = Path::new(CHROMIUM).exists();
    if !here {
        eprintln!("skipping {test}: no {CHROMIUM} (apt-get install chromium)");
    }
    here
}

/// A running headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    writer: Mutex<File>,
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Value>>>>,
    next_id: AtomicU64,
    /// The page's target and its flat-mode session.
    target: String,
    session: String,
    /// The profile, `HOME` and the browser's stderr (`chromium.log`).
    pub dir: tempfile::TempDir,
}

/// What the browser answered instead of a result.
#[derive(Debug)]
pub struct CdpError(pub String);

impl std::fmt::Display for CdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Chromium {
    /// A browser whose every name of `edge`'s profile reaches the edge and
    /// whose certificates it trusts, with a window of `width`×`height`.
    pub fn for_edge(edge: &access_edge::Edge, width: u32, height: u32) -> Chromium {
        Chromium::for_profile(&edge.profile_path(), width, height)
    }

    /// [`Chromium::for_edge`] for the edge whose profile is at `path` (an edge
    /// running as its own process: the benchmarks').
    pub fn for_profile(path: &Path, width: u32, height: u32) -> Chromium {
        let profile =
            cfaccess::access::edge_profile::EdgeProfile::load(path).expect("the edge profile");
        let mut rules: Vec<String> = profile
            .hosts
            .iter()
            .map(|(name, addr)| format!("MAP {name} {addr}"))
            .collect();
        rules.push("MAP * ~NOTFOUND".into());
        let spki: Vec<String> = profile
            .hosts
            .iter()
            .map(|(name, addr)| leaf_spki_sha256(&profile.ca_cert, name, *addr))
            .collect();
        Chromium::launch(&rules.join(", "), &spki, width, height)
    }

    /// Starts the browser with these resolver rules and trusted SPKI hashes.
    pub fn launch(host_rules: &str, spki: &[String], width: u32, height: u32) -> Chromium {
        let dir = tempfile::tempdir().expect("browser dir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("browser home");
        let log = File::create(dir.path().join("chromium.log")).expect("browser log");
        let binary = if Path::new(CHROMIUM_BINARY).exists() {
            CHROMIUM_BINARY
        } else {
            CHROMIUM
        };
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
            "--no-pings",
            "--no-proxy-server",
            "--password-store=basic",
            "--use-mock-keychain",
            "--mute-audio",
            "--hide-scrollbars",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--host-resolver-rules={host_rules}"))
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            spki.join(",")
        ));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Chromium refuses to run as root inside its sandbox (CI runs as root)
            cmd.arg("--no-sandbox");
        }
        cmd.arg("about:blank")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let (child_cmd, child_resp) = (cmd_read, resp_write);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2, setpgid) on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                // out of the way of 3 and 4 first, whatever numbers they had
                let a = libc::fcntl(child_cmd, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(child_resp, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setpgid(0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        // SAFETY: the child has its copies; these ends are ours alone.
        unsafe {
            libc::close(cmd_read);
            libc::close(resp_write);
        }
        // SAFETY: fresh descriptors from pipe(), owned from here on.
        let writer = unsafe { File::from_raw_fd(cmd_write) };
        let reader = unsafe { File::from_raw_fd(resp_read) };
        let pending: Arc<Mutex<HashMap<u64, mpsc::Sender<Value>>>> = Arc::default();
        let answers = pending.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && let Some(id) = value.get("id").and_then(Value::as_u64)
                    && let Some(tx) = answers.lock().unwrap().remove(&id)
                {
                    let _ = tx.send(value);
                }
                // events are not used: the tests poll the page instead
                message.clear();
            }
            // the browser is gone: every waiting command fails at once
            answers.lock().unwrap().clear();
        });
        let mut browser = Chromium {
            child,
            writer: Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            target: String::new(),
            session: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let target = loop {
            let targets = browser
                .browser_call("Target.getTargets", json!({}))
                .unwrap_or_else(|e| panic!("chromium: {e}\n{}", browser.log()));
            let page = targets["targetInfos"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["targetId"].as_str().map(str::to_owned));
            if let Some(page) = page {
                break page;
            }
            assert!(
                Instant::now() < deadline,
                "chromium opened no page: {}",
                browser.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let attached = browser
            .browser_call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .expect("attach to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.target = target;
        browser
    }

    /// What the browser wrote to stderr (for failure messages).
    pub fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn send(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::String(session.to_owned());
        }
        let (tx, rx) = mpsc::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        {
            let mut writer = self.writer.lock().unwrap();
            writer
                .write_all(&bytes)
                .map_err(|e| CdpError(format!("{method}: cannot write to chromium: {e}")))?;
        }
        let answer = rx.recv_timeout(COMMAND_LIMIT).map_err(|e| {
            self.pending.lock().unwrap().remove(&id);
            CdpError(format!("{method}: no answer from chromium ({e})"))
        })?;
        match answer.get("error") {
            Some(error) => Err(CdpError(format!("{method}: {error}"))),
            None => Ok(answer["result"].clone()),
        }
    }

    /// A command to the browser itself (no page session).
    pub fn browser_call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.send(None, method, params)
    }

    /// A command to the page.
    pub fn try_call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.send(Some(&self.session), method, params)
    }

    /// A command to the page that must succeed.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("chromium: {e}\n{}", self.log()))
    }

    /// Navigates to `url` and waits for the page (after any redirects) to
    /// have loaded.
    pub fn navigate(&self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            panic!("chromium could not open {url}: {error}\n{}", self.log());
        }
        self.wait_until(
            Duration::from_secs(30),
            &format!("{url} to load"),
            "document.readyState === 'complete'",
        );
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value, or what it threw.
    pub fn try_eval(&self, expression: &str) -> Result<Value, CdpError> {
        let result = self.try_call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(details) = result.get("exceptionDetails") {
            return Err(CdpError(format!("{expression}: threw {details}")));
        }
        Ok(result["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// [`Chromium::try_eval`], which must not throw.
    pub fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("chromium: {e}"))
    }

    /// Evaluates `expression` until its value is truthy (a page that is
    /// still loading counts as not yet), failing the test after `limit`.
    pub fn wait_until(&self, limit: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.try_eval(expression) {
                Ok(value) if truthy(&value) => return value,
                Ok(value) => value,
                Err(e) => Value::String(e.0),
            };
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last: {last}); the page says: {}",
                self.try_eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    /// Types `text` into the focused element, as an input method would.
    pub fn insert_text(&self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Types `text` key by key (a keyDown carrying the character, then a
    /// keyUp), as a keyboard does. Unlike [`Chromium::insert_text`] this
    /// reaches xterm.js in screen-reader mode, which reads keys, not input
    /// events.
    pub fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.key(c);
        }
    }

    /// Presses and releases the key of the character `c`.
    pub fn key(&self, c: char) {
        let text = c.to_string();
        let mut event = json!({ "key": text, "text": text, "unmodifiedText": text });
        if c.is_ascii_alphanumeric() {
            let upper = c.to_ascii_uppercase();
            event["code"] = if c.is_ascii_digit() {
                format!("Digit{c}")
            } else {
                format!("Key{upper}")
            }
            .into();
            event["windowsVirtualKeyCode"] = (upper as u32).into();
        } else if c == ' ' {
            event["code"] = "Space".into();
            event["windowsVirtualKeyCode"] = 32.into();
        }
        let mut down = event.clone();
        down["type"] = "keyDown".into();
        self.call("Input.dispatchKeyEvent", down);
        event["type"] = "keyUp".into();
        self.call("Input.dispatchKeyEvent", event);
    }

    /// Presses and releases Enter.
    pub fn press_enter(&self) {
        let key = json!({
            "key": "Enter", "code": "Enter", "text": "\r", "unmodifiedText": "\r",
            "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
        });
        let mut down = key.clone();
        down["type"] = "keyDown".into();
        self.call("Input.dispatchKeyEvent", down);
        let mut up = key;
        up["type"] = "keyUp".into();
        self.call("Input.dispatchKeyEvent", up);
    }

    /// Presses and releases Ctrl and the letter `key` (`'l'` for Ctrl-L).
    pub fn press_ctrl(&self, key: char) {
        let upper = key.to_ascii_uppercase();
        let event = json!({
            "key": key.to_string(), "code": format!("Key{upper}"), "modifiers": 2,
            "windowsVirtualKeyCode": upper as u32, "nativeVirtualKeyCode": upper as u32,
        });
        let mut down = event.clone();
        down["type"] = "rawKeyDown".into();
        self.call("Input.dispatchKeyEvent", down);
        let mut up = event;
        up["type"] = "keyUp".into();
        self.call("Input.dispatchKeyEvent", up);
    }

    /// Resizes the page's window to `width`×`height` (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        let window = self
            .browser_call(
                "Browser.getWindowForTarget",
                json!({ "targetId": self.target }),
            )
            .expect("the page's window");
        self.browser_call(
            "Browser.setWindowBounds",
            json!({
                "windowId": window["windowId"],
                "bounds": { "width": width, "height": height, "windowState": "normal" },
            }),
        )
        .expect("resize the window");
    }

    /// A PNG of the page's viewport, or of `clip` (x, y, width, height).
    pub fn screenshot(&self, clip: Option<(f64, f64, f64, f64)>) -> Vec<u8> {
        let mut params = json!({ "format": "png", "captureBeyondViewport": true });
        if let Some((x, y, width, height)) = clip {
            params["clip"] =
                json!({ "x": x, "y": y, "width": width, "height": height, "scale": 1 });
        }
        let shot = self.call("Page.captureScreenshot", params);
        STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot")
    }

    /// Every cookie the browser holds for `url`.
    pub fn cookies(&self, url: &str) -> Vec<Value> {
        let cookies = self.call("Network.getCookies", json!({ "urls": [url] }));
        cookies["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the cookie `name` the browser holds for `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies(url)
            .into_iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(str::to_owned))
    }

    /// The profile directory (for a test that wants to look at it).
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // politely first, then the whole process group by its id
        let _ = self.writer.lock().map(|mut w| {
            let _ = w.write_all(b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0");
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the group is the
        // one the browser was started in (its own pid).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// The base64 SHA-256 of the SubjectPublicKeyInfo of the certificate the
/// edge at `addr` serves for `name`, checked against the edge's CA.
fn leaf_spki_sha256(ca_pem: &str, name: &str, addr: std::net::SocketAddr) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use sha2::{Digest, Sha256};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("the edge's CA"))
            .expect("the edge's CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // a wildcard's certificate is served for any name under it
    let sni = match name.strip_prefix("*.") {
        Some(domain) => format!("probe.{domain}"),
        None => name.to_owned(),
    };
    let server = ServerName::try_from(sni).expect("a DNS name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("TLS client");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the edge");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .unwrap_or_else(|e| panic!("TLS to the edge as {name}: {e}"));
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("the edge's certificate")
        .clone();
    let spki = spki_of(&leaf).expect("a certificate with a public key");
    STANDARD.encode(Sha256::digest(spki))
}

/// The SubjectPublicKeyInfo (its whole DER) of an X.509 certificate:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, … }, … }` (RFC 5280 4.1).
pub fn spki_of(der: &[u8]) -> Option<&[u8]> {
    /// One DER element at the start of some input.
    struct Element<'a> {
        tag: u8,
        whole: &'a [u8],
        content: &'a [u8],
        rest: &'a [u8],
    }
    fn element(input: &[u8]) -> Option<Element<'_>> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        Some(Element {
            tag,
            whole: &input[..header + len],
            content: &rest[..len],
            rest: &rest[len..],
        })
    }
    let cert = element(der)?.content;
    let mut tbs = element(cert)?.content;
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.rest; // the explicit version
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = element(tbs)?.rest;
    }
    let spki = element(tbs)?;
    (spki.tag == 0x30).then_some(spki.whole)
}
