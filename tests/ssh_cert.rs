// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! Short-lived ssh certificates: `ssh-gen`, `ssh-config`, and the app's CA on
//! the edge, with the real ssh, sshd (trusting only the CA) and ssh-keygen.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use access_edge::{CaKeyType, CertSignFault};
use common::sshd::{Sshd, current_user};
use common::*;

/// An sshd that trusts only the demo app's CA, an edge in front of it that
/// approves logins as `<local part>@example.com`, and the ssh config that
/// `cfaccess ssh-config --short-lived-cert` prints.
struct World {
    env: TestEnv,
    sshd: Sshd,
    ssh_config: PathBuf,
}

fn world(local_part: &str) -> World {
    world_trusting(local_part, APP_HOST)
}

/// The same, with sshd trusting the CA of the app `trusted` (another app
/// than the demo one makes an sshd that does not trust the demo's CA).
fn world_trusting(local_part: &str, trusted: &str) -> World {
    // the CA must exist before sshd starts: make the edge first, then point it at sshd
    let port = common::sshd::free_port();
    let email = format!("{local_part}@example.com");
    let env = TestEnv::with(|opts| {
        opts.auto_approve = Some(email.clone());
        opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
        let mut other = opts.config.apps[0].clone();
        other.hostname = "other.demo.test".into();
        other.aud = None;
        opts.config.apps.push(other);
    });
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let ca = env.edge.generate_ca(trusted, CaKeyType::Ecdsa).unwrap();
    let ca_file = env.tmp.path().join("trusted_user_ca_keys");
    let sshd = Sshd::trusting_ca(port, &ca_file, &ca);
    let printed = env.run(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
    printed.success();
    let ssh_config = env.tmp.path().join("ssh_config");
    std::fs::write(&ssh_config, &printed.stdout).unwrap();
    World {
        env,
        sshd,
        ssh_config,
    }
}

impl World {
    /// `ssh -F <the printed config> host args…`.
    fn ssh(&self, args: &[&str]) -> Run {
        let mut cmd = common::sshd::ssh_with_config(&self.ssh_config);
        cmd.arg(APP_HOST).args(args);
        self.env.isolate(&mut cmd);
        run_with_deadline(cmd, Duration::from_secs(120))
    }

    fn cert_file(&self) -> PathBuf {
        self.env.dir.join(format!("{APP_HOST}-cf_key-cert.pub"))
    }

    fn ssh_gen(&self) -> Run {
        self.env.run(&["access", "ssh-gen", "--hostname", APP_HOST])
    }
}

fn keygen_l(cert: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ssh_logs_in_with_a_certificate_it_never_saw_a_key_for() {
    let me = current_user();
    let w = world(&me);
    let first = w.ssh(&["whoami"]);
    first.success();
    assert_eq!(first.stdout, format!("{me}\n"));
    assert_eq!(w.env.edge.count(Endpoint::LoginPage), 1);
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 1);
    assert!(
        w.sshd.log_text().contains("CERT"),
        "sshd accepted a certificate: {}",
        w.sshd.log_text()
    );

    let listing = keygen_l(&w.cert_file());
    assert!(listing.contains("user certificate"), "{listing}");
    assert!(
        listing.contains(&format!("Principals: \n                {me}\n")),
        "{listing}"
    );
    for ext in [
        "permit-agent-forwarding",
        "permit-port-forwarding",
        "permit-pty",
        "permit-user-rc",
    ] {
        assert!(listing.contains(ext), "{ext}: {listing}");
    }
    assert!(listing.contains("Valid: from "), "{listing}");
    for name in [
        format!("{APP_HOST}-cf_key"),
        format!("{APP_HOST}-cf_key.pub"),
        format!("{APP_HOST}-cf_key-cert.pub"),
    ] {
        assert_eq!(mode(&w.env.dir.join(&name)), 0o600, "{name}");
    }
    let public = std::fs::read_to_string(w.env.dir.join(format!("{APP_HOST}-cf_key.pub"))).unwrap();
    assert!(
        public.starts_with("ecdsa-sha2-nistp256 AAAA") && public.ends_with('\n'),
        "{public}"
    );

    // inside the margin: ssh-gen asks nobody; only the carried connection reaches the edge
    let before = w.env.edge.total_requests();
    let second = w.ssh(&["true"]);
    second.success();
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 1);
    assert_eq!(
        w.env.edge.total_requests(),
        before + 1,
        "{:?}",
        w.env.edge.counters()
    );
    let requests = w.env.edge.total_requests();
    w.ssh_gen().success();
    assert_eq!(
        w.env.edge.total_requests(),
        requests,
        "ssh-gen alone makes no request at all"
    );
}

