//! Owner and mode checks for what cfaccess keeps secret, as OpenSSH does for
//! keys: a config dir (0700) and its token, key and certificate files (0600)
//! that others could read are tightened, and a config dir that belongs to
//! another user is refused (whoever owns it can read or swap our tokens).
//! Where there are no unix modes, these are no-ops.

use std::io;
use std::path::Path;

/// Why a directory cannot be trusted with secrets.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("it is owned by uid {owner}, not by you (uid {me})")]
    ForeignOwner { owner: u32, me: u32 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Checks that the existing directory `path` is ours, and makes it 0700 if
/// others have access. `Ok(true)` when its mode was changed.
#[cfg(unix)]
pub fn secure_dir(path: &Path) -> Result<bool, PrivateDirError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(PrivateDirError::ForeignOwner {
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    Ok(true)
}

#[cfg(not(unix))]
pub fn secure_dir(path: &Path) -> Result<bool, PrivateDirError> {
    std::fs::metadata(path)?;
    Ok(false)
}

/// Makes the regular file `path` (not followed if a symlink) 0600 if others
/// have access and it is ours. `Ok(true)` when its mode was changed; a
/// missing file is `Ok(false)`.
#[cfg(unix)]
pub fn tighten_file(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // SAFETY: geteuid has no preconditions.
    if !meta.is_file() || meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(true)
}

#[cfg(not(unix))]
pub fn tighten_file(_path: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Creates `path` and its missing parents, the new ones 0700.
pub fn create_all(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Creates the directory `path` 0700; its parent must exist.
pub fn create(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_modes_are_tightened_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(secure_dir(dir.path()).unwrap());
        assert_eq!(mode(dir.path()), 0o700);
        assert!(!secure_dir(dir.path()).unwrap());
        let file = dir.path().join("t");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(tighten_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(!tighten_file(&dir.path().join("none")).unwrap());
    }

    #[test]
    fn new_dirs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        create_all(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
    }
}
