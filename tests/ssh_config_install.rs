// The harness (tests/common) drives access-edge and sshd with libc: Unix only for now.
#![cfg(unix)]

//! `ssh-config --install` (issue 12, section 6): the block is put where ssh
//! reads it first, proven with the real `ssh -G` (what ssh would use) and a
//! real login through sshd past a `Host *` that would otherwise win;
//! `--include`, `--dry-run` as a unified diff that `patch` applies, modes,
//! symlinks, paths, and re-runs that change nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use access_edge::CaKeyType;
use common::sshd::{Sshd, current_user};
use common::*;

/// A `Host *` that would win over a block put after it.
const HOST_STAR: &str = "Host *\n  ProxyCommand /bin/false %h\n  CertificateFile /nonexistent/other-cert.pub\n  ServerAliveInterval 30\n";

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_cfaccess")
}

/// What `ssh -G -F config host` says ssh would use: `key value` lines.
fn ssh_g(env: &TestEnv, config: &Path, host: &str) -> Vec<(String, String)> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G").arg("-F").arg(config).arg(host);
    env.isolate(&mut cmd);
    let run = run_with_deadline(cmd, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "ssh -G: {run:#?}");
    run.stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn first<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn install(env: &TestEnv, config: &Path, extra: &[&str]) -> Run {
    let args = [
        &[
            "ssh-config",
            "--hostname",
            APP_HOST,
            "--install",
            "--config",
            config.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    env.run(&args)
}

/// Our ProxyCommand as `ssh -G` shows it (it leaves `%h` unexpanded there).
/// The block's ProxyCommand: the test's config dir is not the default one,
/// so the block names it.
fn ours(env: &TestEnv) -> String {
    format!(
        "{} access ssh --hostname %h --config-dir {}",
        exe(),
        env.dir.display()
    )
}

#[test]
fn the_installed_block_wins_over_host_star_in_ssh_g() {
    let env = TestEnv::new();
    let config = env.tmp.path().join("config");

    // the control: appended after `Host *` (what --install did before), the
    // block loses, which is what this test would see if placement broke
    let printed = env.run(&["ssh-config", "--hostname", APP_HOST]);
    std::fs::write(&config, format!("{HOST_STAR}\n{}", printed.stdout)).unwrap();
    let lost = ssh_g(&env, &config, APP_HOST);
    assert_eq!(first(&lost, "proxycommand"), Some("/bin/false %h"));

    std::fs::write(&config, HOST_STAR).unwrap();
    let run = install(&env, &config, &[]);
    run.success();
    assert!(
        run.stderr.contains("before line 1 (Host *)") && run.stderr.contains("wins"),
        "{run:#?}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with(&format!("# BEGIN cfaccess {APP_HOST}\nHost {APP_HOST}\n")),
        "{text}"
    );
    assert!(
        text.ends_with(HOST_STAR),
        "the rest stays as it was: {text}"
    );
    let won = ssh_g(&env, &config, APP_HOST);
    assert_eq!(first(&won, "proxycommand"), Some(&*ours(&env)));
    // other hosts still get the `Host *` settings
    let other = ssh_g(&env, &config, "other.example.com");
    assert_eq!(first(&other, "proxycommand"), Some("/bin/false %h"));
    assert_eq!(first(&other, "serveraliveinterval"), Some("30"));
}

#[test]
fn the_short_lived_cert_block_wins_for_proxy_command_and_certificate_file() {
    let env = TestEnv::new();
    // ssh -G runs the block's `Match exec`, that is ssh-gen: it needs a CA
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let config = env.tmp.path().join("config");
    // `Match all`, keywords in any case and `=` forms count as well
    let match_all = "# mine\nmatch=ALL\n  PROXYCOMMAND=/bin/false %h\n  CertificateFile /nonexistent/other-cert.pub\n";
    std::fs::write(&config, match_all).unwrap();
    install(&env, &config, &["--short-lived-cert"]).success();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with(&format!("# mine\n# BEGIN cfaccess {APP_HOST}\nMatch host")),
        "{text}"
    );
    let won = ssh_g(&env, &config, APP_HOST);
    assert_eq!(first(&won, "proxycommand"), Some(&*ours(&env)));
    let cert = env.dir.join(format!("{APP_HOST}-cf_key-cert.pub"));
    let unexpanded = env.dir.join("%h-cf_key-cert.pub");
    assert_eq!(
        first(&won, "certificatefile"),
        Some(unexpanded.to_str().unwrap()),
        "ours is the first certificate ssh tries: {won:?}"
    );
    assert!(
        cert.exists(),
        "ssh -G ran ssh-gen through the block's Match exec"
    );
}

#[test]
fn ssh_logs_in_through_the_installed_block_despite_a_host_star_proxy_command() {
    let me = current_user();
    let port = common::sshd::free_port();
    let env = TestEnv::with(|opts| {
        opts.auto_approve = Some(format!("{me}@example.com"));
        opts.config.apps[0].origin = Some(format!("127.0.0.1:{port}"));
    });
    let ca = env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    let ca_file = env.tmp.path().join("ca.pub");
    let _sshd = Sshd::trusting_ca(port, &ca_file, &ca);
    let config = env.tmp.path().join("config");
    std::fs::write(&config, HOST_STAR).unwrap();
    install(&env, &config, &["--short-lived-cert"]).success();
    let mut ssh = common::sshd::ssh_with_config(&config);
    ssh.arg(APP_HOST).arg("whoami");
    env.isolate(&mut ssh);
    let run = run_with_deadline(ssh, Duration::from_secs(120));
    run.success();
    assert_eq!(run.stdout, format!("{me}\n"));
}

#[test]
fn include_puts_the_block_in_its_own_file_read_first() {
    let env = TestEnv::new();
    let ssh_dir = env.home.join(".ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = ssh_dir.join("config");
    std::fs::write(&config, HOST_STAR).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = install(&env, &config, &["--include"]);
    run.success();
    let included = ssh_dir.join("cfaccess").join("config");
    assert!(
        run.stderr.contains(&included.display().to_string()),
        "{run:#?}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        format!(
            "# BEGIN cfaccess (include)\nInclude {}\n# END cfaccess (include)\n\n{HOST_STAR}",
            included.display()
        )
    );
    assert_eq!(mode(&config), 0o644, "the config keeps its mode");
    assert_eq!(mode(&included), 0o600);
    assert_eq!(mode(included.parent().unwrap()), 0o700);
    let block = std::fs::read_to_string(&included).unwrap();
    assert!(
        block.starts_with(&format!("# BEGIN cfaccess {APP_HOST}\nHost {APP_HOST}\n")),
        "{block}"
    );
    let won = ssh_g(&env, &config, APP_HOST);
    assert_eq!(first(&won, "proxycommand"), Some(&*ours(&env)));
    let other = ssh_g(&env, &config, "other.example.com");
    assert_eq!(first(&other, "proxycommand"), Some("/bin/false %h"));

    // again: nothing changes; another host: one Include, two blocks
    let again = install(&env, &config, &["--include"]);
    again.success();
    assert!(again.stderr.starts_with("Up to date"), "{again:#?}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert_eq!(std::fs::read_to_string(&included).unwrap(), block);

    // without --include the block moves back into the config, and the
    // included copy, which would win, goes
    install(&env, &config, &[]).success();
    let inline = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        inline
            .matches(&format!("# BEGIN cfaccess {APP_HOST}"))
            .count(),
        1
    );
    assert!(
        !std::fs::read_to_string(&included)
            .unwrap()
            .contains(APP_HOST)
    );
    assert_eq!(
        first(&ssh_g(&env, &config, APP_HOST), "proxycommand"),
        Some(&*ours(&env))
    );
    // and back: the inline block goes, the Include stays at the top
    install(&env, &config, &["--include"]).success();
    let back = std::fs::read_to_string(&config).unwrap();
    assert!(
        !back.contains(&format!("# BEGIN cfaccess {APP_HOST}")),
        "{back}"
    );
    assert!(back.starts_with("# BEGIN cfaccess (include)\n"), "{back}");
}

#[test]
fn dry_run_writes_nothing_and_prints_a_diff_that_patch_applies() {
    let env = TestEnv::new();
    let ssh_dir = env.home.join(".ssh");
    // no ~/.ssh yet: the dry run must not make it
    let dry = env.run(&[
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--install",
        "--dry-run",
    ]);
    dry.success();
    assert!(!ssh_dir.exists(), "--dry-run created {}", ssh_dir.display());
    let config = ssh_dir.join("config");
    assert!(
        dry.stdout.starts_with(&format!(
            "--- /dev/null\n+++ {}\n@@ -0,0 +1,4 @@\n",
            config.display()
        )),
        "{dry:#?}"
    );
    assert!(
        dry.stdout
            .contains(&format!("+# BEGIN cfaccess {APP_HOST}\n")),
        "{dry:#?}"
    );
    assert!(
        dry.stdout
            .contains(&format!("+# END cfaccess {APP_HOST}\n")),
        "{dry:#?}"
    );
    assert!(dry.stderr.contains("nothing written"), "{dry:#?}");

    // against an existing file: `patch` turns the file into what --install writes
    std::fs::create_dir(&ssh_dir).unwrap();
    std::fs::write(&config, format!("Host a\n  User x\n\n{HOST_STAR}")).unwrap();
    let dry = env.run(&[
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--install",
        "--dry-run",
    ]);
    dry.success();
    assert!(
        dry.stdout.contains("@@ ") && dry.stdout.contains(" Host *\n"),
        "{dry:#?}"
    );
    let copy = env.tmp.path().join("patched");
    std::fs::copy(&config, &copy).unwrap();
    let diff = env.tmp.path().join("diff");
    std::fs::write(&diff, &dry.stdout).unwrap();
    let patched = Command::new("patch")
        .arg(&copy)
        .arg(&diff)
        .output()
        .unwrap();
    assert!(patched.status.success(), "{patched:?}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        format!("Host a\n  User x\n\n{HOST_STAR}"),
        "the dry run wrote nothing"
    );
    env.run(&["ssh-config", "--hostname", APP_HOST, "--install"])
        .success();
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(&copy).unwrap()
    );
    // nothing left to change: no diff at all
    let dry = env.run(&[
        "ssh-config",
        "--hostname",
        APP_HOST,
        "--install",
        "--dry-run",
    ]);
    dry.success();
    assert_eq!(dry.stdout, "");
    assert!(dry.stderr.starts_with("Nothing to change"), "{dry:#?}");
}

