//! Reloading sshd after its configuration changed, through whatever runs it
//! here: systemd's `ssh` or `sshd` unit, the `service` script, a SIGHUP to
//! the pid in its `PidFile`, or nothing at all on macOS, where launchd
//! starts an sshd for each connection and every new one reads the new file.
//!
//! Always a reload, never a stop and start: sshd re-executes its listener on
//! SIGHUP and the sessions already open live on in their own processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How sshd is reloaded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// `systemctl reload <unit>`.
    Systemd { unit: String },
    /// `service <name> reload`.
    Service { name: String },
    /// `kill -HUP <pid>` (the pid read from sshd's `PidFile`).
    Signal { pid: i32, pidfile: PathBuf },
    /// Nothing to do: sshd is started per connection.
    OnDemand,
    /// No sshd runs that cfaccess could find; it reads the new file when it
    /// starts.
    NotRunning { why: String },
}

impl Reload {
    /// The command a user would type, or what happens instead.
    pub fn describe(&self) -> String {
        match self {
            Reload::Systemd { unit } => format!("systemctl reload {unit}"),
            Reload::Service { name } => format!("service {name} reload"),
            Reload::Signal { pid, .. } => format!("kill -HUP {pid}"),
            Reload::OnDemand => "nothing: launchd starts sshd for each connection".into(),
            Reload::NotRunning { why } => format!("nothing: {why}"),
        }
    }

    /// Why nothing is run, for a reload that does not act.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Reload::OnDemand => Some(
                "launchd starts sshd for each connection, and each new one reads the new configuration".into(),
            ),
            Reload::NotRunning { why } => Some(why.clone()),
            _ => None,
        }
    }

    /// Does it; the error is one line with what the tool said.
    pub fn run(&self) -> Result<(), String> {
        match self {
            Reload::Systemd { unit } => run_tool(Command::new("systemctl").args(["reload", unit])),
            Reload::Service { name } => run_tool(Command::new("service").args([name, "reload"])),
            Reload::Signal { pid, .. } => imp::hangup(*pid),
            Reload::OnDemand | Reload::NotRunning { .. } => Ok(()),
        }
    }
}

/// How to reload the sshd whose `PidFile` is `pidfile`. Under a `root`
/// other than `/` only that pid is considered: the system's service manager
/// runs the system's sshd, not the one under the root.
pub fn plan(root: &Path, pidfile: Option<&Path>) -> Reload {
    if root == Path::new("/") {
        if cfg!(target_os = "macos") {
            return Reload::OnDemand;
        }
        if Path::new("/run/systemd/system").is_dir() {
            for unit in ["ssh.service", "sshd.service"] {
                if systemd_unit_active(unit) {
                    return Reload::Systemd {
                        unit: unit.trim_end_matches(".service").to_owned(),
                    };
                }
            }
        } else {
            for name in ["ssh", "sshd"] {
                if Path::new("/etc/init.d").join(name).is_file() && running(pidfile).is_some() {
                    return Reload::Service { name: name.into() };
                }
            }
        }
    }
    match (pidfile, running(pidfile)) {
        (Some(path), Some(pid)) => Reload::Signal {
            pid,
            pidfile: path.to_owned(),
        },
        (Some(path), None) => Reload::NotRunning {
            why: format!(
                "no running sshd has its pid in {}; sshd reads the new configuration when it starts",
                path.display()
            ),
        },
        (None, _) => Reload::NotRunning {
            why: "sshd writes no PidFile and no service manager runs it; restart it by hand to use the new configuration".into(),
        },
    }
}

/// The pid in `pidfile` when a process with it is alive.
fn running(pidfile: Option<&Path>) -> Option<i32> {
    let text = std::fs::read_to_string(pidfile?).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1)?;
    imp::alive(pid).then_some(pid)
}

fn systemd_unit_active(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_tool(command: &mut Command) -> Result<(), String> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(format!("{shown} failed ({}): {said}", out.status))
}

#[cfg(unix)]
mod imp {
    pub fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    pub fn hangup(pid: i32) -> Result<(), String> {
        // SAFETY: kill takes plain integers.
        if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "cannot send SIGHUP to sshd (pid {pid}): {}",
                std::io::Error::last_os_error()
            ))
        }
    }
}

#[cfg(windows)]
mod imp {
    pub fn alive(_pid: i32) -> bool {
        false
    }

    pub fn hangup(_pid: i32) -> Result<(), String> {
        Err("cfaccess server runs on Linux and macOS".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn under_a_root_only_the_pidfile_counts() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("sshd.pid");
        assert!(matches!(
            plan(dir.path(), Some(&pidfile)),
            Reload::NotRunning { .. }
        ));
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        match plan(dir.path(), Some(&pidfile)) {
            Reload::Signal { pid, .. } => assert_eq!(pid as u32, std::process::id()),
            other => panic!("{other:?}"),
        }
    }
}
