//! The plan of `server::sshd_config`, applied under a temp root, checked
//! against what the real sshd makes of it (`sshd -T`, which reads and
//! prints the configuration without listening or writing anything).

use std::path::{Path, PathBuf};
use std::process::Command;

use cfaccess::server::ca_file;
use cfaccess::server::sshd_config::{self, Disk, Mapping, Placement, Wanted};

const SSHD: &str = "/usr/sbin/sshd";
const DEBIAN: &str = include_str!("data/debian-sshd_config");

fn have_sshd() -> bool {
    if Path::new(SSHD).exists() {
        true
    } else {
        eprintln!("note: {SSHD} is missing; skipping the cross-check with the real sshd");
        false
    }
}

/// A root with `etc/ssh/` and `etc/ssh/sshd_config.d/`, a host key, and
/// the CA file.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let root = Root { dir };
        std::fs::create_dir_all(root.etc().join("sshd_config.d")).unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "host", "-f"])
            .arg(root.host_key())
            .status()
            .unwrap();
        assert!(status.success());
        let ca = ca_file::parse_key(
            &std::fs::read_to_string(root.host_key().with_extension("pub")).unwrap(),
            "test key",
        )
        .unwrap();
        let text = ca_file::with_key(None, &ca, "test CA").unwrap();
        std::fs::write(root.ca(), text).unwrap();
        root
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn etc(&self) -> PathBuf {
        self.path().join("etc/ssh")
    }

    fn main(&self) -> PathBuf {
        self.etc().join("sshd_config")
    }

    fn host_key(&self) -> PathBuf {
        self.path().join("host_key")
    }

    fn ca(&self) -> PathBuf {
        self.etc().join("ca.pub")
    }

    /// What the test config needs for `sshd -T` to run here: a host key,
    /// a pid file of its own, no PAM.
    fn test_lines(&self) -> String {
        format!(
            "HostKey {}\nPidFile {}\nUsePAM no\nPort 2222\n",
            self.host_key().display(),
            self.path().join("sshd.pid").display()
        )
    }

    fn wanted(&self) -> Wanted {
        Wanted {
            ca_file: self.ca(),
            maps: vec![Mapping {
                unix_user: "johndoe".into(),
                principal: "jdoe".into(),
            }],
            hostname: "ssh.example.com".into(),
        }
    }

    /// Plans, writes the plan's texts, and returns the placement.
    fn apply(&self) -> Placement {
        let config = sshd_config::read(&self.main(), &Disk).unwrap();
        let plan = sshd_config::plan(&config, &self.wanted(), self.path(), &Disk).unwrap();
        assert!(!plan.changes.is_empty());
        for change in &plan.changes {
            let now = std::fs::read_to_string(&change.path).ok();
            assert_eq!(now, change.old, "{}", change.path.display());
            std::fs::write(&change.path, &change.new).unwrap();
        }
        // Applying twice changes nothing.
        let config = sshd_config::read(&self.main(), &Disk).unwrap();
        let again = sshd_config::plan(&config, &self.wanted(), self.path(), &Disk).unwrap();
        assert_eq!(again.changes, vec![]);
        plan.placement
    }

    /// `sshd -T` (with `-C` when given): keyword → value lines.
    fn sshd_t(&self, connection: Option<&str>) -> Vec<(String, String)> {
        let mut command = Command::new(SSHD);
        command.arg("-T").arg("-f").arg(self.main());
        if let Some(spec) = connection {
            command.arg("-C").arg(spec);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "sshd -T failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Checks sshd's view: our CA and key setting globally, our principal
    /// for johndoe, and the same values `effective()` finds.
    fn check(&self, keywords: &[&str]) {
        let ca = self.ca().display().to_string();
        let global = self.sshd_t(None);
        let value = |all: &[(String, String)], k: &str| {
            all.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("sshd -T printed no {k}"))
        };
        assert_eq!(value(&global, "pubkeyauthentication"), "yes");
        assert_eq!(value(&global, "trustedusercakeys"), ca);
        let john = self.sshd_t(Some("user=johndoe,host=x,addr=127.0.0.1"));
        assert_eq!(
            value(&john, "authorizedprincipalscommand"),
            "/bin/echo jdoe"
        );
        assert_eq!(value(&john, "authorizedprincipalscommanduser"), "nobody");
        assert_eq!(value(&john, "trustedusercakeys"), ca);
        let alice = self.sshd_t(Some("user=alice,host=x,addr=127.0.0.1"));
        assert_eq!(value(&alice, "authorizedprincipalscommand"), "none");

        let config = sshd_config::read(&self.main(), &Disk).unwrap();
        assert!(config.maps_user("johndoe", "jdoe"));
        assert!(!config.maps_user("alice", "jdoe"));
        for keyword in keywords {
            let ours = config
                .effective(keyword)
                .unwrap_or_else(|| panic!("effective() found no {keyword}"));
            // sshd prints flags lower-cased, paths as they are.
            let mine = if keyword.ends_with("keys") {
                ours.value().to_string()
            } else {
                ours.value().to_ascii_lowercase()
            };
            assert_eq!(
                mine,
                value(&global, keyword),
                "{keyword} at {}:{}",
                ours.file.display(),
                ours.line
            );
        }
    }
}

