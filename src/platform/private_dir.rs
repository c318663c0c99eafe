//! Owner and mode checks for what cfaccess keeps secret, as OpenSSH does for
//! keys: a config dir (0700) and its token, key and certificate files (0600)
//! that others could read are tightened, and a config dir that belongs to
//! another user is refused (whoever owns it can read or swap our tokens).
//! On Windows, a directory cfaccess creates gets an owner-only protected ACL
//! (the current user, full control, inherited by what is created in it), as
//! Win32-OpenSSH refuses a private key that others can read; existing ones
//! are left as they are (under the user's profile they are private already).

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

/// What [`secure_dir`] and [`tighten_file`] look at, found without changing
/// anything (`cfaccess doctor` reports it): the owner when it is not us,
/// and the permission bits (`None` where there are none, on Windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// `(owner, me)` when `path` belongs to another user.
    pub foreign_owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
}

impl Exposure {
    /// Whether others than the owner have any access.
    pub fn open_to_others(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o077 != 0)
    }
}

/// The [`Exposure`] of `path` (not followed if a symlink).
#[cfg(unix)]
pub fn inspect(path: &Path) -> io::Result<Exposure> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    Ok(Exposure {
        foreign_owner: (meta.uid() != me).then_some((meta.uid(), me)),
        mode: Some(meta.mode() & 0o7777),
    })
}

#[cfg(not(unix))]
pub fn inspect(path: &Path) -> io::Result<Exposure> {
    std::fs::symlink_metadata(path)?;
    Ok(Exposure {
        foreign_owner: None,
        mode: None,
    })
}

/// Creates `path` and its missing parents, the new ones private (0700, or
/// owner-only on Windows).
pub fn create_all(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(path)
    }
    #[cfg(not(unix))]
    {
        // each missing one is made private as it is created
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_all(parent)?;
        }
        match create(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            other => other,
        }
    }
}

/// Creates the directory `path` private (0700, or owner-only on Windows);
/// its parent must exist.
pub fn create(path: &Path) -> io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    #[cfg(windows)]
    if let Err(e) = windows::make_owner_only(path) {
        // a directory others may read is worse than none
        let _ = std::fs::remove_dir(path);
        return Err(e);
    }
    Ok(())
}

#[cfg(windows)]
mod windows {
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::Security::Authorization::{SE_FILE_OBJECT, SetNamedSecurityInfoW};
    use windows_sys::Win32::Security::{
        ACCESS_ALLOWED_ACE, ACL, ACL_REVISION, AddAccessAllowedAceEx, CONTAINER_INHERIT_ACE,
        DACL_SECURITY_INFORMATION, GetLengthSid, GetTokenInformation, InitializeAcl,
        OBJECT_INHERIT_ACE, PROTECTED_DACL_SECURITY_INFORMATION, TOKEN_QUERY, TOKEN_USER,
        TokenUser,
    };
    use windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// The current user's SID, as the `TOKEN_USER` buffer that holds it
    /// (u64s, so the SID inside is aligned).
    pub struct UserSid(Vec<u64>);

    impl UserSid {
        pub fn current() -> io::Result<UserSid> {
            let mut token: HANDLE = std::ptr::null_mut();
            // SAFETY: the pseudo handle of our process and a valid out pointer.
            if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0u32;
            // SAFETY: asking for the size only, with a valid token.
            unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len) };
            let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
            // SAFETY: a buffer of at least len bytes.
            let ok = unsafe {
                GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len)
            };
            let err = io::Error::last_os_error();
            // SAFETY: the token came from OpenProcessToken and is closed once.
            unsafe { CloseHandle(token) };
            if ok == 0 {
                return Err(err);
            }
            Ok(UserSid(buf))
        }

        pub fn as_psid(&self) -> *mut core::ffi::c_void {
            // SAFETY: the buffer holds a TOKEN_USER filled by GetTokenInformation.
            unsafe { (*self.0.as_ptr().cast::<TOKEN_USER>()).User.Sid }
        }
    }

    pub fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain(Some(0)).collect()
    }

    /// Replaces the DACL of `path` by one entry, the current user with full
    /// control (inherited by files and directories made in it), protected
    /// from the parent's inheritable entries.
    pub fn make_owner_only(path: &Path) -> io::Result<()> {
        let sid = UserSid::current()?;
        // SAFETY: a valid SID from the token.
        let sid_len = unsafe { GetLengthSid(sid.as_psid()) } as usize;
        let acl_len = std::mem::size_of::<ACL>() + std::mem::size_of::<ACCESS_ALLOWED_ACE>()
            - std::mem::size_of::<u32>()
            + sid_len;
        let mut acl = vec![0u64; acl_len.div_ceil(8)];
        let acl_ptr = acl.as_mut_ptr().cast::<ACL>();
        // SAFETY: a buffer of acl_len bytes, aligned, and a valid SID.
        let ok = unsafe {
            InitializeAcl(acl_ptr, acl_len as u32, ACL_REVISION) != 0
                && AddAccessAllowedAceEx(
                    acl_ptr,
                    ACL_REVISION,
                    OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE,
                    FILE_ALL_ACCESS,
                    sid.as_psid(),
                ) != 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        let name = wide(path);
        // SAFETY: a NUL-terminated path and a valid ACL; owner, group and SACL untouched.
        let rc = unsafe {
            SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                acl_ptr,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc as i32));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use windows_sys::Win32::Foundation::LocalFree;
        use windows_sys::Win32::Security::Authorization::GetNamedSecurityInfoW;
        use windows_sys::Win32::Security::{
            ACL_SIZE_INFORMATION, AclSizeInformation, EqualSid, GetAce, GetAclInformation,
            GetSecurityDescriptorControl, SE_DACL_PROTECTED,
        };

        #[test]
        fn a_created_dir_has_an_owner_only_protected_dacl() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("private");
            super::super::create(&path).unwrap();
            let name = wide(&path);
            let mut dacl: *mut ACL = std::ptr::null_mut();
            let mut sd = std::ptr::null_mut();
            // SAFETY: valid out pointers; sd is freed below.
            let rc = unsafe {
                GetNamedSecurityInfoW(
                    name.as_ptr(),
                    SE_FILE_OBJECT,
                    DACL_SECURITY_INFORMATION,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &mut dacl,
                    std::ptr::null_mut(),
                    &mut sd,
                )
            };
            assert_eq!(rc, 0);
            // SAFETY: a zeroed ACL_SIZE_INFORMATION is valid.
            let mut info: ACL_SIZE_INFORMATION = unsafe { std::mem::zeroed() };
            let (mut control, mut revision) = (0u16, 0u32);
            let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
            let me = UserSid::current().unwrap();
            // SAFETY: dacl and sd come from GetNamedSecurityInfoW and live until LocalFree.
            unsafe {
                assert_ne!(
                    GetAclInformation(
                        dacl,
                        (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
                        std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                        AclSizeInformation,
                    ),
                    0
                );
                assert_eq!(info.AceCount, 1);
                assert_ne!(GetAce(dacl, 0, &mut ace), 0);
                let ace = &*ace.cast::<ACCESS_ALLOWED_ACE>();
                assert_eq!(ace.Mask, FILE_ALL_ACCESS);
                let sid = (&ace.SidStart as *const u32).cast_mut().cast();
                assert_ne!(EqualSid(sid, me.as_psid()), 0);
                assert_ne!(
                    GetSecurityDescriptorControl(sd, &mut control, &mut revision),
                    0
                );
                assert_ne!(control & SE_DACL_PROTECTED, 0);
                LocalFree(sd);
            }
        }
    }
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
