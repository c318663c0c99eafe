//! Names the build for `cfaccess --version`: the commit (`CFACCESS_COMMIT`
//! if set, as a release build from a source tarball sets it; else `git
//! rev-parse --short HEAD` in a checkout; else "unknown") and the target.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CFACCESS_COMMIT");
    // without a rerun-if-changed line cargo reruns this on any file's change
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("CFACCESS_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit(&manifest).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=CFACCESS_COMMIT={commit}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=CFACCESS_TARGET={target}");
}

/// The short commit of `dir`'s checkout, and the files whose change means a
/// new one: HEAD (a checkout, a commit on a detached HEAD) and the branch's
/// ref (a commit), loose or packed. A worktree has a HEAD of its own and
/// shares the refs, hence both dirs.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let git_dir = dir.join(git(&["rev-parse", "--git-dir"])?);
    let common = dir.join(git(&["rev-parse", "--git-common-dir"])?);
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}
