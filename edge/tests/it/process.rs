//! The edge as a process and across restarts: the state dir, the binary's
//! command line, the control socket and the browser helper.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use access_edge::{Config, Edge, EdgeError, EdgeOptions, Endpoint};
use cfaccess::access::edge_profile::EdgeProfile;

use crate::common::*;

/// Waits (with a deadline) until `path` exists.
pub fn wait_for_file(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("access-edge exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A served edge that is stopped however its test ends: an assertion that
/// fails before [`Running::terminate`] must not leave an access-edge running.
pub struct Running(Option<Child>);

impl Running {
    pub fn spawn(cmd: &mut Command) -> Running {
        Running(Some(cmd.spawn().unwrap()))
    }

    /// Stops it with SIGTERM and collects its output.
    pub fn terminate(mut self) -> Output {
        terminate(self.0.take().expect("still running"))
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("still running")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops a served edge with SIGTERM and collects its output.
pub fn terminate(child: Child) -> Output {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(edge_bin()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_restart_on_the_same_state_dir_keeps_ca_keys_and_auds() {
    let dir = seeded_state_dir();
    let config =
        Config::parse("[[apps]]\nhostname = \"ssh.demo.test\"\nallow = [\"*\"]\n").unwrap();
    let first = Edge::spawn(options(config.clone(), dir.path())).unwrap();
    let profile = EdgeProfile::load(&first.profile_path()).unwrap();
    let aud = first.app_aud(APP).unwrap();
    let token = first.mint_app_token(APP, "alice@example.com", Duration::from_secs(600));
    let jwks = std::fs::read(dir.path().join("signing-key-current.pem")).unwrap();

    // a second edge on a state dir in use is refused
    let err = Edge::spawn(options(config.clone(), dir.path()))
        .err()
        .unwrap();
    assert!(matches!(err, EdgeError::AlreadyRunning(_)), "{err}");
    assert!(err.to_string().contains("already running"));

    first.shutdown();
    assert!(
        !dir.path().join("profile.json").exists(),
        "a stopped edge does not look ready"
    );
    assert!(!dir.path().join("control.sock").exists());

    let again = Edge::spawn(options(config, dir.path())).unwrap();
    let profile_again = EdgeProfile::load(&again.profile_path()).unwrap();
    assert_eq!(profile_again.ca_cert, profile.ca_cert);
    assert_eq!(again.app_aud(APP).unwrap(), aud);
    assert_eq!(
        std::fs::read(dir.path().join("signing-key-current.pem")).unwrap(),
        jwks
    );

    // a token from before the restart still passes (synchronous test: run a
    // small runtime just for the client)
    let client = cfaccess::access::http::client(Some(&profile_again)).unwrap();
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            client
                .get(format!("https://{APP}/?cloudflared_token_check=true"))
                .header("cf-access-token", token)
                .send()
                .await
                .unwrap()
                .status()
        });
    assert_eq!(status, 200);
    assert_eq!(again.count(Endpoint::TokenCheck), 1);
    assert_eq!(again.total_requests(), 1);
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let dir = seeded_state_dir();
    let first = Edge::spawn(options(Config::demo(), dir.path())).unwrap();
    let other = seeded_state_dir();
    let mut opts = options(Config::demo(), other.path());
    opts.listen = first.addr();
    let err = Edge::spawn(opts).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!(
            "cannot listen on {}: the address is in use",
            first.addr()
        )),
        "{err}"
    );
}

#[test]
fn the_state_dir_holds_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let seed = seeded_state_dir();
    access_edge::copy_secrets(seed.path(), &dir).unwrap();
    let edge = Edge::spawn(options(Config::demo(), &dir)).unwrap();
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for secret in [
        "ca-key.pem",
        "signing-key-current.pem",
        "signing-key-previous.pem",
        "box-key",
        "config.toml",
        "control.sock",
        "api-token",
        "profile.json",
    ] {
        assert_eq!(mode(secret), 0o600, "{secret}");
    }
    assert_eq!(mode("browser"), 0o755);
    let kept = Config::load(&dir.join("config.toml")).unwrap();
    assert_eq!(kept, Config::demo());
    let profile = EdgeProfile::load(&edge.profile_path()).unwrap();
    let names: Vec<&str> = profile.hosts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "api.cloudflare.com",
            "demo.cloudflareaccess.com",
            "login.cloudflareaccess.org",
            "login.fed.cloudflareaccess.org",
            "ssh.demo.test"
        ]
    );
    assert!(profile.hosts.values().all(|a| *a == edge.addr()));
}

#[test]
fn a_config_with_an_unknown_key_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "team = \"acme\"\n\n[[apps]]\nhostname = \"x.acme.test\"\nalow = [\"*\"]\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        path.to_str().unwrap(),
        "--state-dir",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}:5:", path.display())), "{err}");
    assert!(err.contains("unknown field `alow`"), "{err}");
}

