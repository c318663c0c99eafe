//! A real OpenSSH server for the tests: its own host key, port and config on
//! 127.0.0.1, started by the test and stopped when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// A user key that `authorized_keys` lists.
    pub user_key: PathBuf,
    pub log: PathBuf,
    child: Child,
}

/// Where Debian keeps sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// Starts sshd with the given extra `sshd_config` lines.
    pub fn start(extra: &[String]) -> Sshd {
        Sshd::start_on(free_port(), extra)
    }

    /// Starts sshd on `port` trusting user certificates from the CA whose
    /// public key line is `ca` (written to `ca_file`), and no plain keys.
    pub fn trusting_ca(port: u16, ca_file: &Path, ca: &str) -> Sshd {
        std::fs::write(ca_file, format!("{ca}\n")).expect("the CA file");
        Sshd::start_on(
            port,
            &[
                format!("TrustedUserCAKeys {}", ca_file.display()),
                "AuthorizedKeysFile none".into(),
            ],
        )
    }

    /// Starts sshd on `port` with the given extra `sshd_config` lines.
    pub fn start_on(port: u16, extra: &[String]) -> Sshd {
        let tmp = tempfile::tempdir().expect("sshd dir");
        let dir = tmp.path();
        assert!(
            Path::new(SSHD).exists(),
            "these tests need OpenSSH's sshd at {SSHD} (apt-get install openssh-server)"
        );
        // sshd started as root wants its privilege separation directory
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_key");
        let user_key = dir.join("user_key");
        keygen(&host_key);
        keygen(&user_key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(user_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let mut config = vec![
            format!("Port {port}"),
            "ListenAddress 127.0.0.1".into(),
            format!("HostKey {}", host_key.display()),
            "PidFile none".into(),
            "UsePAM no".into(),
            "StrictModes no".into(),
            "PasswordAuthentication no".into(),
            "KbdInteractiveAuthentication no".into(),
            "PermitRootLogin prohibit-password".into(),
            format!("AuthorizedKeysFile {}", authorized.display()),
            "LogLevel VERBOSE".into(),
        ];
        config.extend(extra.iter().cloned());
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config.join("\n") + "\n").expect("sshd_config");
        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sshd log"))
            .spawn()
            .expect("sshd starts");
        let mut sshd = Sshd {
            dir: tmp,
            port,
            user_key,
            log,
            child,
        };
        wait_for(Duration::from_secs(10), "sshd to listen", || {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}): {}", sshd.log_text());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sshd
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh` with the ssh config `config` (`/dev/null` for none) and nothing
/// of the user's own config or known hosts, logging in as the current user.
pub fn ssh_with_config(config: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30"])
        .arg("-l")
        .arg(current_user());
    cmd
}

/// `ssh` logging in as the current user with `key`, with no ssh config.
pub fn ssh_client(key: &Path) -> Command {
    let mut cmd = ssh_with_config(Path::new("/dev/null"));
    cmd.arg("-i").arg(key);
    cmd
}

/// A new ed25519 key with no passphrase at `path`.
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cfaccess-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The user the tests run as, for ssh logins.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
