// The harness (tests/common) drives access-edge and ptys with libc: Unix only.
#![cfg(unix)]

//! A browser login as a user sees it, on any machine: what is said about
//! the browser (only what is true), a machine without a screen (the URL and
//! a QR code, and no opener run), WSL's openers, the wait (one live line on
//! a terminal, a line per 30 s in a pipe, the limit said at the start and at
//! the end in the user's words), Ctrl-C, and the debug log's narration. The
//! real cfaccess against a real access-edge, on a real pseudo-terminal where
//! the terminal matters.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pty::Pty;
use common::*;

/// `cfaccess` as on a machine with no browser configured: no `BROWSER`
/// (and, as in every test, no `DISPLAY`).
fn no_browser_env(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.cmd(args);
    cmd.env_remove("BROWSER");
    cmd
}

/// The login URL in what was shown.
fn login_url(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("https://") && l.contains("/cdn-cgi/access/cli?"))
        .map(str::to_owned)
}

/// Opens `url` with the edge's headless browser, as a user on another
/// device would: the login is approved.
fn approve(env: &TestEnv, url: &str) {
    let out = Command::new(&env.browser)
        .arg(url)
        .output()
        .expect("browser");
    assert!(out.status.success(), "{out:?}");
}

/// The lock and URL files of logins in progress in the config dir.
fn login_files(env: &TestEnv) -> Vec<String> {
    env.dir_entries()
        .into_iter()
        .filter(|n| n.ends_with(".lock") || n.ends_with(".url"))
        .collect()
}

