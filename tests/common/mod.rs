//! The harness every end-to-end test shares: a real `access-edge` on
//! 127.0.0.1:0 over TLS, a temp home and config dir, and the real `cfaccess`
//! binary pointed at the edge the way a user would point it (`CFACCESS_EDGE`,
//! `BROWSER`). Nothing touches the network beyond loopback or the user's home.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod chromium;
pub mod hostile;
pub mod proc;
pub mod proxy;
pub mod pty;
pub mod sshd;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // not every test binary needs all of them
pub use access_edge::{Edge, EdgeOptions, Endpoint};

/// The demo app every edge serves.
pub const APP: &str = "https://ssh.demo.test";
pub const APP_HOST: &str = "ssh.demo.test";
pub const AUTH_DOMAIN: &str = "demo.cloudflareaccess.com";
/// The identity the edge approves logins as.
pub const EMAIL: &str = "tester@example.com";

/// One test's world: an edge, a home, a config dir.
pub struct TestEnv {
    pub edge: Edge,
    pub tmp: tempfile::TempDir,
    /// `CFACCESS_DIR`.
    pub dir: PathBuf,
    /// `HOME`, empty.
    pub home: PathBuf,
    /// `BROWSER` for the commands run (the edge's browser by default).
    pub browser: PathBuf,
}

impl TestEnv {
    /// The demo edge, approving every login as [`EMAIL`].
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// The demo edge with changes to its options.
    pub fn with(change: impl FnOnce(&mut EdgeOptions)) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut opts = EdgeOptions::demo();
        opts.state_dir = Some(tmp.path().join("edge"));
        opts.auto_approve = Some(EMAIL.to_owned());
        opts.config.identities.push(EMAIL.to_owned());
        change(&mut opts);
        let edge = Edge::spawn(opts).expect("the edge starts");
        let dir = tmp.path().join("cloudflared");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).expect("home");
        let browser = edge.browser_path();
        TestEnv {
            edge,
            tmp,
            dir,
            home,
            browser,
        }
    }

    /// `cfaccess` with this world's environment and nothing of the caller's.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfaccess"));
        cmd.args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// Gives `cmd` this world's environment, and nothing of the caller's.
    pub fn isolate(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("CFACCESS_DIR", &self.dir)
            .env("CFACCESS_EDGE", self.edge.profile_path())
            .env("BROWSER", &self.browser)
            .stdin(Stdio::null());
    }

    /// Runs `cfaccess` to the end, within a deadline.
    pub fn run(&self, args: &[&str]) -> Run {
        run_with_deadline(self.cmd(args), Duration::from_secs(120))
    }

    /// `cfaccess access tcp --url 127.0.0.1:<port>` for `host`, once it says
    /// it listens (its stderr is drained from then on). Probing the port
    /// instead would carry a connection of its own.
    pub fn listener(&self, host: &str, extra: &[&str]) -> (KillOnDrop, u16) {
        use std::io::BufRead;
        let port = sshd::free_port();
        let url = format!("127.0.0.1:{port}");
        let mut child = self
            .cmd(
                &[
                    &["access", "tcp", "--hostname", host, "--url", &url][..],
                    extra,
                ]
                .concat(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the listener");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let child = KillOnDrop(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.starts_with("Listening on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the listener says it listens");
        (child, port)
    }

    /// `ssh` through `cfaccess access ssh --hostname %h` as its ProxyCommand,
    /// logging in with `key`, with nothing of the user's ssh config.
    pub fn ssh(&self, key: &Path, proxy_extra: &str, args: &[&str]) -> Command {
        let proxy = format!(
            "{} access ssh --hostname %h{proxy_extra}",
            env!("CARGO_BIN_EXE_cfaccess")
        );
        self.ssh_via(&proxy, key, args)
    }

    /// `ssh` with the given ProxyCommand, in this world's environment.
    pub fn ssh_via(&self, proxy: &str, key: &Path, args: &[&str]) -> Command {
        let mut cmd = sshd::ssh_client(key);
        cmd.arg("-o")
            .arg(format!("ProxyCommand={proxy}"))
            .args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// Writes an executable script in the temp dir and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    pub fn aud(&self) -> String {
        self.edge.app_aud(APP_HOST).expect("demo app")
    }

    /// Where the demo app's token lives, as the official client names it.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join(format!("{APP_HOST}-{}-token", self.aud()))
    }

    pub fn org_token_file(&self) -> PathBuf {
        self.dir.join(format!("{AUTH_DOMAIN}-org-token"))
    }

    /// Logs in to the demo app and returns the token.
    pub fn login(&self) -> String {
        let run = self.run(&["login", "--no-verbose", APP]);
        run.success();
        run.stdout.clone()
    }

    /// The files in the config dir, sorted.
    pub fn dir_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A child process killed when dropped, so a failing test leaves nothing
/// running (and holding the test's output pipes).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0.
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    /// Asserts that it failed the way every failure must: the exit code, nothing
    /// on stdout, one line on stderr starting with `error:`, no panic.
    pub fn failure(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code: {self:#?}");
        assert_eq!(
            self.stdout, "",
            "stdout must stay empty on failure: {self:#?}"
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line expected: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:#?}");
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "panic: {self:#?}");
        self
    }

    /// The `error:` line.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_default()
    }
}

/// Runs `cmd` to its end, killing it after `limit` (a failed test, not a hang).
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Run {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("command did not finish within {limit:?}: {cmd:?}");
        }
    };
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until `cond` holds, failing the test after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Whether `s` looks like a compact JWT.
pub fn is_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}
