//! Standard input and output as unbuffered async streams, for the carrier.
//!
//! `tokio::io::stdout` writes through std's line buffer, which holds binary
//! ssh traffic until a newline that may never come; and both of tokio's std
//! streams hop to a blocking thread for every read and write. When ssh runs
//! us as its ProxyCommand, our stdin and stdout are pipes of our own, so we
//! make them non-blocking and drive them from the event loop directly (their
//! flags are restored on drop, as the file descriptions may outlive us).
//! Anything else (a terminal, a file) goes through tokio's `File`, which does
//! not buffer.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// Standard input.
pub enum Stdin {
    Pipe(pipe::Receiver, FlagsGuard),
    File(tokio::fs::File),
}

/// Standard output.
pub enum Stdout {
    Pipe(pipe::Sender, FlagsGuard),
    File(tokio::fs::File),
}

/// What we ask pipes to hold: more bytes per wake-up, fewer context
/// switches between ssh and us (the default is 64 KiB; 1 MiB is what an
/// unprivileged process may ask for on Linux).
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Opens standard input (fd 0) for async reading. Call within the runtime.
pub fn stdin() -> io::Result<Stdin> {
    let fd = io::stdin();
    if is_pipe(fd.as_fd()) {
        grow_pipe(fd.as_fd());
        let guard = FlagsGuard::save(fd.as_fd())?;
        // from_file checks the pipe's mode and makes it non-blocking
        if let Ok(pipe) = pipe::Receiver::from_file(dup(fd.as_fd())?) {
            return Ok(Stdin::Pipe(pipe, guard));
        }
    }
    Ok(Stdin::File(tokio::fs::File::from_std(dup(fd.as_fd())?)))
}

/// Opens standard output (fd 1) for async writing. Call within the runtime.
pub fn stdout() -> io::Result<Stdout> {
    let fd = io::stdout();
    if is_pipe(fd.as_fd()) {
        grow_pipe(fd.as_fd());
        let guard = FlagsGuard::save(fd.as_fd())?;
        if let Ok(pipe) = pipe::Sender::from_file(dup(fd.as_fd())?) {
            return Ok(Stdout::Pipe(pipe, guard));
        }
    }
    Ok(Stdout::File(tokio::fs::File::from_std(dup(fd.as_fd())?)))
}

fn dup(fd: BorrowedFd<'_>) -> io::Result<File> {
    fd.try_clone_to_owned().map(File::from)
}

/// Asks for a bigger pipe buffer; a refusal only costs speed.
#[cfg(target_os = "linux")]
fn grow_pipe(fd: BorrowedFd<'_>) {
    // SAFETY: F_SETPIPE_SZ on a valid descriptor; failure is harmless.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
}

#[cfg(not(target_os = "linux"))]
fn grow_pipe(_: BorrowedFd<'_>) {}

fn is_pipe(fd: BorrowedFd<'_>) -> bool {
    dup(fd)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_fifo())
}

/// The file status flags of a pipe as we found them, put back on drop: the
/// pipe's file description is shared with whoever gave it to us.
pub struct FlagsGuard {
    fd: OwnedFd,
    flags: libc::c_int,
}

impl FlagsGuard {
    fn save(fd: BorrowedFd<'_>) -> io::Result<FlagsGuard> {
        let fd = fd.try_clone_to_owned()?;
        // SAFETY: F_GETFL on a valid, owned descriptor.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FlagsGuard { fd, flags })
    }
}

impl Drop for FlagsGuard {
    fn drop(&mut self) {
        // SAFETY: F_SETFL on a valid, owned descriptor with flags it had.
        unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, self.flags) };
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdin::Pipe(p, _) => Pin::new(p).poll_read(cx, buf),
            Stdin::File(f) => Pin::new(f).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stdout::Pipe(p, _) => Pin::new(p).poll_write(cx, buf),
            Stdout::File(f) => Pin::new(f).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdout::Pipe(p, _) => Pin::new(p).poll_flush(cx),
            Stdout::File(f) => Pin::new(f).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdout::Pipe(p, _) => Pin::new(p).poll_shutdown(cx),
            Stdout::File(f) => Pin::new(f).poll_shutdown(cx),
        }
    }
}
