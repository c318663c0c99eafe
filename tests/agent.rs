// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! The short-lived certificate in the ssh-agent (`ssh-gen --agent`,
//! `ssh-config --short-lived-cert --agent`, `logout`), with the real
//! `ssh-agent`, `ssh-add`, `ssh` and two real `sshd`s trusting only the app's
//! CA: the second one is reached from a session on the first with the
//! forwarded agent alone. Also what `ssh-gen` says, and where: nothing in
//! `ssh host cmd 2>&1`, a line on a terminal, the reasons at debug level.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use access_edge::CaKeyType;
use common::sshd::{Sshd, current_user};
use common::*;

/// An edge whose demo app leads to an sshd trusting only its CA, a real
/// ssh-agent, and the config `ssh-config --short-lived-cert [extra]` printed.
struct World {
    env: TestEnv,
    sshd: Sshd,
    ca_file: PathBuf,
    _agent: KillOnDrop,
    sock: PathBuf,
    ssh_config: PathBuf,
}

fn world(extra: &[&str]) -> World {
    let port = common::sshd::free_port();
    let email = format!("{}@example.com", current_user());
    let env = TestEnv::with(|opts| {
        opts.auto_approve = Some(email.clone());
        opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
    });
    let ca = env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let ca_file = env.tmp.path().join("trusted_user_ca_keys");
    std::fs::write(&ca_file, format!("{ca}\n")).unwrap();
    let sshd = Sshd::start_on(port, &trusting(&ca_file));
    let (agent, sock) = start_agent(env.tmp.path());
    let printed = env.run(
        &[
            &["ssh-config", "--hostname", APP_HOST, "--short-lived-cert"][..],
            extra,
        ]
        .concat(),
    );
    printed.success();
    let ssh_config = env.tmp.path().join("ssh_config");
    std::fs::write(&ssh_config, &printed.stdout).unwrap();
    World {
        env,
        sshd,
        ca_file,
        _agent: agent,
        sock,
        ssh_config,
    }
}

/// sshd lines: only certificates signed by the CA in `ca_file` get in.
fn trusting(ca_file: &Path) -> Vec<String> {
    vec![
        format!("TrustedUserCAKeys {}", ca_file.display()),
        "AuthorizedKeysFile none".into(),
        "AllowAgentForwarding yes".into(),
    ]
}

