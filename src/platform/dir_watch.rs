//! Waiting for a change in a directory: inotify on Linux, so a process
//! waiting on another's login wakes the moment the token or the lock file
//! changes instead of on its next poll. Elsewhere, or if inotify cannot be
//! had, waiting is a plain sleep and the caller's polling does the work.

use std::path::Path;
use std::time::Duration;

/// A watch on one directory's entries.
pub struct DirWatch {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

impl DirWatch {
    /// Watches `dir` for files created, written, renamed into it or deleted.
    /// Call within the runtime.
    pub fn new(dir: &Path) -> DirWatch {
        #[cfg(not(target_os = "linux"))]
        let _ = dir;
        DirWatch {
            #[cfg(target_os = "linux")]
            fd: linux::watch(dir),
        }
    }

    /// Waits until something in the directory changes, or `at_most` passes.
    pub async fn changed(&self, at_most: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            let _ = tokio::time::timeout(at_most, linux::next_event(fd)).await;
            return;
        }
        tokio::time::sleep(at_most).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use tokio::io::unix::AsyncFd;

    pub fn watch(dir: &Path) -> Option<AsyncFd<OwnedFd>> {
        // SAFETY: inotify_init1 has no preconditions; the fd is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mask = libc::IN_CREATE | libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_DELETE;
        // SAFETY: valid fd and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            return None;
        }
        // SAFETY: the OwnedFd is valid and moves into the AsyncFd, which
        // neither replaces nor closes it while registered.
        unsafe { AsyncFd::register(fd) }.ok()
    }

    /// Waits for at least one event, and drains what is queued.
    pub async fn next_event(fd: &AsyncFd<OwnedFd>) {
        let mut buf = [0u8; 4096];
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await; // broken: leave it to the timeout
            };
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return;
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                ready.clear_ready();
                continue;
            }
            return std::future::pending().await;
        }
    }
}

// elsewhere waiting is the poll's sleep, by design
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_on_a_change_long_before_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let watch = DirWatch::new(dir.path());
        let path = dir.path().join("token");
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            std::fs::write(path, "t").unwrap();
        });
        let started = std::time::Instant::now();
        watch.changed(Duration::from_secs(30)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        writer.await.unwrap();
    }
}