/// The QR code drawn after `Or scan this code…`, read back into modules
/// (true for dark) and decoded as a phone would: scaled up on a white page.
fn decode_qr(shown: &str) -> String {
    let lines: Vec<&str> = shown
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.starts_with("Or scan this code"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(lines.len() > 10, "a QR code is drawn:\n{shown}");
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in lines {
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (false, false),
                '▀' => (false, true),
                '▄' => (true, false),
                ' ' => (true, true),
                other => panic!("{other:?} in the QR code"),
            })
            .unzip();
        rows.push(top);
        rows.push(bottom);
    }
    const SCALE: usize = 4;
    const MARGIN: usize = 8;
    let side = rows[0].len() * SCALE + 2 * MARGIN;
    let dark = |x: usize, y: usize| -> Option<bool> {
        let (x, y) = (
            x.checked_sub(MARGIN)? / SCALE,
            y.checked_sub(MARGIN)? / SCALE,
        );
        rows.get(y)?.get(x).copied()
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
        if dark(x, y) == Some(true) { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in:\n{shown}");
    grids[0].decode().expect("the QR code decodes").1
}

/// A command running with its stderr collected as it comes.
struct Background {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = BufReader::new(child.stderr.take().expect("stderr"));
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Background {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the login URL on stderr and what came with it (up to the
    /// announcement of the wait).
    fn login_url(&self) -> (String, String) {
        wait_for(Duration::from_secs(30), "the login URL", || {
            self.stderr().contains("for the login to be approved.")
        });
        let shown = self.stderr();
        (login_url(&shown).expect("a login URL"), shown)
    }

    fn finish(mut self) -> Run {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Run {
            code: status.code(),
            stdout,
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of fake programs to put first on PATH; each records its
/// arguments in `<name>.called` beside it, then runs `then`.
fn fake_bin(env: &TestEnv, programs: &[(&str, &str)]) -> PathBuf {
    let dir = env.tmp.path().join("fakebin");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, then) in programs {
        let called = dir.join(format!("{name}.called"));
        let _ = std::fs::remove_file(&called);
        let path = env.script(
            &format!("fakebin/{name}"),
            &format!("echo \"$@\" >> '{}'\n{then}", called.display()),
        );
        assert!(path.starts_with(&dir));
    }
    dir
}

/// An environment variable: name and value.
type Var<'a> = (&'a str, &'a str);

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn was_called(bin: &Path, name: &str) -> bool {
    bin.join(format!("{name}.called")).exists()
}

#[test]
fn a_terminal_shows_a_qr_code_and_one_live_line_until_the_login_is_approved() {
    let env = TestEnv::new();
    let pty = Pty::spawn(
        no_browser_env(&env, &["login", "--no-verbose", APP]),
        100,
        50,
    );
    // the live line is redrawn in place: "1s elapsed" follows "0s elapsed"
    // on the same line
    let shown = pty.wait_for(Duration::from_secs(30), "the live wait line", |out| {
        out.contains("\r⠋ Waiting for approval: 0s elapsed, 4m left (Ctrl-C to cancel)")
            && out.contains("Waiting for approval: 1s elapsed, 3m59s left")
    });
    assert!(
        shown.contains("No browser was started: there is no display here (DISPLAY and WAYLAND_DISPLAY are unset)."),
        "{shown}"
    );
    let url = login_url(&shown).expect("the login URL is printed");
    assert_eq!(decode_qr(&shown), url, "the QR code is the login URL");
    let (_, wait) = shown
        .split_once("Waiting up to 4m for the login to be approved.\r\n")
        .expect("the limit is said first");
    assert!(!wait.contains('\n'), "one line, redrawn: {wait:?}");
    assert!(
        wait.matches('\r').count() >= 10,
        "redrawn about 10 times a second: {wait:?}"
    );
    assert!(
        login_files(&env).iter().any(|f| f.ends_with("-token.lock")),
        "{:?}",
        env.dir_entries()
    );

    approve(&env, &url);
    let (status, stdout, shown) = pty.finish(Duration::from_secs(30));
    assert!(status.success(), "{shown}");
    assert!(is_jwt(&stdout), "{stdout}");
    // the live line is wiped at the end, and nothing follows it
    let last = shown.rfind("Waiting for approval").unwrap();
    let tail = &shown[last..];
    let (_, wiped) = tail.split_once("(Ctrl-C to cancel)").unwrap();
    assert!(
        wiped.contains('\r') && wiped.ends_with('\r') && wiped.trim_matches([' ', '\r']).is_empty(),
        "{wiped:?}"
    );
    assert_eq!(login_files(&env), Vec::<String>::new());
}

#[test]
fn ctrl_c_ends_the_wait_at_once_and_removes_the_lock() {
    let env = TestEnv::new();
    let mut pty = Pty::spawn(
        no_browser_env(&env, &["login", "--no-qr", "--no-verbose", APP]),
        100,
        50,
    );
    let shown = pty.wait_for(Duration::from_secs(30), "the live wait line", |out| {
        out.contains("Waiting for approval: ")
    });
    assert!(!shown.contains('█'), "--no-qr draws no QR code: {shown}");
    assert!(!shown.contains("Or scan this code"), "{shown}");
    let held = login_files(&env);
    assert!(held.iter().any(|f| f.ends_with("-token.lock")), "{held:?}");
    assert!(held.iter().any(|f| f.ends_with("-token.url")), "{held:?}");

    let typed = Instant::now();
    pty.type_in(b"\x03");
    let (status, stdout, shown) = pty.finish(Duration::from_secs(10));
    let took = typed.elapsed();
    assert_eq!(
        status.code(),
        Some(130),
        "exits as a shell reports SIGINT: {shown}"
    );
    assert!(took < Duration::from_secs(2), "at once: {took:?}");
    assert_eq!(stdout, "");
    // the live line stays as it was, with the terminal's ^C after it (or
    // under one last redraw), and the next line is ours
    assert!(shown.contains("^C"), "{shown}");
    let (_, after) = shown.rsplit_once("(Ctrl-C to cancel)").unwrap();
    let after = after.trim_start_matches(' ');
    let after = after.strip_prefix("^C").unwrap_or(after);
    assert_eq!(
        after, "\r\ncfaccess: interrupted by SIGINT\r\n",
        "{shown:?}"
    );
    assert_eq!(
        login_files(&env),
        Vec::<String>::new(),
        "lock and URL files removed"
    );
}

#[test]
fn a_browser_that_fails_is_said_to_have_failed() {
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["login", "--no-verbose", APP]);
    cmd.env("BROWSER", "/bin/false");
    let login = Background::spawn(cmd);
    let (url, shown) = login.login_url();
    assert!(
        shown.starts_with(
            "Could not open a browser from $BROWSER: /bin/false exited with status 1.\n\
             Please open the following URL and log in with your Cloudflare account:\n\n"
        ),
        "{shown}"
    );
    assert!(!shown.contains("should have opened"), "{shown}");
    // in a pipe: no live line, no QR code
    assert!(!shown.contains('\r') && !shown.contains('█'), "{shown:?}");
    approve(&env, &url);
    let run = login.finish();
    run.success();
    assert!(is_jwt(&run.stdout));
}

#[test]
fn browser_lists_are_tried_in_turn_and_a_path_with_spaces_is_taken_whole() {
    let env = TestEnv::new();
    // an entry with spaces in its program path, after one that fails: the
    // edge's browser behind a symlink in "Program Files"
    let dir = env.tmp.path().join("Program Files/Browser");
    std::fs::create_dir_all(&dir).unwrap();
    let browser = dir.join("browser.exe");
    std::os::unix::fs::symlink(&env.browser, &browser).unwrap();
    let mut cmd = env.cmd(&["login", "--no-verbose", APP]);
    cmd.env(
        "BROWSER",
        format!("/nonexistent/firefox:{} %s", browser.display()),
    );
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    run.success();
    assert!(
        run.stderr
            .starts_with("A browser window should have opened at the following URL:"),
        "{}",
        run.stderr
    );
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
}

#[test]
fn a_machine_without_a_screen_prints_the_url_and_runs_no_opener() {
    let env = TestEnv::new();
    // the edge's browser approves whatever the fake xdg-open is handed
    let approve_it = format!("exec '{}' \"$1\"", env.browser.display());
    let cases: [(&str, &[Var], &str); 4] = [
        (
            "",
            &[],
            "No browser was started: there is no display here (DISPLAY and WAYLAND_DISPLAY are unset).",
        ),
        (
            "ssh",
            &[
                ("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22"),
                ("DISPLAY", ":0"),
            ],
            "No browser was started: this is an ssh session without a forwarded display.",
        ),
        (
            "desktop",
            &[("DISPLAY", ":0")],
            "A browser window should have opened at the following URL:",
        ),
        (
            "desktop, xdg-open fails",
            &[("DISPLAY", ":0"), ("FAKE_EXIT", "3")],
            "Could not open a browser: xdg-open exited with status 3.",
        ),
    ];
    for (name, vars, said) in cases {
        let _ = std::fs::remove_dir_all(&env.dir);
        let bin = fake_bin(
            &env,
            &[(
                "xdg-open",
                &format!("[ -n \"$FAKE_EXIT\" ] && exit \"$FAKE_EXIT\"\n{approve_it}"),
            )],
        );
        let mut cmd = no_browser_env(&env, &["login", "--no-verbose", APP]);
        cmd.env("PATH", path_with(&bin)).envs(vars.iter().copied());
        let login = Background::spawn(cmd);
        let (url, shown) = login.login_url();
        assert!(shown.starts_with(said), "{name}: {shown}");
        let opener_runs = name == "desktop" || name == "desktop, xdg-open fails";
        assert_eq!(was_called(&bin, "xdg-open"), opener_runs, "{name}: {shown}");
        if name != "desktop" {
            assert!(shown.contains("Leave cfaccess running"), "{name}: {shown}");
            approve(&env, &url);
        }
        let run = login.finish();
        run.success();
        assert!(is_jwt(&run.stdout), "{name}");
    }
}

#[test]
fn wsl_opens_the_windows_browser() {
    let env = TestEnv::new();
    let approve_it = format!("exec '{}' \"$1\"", env.browser.display());
    // wslview when there is one; else explorer.exe, which exits 1 even
    // when it opened the URL
    let explorer_then = format!("'{}' \"$1\" >/dev/null 2>&1; exit 1", env.browser.display());
    for (programs, opener) in [
        (
            vec![("wslview", approve_it.as_str()), ("explorer.exe", "exit 1")],
            "wslview",
        ),
        (
            vec![("explorer.exe", explorer_then.as_str())],
            "explorer.exe",
        ),
    ] {
        let _ = std::fs::remove_dir_all(&env.dir);
        let _ = std::fs::remove_dir_all(env.tmp.path().join("fakebin"));
        let bin = fake_bin(&env, &programs);
        // only the fake bin dir and what sh needs: no real wslview here
        let mut cmd = no_browser_env(
            &env,
            &["--log-level", "debug", "login", "--no-verbose", APP],
        );
        cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("WSL_DISTRO_NAME", "Ubuntu");
        let run = run_with_deadline(cmd, Duration::from_secs(60));
        run.success();
        assert!(
            run.stderr.contains("this is WSL: opening Windows' browser"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("opened the login page with {opener}")),
            "{}",
            run.stderr
        );
        assert!(was_called(&bin, opener));
        assert!(run.stderr.contains("A browser window should have opened"));
    }
}

#[test]
fn a_login_nobody_approves_ends_in_the_users_words() {
    let env = TestEnv::new();
    // the service says "not yet" quickly: polls go on until the wait is over
    env.edge.set_poll_hold(Duration::from_millis(300));
    let mut cmd = no_browser_env(&env, &["login", APP]);
    cmd.env("CFACCESS_LOGIN_WAIT", "32s");
    let started = Instant::now();
    let run = run_with_deadline(cmd, Duration::from_secs(90));
    let took = started.elapsed();
    run.failure(1);
    let url = login_url(&run.stderr).expect("the URL was shown");
    assert_eq!(
        run.error_line(),
        format!(
            "error: cannot log in to https://ssh.demo.test/: nobody approved the login at {url} \
             within 32s; hint: run the command again"
        )
    );
    assert!(
        run.stderr
            .contains("Waiting up to 32s for the login to be approved.\n")
    );
    // in a pipe: one progress line at 30 s, and none per poll
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Still waiting"))
        .collect();
    assert_eq!(
        progress,
        ["Still waiting for the login to be approved: 30s elapsed, 2s left."],
        "{}",
        run.stderr
    );
    assert!(
        env.edge.count(Endpoint::TransferPoll) >= 10,
        "polled throughout"
    );
    assert_eq!(run.stderr.lines().count(), 9, "{}", run.stderr);
    assert!(
        took >= Duration::from_secs(32) && took < Duration::from_secs(40),
        "{took:?}"
    );
    assert_eq!(login_files(&env), Vec::<String>::new());
}

#[test]
fn a_login_wait_that_cannot_be_kept_is_refused_before_the_login() {
    let env = TestEnv::new();
    let mut cmd = no_browser_env(&env, &["login", APP]);
    cmd.env("CFACCESS_LOGIN_WAIT", "a while");
    let run = run_with_deadline(cmd, Duration::from_secs(30));
    run.failure(1);
    assert_eq!(
        run.error_line(),
        "error: cannot log in to https://ssh.demo.test/: CFACCESS_LOGIN_WAIT=\"a while\" is not a \
         wait from 1s to 10m; hint: give CFACCESS_LOGIN_WAIT a duration like 4m or 90s, or unset it"
    );
    assert_eq!(env.edge.count(Endpoint::TransferPoll), 0);
}

#[test]
fn debug_logs_narrate_the_decisions_and_no_secret() {
    let env = TestEnv::with(|opts| {
        let mut second = opts.config.apps[0].clone();
        second.hostname = "web.demo.test".into();
        second.aud = None;
        opts.config.apps.push(second);
    });
    let debug = |args: &[&str]| {
        let run = env.run(&[&["--log-level", "debug"][..], args].concat());
        run.success();
        run
    };
    let first = debug(&["login", "--no-verbose", APP]);
    let browser = env.browser.display().to_string();
    for said in [
        "no cached app token for ssh.demo.test",
        "no org token for the team demo.cloudflareaccess.com: logging in with the browser",
        "BROWSER is set: trying its commands in turn",
        &format!("opened the login page with {browser}"),
        "polling the login service at login.cloudflareaccess.org (poll 1, held up to 1m; ",
        "the login service delivered the sealed tokens",
        "stored the app token (valid for 24h more, until ",
        "and the team's org token (valid for 24h more",
        "the edge accepted the token (token check)",
    ] {
        assert!(
            first.stderr.contains(said),
            "{said:?} in:\n{}",
            first.stderr
        );
    }
    let token = first.stdout.clone();
    let org_token = std::fs::read_to_string(env.org_token_file()).unwrap();

    let cached = debug(&["login", "--no-verbose", APP]);
    assert!(
        cached
            .stderr
            .contains("found a cached app token for ssh.demo.test in "),
        "{}",
        cached.stderr
    );
    assert!(cached.stderr.contains(" more, until "), "{}", cached.stderr);

    let exchanged = debug(&["login", "--no-verbose", "https://web.demo.test"]);
    for said in [
        "found the team's org token for demo.cloudflareaccess.com (valid for ",
        "exchanged the org token for an app token (valid for ",
        ": no browser needed",
    ] {
        assert!(
            exchanged.stderr.contains(said),
            "{said:?} in:\n{}",
            exchanged.stderr
        );
    }

    let headless = {
        let _ = std::fs::remove_dir_all(&env.dir);
        let mut cmd = no_browser_env(
            &env,
            &["--log-level", "debug", "login", "--no-verbose", APP],
        );
        cmd.env("CFACCESS_LOGIN_WAIT", "1s");
        run_with_deadline(cmd, Duration::from_secs(30))
    };
    assert!(
        headless
            .stderr
            .contains("not starting a browser: there is no display here"),
        "{}",
        headless.stderr
    );

    for run in [&first, &cached, &exchanged, &headless] {
        for secret in [&token, &org_token, &exchanged.stdout] {
            assert!(
                !run.stderr.contains(secret.trim()),
                "a token in the log:\n{}",
                run.stderr
            );
            // nor the signature alone
            let signature = secret.trim().rsplit('.').next().unwrap();
            assert!(!run.stderr.contains(signature));
        }
    }
}

#[test]
fn qr_forces_the_code_even_in_a_pipe_and_curl_takes_the_flags() {
    let env = TestEnv::new();
    // the browser opens (and approves) too: --qr draws the code anyway
    let run = env.run(&["login", "--qr", "--no-verbose", APP]);
    run.success();
    let url = login_url(&run.stderr).unwrap();
    assert_eq!(decode_qr(&run.stderr), url);

    // curl's own arguments start at the URL: the flags before it are ours
    let run = env.run(&[
        "curl",
        "-ar",
        "--no-qr",
        "https://ssh.demo.test/",
        "--version",
    ]);
    run.success();
    assert!(run.stdout.starts_with("curl "), "{run:#?}");
}