#[test]
fn a_new_ssh_dir_is_private_and_modes_and_symlinks_are_kept() {
    let env = TestEnv::new();
    env.run(&["ssh-config", "--hostname", APP_HOST, "--install"])
        .success();
    let ssh_dir = env.home.join(".ssh");
    assert_eq!(mode(&ssh_dir), 0o700);
    assert_eq!(mode(&ssh_dir.join("config")), 0o600);

    // a config kept elsewhere and linked (dotfiles): edited where it is
    let real: PathBuf = env.tmp.path().join("dotfiles-ssh-config");
    std::fs::write(&real, HOST_STAR).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = ssh_dir.join("config");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    env.run(&["ssh-config", "--hostname", APP_HOST, "--install"])
        .success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("# BEGIN cfaccess")
    );
    assert_eq!(mode(&real), 0o640);
    // no temporary file is left beside it
    let stray: Vec<_> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_path_is_kept_in_the_commands_and_key_names_or_refused_with_the_reason() {
    let env = TestEnv::new();
    let run = env.run(&[
        "ssh-config",
        "--hostname",
        "https://ssh.demo.test/some/path",
        "--short-lived-cert",
    ]);
    run.success();
    let dir = env.dir.display();
    assert_eq!(
        run.stdout,
        format!(
            "Match host {APP_HOST} exec \"{exe} access ssh-gen --hostname {APP_HOST}/some/path \
             --config-dir {dir}\"\n  \
             ProxyCommand {exe} access ssh --hostname {APP_HOST}/some/path --config-dir {dir}\n  \
             IdentityFile {dir}/{APP_HOST}-some-path-cf_key\n  \
             CertificateFile {dir}/{APP_HOST}-some-path-cf_key-cert.pub\n",
            exe = exe()
        )
    );
    assert!(run.stderr.contains("host names only"), "{run:#?}");
    // the key names are the ones ssh-gen uses for that path
    env.edge.generate_ca(APP_HOST, CaKeyType::Ecdsa).unwrap();
    env.run(&["ssh-gen", "--hostname", "https://ssh.demo.test/some/path"])
        .success();
    assert!(
        env.dir
            .join(format!("{APP_HOST}-some-path-cf_key-cert.pub"))
            .exists()
    );

    let refused = env.run(&["ssh-config", "--hostname", "ssh.demo.test/a;b"]);
    refused.failure(1);
    assert!(
        refused.error_line().contains("'/a;b'") && refused.error_line().contains("hint:"),
        "{refused:#?}"
    );
}

#[test]
fn a_block_left_open_by_hand_is_an_error_and_the_file_stays() {
    let env = TestEnv::new();
    let config = env.tmp.path().join("config");
    let broken = format!("# BEGIN cfaccess {APP_HOST}\nHost {APP_HOST}\n\n{HOST_STAR}");
    std::fs::write(&config, &broken).unwrap();
    let run = install(&env, &config, &[]);
    run.failure(1);
    assert!(
        run.error_line().contains("no '# END' line closes"),
        "{run:#?}"
    );
    assert!(run.error_line().contains("hint:"), "{run:#?}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), broken);
}