/// `ssh-agent -D` on a socket in `dir`, once it listens.
fn start_agent(dir: &Path) -> (KillOnDrop, PathBuf) {
    let sock = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent starts (apt-get install openssh-client)");
    let agent = KillOnDrop(child);
    wait_for(Duration::from_secs(10), "ssh-agent to listen", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    (agent, sock)
}

impl World {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.cmd(args);
        cmd.env("SSH_AUTH_SOCK", &self.sock);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        run_with_deadline(self.cmd(args), Duration::from_secs(120))
    }

    fn ssh_gen(&self, extra: &[&str]) -> Run {
        self.run(&[&["ssh-gen", "--hostname", APP_HOST][..], extra].concat())
    }

    /// `ssh -F <printed config> [opts] host args…`, with the agent.
    fn ssh(&self, opts: &[&str], args: &[&str]) -> Run {
        let mut cmd = common::sshd::ssh_with_config(&self.ssh_config);
        cmd.args(opts).arg(APP_HOST).args(args);
        self.env.isolate(&mut cmd);
        cmd.env("SSH_AUTH_SOCK", &self.sock);
        run_with_deadline(cmd, Duration::from_secs(120))
    }

    /// `ssh-add <flag>` against the test's agent: its stdout.
    fn ssh_add(&self, flag: &str) -> String {
        let out = Command::new("ssh-add")
            .arg(flag)
            .env_clear()
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .output()
            .expect("ssh-add runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn key_path(&self) -> PathBuf {
        self.env.dir.join(format!("{APP_HOST}-cf_key"))
    }

    /// The certificate on disk, as `ssh-add -L` lists it (type and blob).
    fn cert_on_disk(&self) -> String {
        let text =
            std::fs::read_to_string(self.env.dir.join(format!("{APP_HOST}-cf_key-cert.pub")))
                .unwrap();
        let words: Vec<&str> = text.split_whitespace().take(2).collect();
        words.join(" ")
    }

    /// The agent's identities that are certificates (`ssh-add -L` lines).
    fn certs_in_agent(&self) -> Vec<String> {
        self.ssh_add("-L")
            .lines()
            .filter(|l| l.contains("-cert-v01@openssh.com "))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn ssh_gen_agent_adds_the_certificate_once_replaces_it_and_logout_takes_it_out() {
    let w = world(&[]);
    w.env.login();
    // the user's own key, which cfaccess must leave alone
    let own = w.env.tmp.path().join("own_key");
    common::sshd::keygen(&own);
    let added = Command::new("ssh-add")
        .arg(&own)
        .env_clear()
        .env("SSH_AUTH_SOCK", &w.sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    w.ssh_gen(&["--agent"]).success();
    let certs = w.certs_in_agent();
    assert_eq!(certs.len(), 1, "{certs:?}");
    let key = w.key_path().display().to_string();
    assert_eq!(certs[0], format!("{} {key}", w.cert_on_disk()));
    let listed = w.ssh_add("-l");
    assert!(
        listed.contains(&format!("{key} (ECDSA-CERT)")),
        "ssh-add -l names the certificate by its key's path: {listed}"
    );

    // the certificate on disk is reused, and the agent already holds it
    w.ssh_gen(&["--agent"]).success();
    assert_eq!(w.certs_in_agent(), certs);
    // a new certificate replaces the old one in the agent: never two
    w.ssh_gen(&["--agent", "--force"]).success();
    let after = w.certs_in_agent();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, certs, "the new certificate, not the old one");
    assert_eq!(after[0], format!("{} {key}", w.cert_on_disk()));
    // the agent lost it (restarted, or `ssh-add -D`): the fast path puts it back
    let removed = Command::new("ssh-add")
        .arg("-D")
        .env_clear()
        .env("SSH_AUTH_SOCK", &w.sock)
        .output()
        .unwrap();
    assert!(removed.status.success());
    w.ssh_gen(&["--agent"]).success();
    assert_eq!(w.certs_in_agent(), after);
    let readded = Command::new("ssh-add")
        .arg(&own)
        .env_clear()
        .env("SSH_AUTH_SOCK", &w.sock)
        .output()
        .unwrap();
    assert!(readded.status.success());

    let out = w.run(&["logout", APP]);
    out.success();
    assert!(
        out.stderr.contains("1 from the ssh-agent"),
        "logout says what it took out of the agent: {out:#?}"
    );
    assert_eq!(w.certs_in_agent(), Vec::<String>::new());
    assert!(
        w.ssh_add("-l").contains("cfaccess-test"),
        "the user's own key stays: {}",
        w.ssh_add("-l")
    );
}

#[test]
fn the_agent_drops_the_certificate_when_it_expires() {
    let w = world(&[]);
    // the edge backdates certificates by 10 s: this one has some 8 s left
    w.env.edge.set_cert_validity(Duration::from_secs(18));
    w.ssh_gen(&["--agent"]).success();
    assert_eq!(w.certs_in_agent().len(), 1);
    // the lifetime constraint is the certificate's remaining validity
    wait_for(
        Duration::from_secs(40),
        "the agent to drop the expired certificate",
        || w.certs_in_agent().is_empty(),
    );
}

#[test]
fn without_an_agent_ssh_gen_agent_warns_and_keeps_the_certificate_on_disk() {
    let w = world(&[]);
    let run = w.env.run(&["ssh-gen", "--hostname", APP_HOST, "--agent"]);
    run.success();
    assert!(
        run.stderr.contains("SSH_AUTH_SOCK is not set"),
        "it says why the agent is not used: {run:#?}"
    );
    assert!(
        w.cert_on_disk()
            .starts_with("ecdsa-sha2-nistp256-cert-v01@openssh.com")
    );
}

#[test]
fn the_printed_config_asks_for_the_agent_and_ssh_a_forwards_the_certificate_to_a_second_hop() {
    let w = world(&["--agent"]);
    let config = std::fs::read_to_string(&w.ssh_config).unwrap();
    assert!(
        config.contains(" --agent\"\n"),
        "the Match exec line asks for the agent: {config}"
    );
    // a second sshd that trusts the same CA and nothing else
    let second = Sshd::start(&trusting(&w.ca_file));
    let me = current_user();
    let hop = format!(
        "ssh-add -l; ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {} -l {me} 127.0.0.1 \
         echo second-hop-ok",
        second.port
    );

    // without -A the session has no agent, and the second hop is refused
    let plain = w.ssh(&[], &[&hop]);
    assert!(
        !plain.stdout.contains("second-hop-ok"),
        "no agent, no second hop: {plain:#?}"
    );
    assert!(
        !second.log_text().contains("Accepted publickey"),
        "{}",
        second.log_text()
    );
    assert_eq!(
        w.certs_in_agent().len(),
        1,
        "ssh-gen --agent ran from Match exec"
    );

    let forwarded = w.ssh(&["-A"], &[&hop]);
    forwarded.success();
    let key = w.key_path().display().to_string();
    assert!(
        forwarded.stdout.contains(&format!("{key} (ECDSA-CERT)")),
        "the forwarded agent holds the certificate: {forwarded:#?}"
    );
    assert!(
        forwarded.stdout.ends_with("second-hop-ok\n"),
        "{forwarded:#?}"
    );
    let log = second.log_text();
    assert!(
        log.contains(&format!("Accepted publickey for {me}")) && log.contains("ECDSA-CERT"),
        "the second sshd took the forwarded certificate: {log}"
    );
    assert!(w.sshd.log_text().contains("ECDSA-CERT"));
}

#[test]
fn ssh_gen_says_nothing_into_ssh_output_and_a_line_on_a_terminal() {
    let w = world(&[]);
    w.env.login();
    // ssh runs ssh-gen with stdout on /dev/null and stderr its own: here a pipe
    let mut cmd = common::sshd::ssh_with_config(&w.ssh_config);
    cmd.arg(APP_HOST).arg("echo hi 2>&1");
    w.env.isolate(&mut cmd);
    let run = run_with_deadline(
        {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg("\"$@\" 2>&1").arg("sh");
            sh.arg(cmd.get_program()).args(cmd.get_args());
            sh.env_clear()
                .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
            sh
        },
        Duration::from_secs(120),
    );
    run.success();
    assert_eq!(
        run.stdout, "hi\n",
        "nothing but the command's output: {run:#?}"
    );
    assert!(w.cert_on_disk().starts_with("ecdsa-sha2-nistp256-cert"));

    // by hand, on a terminal: one line naming the principal
    let me = current_user();
    let on_tty = on_a_terminal(&w, &["ssh-gen", "--hostname", APP_HOST, "--force"]);
    assert!(
        on_tty.contains(&format!(
            "cfaccess: new ssh certificate for {APP_HOST}: principal '{me}', valid until "
        )),
        "{on_tty}"
    );
    // in a pipe it is for the log, at info level
    let quiet = w.run(&["ssh-gen", "--hostname", APP_HOST, "--force"]);
    quiet.success();
    assert_eq!(quiet.stderr, "", "{quiet:#?}");
    let info = w.run(&[
        "--log-level",
        "info",
        "ssh-gen",
        "--hostname",
        APP_HOST,
        "--force",
    ]);
    assert!(
        info.stderr.contains("new ssh certificate for") && info.stderr.contains("INFO"),
        "{info:#?}"
    );
}

/// Runs cfaccess under `script`, on a real pseudo-terminal (stdin, stdout
/// and stderr), and returns what the terminal showed.
fn on_a_terminal(w: &World, args: &[&str]) -> String {
    let mut line = String::from(env!("CARGO_BIN_EXE_cfaccess"));
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    w.env.isolate(&mut cmd);
    let run = run_with_deadline(cmd, Duration::from_secs(120));
    run.success();
    run.stdout
}

#[test]
fn debug_logs_say_why_a_certificate_is_reused_or_renewed() {
    let w = world(&[]);
    let token = w.env.login();
    let debug = |extra: &[&str]| {
        let run = w.run(
            &[
                &["--log-level", "debug", "ssh-gen", "--hostname", APP_HOST][..],
                extra,
            ]
            .concat(),
        );
        run.success();
        assert!(!run.stderr.contains(&token), "no token in the log");
        run.stderr
    };
    let first = debug(&[]);
    assert!(
        first.contains(&format!("no key pair for {APP_HOST} yet")),
        "{first}"
    );
    let me = current_user();
    let again = debug(&[]);
    assert!(
        again.contains(&format!(
            "reusing the certificate for {APP_HOST}: principal '{me}', valid for 2m"
        )),
        "{again}"
    );
    assert!(again.contains("key SHA256:"), "{again}");
    let other_type = debug(&["--key-type", "ed25519"]);
    assert!(
        other_type.contains("it is for a ecdsa-sha2-nistp256 key and --key-type asks for Ed25519"),
        "{other_type}"
    );
    let margin = debug(&["--margin", "86400"]);
    assert!(
        margin.contains("it has expired or ends within the --margin of 86400 s"),
        "{margin}"
    );
    std::fs::remove_file(w.env.dir.join(format!("{APP_HOST}-cf_key-cert.pub"))).unwrap();
    let missing = debug(&[]);
    assert!(
        missing.contains(&format!("no certificate for {APP_HOST} in ")),
        "{missing}"
    );
    let forced = debug(&["--force"]);
    assert!(
        forced.contains("--force: getting a new certificate"),
        "{forced}"
    );
}

#[test]
fn an_ed25519_key_goes_into_the_agent_too() {
    let w = world(&[]);
    w.ssh_gen(&["--agent", "--key-type", "ed25519"]).success();
    let listed = w.ssh_add("-l");
    assert!(
        listed.contains(&format!("{} (ED25519-CERT)", w.key_path().display())),
        "{listed}"
    );
    assert_eq!(w.certs_in_agent().len(), 1);
    // and a new key type replaces the old certificate in the agent
    w.ssh_gen(&["--agent", "--key-type", "ecdsa"]).success();
    let listed = w.ssh_add("-l");
    assert!(
        listed.contains("(ECDSA-CERT)") && !listed.contains("ED25519"),
        "{listed}"
    );
}
