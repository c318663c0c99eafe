//! The user's home directory, found as the official client finds it (it
//! expands `~` with go-homedir, docs/protocol.md section 10): `HOME` when set;
//! else on Windows `USERPROFILE`, else `HOMEDRIVE` + `HOMEPATH`; on Unix the
//! password database. Config dirs must agree between the two clients, so
//! nothing else (no known-folder API) is consulted.

use std::ffi::OsString;
use std::path::PathBuf;

/// The home directory, or `None` when no source names one.
pub fn home_dir() -> Option<PathBuf> {
    home_from(|name| std::env::var_os(name)).or_else(imp::fallback)
}

/// The lookup through environment variables, `var` reading one; an empty
/// value counts as unset.
fn home_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let get = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(home) = get("HOME") {
        return Some(home.into());
    }
    if cfg!(windows) {
        if let Some(profile) = get("USERPROFILE") {
            return Some(profile.into());
        }
        if let (Some(drive), Some(path)) = (get("HOMEDRIVE"), get("HOMEPATH")) {
            let mut home = drive;
            home.push(path);
            return Some(home.into());
        }
    }
    None
}

/// Unix: the password database's entry for our uid, as go-homedir falls
/// back to (it runs `getent passwd`; getpwuid_r reads the same database).
#[cfg(unix)]
mod imp {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    pub fn fallback() -> Option<PathBuf> {
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: a zeroed passwd is a valid value to be written into.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid out pointers and a buffer of the length given;
        // getuid has no preconditions.
        let rc = unsafe {
            libc::getpwuid_r(
                libc::getuid(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success pw_dir points to a NUL-terminated string in buf.
        let dir = unsafe { CStr::from_ptr(pwd.pw_dir) }.to_bytes();
        (!dir.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
    }
}

#[cfg(not(unix))]
mod imp {
    pub fn fallback() -> Option<std::path::PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Option<PathBuf> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        home_from(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn home_wins_and_empty_counts_as_unset() {
        assert_eq!(
            with(&[("HOME", "/h"), ("USERPROFILE", "C:\\u")]),
            Some("/h".into())
        );
        assert_eq!(with(&[("HOME", "")]), None);
    }

    #[cfg(windows)]
    #[test]
    fn windows_falls_back_to_the_profile_then_drive_and_path() {
        assert_eq!(
            with(&[("HOME", ""), ("USERPROFILE", "C:\\Users\\a")]),
            Some("C:\\Users\\a".into())
        );
        assert_eq!(
            with(&[("HOMEDRIVE", "D:"), ("HOMEPATH", "\\Users\\b")]),
            Some("D:\\Users\\b".into())
        );
    }

    #[cfg(unix)]
    #[test]
    fn unix_ignores_the_windows_variables_and_has_a_passwd_entry() {
        assert_eq!(with(&[("USERPROFILE", "C:\\u")]), None);
        assert!(imp::fallback().is_some());
    }
}