#[test]
fn a_certificate_near_its_end_is_replaced() {
    let me = current_user();
    let w = world(&me);
    // valid for 35 s: within the 30 s margin right away
    w.env.edge.set_cert_validity(Duration::from_secs(35));
    w.ssh(&["true"]).success();
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 1);
    let first = std::fs::read_to_string(w.cert_file()).unwrap();
    w.ssh(&["true"]).success();
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 2);
    assert_ne!(std::fs::read_to_string(w.cert_file()).unwrap(), first);
    assert_eq!(
        w.env.edge.count(Endpoint::LoginPage),
        1,
        "the token is reused"
    );
}

#[test]
fn another_users_identity_is_refused_by_sshd_and_the_principal_is_shown() {
    let w = world("somebody-else");
    let run = w.ssh(&["whoami"]);
    assert_eq!(run.code, Some(255), "{run:#?}");
    assert!(run.stderr.contains("Permission denied"), "{run:#?}");
    // ssh-gen says nothing into ssh's output (issue 12): status names the principal
    assert!(!run.stderr.contains("new ssh certificate"), "{run:#?}");
    let status = w.env.run(&["status", APP]);
    assert!(
        status.stdout.contains("principal somebody-else"),
        "cfaccess says whom it is for: {status:#?}"
    );
}

#[test]
fn an_sshd_that_does_not_trust_the_ca_refuses() {
    let w = world_trusting(&current_user(), "other.demo.test");
    let run = w.ssh(&["whoami"]);
    assert_eq!(run.code, Some(255), "{run:#?}");
    assert!(run.stderr.contains("Permission denied"), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        w.env.edge.count(Endpoint::CertSign),
        1,
        "the certificate was issued, and refused"
    );
}

