//! `cfaccess --version` and `cfaccess version` name the version, the commit
//! and the target, in the same line.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cfaccess"))
        .args(args)
        .env_clear()
        .output()
        .expect("cfaccess runs");
    assert!(out.status.success(), "{args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn version_names_the_version_the_commit_and_the_target() {
    let line = run(&["--version"]);
    assert_eq!(run(&["version"]), line);
    assert_eq!(
        run(&["-version"]),
        line,
        "the official client's one-dash form"
    );
    let rest = line
        .strip_prefix(concat!("cfaccess ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (commit, target) = rest.split_once(", ").unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line:?}"
    );
    // a target triple: arch-vendor-os[-env], this test's own
    assert!(target.split('-').count() >= 3, "{line:?}");
    assert!(target.starts_with(std::env::consts::ARCH), "{line:?}");
    assert_eq!(
        run(&["version", "--short"]),
        concat!(env!("CARGO_PKG_VERSION"), "\n")
    );
}
