//! The Windows `ssh-config` snippet through the real OpenSSH config parser
//! (`ssh -G`): Win32-OpenSSH reads the file with the same `readconf.c`, so
//! what this parser takes and how it splits it is what ssh on Windows gets.
//! (The `Match exec` command itself then runs through `/bin/sh` here and
//! fails harmlessly; only the parse is checked. The unit tests in
//! `src/ssh/config/windows_tests.rs` check what cmd.exe makes of it.)

use std::path::Path;
use std::process::Command;

use cfaccess::ssh::config::{KeyDir, Program, Style, snippet};

const HOST: &str = "ssh.example.com";

/// `ssh -G -vvv -F file HOST` on `text`: (ok, stdout, stderr), or `None`
/// with the reason printed when there is no ssh here.
fn ssh_g(text: &str) -> Option<(bool, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("ssh")
        .args(["-G", "-vvv", "-F"])
        .arg(&file)
        .arg(HOST)
        // ssh reads `~` from the password database; HOME kept off the real one anyway
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .output();
    match out {
        Ok(out) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
        Err(e) => {
            eprintln!("skipped: cannot run ssh ({e})");
            None
        }
    }
}

/// `text` as ssh's log writes it: a backslash doubled.
fn logged(text: &str) -> String {
    text.replace('\\', "\\\\")
}

fn windows_block(path: &str, short: Option<&str>, key_dir: &KeyDir) -> String {
    let exe = Program::new(Path::new(path), short.map(Path::new));
    snippet(Style::Windows, &exe, HOST, true, key_dir).unwrap()
}

#[test]
fn openssh_takes_the_windows_snippet_for_a_path_with_a_space() {
    let block = windows_block(
        r"C:\Program Files\cfaccess\cfaccess.exe",
        Some(r"C:\PROGRA~1\cfaccess\cfaccess.exe"),
        &KeyDir::Path(r"C:\Users\Zoë Doe\.cloudflared".into()),
    );
    let Some((ok, _, stderr)) = ssh_g(&block) else {
        return;
    };
    assert!(
        ok && !stderr.contains("Bad") && !stderr.contains("bad"),
        "{block}\n{stderr}"
    );
    // the exec word as the parser split it (its debug3 line quotes it whole)
    assert!(
        stderr.contains(&logged(
            r#"matched 'exec "C:\PROGRA~1\cfaccess\cfaccess.exe access ssh-gen --hostname ssh.example.com"'"#
        )),
        "{stderr}"
    );
    // the exec fails here, so the Match block does not apply: what it would
    // set is checked with `Host` in its place
    let host_form = block.replacen(
        &block[..block.find('\n').unwrap()],
        &format!("Host {HOST}"),
        1,
    );
    let Some((ok, stdout_host, stderr)) = ssh_g(&host_form) else {
        return;
    };
    assert!(ok, "{stderr}");
    let get = |key: &str| {
        stdout_host
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key} ")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("proxycommand"),
        // the moved config dir goes with it (issue 12); Match exec cannot carry a
        // path with a space through cmd.exe and leaves it to CFACCESS_DIR
        [
            r#""C:\Program Files\cfaccess\cfaccess.exe" access ssh --hostname %h --config-dir "C:/Users/Zoë Doe/.cloudflared""#
        ]
    );
    // ssh -G prints these before expanding `%h`; Linux ssh takes `C:/…` as
    // relative, so only the tail is checked
    let ids = get("identityfile");
    assert!(
        ids.iter()
            .any(|f| f.ends_with("C:/Users/Zoë Doe/.cloudflared/%h-cf_key")),
        "{ids:?}"
    );
    let certs = get("certificatefile");
    assert!(
        certs
            .iter()
            .any(|f| f.ends_with("C:/Users/Zoë Doe/.cloudflared/%h-cf_key-cert.pub")),
        "{certs:?}"
    );
}

#[test]
fn openssh_takes_the_windows_snippet_with_cmd_escapes_and_refuses_nested_quotes() {
    let block = windows_block(r"C:\a&b(x)\100%\cfaccess.exe", None, &KeyDir::Default);
    let Some((ok, _, stderr)) = ssh_g(&block) else {
        return;
    };
    assert!(ok && !stderr.contains("Bad"), "{block}\n{stderr}");
    assert!(
        stderr.contains(&logged(
            r#"matched 'exec "C:\a^&b^(x^)\100%^\cfaccess.exe access ssh-gen --hostname ssh.example.com"'"#
        )),
        "{stderr}"
    );
    // the form the issue names: the whole config is refused
    let nested = format!(
        "Match host {HOST} exec \"\"C:\\Program Files\\cfaccess\\cfaccess.exe\" access ssh-gen --hostname %h\"\n"
    );
    let Some((ok, _, stderr)) = ssh_g(&nested) else {
        return;
    };
    assert!(!ok && stderr.contains("Bad Match condition"), "{stderr}");
}
