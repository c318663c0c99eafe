//! Reading a file that another program, or an attacker, may have put there:
//! only a regular file, never past a cap, never blocking on a FIFO or device.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is larger than {cap} bytes")]
    TooLarge { cap: usize },
}

impl ReadError {
    /// Whether the file simply is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// The whole content of the regular file at `path`, at most `cap` bytes.
/// A FIFO, socket, device or directory is refused without blocking, and so
/// is a file that holds more than `cap` bytes (nothing past the cap is read).
pub fn read_capped(path: &Path, cap: usize) -> Result<Vec<u8>, ReadError> {
    read_open(open_nonblocking(path, false)?, cap).map(|(data, _)| data)
}

/// The same, except that a symlink at `path` is refused (`NotRegular`)
/// rather than followed, and the identity of the file read comes with it.
/// For files whose path alone means something (a lock), so that a link
/// planted there is never taken for the file it points to.
pub fn read_capped_nofollow(path: &Path, cap: usize) -> Result<(Vec<u8>, FileId), ReadError> {
    match open_nonblocking(path, true) {
        Ok(file) => read_open(file, cap),
        Err(e) if is_symlink_refusal(&e) => Err(ReadError::NotRegular),
        Err(e) => Err(e.into()),
    }
}

fn read_open(file: File, cap: usize) -> Result<(Vec<u8>, FileId), ReadError> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut data = Vec::with_capacity((meta.len() as usize).min(cap) + 1);
    (&file).take(cap as u64 + 1).read_to_end(&mut data)?;
    if data.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok((data, FileId::of_file(&file)?))
}

/// Which file a path named when it was looked at: comparing two tells
/// whether the path still names the same file (not another one put there
/// since, nor, for a symlink, the file it points to). Unix: device and
/// inode; Windows: volume serial number and file index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u64, u64);

impl FileId {
    /// The file at `path`, not following a symlink there.
    #[cfg(unix)]
    pub fn of_path(path: &Path) -> io::Result<FileId> {
        Ok(FileId::of_meta(&std::fs::symlink_metadata(path)?))
    }

    #[cfg(unix)]
    fn of_file(file: &File) -> io::Result<FileId> {
        Ok(FileId::of_meta(&file.metadata()?))
    }

    #[cfg(unix)]
    fn of_meta(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId(meta.dev(), meta.ino())
    }

    /// The file (or reparse point) at `path`, opened for its attributes only.
    #[cfg(windows)]
    pub fn of_path(path: &Path) -> io::Result<FileId> {
        use std::os::windows::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .access_mode(0)
            .custom_flags(windows::NO_FOLLOW_FLAGS)
            .open(path)?;
        FileId::of_file(&file)
    }

    #[cfg(windows)]
    fn of_file(file: &File) -> io::Result<FileId> {
        windows::file_id(file).map(|(volume, index)| FileId(volume, index))
    }
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::os::windows::io::AsRawHandle;

    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
        GetFileInformationByHandle,
    };

    /// Opens a symlink (any reparse point) itself rather than its target,
    /// and a directory at all (so it can be refused as not regular).
    pub const NO_FOLLOW_FLAGS: u32 = FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS;

    /// The volume serial number and the 64-bit file index: stable for the
    /// life of the file on NTFS and ReFS (std's `MetadataExt` has no stable
    /// equivalent).
    pub fn file_id(file: &File) -> io::Result<(u64, u64)> {
        // SAFETY: a zeroed BY_HANDLE_FILE_INFORMATION is a valid value.
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: a valid open handle and a valid out pointer.
        if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        Ok((u64::from(info.dwVolumeSerialNumber), index))
    }
}

/// The same, as UTF-8 text.
pub fn read_capped_string(path: &Path, cap: usize) -> Result<String, ReadError> {
    let data = read_capped(path, cap)?;
    String::from_utf8(data)
        .map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Opens for reading without waiting for a writer (a FIFO's open blocks
/// until one comes). Regular files ignore the flag.
/// With `nofollow`, a symlink as the last component fails to open.
#[cfg(unix)]
fn open_nonblocking(path: &Path, nofollow: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | if nofollow { libc::O_NOFOLLOW } else { 0 };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}

#[cfg(unix)]
fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Windows: nothing blocks on open; with `nofollow` a symlink is opened
/// itself, and then refused as not a regular file.
#[cfg(windows)]
fn open_nonblocking(path: &Path, nofollow: bool) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
    let flags = if nofollow {
        windows::NO_FOLLOW_FLAGS
    } else {
        FILE_FLAG_BACKUP_SEMANTICS
    };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}

#[cfg(windows)]
fn is_symlink_refusal(_: &io::Error) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&path, 4),
            Err(ReadError::TooLarge { cap: 4 })
        ));
        assert!(
            read_capped(&dir.path().join("none"), 4)
                .unwrap_err()
                .is_not_found()
        );
        assert!(matches!(
            read_capped(dir.path(), 4),
            Err(ReadError::NotRegular)
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_capped(&path, 4), Err(ReadError::NotRegular)));
    }

    #[cfg(unix)]
    #[test]
    fn nofollow_refuses_symlinks_dangling_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "data").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("none"), &dangling).unwrap();
        for path in [&link, &dangling] {
            assert!(matches!(
                read_capped_nofollow(path, 16),
                Err(ReadError::NotRegular)
            ));
        }
        let (data, id) = read_capped_nofollow(&target, 16).unwrap();
        assert_eq!(data, b"data");
        assert_eq!(id, FileId::of_path(&target).unwrap());
        assert_ne!(id, FileId::of_path(&link).unwrap());
    }
}