#[test]
fn usage_errors_exit_2_and_help_explains_flags_and_files() {
    let out = run(&["--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--listen"));
    let out = run(&["--auto-approve", "not-an-email", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not an email address"));

    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--config",
        "--state-dir",
        "--listen",
        "--auto-approve",
        "--poll-hold",
        "--origin",
        "--log-level",
        "profile.json",
        "browser",
        "control.sock",
        "revoke",
        "rotate-keys",
        "stats",
        "browse",
    ] {
        assert!(help.contains(needle), "help lacks {needle}");
    }
}

#[test]
fn control_commands_without_an_edge_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["stats", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no access-edge is running with the state dir"),
        "{err}"
    );
}

#[test]
fn the_binary_serves_logs_in_through_its_browser_and_obeys_control_commands() {
    let dir = seeded_state_dir();
    let state = dir.path().to_str().unwrap();
    let mut child = Running::spawn(
        Command::new(edge_bin())
            .args(["--state-dir", state, "--poll-hold", "3s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let profile_path = dir.path().join("profile.json");
    wait_for_file(&profile_path, &mut child);
    let browser = dir.path().join("browser");
    assert!(
        browser.exists(),
        "the browser is written before the profile"
    );
    let profile = EdgeProfile::load(&profile_path).unwrap();
    let aud = std::fs::read_to_string(dir.path().join("auds.json")).unwrap();
    let aud: std::collections::BTreeMap<String, String> = serde_json::from_str(&aud).unwrap();
    let aud = &aud[APP];

    // the browser without an identity: the page waits for a person
    let key = LoginKey::new();
    let url = login_url(APP, aud, &key, true, false);
    let out = Command::new(&browser).arg(&url).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the browser never writes to stdout");
    assert!(
        text(&out.stderr).contains("waiting for approval"),
        "{}",
        text(&out.stderr)
    );

    // --deny refuses, --as approves (what a BROWSER wrapper passes on)
    let out = Command::new(&browser)
        .args(["--deny", &url])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("login refused"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(&browser)
        .args(["--as", "alice@example.com", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr).trim(),
        "access-edge browse: approved as alice@example.com at ssh.demo.test"
    );
    let out = Command::new(&browser)
        .args([
            "--as",
            "eve@evil.test",
            &login_url(APP, aud, &LoginKey::new(), true, false),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("eve@evil.test is not allowed to reach ssh.demo.test"));

    // the sealed result is there for the client
    let client = cfaccess::access::http::client(Some(&profile)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, service_key, body) = runtime.block_on(async {
        let response = client
            .get(format!("https://{LOGIN}/transfer/{}", key.public))
            .send()
            .await
            .unwrap();
        let service_key = header(&response, "service-public-key")
            .unwrap_or_default()
            .to_owned();
        (
            response.status(),
            service_key,
            response.text().await.unwrap(),
        )
    });
    assert_eq!(status, 200);
    let result = key.open(&body, &service_key);
    assert_eq!(
        claims(result["app_token"].as_str().unwrap())["email"],
        "alice@example.com"
    );

    // control commands
    let out = run(&["stats", "--state-dir", state]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = text(&out.stdout);
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().eq(["login_page", "4"])),
        "{stats}"
    );
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().eq(["login_submit", "3"])),
        "{stats}"
    );
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().eq(["transfer_poll", "1"])),
        "{stats}"
    );
    let out = run(&["revoke", "alice@example.com", "--state-dir", state]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("revoked every token issued to alice@example.com"));
    let out = run(&["revoke", "nobody", "--state-dir", state]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["expire-previous-key", "--state-dir", state]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = child.terminate();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let banner = text(&out.stdout);
    assert!(
        banner.starts_with("access-edge is serving on 127.0.0.1:"),
        "{banner}"
    );
    for needle in [
        "auth domain    demo.cloudflareaccess.com",
        "login service  login.cloudflareaccess.org",
        "app            https://ssh.demo.test",
        &format!("aud          {aud}"),
        &format!("export CFACCESS_EDGE={}", profile_path.display()),
        // no --auto-approve: the printed BROWSER approves as an identity
        &format!("export BROWSER='{} --as ", browser.display()),
    ] {
        assert!(
            banner.contains(needle),
            "banner lacks {needle:?}:\n{banner}"
        );
    }
    let log = text(&out.stderr);
    assert!(log.contains("login approved"), "{log}");
    for secret in [result["app_token"].as_str().unwrap(), &key.public] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
    assert!(!profile_path.exists());
    assert!(!dir.path().join("control.sock").exists());
}

#[test]
fn zero_config_uses_a_temporary_state_dir_and_removes_it() {
    let mut child = Running::spawn(
        Command::new(edge_bin())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // the banner names the state dir; read it line by line until then
    let mut stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 4096];
    while !banner.contains("export BROWSER=") {
        assert!(Instant::now() < deadline, "no banner: {banner}");
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "access-edge ended: {banner}");
        banner.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let state_dir = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("state dir"))
        .map(|rest| {
            rest.trim()
                .trim_end_matches(" (temporary, removed on exit)")
                .to_owned()
        })
        .unwrap();
    assert!(Path::new(&state_dir).join("profile.json").exists());
    assert!(banner.contains("identities     "));
    assert!(banner.contains("alice@example.com"));
    // nobody approves logins on their own here: the printed BROWSER does
    assert!(
        banner.contains("/browser --as ") && banner.contains("@example.com'"),
        "{banner}"
    );
    let out = child.terminate();
    assert!(out.status.success());
    assert!(
        !Path::new(&state_dir).exists(),
        "{state_dir} is left behind"
    );
}

