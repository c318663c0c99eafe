//! Writing a file so that nobody ever sees half of it.
//!
//! Tokens, keys, certificates and key sets are written to a fresh temporary
//! file in the same directory, created with its final mode (so a secret is
//! never readable by others, not even for a moment), synced, then renamed over
//! the target. A crash leaves either the old file or the new one, and at worst
//! a stray temporary file whose name starts with `.` and ends with `.tmp`.
//!
//! Modes are Unix's; on Windows they are ignored, and what keeps a secret
//! private is the owner-only ACL of its directory (see `private_dir`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode for secrets: tokens, private keys, certificates.
pub const SECRET: u32 = 0o600;

/// The permission bits of the file at `path`, to keep them when it is
/// replaced; `None` when it is missing, or where there are no modes.
pub fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Creates `path`, which must not exist yet (`AlreadyExists` if it does),
/// holding `data`, with `mode`. Where the filesystem has hard links the file
/// is written aside and linked into place, so nobody ever sees it empty or
/// half-written; where it has none (FAT, some SMB shares) it is created
/// exclusively and written after, as the official client always does.
pub fn create_new_with(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    create_new_with_link(path, data, mode, |from, to| std::fs::hard_link(from, to))
}

/// The same with the linking step given, so the fallback can be tested on a
/// filesystem that has hard links.
fn create_new_with_link(
    path: &Path,
    data: &[u8],
    mode: u32,
    link: impl Fn(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp_path, mut file) = create_temp(dir, mode)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| link(&tmp_path, path));
    let _ = std::fs::remove_file(&tmp_path);
    match linked {
        Err(ref e) if e.kind() != io::ErrorKind::AlreadyExists => {
            // No hard links here (Unsupported, PermissionDenied or EPERM, as
            // FAT and SMB answer): a real failure fails the create as well,
            // and a file there already is AlreadyExists as with the link.
            let mut file = create_new(path, mode)?;
            let result = file.write_all(data).and_then(|()| file.sync_all());
            if result.is_err() {
                drop(file);
                let _ = std::fs::remove_file(path);
            }
            result
        }
        other => other,
    }
}

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
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    with_mode(&mut options, mode);
    options.open(path)
}

/// Opens `path` for appending, creating it with `mode` if it is missing.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    with_mode(&mut options, mode);
    options.open(path)
}

#[cfg(unix)]
fn with_mode(options: &mut OpenOptions, mode: u32) {
    std::os::unix::fs::OpenOptionsExt::mode(options, mode);
}

#[cfg(not(unix))]
fn with_mode(_: &mut OpenOptions, _: u32) {}

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

    #[test]
    fn creates_new_files_by_link_or_without_links_and_never_over_one() {
        let dir = tempfile::tempdir().unwrap();
        let linked = dir.path().join("linked");
        create_new_with(&linked, b"one", SECRET).unwrap();
        assert_eq!(std::fs::read(&linked).unwrap(), b"one");
        let e = create_new_with(&linked, b"two", SECRET).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&linked).unwrap(), b"one");

        // a filesystem without hard links, as FAT answers
        let no_links = |_: &Path, _: &Path| -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let created = dir.path().join("created");
        create_new_with_link(&created, b"three", SECRET, no_links).unwrap();
        assert_eq!(std::fs::read(&created).unwrap(), b"three");
        let e = create_new_with_link(&created, b"four", SECRET, no_links).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&created).unwrap(), b"three");
        // no temporary file is left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn replaces_the_file_with_the_given_mode_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
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
