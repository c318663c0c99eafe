//! The sshd binary as `cfaccess server` asks it: `sshd -t` (is the
//! configuration valid?) and `sshd -T` (what does it make of it?), always
//! with `-f` naming the file, so a config under `--root` is read as the
//! sshd started with it would read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where sshd lives on the systems cfaccess knows.
const PLACES: [&str; 4] = [
    "/usr/sbin/sshd",
    "/usr/local/sbin/sshd",
    "/sbin/sshd",
    "/opt/homebrew/sbin/sshd",
];

/// The sshd binary: `given`, else the first of [`PLACES`] that exists, else
/// `sshd` on `PATH`.
pub fn find(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("--sshd {}: no such file", path.display()))
        };
    }
    if let Some(path) = PLACES.iter().map(Path::new).find(|p| p.is_file()) {
        return Ok(path.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("sshd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no sshd here (looked in {} and PATH): install OpenSSH's server (apt-get install openssh-server), or name it with --sshd",
                PLACES.join(", ")
            )
        })
}

/// One sshd to ask about one config file.
#[derive(Debug, Clone)]
pub struct Sshd {
    pub binary: PathBuf,
    pub config: PathBuf,
}

/// What `sshd -T` printed: each keyword (lower case) with its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective(BTreeMap<String, Vec<String>>);

impl Effective {
    pub fn parse(text: &str) -> Effective {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            map.entry(key.to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_owned());
        }
        Effective(map)
    }

    /// The first value of `keyword`.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.0
            .get(keyword)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of `keyword`.
    pub fn all(&self, keyword: &str) -> &[String] {
        self.0.get(keyword).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The `TrustedUserCAKeys` file, unless `none`.
    pub fn trusted_ca_file(&self) -> Option<PathBuf> {
        self.get("trustedusercakeys")
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"))
            .map(PathBuf::from)
    }
}

impl Sshd {
    /// `sshd -t`: `Err` holds sshd's own words, on one line.
    pub fn test(&self) -> Result<(), String> {
        self.run(&["-t"]).map(drop)
    }

    /// `sshd -T`, for a connection by `user` when given (`-C`), so that
    /// `Match User` blocks apply.
    pub fn effective(&self, user: Option<&str>) -> Result<Effective, String> {
        let spec;
        let mut args = vec!["-T"];
        if let Some(user) = user {
            spec = format!("user={user},host=localhost,addr=127.0.0.1");
            args.extend(["-C", &spec]);
        }
        self.run(&args).map(|out| Effective::parse(&out))
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .args(args)
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(if said.is_empty() {
            format!("sshd exited with {}", out.status)
        } else {
            said
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_t_output_is_read_per_keyword() {
        let e = Effective::parse(
            "port 22\nport 2222\npubkeyauthentication yes\ntrustedusercakeys none\nauthorizedprincipalscommand /bin/echo jdoe\n",
        );
        assert_eq!(e.get("port"), Some("22"));
        assert_eq!(e.all("port"), ["22", "2222"]);
        assert_eq!(e.trusted_ca_file(), None);
        assert_eq!(e.get("authorizedprincipalscommand"), Some("/bin/echo jdoe"));
        let e = Effective::parse("trustedusercakeys /etc/ssh/ca.pub\n");
        assert_eq!(e.trusted_ca_file(), Some(PathBuf::from("/etc/ssh/ca.pub")));
    }
}
