//! Whether a browser started by this process can reach the person at the
//! keyboard: a local desktop, Windows' own desktop from inside WSL, or no
//! screen at all (a server console, or an ssh session whose display was not
//! forwarded, where a browser would open, if anywhere, on a screen nobody is
//! looking at, or a text browser would take over the terminal).

use std::ffi::OsString;

/// Where a browser would appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desktop {
    /// A desktop this process can open windows on.
    Local,
    /// Linux under WSL: the browser is Windows', started through interop.
    Wsl,
    /// No screen here; the reason, as the user is told it.
    Headless(&'static str),
}

/// Why a machine counts as headless, in the words shown to the user.
pub const NO_DISPLAY: &str = "there is no display here (DISPLAY and WAYLAND_DISPLAY are unset)";
pub const SSH_NO_DISPLAY: &str = "this is an ssh session without a forwarded display";
pub const SSH_SESSION: &str = "this is an ssh session: a browser would open on the remote screen";

/// The desktop of this process, from its environment (and, on Linux, the
/// kernel's name for itself, which says WSL).
pub fn detect() -> Desktop {
    let osrelease = if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
    } else {
        String::new()
    };
    detect_from(|name| std::env::var_os(name), &osrelease, Os::THIS)
}

/// The kinds of OS that differ here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and the BSDs: X11 or Wayland, found through the environment.
    Unix,
    MacOs,
    Windows,
}

impl Os {
    const THIS: Os = if cfg!(windows) {
        Os::Windows
    } else if cfg!(target_os = "macos") {
        Os::MacOs
    } else {
        Os::Unix
    };
}

/// [`detect`], from a given environment, `/proc/sys/kernel/osrelease` text
/// and OS.
pub fn detect_from(env: impl Fn(&str) -> Option<OsString>, osrelease: &str, os: Os) -> Desktop {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    let ssh = set("SSH_CONNECTION") || set("SSH_TTY") || set("SSH_CLIENT");
    match os {
        // Over ssh, the Mac's or Windows' screen is not the user's.
        Os::MacOs | Os::Windows if ssh => Desktop::Headless(SSH_SESSION),
        Os::MacOs | Os::Windows => Desktop::Local,
        Os::Unix => {
            let wayland = set("WAYLAND_DISPLAY");
            let display = env("DISPLAY").filter(|d| !d.is_empty());
            if ssh {
                // sshd's X11 forwarding sets DISPLAY=localhost:10.0 (a host
                // before the colon); a bare `:0` is the remote machine's own
                // screen, inherited through tmux or su. waypipe forwards
                // Wayland and sets WAYLAND_DISPLAY.
                let forwarded = display
                    .as_ref()
                    .and_then(|d| d.to_str())
                    .is_some_and(|d| d.split(':').next().is_some_and(|host| !host.is_empty()));
                if !forwarded && !wayland {
                    return Desktop::Headless(SSH_NO_DISPLAY);
                }
            }
            if is_wsl(&env, osrelease) {
                return Desktop::Wsl;
            }
            if display.is_none() && !wayland {
                return Desktop::Headless(NO_DISPLAY);
            }
            Desktop::Local
        }
    }
}

/// WSL 1 and 2 name themselves in the kernel release ("…-microsoft-standard-WSL2",
/// "…-Microsoft"); WSL also sets `WSL_DISTRO_NAME` in every shell.
fn is_wsl(env: &impl Fn(&str) -> Option<OsString>, osrelease: &str) -> bool {
    osrelease.to_ascii_lowercase().contains("microsoft")
        || env("WSL_DISTRO_NAME").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop(vars: &[(&str, &str)], osrelease: &str, os: Os) -> Desktop {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        detect_from(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()),
            osrelease,
            os,
        )
    }

    #[test]
    fn a_display_makes_a_desktop_and_none_makes_a_headless_machine() {
        assert_eq!(
            desktop(&[("DISPLAY", ":0")], "6.1.0", Os::Unix),
            Desktop::Local
        );
        assert_eq!(
            desktop(&[("WAYLAND_DISPLAY", "wayland-0")], "6.1.0", Os::Unix),
            Desktop::Local
        );
        assert_eq!(
            desktop(&[("DISPLAY", "")], "6.1.0", Os::Unix),
            Desktop::Headless(NO_DISPLAY)
        );
        assert_eq!(
            desktop(&[], "6.1.0", Os::Unix),
            Desktop::Headless(NO_DISPLAY)
        );
    }

    #[test]
    fn ssh_counts_only_a_forwarded_display() {
        let ssh = ("SSH_CONNECTION", "10.0.0.2 50000 10.0.0.1 22");
        assert_eq!(
            desktop(&[ssh], "6.1.0", Os::Unix),
            Desktop::Headless(SSH_NO_DISPLAY)
        );
        // the remote machine's own screen, inherited through tmux
        assert_eq!(
            desktop(&[ssh, ("DISPLAY", ":0")], "6.1.0", Os::Unix),
            Desktop::Headless(SSH_NO_DISPLAY)
        );
        assert_eq!(
            desktop(
                &[("SSH_TTY", "/dev/pts/3"), ("DISPLAY", "localhost:10.0")],
                "6.1.0",
                Os::Unix
            ),
            Desktop::Local
        );
        assert_eq!(
            desktop(&[ssh, ("WAYLAND_DISPLAY", "wayland-1")], "6.1.0", Os::Unix),
            Desktop::Local
        );
        assert_eq!(
            desktop(&[ssh], "", Os::MacOs),
            Desktop::Headless(SSH_SESSION)
        );
        assert_eq!(desktop(&[], "", Os::MacOs), Desktop::Local);
        assert_eq!(
            desktop(&[ssh], "", Os::Windows),
            Desktop::Headless(SSH_SESSION)
        );
        assert_eq!(desktop(&[], "", Os::Windows), Desktop::Local);
    }

    #[test]
    fn wsl_is_found_by_its_kernel_or_its_variable() {
        assert_eq!(
            desktop(&[], "5.15.167.4-microsoft-standard-WSL2", Os::Unix),
            Desktop::Wsl
        );
        assert_eq!(
            desktop(&[], "4.4.0-19041-Microsoft", Os::Unix),
            Desktop::Wsl
        );
        assert_eq!(
            desktop(&[("WSL_DISTRO_NAME", "Ubuntu")], "6.1.0", Os::Unix),
            Desktop::Wsl
        );
        // WSLg sets DISPLAY too; the Windows browser is still the one to use
        assert_eq!(
            desktop(
                &[("DISPLAY", ":0")],
                "5.15.0-microsoft-standard-WSL2",
                Os::Unix
            ),
            Desktop::Wsl
        );
        // an ssh session into WSL is still remote
        assert_eq!(
            desktop(
                &[("SSH_TTY", "/dev/pts/0")],
                "5.15.0-microsoft-standard-WSL2",
                Os::Unix
            ),
            Desktop::Headless(SSH_NO_DISPLAY)
        );
    }
}
