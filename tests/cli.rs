//! The command line as a user meets it, with the real binary: completions
//! that shells accept, man pages, `-v`, `help`'s alias `h`, curl's own help,
//! an example in every help, env names without a value, and `cfaccess curl`
//! against a local access-edge with nothing but `CFACCESS_EDGE` set.

#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{EMAIL, Endpoint, Run, TestEnv, run_with_deadline};

/// `cfaccess args…` with an empty environment (PATH only) and a temp HOME.
fn bare(home: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfaccess"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CFACCESS_DIR", home.join("cloudflared"))
        .stdin(Stdio::null());
    run_with_deadline(cmd, Duration::from_secs(60))
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks `script` with `shell args… <file>`, which must parse it without running it.
fn shell_accepts(shell: &str, args: &[&str], script: &str, dir: &Path) {
    let file = dir.join(format!("completion.{shell}"));
    std::fs::write(&file, script).unwrap();
    let out = Command::new(shell).args(args).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{shell} rejects the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_parse_in_their_shells() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = bare(tmp.path(), &["completions", shell]);
        run.success();
        assert!(run.stderr.is_empty(), "{run:#?}");
        // the commands and the flags of the clap definitions are in it
        for word in ["ssh-gen", "hostname", "log-directory"] {
            assert!(run.stdout.contains(word), "{shell}: no {word}");
        }
        match shell {
            "bash" => {
                shell_accepts("bash", &["-n"], &run.stdout, tmp.path());
                // and it completes: the words after `cfaccess ssh-` are the commands
                let probe = format!(
                    "{}\nCOMP_WORDS=(cfaccess ssh-); COMP_CWORD=1; COMP_LINE='cfaccess ssh-'; COMP_POINT=13\n\
                     _cfaccess cfaccess ssh- cfaccess; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    run.stdout
                );
                let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
                let words = String::from_utf8_lossy(&out.stdout);
                assert!(words.lines().any(|w| w == "ssh-gen"), "{words}");
                assert!(words.lines().any(|w| w == "ssh-config"), "{words}");
            }
            "zsh" if has("zsh") => shell_accepts("zsh", &["-n"], &run.stdout, tmp.path()),
            "fish" if has("fish") => {
                shell_accepts("fish", &["--no-execute"], &run.stdout, tmp.path());
                let file = tmp.path().join("completion.fish");
                let out = Command::new("fish")
                    .arg("-c")
                    .arg(format!(
                        "source {}; complete -C 'cfaccess ssh-gen --host'",
                        file.display()
                    ))
                    .output()
                    .unwrap();
                let words = String::from_utf8_lossy(&out.stdout);
                assert!(words.starts_with("--hostname\t"), "{words}");
            }
            _ => {}
        }
    }
    let run = bare(tmp.path(), &["completions", "tcsh"]);
    run.failure(2);
}

#[test]
fn man_pages_are_written_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man/man1");
    let run = bare(tmp.path(), &["man", dir.to_str().unwrap()]);
    run.success();
    for page in [
        "cfaccess.1",
        "cfaccess-login.1",
        "cfaccess-curl.1",
        "cfaccess-tcp.1",
        "cfaccess-ssh-gen.1",
        "cfaccess-ssh-config.1",
        "cfaccess-status.1",
        "cfaccess-completions.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let ssh_gen = std::fs::read_to_string(dir.join("cfaccess-ssh-gen.1")).unwrap();
    assert!(ssh_gen.contains("hostname"), "{ssh_gen}");
    assert!(ssh_gen.contains("Examples"), "{ssh_gen}");
    // man itself renders it
    if has("man") {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("cfaccess-ssh-gen.1"))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(shown.contains("short-lived"), "{shown}");
    }
}

#[test]
fn v_is_the_version_and_h_is_help() {
    let tmp = tempfile::tempdir().unwrap();
    let version = bare(tmp.path(), &["--version"]);
    version.success();
    for form in [&["-v"][..], &["-V"], &["-version"]] {
        let run = bare(tmp.path(), form);
        run.success();
        assert_eq!(run.stdout, version.stdout, "{form:?}");
    }
    let help = bare(tmp.path(), &["--help"]);
    for form in [&["h"][..], &["help"]] {
        let run = bare(tmp.path(), form);
        run.success();
        assert_eq!(run.stdout, help.stdout, "{form:?}");
    }
    // the help of a command, at the top and under `access`, as --help gives it
    for (form, same_as) in [
        (&["h", "login"][..], &["login", "--help"][..]),
        (&["help", "login"], &["login", "--help"]),
        (&["access", "help", "login"], &["access", "login", "--help"]),
        (&["access", "h", "login"], &["access", "login", "--help"]),
    ] {
        let run = bare(tmp.path(), form);
        run.success();
        assert_eq!(run.stdout, bare(tmp.path(), same_as).stdout, "{form:?}");
    }
    let run = bare(tmp.path(), &["h", "nope"]);
    run.failure(2);
    assert!(run.error_line().contains("no command 'nope'"), "{run:#?}");
}