#[test]
fn the_library_edge_is_usable_from_a_plain_test() {
    let seeded = seeded_state_dir();
    let edge = Edge::spawn(EdgeOptions {
        state_dir: Some(seeded.path().to_owned()),
        edge_binary: Some(edge_bin()),
        ..EdgeOptions::demo()
    })
    .unwrap();
    assert_eq!(edge.auth_domain(), "demo.cloudflareaccess.com");
    assert_eq!(edge.login_service(), "login.cloudflareaccess.org");
    assert!(edge.profile_path().starts_with(edge.state_dir()));
    assert!(edge.browser_path().exists());
    assert_eq!(edge.app_aud("nope.test"), None);
    assert_eq!(
        edge.mint_app_token("nope.test", "a@b.c", Duration::from_secs(1)),
        ""
    );
    assert_eq!(edge.counters().values().sum::<u64>(), 0);
    drop(edge);
    assert!(!seeded.path().join("profile.json").exists());
}

#[test]
fn an_edge_can_be_shared_across_threads() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Edge>();
}

#[test]
fn the_binary_carries_websockets_to_the_origin_it_is_given() {
    // an echo origin on a thread of its own
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap().to_string();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut read = stream.try_clone().unwrap();
        let echoed = std::io::copy(&mut read, &mut stream).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        echoed
    });
    let dir = seeded_state_dir();
    let state = dir.path().to_str().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[[apps]]\nhostname = \"ssh.demo.test\"\nservice_tokens = [\"ci\"]\n\
         [[service_tokens]]\nname = \"ci\"\nclient_id = \"ci.access\"\nclient_secret = \"s\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut child = Running::spawn(
        Command::new(edge_bin())
            .args([
                "--state-dir",
                state,
                "--config",
                config,
                "--origin",
                &origin,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let profile_path = dir.path().join("profile.json");
    wait_for_file(&profile_path, &mut child);
    let client =
        cfaccess::access::http::client(Some(&EdgeProfile::load(&profile_path).unwrap())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = runtime.block_on(async {
        let headers = [
            ("Cf-Access-Client-Id", "ci.access"),
            ("Cf-Access-Client-Secret", "s"),
        ];
        let Ok(mut ws) = crate::ws::upgrade_with(&client, APP, &headers).await else {
            panic!("no websocket");
        };
        ws.tx.binary(b"hello", 2).await.unwrap();
        ws.tx.close().await.unwrap();
        crate::ws::receive_all(&mut ws.rx).await
    });
    assert_eq!(received.data, b"hello");
    assert_eq!(received.close, Some(1000));
    assert_eq!(echo.join().unwrap(), 5);

    let out = run(&["stats", "--state-dir", state]);
    let stats = text(&out.stdout);
    for line in [
        ["websocket", "1"],
        ["carried", "1"],
        ["bytes_to_origin", "5"],
        ["bytes_to_client", "5"],
    ] {
        assert!(
            stats.lines().any(|l| l.split_whitespace().eq(line)),
            "{line:?} in {stats}"
        );
    }
    let out = child.terminate();
    let banner = text(&out.stdout);
    assert!(
        banner
            .lines()
            .any(|l| l.split_whitespace().eq(["origin", origin.as_str()])),
        "{banner}"
    );

    // with several apps, --origin cannot say which one it means
    let two = dir.path().join("two.toml");
    std::fs::write(
        &two,
        "[[apps]]\nhostname = \"a.test\"\n[[apps]]\nhostname = \"b.test\"\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        two.to_str().unwrap(),
        "--origin",
        "127.0.0.1:22",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("has 2 apps"), "{err}");
}

#[test]
fn an_error_names_each_cause_once() {
    let out = run(&[
        "browse",
        "--profile",
        "/nonexistent/profile.json",
        "--as",
        "alice@example.com",
        "https://ssh.demo.test/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