#[test]
fn several_ssh_gen_at_once_make_one_cert_sign_call() {
    let w = world(&current_user());
    w.env.login();
    let children: Vec<_> = (0..6)
        .map(|_| {
            w.env
                .cmd(&["ssh-gen", "--hostname", APP_HOST])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 1);
}

#[test]
fn the_cfpipe_manual_form_connects() {
    let me = current_user();
    let w = world(&me);
    let exe = env!("CARGO_BIN_EXE_cfaccess");
    let dir = w.env.dir.display();
    let config = w.env.tmp.path().join("cfpipe_config");
    std::fs::write(
        &config,
        format!(
            "Host {APP_HOST}\n  \
             ProxyCommand bash -c '{exe} access ssh-gen --hostname %h; ssh -F {cfg} -tt %r@cfpipe-%h >&2 <&1'\n\n\
             Host cfpipe-{APP_HOST}\n  \
             HostName {APP_HOST}\n  \
             ProxyCommand {exe} access ssh --hostname %h\n  \
             IdentityFile {dir}/{APP_HOST}-cf_key\n  \
             CertificateFile {dir}/{APP_HOST}-cf_key-cert.pub\n\n\
             Host *\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n  IdentitiesOnly yes\n",
            cfg = w.env.tmp.path().join("cfpipe_config").display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(&config).args(["-l", &me, APP_HOST]);
    w.env.isolate(&mut cmd);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    // The inner ssh gets an interactive session (its output on the outer
    // ssh's stderr, the user's terminal): it connects, then waits for input.
    let mut outer = cmd.spawn().unwrap();
    wait_for(
        Duration::from_secs(60),
        "sshd to accept the certificate",
        || {
            let log = w.sshd.log_text();
            log.contains(&format!("Accepted publickey for {me}")) && log.contains("ECDSA-CERT")
        },
    );
    let _ = outer.kill();
    let _ = outer.wait();
    assert_eq!(w.env.edge.count(Endpoint::CertSign), 1);
}

#[test]
fn install_twice_leaves_one_block_and_the_snippet_is_the_documented_one() {
    let env = TestEnv::new();
    let exe = env!("CARGO_BIN_EXE_cfaccess");
    let dir = env.dir.display();
    let printed = env.run(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
    printed.success();
    assert_eq!(
        printed.stdout,
        format!(
            "Match host {APP_HOST} exec \"{exe} access ssh-gen --hostname %h --config-dir {dir}\"\n  \
             ProxyCommand {exe} access ssh --hostname %h --config-dir {dir}\n  \
             IdentityFile {dir}/%h-cf_key\n  \
             CertificateFile {dir}/%h-cf_key-cert.pub\n"
        )
    );
    assert!(
        printed.stderr.starts_with("Add this to your ~/.ssh/config"),
        "{printed:#?}"
    );
    let plain = env.run(&["access", "ssh-config", "--hostname", APP_HOST]);
    assert_eq!(
        plain.stdout,
        format!(
            "Host {APP_HOST}\n  ProxyCommand {exe} access ssh --hostname %h --config-dir {dir}\n"
        )
    );

    // with the default config dir, the snippet says ~/.cloudflared
    let mut default = env.cmd(&["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"]);
    default.env_remove("CFACCESS_DIR");
    let default = run_with_deadline(default, Duration::from_secs(30));
    assert!(
        default
            .stdout
            .contains("IdentityFile ~/.cloudflared/%h-cf_key\n"),
        "{default:#?}"
    );

    let file = env.tmp.path().join("config");
    std::fs::write(&file, "Host *\n  ServerAliveInterval 30\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let install = [
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--install",
        "--config",
        file_arg,
    ];
    let dry = env.run(&[&install[..], &["--dry-run"]].concat());
    dry.success();
    assert!(
        dry.stdout.contains(&format!("+Host {APP_HOST}")),
        "{dry:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "Host *\n  ServerAliveInterval 30\n",
        "dry run writes nothing"
    );
    // first with --short-lived-cert, then without: the second block replaces the first
    env.run(&[&install[..], &["--short-lived-cert"]].concat())
        .success();
    env.run(&install).success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.matches(&format!("# BEGIN cfaccess {APP_HOST}"))
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.ends_with("\nHost *\n  ServerAliveInterval 30\n"),
        "the block goes before Host *, which would win: {text}"
    );
    assert!(
        text.contains(&format!("Host {APP_HOST}\n")) && !text.contains("Match host"),
        "the second run replaced the block: {text}"
    );
}

#[test]
fn cert_sign_faults_are_clear_errors_and_leave_no_file() {
    let w = world(&current_user());
    w.env.login();
    let cases = [
        (
            CertSignFault::Error {
                status: 500,
                message: "the CA is on fire".into(),
            },
            "500: the CA is on fire",
        ),
        (CertSignFault::OtherKey, "another key"),
        (CertSignFault::Garbage, "not valid"),
        (CertSignFault::BadCertificate, "not an OpenSSH certificate"),
        (CertSignFault::HostCertificate, "host certificate"),
        (CertSignFault::Expired, "expired"),
    ];
    for (fault, says) in cases {
        w.env.edge.cert_sign_fault(Some(fault.clone()));
        let run = w.ssh_gen();
        run.failure(1);
        assert!(run.error_line().contains(says), "{fault:?}: {run:#?}");
        assert!(
            !w.cert_file().exists(),
            "{fault:?} left a certificate behind"
        );
        let junk: Vec<String> = w
            .env
            .dir_entries()
            .into_iter()
            .filter(|n| n.ends_with(".tmp") || n.ends_with(".lock"))
            .collect();
        assert!(junk.is_empty(), "{junk:?}");
    }
    w.env.edge.cert_sign_fault(None);
    w.ssh_gen().success();
    assert!(w.cert_file().exists());
}

#[test]
fn a_refused_token_leads_to_a_new_login_and_a_certificate() {
    let w = world(&current_user());
    w.env.login();
    w.env
        .edge
        .revoke_user(&format!("{}@example.com", current_user()));
    let run = w.ssh_gen();
    run.success();
    assert_eq!(w.env.edge.count(Endpoint::LoginPage), 2, "one new login");
    assert_eq!(
        w.env.edge.count(Endpoint::CertSign),
        2,
        "refused once, then signed"
    );
    assert!(w.cert_file().exists());
}

#[test]
fn no_ca_for_the_app_is_named() {
    let env = TestEnv::new();
    env.login();
    let run = env.run(&["ssh-gen", "--hostname", APP_HOST]);
    run.failure(1);
    assert!(run.error_line().contains("404"), "{run:#?}");
    assert!(!env.dir.join(format!("{APP_HOST}-cf_key-cert.pub")).exists());
}

#[test]
fn status_shows_what_you_are_logged_in_to_and_logout_forgets_it() {
    let me = current_user();
    let w = world(&me);
    w.ssh(&["true"]).success();
    let requests = w.env.edge.total_requests();
    let status = w.env.run(&["status"]);
    status.success();
    assert_eq!(w.env.edge.total_requests(), requests, "status asks nobody");
    let out = &status.stdout;
    assert!(
        out.contains(&format!("Config dir: {}", w.env.dir.display())),
        "{out}"
    );
    for expected in [
        format!("{APP_HOST} "),
        format!("{me}@example.com"),
        format!("{AUTH_DOMAIN} "),
        format!("principal {me}"),
        "valid for 2m".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
    assert_eq!(out.matches("valid for").count(), 3, "{out}");
    assert!(!out.contains(&w.env.login()), "no token is ever printed");

    let one = w.env.run(&["logout", APP]);
    one.success();
    assert!(
        one.stderr.contains("removed 1 token and 1 ssh certificate"),
        "{one:#?}"
    );
    assert!(!w.env.token_file().exists() && !w.cert_file().exists());
    assert!(w.env.org_token_file().exists(), "the team's sign-on stays");
    assert!(
        w.env.dir.join(format!("{APP_HOST}-cf_key")).exists(),
        "the key pair stays"
    );

    w.env.run(&["logout"]).success();
    assert!(!w.env.org_token_file().exists());
    let after = w.env.run(&["status"]);
    assert!(after.stdout.contains("Not logged in"), "{after:#?}");
}

/// A copy of cfaccess in a new directory `name` under the test's temp dir
/// (a copy, not a link: the snippet names the running binary's real path).
fn cfaccess_under(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    let exe = dir.join("cfaccess");
    // by cp, not std::fs::copy: a write descriptor open in this process
    // leaks into children that other tests fork meanwhile, and exec of the
    // copy then fails with "text file busy" until they exec in turn
    let cp = Command::new("cp")
        .arg(env!("CARGO_BIN_EXE_cfaccess"))
        .arg(&exe)
        .status()
        .unwrap();
    assert!(cp.success());
    exe
}

/// What `exe ssh-config --hostname APP_HOST extra…` prints, as a config file.
fn printed_config(env: &TestEnv, exe: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let mut cmd = Command::new(exe);
    cmd.args(["ssh-config", "--hostname", APP_HOST]).args(extra);
    env.isolate(&mut cmd);
    let run = run_with_deadline(cmd, Duration::from_secs(30));
    let config = env.tmp.path().join("printed_ssh_config");
    std::fs::write(&config, &run.stdout).unwrap();
    (run, config)
}

#[test]
fn a_binary_under_a_path_with_spaces_and_backslashes_works_through_ssh() {
    let me = current_user();
    let w = world(&me);
    let exe = cfaccess_under(&w.env, r"odd \dir");
    let (printed, config) = printed_config(&w.env, &exe, &["--short-lived-cert"]);
    printed.success();
    let mut ssh = common::sshd::ssh_with_config(&config);
    ssh.arg(APP_HOST).arg("whoami");
    w.env.isolate(&mut ssh);
    let run = run_with_deadline(ssh, Duration::from_secs(120));
    run.success();
    assert_eq!(run.stdout.trim(), me, "{run:#?}");
    assert!(w.cert_file().exists(), "the Match exec ran ssh-gen");
}

#[test]
fn a_binary_under_a_path_with_quotes_works_as_a_proxy_command_and_is_refused_in_match_exec() {
    let sshd = Sshd::start(&[]);
    let addr = sshd.addr();
    let env = TestEnv::with(|opts| opts.config.apps[0].origin = Some(addr.clone()));
    let exe = cfaccess_under(&env, r#"it's "odd" \dir"#);
    let (printed, config) = printed_config(&env, &exe, &[]);
    printed.success();
    let mut ssh = common::sshd::ssh_with_config(&config);
    ssh.arg("-i")
        .arg(&sshd.user_key)
        .arg(APP_HOST)
        .arg("echo through");
    env.isolate(&mut ssh);
    let run = run_with_deadline(ssh, Duration::from_secs(120));
    run.success();
    assert_eq!(run.stdout.trim(), "through", "{run:#?}");

    // no form of `Match exec "…"` carries this path for OpenSSH 9 and 10 alike
    let (refused, _) = printed_config(&env, &exe, &["--short-lived-cert"]);
    refused.failure(1);
    assert!(
        refused.error_line().contains("double quote") && refused.error_line().contains("hint:"),
        "{refused:#?}"
    );
}

#[test]
fn ssh_config_refuses_patterns_and_keeps_a_path() {
    let env = TestEnv::new();
    for pattern in ["*", "*.demo.test", "a,b", "!x"] {
        let run = env.run(&["ssh-config", "--hostname", pattern]);
        run.failure(2);
        assert!(run.error_line().contains("pattern"), "{pattern}: {run:#?}");
    }
    let run = env.run(&["ssh-config", "--hostname", "ssh.demo.test/admin"]);
    run.success();
    assert!(run.stdout.starts_with("Host ssh.demo.test\n"), "{run:#?}");
    assert!(
        run.stdout.contains("--hostname ssh.demo.test/admin ")
            && run.stderr.contains("host names only"),
        "the path is kept for the command: {run:#?}"
    );
}
