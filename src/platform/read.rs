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
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut data = Vec::with_capacity((meta.len() as usize).min(cap) + 1);
    file.take(cap as u64 + 1).read_to_end(&mut data)?;
    if data.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(data)
}

/// The same, as UTF-8 text.
pub fn read_capped_string(path: &Path, cap: usize) -> Result<String, ReadError> {
    let data = read_capped(path, cap)?;
    String::from_utf8(data)
        .map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Opens for reading without waiting for a writer (a FIFO's open blocks
/// until one comes). Regular files ignore the flag.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
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
}
