//! Writing a file so that nobody ever sees half of it.
//!
//! Tokens, keys, certificates and key sets are written to a fresh temporary
//! file in the same directory, created with its final mode (so a secret is
//! never readable by others, not even for a moment), synced, then renamed over
//! the target. A crash leaves either the old file or the new one, and at worst
//! a stray temporary file whose name starts with `.` and ends with `.tmp`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode for secrets: tokens, private keys, certificates.
pub const SECRET: u32 = 0o600;

/// Replaces `path` with `data`, atomically, the new file having `mode`.
pub fn write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp_path, mut file) = create_temp(dir, mode)?;
    let result = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp_path, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}

/// Creates `path`, which must not exist yet, for writing with `mode`.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Opens `path` for appending, creating it with `mode` if it is missing.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
}

/// A new file in `dir` that no other process can have opened, and its path.
fn create_temp(dir: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    loop {
        let path = dir.join(format!(".cfaccess-{:016x}.tmp", rand::random::<u64>()));
        match create_new(&path, mode) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_with_the_given_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new", SECRET).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // renaming a file over a directory fails after the temp file is written
        let target = dir.path().join("busy");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "").unwrap();
        assert!(write(&target, b"data", SECRET).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