#[test]
fn every_help_has_an_example_and_env_names_carry_no_value() {
    let tmp = tempfile::tempdir().unwrap();
    for command in [
        &[][..],
        &["login"],
        &["token"],
        &["tcp"],
        &["ssh"],
        &["ssh-gen"],
        &["status"],
        &["logout"],
        &["ssh-config"],
        &["access"],
        &["access", "login"],
        &["version"],
        &["completions"],
        &["help"],
    ] {
        let run = bare(tmp.path(), &[&["help"][..], command].concat());
        run.success();
        assert!(
            run.stdout.contains("\nExamples:\n  "),
            "{command:?}: {}",
            run.stdout
        );
        assert!(!run.stdout.contains("=]"), "{command:?}: {}", run.stdout);
    }
    // a value in the environment stays out of the help
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfaccess"));
    cmd.args(["tcp", "--help"])
        .env("TUNNEL_SERVICE_TOKEN_ID", "id-from-env")
        .env("TUNNEL_SERVICE_HOSTNAME", "")
        .env("TUNNEL_LOGLEVEL", "");
    let run = run_with_deadline(cmd, Duration::from_secs(30));
    run.success();
    assert!(
        run.stdout.contains("[env: TUNNEL_SERVICE_TOKEN_ID]"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("id-from-env"), "{}", run.stdout);
    // the official client's testing flags are taken, not shown
    assert!(!run.stdout.contains("connect-to"), "{}", run.stdout);
    // --fedramp only where it changes something
    assert!(run.stdout.contains("--fedramp"));
    let status = bare(tmp.path(), &["status", "--help"]);
    assert!(!status.stdout.contains("fedramp"), "{}", status.stdout);
}

#[test]
fn curl_help_is_curls_own() {
    if !has("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = bare(tmp.path(), &["curl", "--help"]);
    run.success();
    assert!(run.stdout.contains("Usage: curl"), "{run:#?}");
    assert!(run.stderr.contains("cfaccess help curl"), "{run:#?}");
    let run = bare(tmp.path(), &["curl", "--version"]);
    run.success();
    assert!(run.stdout.starts_with("curl "), "{run:#?}");
}

/// `cfaccess curl https://<app>/` with CFACCESS_EDGE set and nothing else:
/// curl gets the edge's CA and addresses from cfaccess, for an app of its
/// own name and for one under a wildcard.
#[test]
fn curl_reaches_a_local_edge_with_nothing_else_changed() {
    if !has("curl") {
        return;
    }
    let env = TestEnv::with(|opts| {
        let mut app = opts.config.apps[0].clone();
        app.hostname = "app.demo.test".into();
        app.aud = None;
        opts.config.apps.push(app);
        let mut wild = opts.config.apps[0].clone();
        wild.hostname = "*.wild.test".into();
        wild.aud = None;
        opts.config.apps.push(wild);
    });
    for (url, path) in [
        ("https://app.demo.test/", "/"),
        ("https://ssh.demo.test/whoami", "/whoami"),
        ("https://a.wild.test/x?y=1", "/x"),
    ] {
        let run = env.run(&["curl", url, "-sS"]);
        run.success();
        let body: serde_json::Value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{url}: {e}: {run:#?}"));
        assert_eq!(body["email"], EMAIL, "{url}");
        assert_eq!(body["path"], path, "{url}");
    }
    // one login for the demo team's apps (the org token does the rest)
    assert_eq!(env.edge.count(Endpoint::LoginPage), 1);
    // the user's own --cacert still wins: a wrong CA fails in curl
    let wrong = env.tmp.path().join("wrong.pem");
    std::fs::write(&wrong, "not a CA").unwrap();
    let run = env.run(&[
        "curl",
        "https://app.demo.test/",
        "-sS",
        "--cacert",
        wrong.to_str().unwrap(),
    ]);
    assert_ne!(run.code, Some(0), "{run:#?}");
}

/// `cfaccess curl --fedramp <url>`: the login goes through the FedRAMP login
/// service, and curl never sees the flag (it would refuse it).
#[test]
fn curl_takes_fedramp_before_the_url() {
    if !has("curl") {
        return;
    }
    let env = TestEnv::new();
    let run = env.run(&[
        "--log-level",
        "debug",
        "curl",
        "--fedramp",
        "https://ssh.demo.test/whoami",
        "-sS",
    ]);
    run.success();
    let body: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON from the app");
    assert_eq!(body["email"], EMAIL);
    // the HTTP client's own debug line names each host it pools a connection to
    assert!(
        run.stderr.contains("login.fed.cloudflareaccess.org"),
        "{}",
        run.stderr
    );
}
