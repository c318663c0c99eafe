//! A path's 8.3 short form on Windows (`C:\PROGRA~1\…`), the one form of a
//! path with spaces that `cmd.exe` runs with no quotes around it (the ssh
//! config's `Match exec` can hold none: `ssh::config`). Elsewhere there is
//! none.

use std::path::{Path, PathBuf};

/// The short form of `path`, when it differs from the path. `None` where the
/// OS has no short names, when the call fails, or on a volume that keeps no
/// short names (there `GetShortPathNameW` returns the long path).
#[cfg(windows)]
pub fn short_path(path: &Path) -> Option<PathBuf> {
    use std::ffi::OsString;
    use std::os::windows::ffi::{OsStrExt, OsStringExt};
    use windows_sys::Win32::Storage::FileSystem::GetShortPathNameW;

    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut buf = vec![0u16; 260];
    loop {
        let len = buf.len().try_into().ok()?;
        // SAFETY: `wide` is NUL-terminated; `buf` holds `len` u16s.
        let n = unsafe { GetShortPathNameW(wide.as_ptr(), buf.as_mut_ptr(), len) } as usize;
        if n == 0 {
            return None;
        }
        if n < buf.len() {
            let short = PathBuf::from(OsString::from_wide(&buf[..n]));
            return (short.as_path() != path).then_some(short);
        }
        // too small: `n` is the size needed, with the NUL
        if n > 32 * 1024 {
            return None;
        }
        buf.resize(n, 0);
    }
}

#[cfg(not(windows))]
pub fn short_path(_path: &Path) -> Option<PathBuf> {
    None
}
