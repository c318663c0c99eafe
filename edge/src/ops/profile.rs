//! What a running edge leaves for its clients: the edge profile
//! (`DIR/profile.json`, for `CFACCESS_EDGE`) and a headless browser
//! (`DIR/browser`, for `BROWSER` or behind `xdg-open`).
//!
//! Both are written atomically, and only once the edge accepts connections,
//! so a script can start the edge in the background and wait for the file.
//! The profile also names the Cloudflare API's account id and a token that
//! may edit (docs/protocol.md 11), so it is 0600 when it holds one.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use cfaccess::access::edge_profile::{EdgeProfile, ProfileApi};

use crate::error::EdgeError;
use crate::ops::state::{StateDir, files};

/// Writes `profile.json` (every served name → `addr`, and the Cloudflare
/// API's account id and token) and `browser`.
pub(crate) fn write(
    state: &StateDir,
    ca_pem: &str,
    names: &[String],
    addr: SocketAddr,
    edge_binary: &Path,
    api: Option<ProfileApi>,
    audited_ssh: BTreeMap<String, String>,
) -> Result<(), EdgeError> {
    let addr = connectable(addr);
    let profile = EdgeProfile {
        ca_cert: ca_pem.to_owned(),
        hosts: names
            .iter()
            .map(|n| (n.clone(), addr))
            .collect::<BTreeMap<_, _>>(),
        api,
        audited_ssh,
    };
    let profile_path = state.file(files::PROFILE);
    let script = browser_script(edge_binary, &profile_path);
    // The browser first: a script that waits for the profile finds both.
    state.write(files::BROWSER, script.as_bytes(), 0o755)?;
    profile
        .save(&profile_path)
        .map_err(|e| EdgeError::state(state.path(), e))?;
    if !edge_binary.is_file() {
        tracing::warn!(
            "{} runs {}, which does not exist (build access-edge, or set the edge binary)",
            state.file(files::BROWSER).display(),
            edge_binary.display()
        );
    }
    Ok(())
}

/// Removes what [`write`] wrote (a stopped edge must not look ready).
pub(crate) fn remove(state: &StateDir) {
    state.remove(files::PROFILE);
    state.remove(files::BROWSER);
}

/// An address clients can connect to: an unspecified listen address
/// (`0.0.0.0`, `::`) is reached through loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The `browser` script: runs `access-edge browse` with this edge's profile.
fn browser_script(edge_binary: &Path, profile: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by access-edge: a headless browser for this edge.\n\
         # Use it as BROWSER=<this file>; it opens the URL it is given through the edge profile.\n\
         exec {} browse --profile {} \"$@\"\n",
        shell_word(edge_binary),
        shell_word(profile),
    )
}

/// `path` as one POSIX shell word: as is when it holds only safe
/// characters, else in single quotes (with `'` as `'\''`).
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The access-edge binary the browser script runs: this process when it is
/// access-edge; else (a test binary in `target/<profile>/deps`) an
/// `access-edge` beside it or one directory up, where Cargo builds it.
pub(crate) fn default_edge_binary() -> PathBuf {
    let name = format!("access-edge{}", std::env::consts::EXE_SUFFIX);
    let Ok(exe) = std::env::current_exe() else {
        return PathBuf::from(name);
    };
    if exe.file_name().is_some_and(|n| n == name.as_str()) {
        return exe;
    }
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        dir.join(&name),
        dir.parent().map(|p| p.join(&name)).unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[1].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_word(Path::new("/a b/c")), "'/a b/c'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(
            shell_word(Path::new("/tmp/x-1/profile.json")),
            "/tmp/x-1/profile.json"
        );
        assert_eq!(shell_word(Path::new("/a/$HOME")), "'/a/$HOME'");
        let script = browser_script(Path::new("/x y/access-edge"), Path::new("/s/profile.json"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains("exec '/x y/access-edge' browse --profile /s/profile.json \"$@\"\n")
        );
    }

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(
            connectable("0.0.0.0:443".parse().unwrap()),
            "127.0.0.1:443".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:443".parse().unwrap()),
            "[::1]:443".parse().unwrap()
        );
        assert_eq!(
            connectable("10.1.2.3:443".parse().unwrap()),
            "10.1.2.3:443".parse().unwrap()
        );
    }

    #[test]
    fn the_script_runs_and_quotes_its_arguments() {
        let state = StateDir::open(None).unwrap();
        // stand-in binary: prints its arguments, one per line
        let fake = state.file("fake edge");
        std::fs::write(&fake, "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(
            &state,
            "-----BEGIN CERTIFICATE-----",
            &["a.test".into()],
            "0.0.0.0:7".parse().unwrap(),
            &fake,
            None,
            BTreeMap::from([("a.test".to_owned(), "ssh-ed25519 AAAA".to_owned())]),
        )
        .unwrap();
        let profile = EdgeProfile::load(&state.file(files::PROFILE)).unwrap();
        assert_eq!(profile.hosts["a.test"], "127.0.0.1:7".parse().unwrap());
        assert_eq!(profile.audited_host_ca("A.test"), Some("ssh-ed25519 AAAA"));
        assert_eq!(profile.audited_host_ca("b.test"), None);
        let out = std::process::Command::new(state.file(files::BROWSER))
            .arg("https://a.test/x?y=1&z=2")
            .output()
            .unwrap();
        let profile_path = state.file(files::PROFILE);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!(
                "browse\n--profile\n{}\nhttps://a.test/x?y=1&z=2\n",
                profile_path.display()
            )
        );
        remove(&state);
        assert!(!state.file(files::PROFILE).exists());
    }
}