#[test]
fn debian_stock_config_with_a_drop_in() {
    if !have_sshd() {
        return;
    }
    let root = Root::new();
    let dropins = root.etc().join("sshd_config.d");
    let main = DEBIAN.replace(
        "Include /etc/ssh/sshd_config.d/*.conf",
        &format!("Include {}/*.conf", dropins.display()),
    );
    std::fs::write(root.main(), main).unwrap();
    // A drop-in that would win if ours sorted after it.
    std::fs::write(
        dropins.join("10-test.conf"),
        format!(
            "{}PubkeyAuthentication no\nTrustedUserCAKeys {}\n",
            root.test_lines(),
            root.path().join("other-ca.pub").display()
        ),
    )
    .unwrap();
    let placement = root.apply();
    assert_eq!(
        placement,
        Placement::DropIn(dropins.join("00-cfaccess.conf"))
    );
    assert_eq!(
        std::fs::read_to_string(root.main()).unwrap(),
        DEBIAN.replace(
            "Include /etc/ssh/sshd_config.d/*.conf",
            &format!("Include {}/*.conf", dropins.display()),
        ),
        "the main file is untouched"
    );
    root.check(&[
        "port",
        "usepam",
        "kbdinteractiveauthentication",
        "x11forwarding",
        "printmotd",
        "pubkeyauthentication",
        "trustedusercakeys",
    ]);
}

#[test]
fn config_without_include_gets_blocks() {
    if !have_sshd() {
        return;
    }
    let root = Root::new();
    let main = format!(
        "# a hand-made config\n\n{}PermitRootLogin no\nX11Forwarding=yes\n\nMatch Address 10.0.0.0/8\n  PasswordAuthentication no\n",
        root.test_lines()
    );
    std::fs::write(root.main(), &main).unwrap();
    assert_eq!(root.apply(), Placement::Block(root.main()));
    let new = std::fs::read_to_string(root.main()).unwrap();
    let kept: String = new
        .split_inclusive('\n')
        .scan(false, |ours, line| {
            let marker = line.starts_with("# BEGIN cfaccess") || line.starts_with("# END cfaccess");
            let keep = !*ours && !marker;
            if line.starts_with("# BEGIN cfaccess") {
                *ours = true;
            } else if line.starts_with("# END cfaccess") {
                *ours = false;
            }
            Some(if keep { line } else { "" })
        })
        .collect();
    assert_eq!(kept, main, "only cfaccess's blocks were added");
    root.check(&[
        "port",
        "usepam",
        "permitrootlogin",
        "x11forwarding",
        "pubkeyauthentication",
        "trustedusercakeys",
    ]);
}
