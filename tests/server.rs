// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! `cfaccess server setup` and `check` end to end: Debian's stock
//! sshd_config under `--root`, the app's CA from access-edge's Cloudflare
//! API, the real sshd started from that config, and the real ssh logging in
//! through cfaccess with a short-lived certificate.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::sshd::{SSHD, current_user, free_port, keygen, ssh_with_config};
use common::*;

/// Debian 12's /etc/ssh/sshd_config, as the openssh-server package ships it.
const DEBIAN_SSHD_CONFIG: &str = include_str!("data/debian-sshd_config");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A server under a temporary root: Debian's stock sshd_config (its
/// `Include` pointed under the root) with a drop-in of the test's own (port,
/// host key, pid file), an edge whose demo app's origin is that sshd, and
/// the API credentials of the edge.
struct Server {
    env: TestEnv,
    root: PathBuf,
    port: u16,
    sshd: Option<KillOnDrop>,
    log: PathBuf,
}

impl Server {
    fn new() -> Server {
        Server::for_identity(&format!("{}@example.com", current_user()))
    }

    /// The edge approves logins as `email`.
    fn for_identity(email: &str) -> Server {
        Server::with(email, |_| {})
    }

    /// The same, with changes to the edge's options.
    fn with(email: &str, change: impl FnOnce(&mut EdgeOptions)) -> Server {
        let port = free_port();
        let email = email.to_owned();
        let env = TestEnv::with(|opts| {
            opts.auto_approve = Some(email);
            opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
            change(opts);
        });
        let root = env.tmp.path().join("root");
        let ssh_dir = root.join("etc/ssh");
        std::fs::create_dir_all(ssh_dir.join("sshd_config.d")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        let stock = DEBIAN_SSHD_CONFIG.replace(
            "Include /etc/ssh/sshd_config.d/*.conf",
            &format!("Include {}/sshd_config.d/*.conf", ssh_dir.display()),
        );
        assert_ne!(stock, DEBIAN_SSHD_CONFIG, "the stock file has its Include");
        std::fs::write(ssh_dir.join("sshd_config"), stock).unwrap();
        keygen(&ssh_dir.join("ssh_host_ed25519_key"));
        let mut test_conf = vec![
            format!("Port {port}"),
            "ListenAddress 127.0.0.1".into(),
            format!("HostKey {}/ssh_host_ed25519_key", ssh_dir.display()),
            format!("PidFile {}/run/sshd.pid", root.display()),
            // no keys of the user's own: only certificates can log in
            "AuthorizedKeysFile none".into(),
            "LogLevel VERBOSE".into(),
        ];
        if !is_root() {
            test_conf.extend(["UsePAM no".into(), "StrictModes no".into()]);
        } else {
            // PAM's session modules need a login environment a container lacks
            test_conf.push("UsePAM no".into());
        }
        std::fs::write(
            ssh_dir.join("sshd_config.d/10-test.conf"),
            test_conf.join("\n") + "\n",
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = env.tmp.path().join("sshd.log");
        Server {
            env,
            root,
            port,
            sshd: None,
            log,
        }
    }

    fn ssh_dir(&self) -> PathBuf {
        self.root.join("etc/ssh")
    }

    /// Starts the real sshd from the config under the root.
    fn start_sshd(&mut self) {
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.ssh_dir().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .expect("sshd starts");
        self.sshd = Some(KillOnDrop(child));
        let port = self.port;
        wait_for(Duration::from_secs(10), "sshd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    fn sshd_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until sshd has restarted `n` times on SIGHUP and listens again.
    fn wait_for_reloads(&self, n: usize) {
        wait_for(Duration::from_secs(10), "sshd to reload", || {
            let log = self.sshd_log();
            log.matches("Received SIGHUP").count() >= n
                && log.matches("Server listening on").count() > n
        });
    }

    /// `cfaccess server <args…> --root <root>` with the edge's API token and
    /// account in the environment.
    fn server(&self, args: &[&str]) -> Run {
        let mut cmd = self.server_cmd(args);
        cmd.env(
            "CLOUDFLARE_API_TOKEN",
            self.env.edge.api_token().expect("the edge's API token"),
        );
        run_with_deadline(cmd, Duration::from_secs(120))
    }

    /// The same command with no API token.
    fn server_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.cmd(&[&["server"], args].concat());
        cmd.arg("--root")
            .arg(&self.root)
            .env("CLOUDFLARE_ACCOUNT_ID", self.env.edge.account_id());
        cmd
    }

    /// The app's CA, made on the edge (as the dashboard's button does) and
    /// saved as a file to give `--ca-key`: its path.
    fn ca_key_file(&self) -> String {
        let ca = self
            .env
            .edge
            .generate_ca(APP_HOST, access_edge::CaKeyType::Ecdsa)
            .unwrap();
        let file = self.env.tmp.path().join("ca-from-dashboard.pub");
        std::fs::write(&file, format!("{ca}\n")).unwrap();
        file.display().to_string()
    }

    /// Every file under the root and its bytes.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_none_or(|e| e != "pid") {
                    out.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root.join("etc"), &mut out);
        out
    }

    /// `ssh` through cfaccess with the config `ssh-config --short-lived-cert` prints.
    fn ssh(&self, user: &str, command: &str) -> Run {
        run_with_deadline(self.ssh_cmd(user, command), Duration::from_secs(120))
    }

    fn ssh_cmd(&self, user: &str, command: &str) -> Command {
        let printed = self
            .env
            .run(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
        printed.success();
        let config = self.env.tmp.path().join("ssh_config");
        std::fs::write(&config, &printed.stdout).unwrap();
        let mut cmd = ssh_with_config(&config);
        cmd.args(["-l", user, APP_HOST, command]);
        self.env.isolate(&mut cmd);
        cmd
    }
}

#[test]
fn setup_through_the_api_lets_a_short_lived_certificate_in_and_a_second_run_changes_nothing() {
    let mut server = Server::new();
    server.start_sshd();
    let me = current_user();
    let email = format!("{me}@example.com");
    let before = server.files();
    let stock = server.ssh_dir().join("sshd_config");

    let run = server.server(&[
        "setup",
        "--hostname",
        APP_HOST,
        "--create-ca",
        "--user",
        &email,
    ]);
    run.success();
    let ca = server
        .env
        .edge
        .ca_public_key(APP_HOST)
        .expect("the API made the CA");
    let ca_key = ca.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let ca_file = server.ssh_dir().join("ca.pub");
    let drop_in = server.ssh_dir().join("sshd_config.d/00-cfaccess.conf");
    assert!(
        run.stdout
            .contains("created now through the Cloudflare API"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains(&format!("Created {}", ca_file.display())),
        "{run:#?}"
    );
    assert!(run.stdout.contains("Reloaded sshd (kill -HUP"), "{run:#?}");
    assert!(std::fs::read_to_string(&ca_file).unwrap().contains(&ca_key));
    let drop_in_text = std::fs::read_to_string(&drop_in).unwrap();
    assert!(
        drop_in_text.contains(&format!("TrustedUserCAKeys {}", ca_file.display())),
        "{drop_in_text}"
    );
    assert!(
        drop_in_text.contains("PubkeyAuthentication yes"),
        "{drop_in_text}"
    );
    assert_eq!(
        std::fs::read(&stock).unwrap(),
        before[&stock],
        "the stock sshd_config is left as it was"
    );

    // the reload, not a restart, put it in effect
    server.wait_for_reloads(1);
    let login = server.ssh(&me, "echo logged-in-as-$(id -un)");
    login.success();
    assert_eq!(login.stdout.trim(), format!("logged-in-as-{me}"));
    assert!(
        server.sshd_log().contains("Accepted publickey") && server.sshd_log().contains("CERT"),
        "{}",
        server.sshd_log()
    );

    // a plain key, even one whose public half sits in the CA file's dir, is refused
    let plain = server.env.tmp.path().join("plain_key");
    keygen(&plain);
    let mut cmd = ssh_with_config(Path::new("/dev/null"));
    cmd.arg("-i")
        .arg(&plain)
        .args(["-p", &server.port.to_string(), "127.0.0.1", "true"]);
    let refused = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(refused.code, Some(255), "{refused:#?}");
    assert!(refused.stderr.contains("Permission denied"), "{refused:#?}");

    // the same again: nothing to change, nothing touched, no reload
    let after = server.files();
    let again = server.server(&[
        "setup",
        "--hostname",
        APP_HOST,
        "--create-ca",
        "--user",
        &email,
    ]);
    again.success();
    assert!(again.stdout.contains("Nothing to change"), "{again:#?}");
    assert_eq!(server.files(), after);
    assert_eq!(server.sshd_log().matches("Received SIGHUP").count(), 1);

    let check = server.server(&["check", "--hostname", APP_HOST, "--user", &email, "--json"]);
    check.success();
    let report: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let statuses: BTreeMap<String, String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for id in [
        "sshd",
        "config",
        "pubkey",
        "ca-file",
        "app-ca",
        "user",
        "listening",
    ] {
        assert_eq!(
            statuses.get(id).map(String::as_str),
            Some("ok"),
            "{id}: {report:#}"
        );
    }
    // a session open across a setup that reloads sshd lives on
    let mut session = server.ssh_cmd(&me, "cat");
    let mut session = KillOnDrop(
        session
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut to_session = session.0.stdin.take().unwrap();
    let mut from_session = std::io::BufReader::new(session.0.stdout.take().unwrap());
    let echo = |to: &mut std::process::ChildStdin,
                from: &mut std::io::BufReader<std::process::ChildStdout>,
                text: &str| {
        use std::io::{BufRead, Write};
        writeln!(to, "{text}").unwrap();
        to.flush().unwrap();
        let mut line = String::new();
        from.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    assert_eq!(echo(&mut to_session, &mut from_session, "before"), "before");
    server
        .server(&[
            "setup",
            "--hostname",
            APP_HOST,
            "--map",
            &format!("{me}=alice@example.com"),
        ])
        .success();
    server.wait_for_reloads(2);
    // and from now on only alice's certificate logs in as {me}: check says so
    let check = server.server(&["check", "--user", &email]);
    assert_eq!(check.code, Some(1), "{check:#?}");
    assert!(
        check
            .stdout
            .contains("lets in only the certificate of alice"),
        "{}",
        check.stdout
    );
    assert_eq!(
        echo(&mut to_session, &mut from_session, "after the reload"),
        "after the reload"
    );
}

#[test]
fn check_names_each_gap_with_its_fix_and_fails() {
    let mut server = Server::new();
    server.start_sshd();
    server
        .env
        .edge
        .generate_ca(APP_HOST, access_edge::CaKeyType::Ecdsa)
        .unwrap();
    let run = server.server(&[
        "check",
        "--hostname",
        APP_HOST,
        "--user",
        "nobody-here-x@example.com",
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("FAIL  ca-file"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("fix: cfaccess server setup --hostname ssh.demo.test"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("FAIL  user"), "{}", run.stdout);
    assert!(
        run.stdout.contains("no Unix user nobody-here-x"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ok    listening"), "{}", run.stdout);
}

#[test]
fn map_lets_an_existing_user_in_with_another_identitys_certificate() {
    if !is_root() {
        eprintln!("skipped: AuthorizedPrincipalsCommandUser needs sshd to run as root");
        return;
    }
    let me = current_user();
    let mut server = Server::for_identity("alice@example.com");
    server.start_sshd();
    let key_arg = server.ca_key_file();

    server
        .server(&["setup", "--hostname", APP_HOST, "--ca-key", &key_arg])
        .success();
    server.wait_for_reloads(1);
    let refused = server.ssh(&me, "true");
    assert_eq!(
        refused.code,
        Some(255),
        "alice's certificate is not {me}'s: {refused:#?}"
    );

    let map = format!("{me}=alice@example.com");
    let run = server.server(&[
        "setup",
        "--hostname",
        APP_HOST,
        "--ca-key",
        &key_arg,
        "--map",
        &map,
    ]);
    run.success();
    let drop_in =
        std::fs::read_to_string(server.ssh_dir().join("sshd_config.d/00-cfaccess.conf")).unwrap();
    assert!(drop_in.contains(&format!("Match User {me}")), "{drop_in}");
    assert!(
        drop_in.contains("AuthorizedPrincipalsCommand /bin/echo alice"),
        "{drop_in}"
    );
    assert!(
        drop_in.contains("AuthorizedPrincipalsCommandUser nobody"),
        "{drop_in}"
    );
    server.wait_for_reloads(2);
    let login = server.ssh(&me, "id -un");
    login.success();
    assert_eq!(login.stdout.trim(), me);

    let check = server.server(&["check", "--user", "alice@example.com"]);
    check.success();
    assert!(
        check
            .stdout
            .contains(&format!("alice@example.com logs in as {me}")),
        "{}",
        check.stdout
    );
}

#[test]
fn dry_run_prints_the_diff_and_the_commands_and_touches_nothing() {
    let server = Server::new();
    server
        .env
        .edge
        .generate_ca(APP_HOST, access_edge::CaKeyType::Ecdsa)
        .unwrap();
    let before = server.files();
    let run = server.server(&["setup", "--hostname", APP_HOST, "--dry-run"]);
    run.success();
    assert_eq!(server.files(), before);
    let drop_in = server.ssh_dir().join("sshd_config.d/00-cfaccess.conf");
    assert!(
        run.stdout.contains(&format!("+++ {}", drop_in.display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("+PubkeyAuthentication yes"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "+TrustedUserCAKeys {}/ca.pub",
            server.ssh_dir().display()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" -t -f "), "{}", run.stdout);
    assert!(
        run.stdout.contains("Dry run: nothing was changed."),
        "{}",
        run.stdout
    );
}

/// Runs `setup` and asserts it failed with one error line containing
/// `expect`, every file under the root byte for byte as before.
fn refused(server: &Server, run: Run, before: &BTreeMap<PathBuf, Vec<u8>>, expect: &str) {
    run.failure(if run.code == Some(2) { 2 } else { 1 });
    assert!(
        run.error_line().contains(expect),
        "expected {expect:?} in: {}",
        run.error_line()
    );
    if let Some(token) = server.env.edge.api_token() {
        assert!(
            !run.stderr.contains(&token),
            "the API token is never printed"
        );
    }
    assert_eq!(&server.files(), before, "a refused setup changes no file");
}

#[test]
fn every_fault_is_one_line_with_its_fix_and_changes_no_file() {
    let server = Server::new();
    let before = server.files();
    let setup = |extra: &[&str]| server.server(&[&["setup"], extra].concat());

    // the app has no CA yet
    refused(
        &server,
        setup(&["--hostname", APP_HOST]),
        &before,
        "has no SSH CA yet: run again with --create-ca",
    );
    // no app for that host
    refused(
        &server,
        setup(&["--hostname", "nope.demo.test", "--create-ca"]),
        &before,
        "no Access application for nope.demo.test",
    );
    // a bad token
    let mut cmd = server.server_cmd(&["setup", "--hostname", APP_HOST, "--create-ca"]);
    cmd.env("CLOUDFLARE_API_TOKEN", "not-a-real-token");
    refused(
        &server,
        run_with_deadline(cmd, Duration::from_secs(60)),
        &before,
        "refused the credentials",
    );
    // no token at all
    refused(
        &server,
        run_with_deadline(
            server.server_cmd(&["setup", "--hostname", APP_HOST]),
            Duration::from_secs(60),
        ),
        &before,
        "set CLOUDFLARE_API_TOKEN",
    );
    // the API answering garbage, then down
    server
        .env
        .edge
        .set_api_fault(Some(access_edge::ApiFault::Garbage));
    refused(
        &server,
        setup(&["--hostname", APP_HOST, "--create-ca"]),
        &before,
        "not its JSON envelope",
    );
    server.env.edge.set_api_fault(None);
    let mut profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server.env.edge.profile_path()).unwrap())
            .unwrap();
    profile["hosts"]["api.cloudflare.com"] = format!("127.0.0.1:{}", free_port()).into();
    let down = server.env.tmp.path().join("api-down-profile.json");
    std::fs::write(&down, profile.to_string()).unwrap();
    let mut cmd = server.server_cmd(&["setup", "--hostname", APP_HOST, "--create-ca"]);
    cmd.env("CFACCESS_EDGE", &down)
        .env("CLOUDFLARE_API_TOKEN", server.env.edge.api_token().unwrap());
    refused(
        &server,
        run_with_deadline(cmd, Duration::from_secs(60)),
        &before,
        "cannot reach the Cloudflare API: connection refused",
    );
    // a malformed key given by hand
    let bad_key = server.env.tmp.path().join("bad.pub");
    std::fs::write(&bad_key, "ssh-ed25519 AAAAnot-base64 me\n").unwrap();
    refused(
        &server,
        setup(&[
            "--hostname",
            APP_HOST,
            "--ca-key",
            bad_key.to_str().unwrap(),
        ]),
        &before,
        "not an OpenSSH public key",
    );
    // a user that does not exist, without --create-user
    let key = server.ca_key_file();
    let key = key.as_str();
    refused(
        &server,
        setup(&[
            "--hostname",
            APP_HOST,
            "--ca-key",
            key,
            "--user",
            "no-such-user-x@example.com",
        ]),
        &before,
        "no Unix user no-such-user-x for no-such-user-x@example.com on this machine: run again with --create-user",
    );
    // no sshd binary
    refused(
        &server,
        setup(&[
            "--hostname",
            APP_HOST,
            "--ca-key",
            key,
            "--sshd",
            "/nonexistent/sshd",
        ]),
        &before,
        "--sshd /nonexistent/sshd: no such file",
    );
    // an sshd that accepts the config as it is and rejects the result: all put back
    let picky = server.env.script(
        "picky-sshd",
        &format!(
            "#!/bin/sh\nif [ -e {dir}/sshd_config.d/00-cfaccess.conf ]; then\n  echo \"{dir}/sshd_config.d/00-cfaccess.conf line 3: Bad configuration option: TrustedUserCAKeys\" >&2\n  echo \"{dir}/sshd_config.d/00-cfaccess.conf: terminating, 1 bad configuration options\" >&2\n  exit 255\nfi\nexec {SSHD} \"$@\"\n",
            dir = server.ssh_dir().display()
        ),
    );
    let run = setup(&[
        "--hostname",
        APP_HOST,
        "--ca-key",
        key,
        "--sshd",
        picky.to_str().unwrap(),
    ]);
    // sshd's own two lines, joined into the one error line
    assert!(
        run.error_line()
            .contains("Bad configuration option: TrustedUserCAKeys; "),
        "{run:#?}"
    );
    assert!(
        run.error_line().contains("every file is as it was before"),
        "{run:#?}"
    );
    refused(&server, run, &before, "sshd rejects the new configuration");
    // an sshd_config that sshd already rejects
    let config = server.ssh_dir().join("sshd_config");
    let broken = format!(
        "{}NoSuchOption yes\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &broken).unwrap();
    let before_broken = server.files();
    refused(
        &server,
        setup(&["--hostname", APP_HOST, "--ca-key", key]),
        &before_broken,
        "sshd already rejects",
    );
    std::fs::write(&config, &before[&config]).unwrap();
}

#[test]
fn a_read_only_etc_ssh_is_a_clear_error_and_nothing_changes() {
    let server = Server::new();
    let key = server.ca_key_file();
    let before = server.files();
    let ssh_dir = server.ssh_dir();
    let mut cmd = if is_root() {
        // root writes through any mode: a read-only bind mount in a mount
        // namespace of the command's own stops it
        let probe = Command::new("unshare")
            .args(["--mount", "sh", "-c"])
            .arg(format!("mount --bind -o ro {0} {0}", ssh_dir.display()))
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipped: no mount namespaces here to make {} read-only",
                ssh_dir.display()
            );
            return;
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "sh", "-c"]).arg(format!(
            "mount --bind -o ro {0} {0} && exec \"$@\"",
            ssh_dir.display()
        ));
        cmd.arg("sh").arg(env!("CARGO_BIN_EXE_cfaccess"));
        server.env.isolate(&mut cmd);
        cmd
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        server.env.cmd(&[])
    };
    cmd.args(["server", "setup", "--hostname", APP_HOST, "--ca-key"])
        .arg(&key)
        .arg("--root")
        .arg(&server.root);
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    refused(
        &server,
        run,
        &before,
        &format!("cannot write {}/ca.pub", ssh_dir.display()),
    );
}

#[test]
fn create_user_adds_the_user_to_the_roots_passwd() {
    if !is_root() {
        eprintln!("skipped: useradd needs root");
        return;
    }
    let server = Server::new();
    for file in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
        let from = Path::new("/etc").join(file);
        if from.exists() {
            std::fs::copy(&from, server.root.join("etc").join(file)).unwrap();
        }
    }
    let key = server.ca_key_file();
    let args = [
        "setup",
        "--hostname",
        APP_HOST,
        "--ca-key",
        &key,
        "--user",
        "newbie@example.com",
        "--create-user",
    ];
    let system_passwd = std::fs::read("/etc/passwd").unwrap();
    let run = server.server(&args);
    run.success();
    assert!(run.stdout.contains("Ran useradd --prefix"), "{run:#?}");
    let passwd = std::fs::read_to_string(server.root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("newbie:")), "{passwd}");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        system_passwd,
        "the system's users are untouched"
    );
    let again = server.server(&args);
    again.success();
    assert!(again.stdout.contains("Nothing to change"), "{again:#?}");
}

#[test]
fn a_read_only_or_expired_token_is_named_and_changes_nothing() {
    use access_edge::{ApiPermission, ApiTokenConfig};
    let token = |name: &str, permission, expires: Option<&str>| ApiTokenConfig {
        name: name.into(),
        token: format!("{name}-token-0123456789abcdefghijklmnopqrstuv"),
        permission,
        expires: expires.map(Into::into),
    };
    let server = Server::with(&format!("{}@example.com", current_user()), |opts| {
        opts.config.api_tokens = vec![
            token("reader", ApiPermission::Read, None),
            token("old", ApiPermission::Edit, Some("2020-01-01T00:00:00Z")),
        ];
    });
    let before = server.files();
    let with_token = |name: &str| {
        let mut cmd = server.server_cmd(&["setup", "--hostname", APP_HOST, "--create-ca"]);
        cmd.env(
            "CLOUDFLARE_API_TOKEN",
            format!("{name}-token-0123456789abcdefghijklmnopqrstuv"),
        );
        run_with_deadline(cmd, Duration::from_secs(60))
    };
    let run = with_token("reader");
    assert!(!run.stderr.contains("reader-token"), "{run:#?}");
    refused(
        &server,
        run,
        &before,
        "creating the CA needs an API token that may edit Access apps",
    );
    let run = with_token("old");
    assert!(!run.stderr.contains("old-token"), "{run:#?}");
    refused(
        &server,
        run,
        &before,
        "the token may be mistyped, expired or revoked",
    );
    // the file form reads the same token, and a read-only one can read a CA
    server
        .env
        .edge
        .generate_ca(APP_HOST, access_edge::CaKeyType::Ecdsa)
        .unwrap();
    let file = server.env.tmp.path().join("token");
    std::fs::write(&file, "reader-token-0123456789abcdefghijklmnopqrstuv\n").unwrap();
    let run = run_with_deadline(
        {
            let mut cmd = server.server_cmd(&["setup", "--hostname", APP_HOST, "--dry-run"]);
            cmd.arg("--api-token-file").arg(&file);
            cmd
        },
        Duration::from_secs(60),
    );
    run.success();
    assert!(run.stdout.contains("(from the Cloudflare API)"), "{run:#?}");
}
