//! Unix accounts, for `cfaccess server`: does a user exist, and the command
//! that creates one.
//!
//! With a root other than `/` (`cfaccess server --root DIR`), the accounts
//! are those of `DIR/etc/passwd` when that file exists, as for every other
//! file under the root; else the system's (the database sshd itself asks).

use std::io;
use std::path::Path;

/// Whether the Unix user `name` exists.
pub fn exists(root: &Path, name: &str) -> io::Result<bool> {
    let passwd = root.join("etc/passwd");
    if root != Path::new("/") && passwd.is_file() {
        let text = std::fs::read_to_string(&passwd)?;
        return Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.split(':').next() == Some(name)));
    }
    imp::exists(name)
}

/// A name `useradd` accepts and sshd can match: letters, digits, `.`, `_`
/// and `-`, not starting with `-`, at most 32 characters (the common limit
/// of Linux's utmp and the BSDs).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The command that creates `name` with a home directory, or why there is
/// none on this OS.
pub fn create_command(root: &Path, name: &str) -> Result<Vec<String>, &'static str> {
    imp::create_command(root, name)
}

#[cfg(unix)]
mod imp {
    use std::ffi::CString;
    use std::io;
    use std::path::Path;

    pub fn exists(name: &str) -> io::Result<bool> {
        let Ok(c_name) = CString::new(name) else {
            return Ok(false);
        };
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let mut buffer = vec![0 as libc::c_char; 16 << 10];
        // SAFETY: every pointer is to a live local of the right type and the
        // buffer's length is passed with it; getpwnam_r writes only there.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            0 => Ok(!found.is_null()),
            // "not found" comes back as one of these on some systems
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => Ok(false),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    pub fn create_command(root: &Path, name: &str) -> Result<Vec<String>, &'static str> {
        if cfg!(target_os = "macos") {
            return Err(
                "cfaccess does not create users on macOS: add it in System Settings > Users & Groups (or with sysadminctl -addUser)",
            );
        }
        let mut argv = vec!["useradd".to_owned()];
        if root != Path::new("/") {
            argv.push("--prefix".into());
            argv.push(root.display().to_string());
        }
        argv.extend(["--create-home".into(), "--".into(), name.to_owned()]);
        Ok(argv)
    }
}

#[cfg(windows)]
mod imp {
    use std::io;
    use std::path::Path;

    pub fn exists(_name: &str) -> io::Result<bool> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "cfaccess server runs on Linux and macOS",
        ))
    }

    pub fn create_command(_root: &Path, _name: &str) -> Result<Vec<String>, &'static str> {
        Err("cfaccess server runs on Linux and macOS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_useradd() {
        assert!(is_valid_name("jdoe"));
        assert!(is_valid_name("j.doe-2_x"));
        assert!(!is_valid_name("-rf"));
        assert!(!is_valid_name("j doe"));
        assert!(!is_valid_name("jdoe:0"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(33)));
    }

    #[test]
    fn a_passwd_under_the_root_is_the_one_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\njdoe:x:1000:1000::/home/jdoe:/bin/sh\n",
        )
        .unwrap();
        assert!(exists(dir.path(), "jdoe").unwrap());
        assert!(!exists(dir.path(), "jdo").unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn the_system_database_knows_root_and_not_a_made_up_name() {
        assert!(exists(Path::new("/"), "root").unwrap());
        assert!(!exists(Path::new("/"), "no-such-user-cfaccess-x").unwrap());
    }
}
