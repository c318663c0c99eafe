//! Standard input and output as unbuffered async streams, for the carrier.
//!
//! `tokio::io::stdout` writes through std's line buffer, which holds binary
//! ssh traffic until a newline that may never come; and both of tokio's std
//! streams hop to a blocking thread for every read and write.
//!
//! Unix: when ssh runs us as its ProxyCommand, our stdin and stdout are pipes
//! of our own, so we make them non-blocking and drive them from the event
//! loop directly (their flags are restored on drop, as the file descriptions
//! may outlive us). Anything else (a terminal, a file) goes through tokio's
//! `File`, which does not buffer.
//!
//! Windows: anonymous pipes cannot be made non-blocking, so one thread per
//! stream does the blocking reads or writes, handing bytes over through a
//! buffer of at most [`threaded::CAP`] bytes (the thread stops reading while
//! it is full; a writer waits while it is full), and the end of stdin is an
//! end of stream like any other, so half-close works the same.

#[cfg(unix)]
pub use unix::{Stdin, Stdout, stdin, stdout};
#[cfg(windows)]
pub use windows::{Stdin, Stdout, stdin, stdout};

#[cfg(unix)]
mod unix {
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
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::os::windows::io::AsHandle;

    use super::threaded::{Reader, Writer};

    /// Standard input.
    pub type Stdin = Reader;
    /// Standard output.
    pub type Stdout = Writer;

    /// Standard input, read by a thread of its own.
    pub fn stdin() -> io::Result<Stdin> {
        let handle = io::stdin().as_handle().try_clone_to_owned()?;
        Ok(Reader::spawn(File::from(handle)))
    }

    /// Standard output, written by a thread of its own.
    pub fn stdout() -> io::Result<Stdout> {
        let handle = io::stdout().as_handle().try_clone_to_owned()?;
        Ok(Writer::spawn(File::from(handle)))
    }
}

/// A blocking reader or writer driven by a thread of its own, seen from the
/// runtime as an async stream, with a bounded buffer in between.
#[cfg(any(windows, test))]
mod threaded {
    use std::io::{self, Read, Write};
    use std::pin::Pin;
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::task::{Context, Poll, Waker};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// The most bytes held between the thread and the runtime.
    pub const CAP: usize = 64 * 1024;

    #[derive(Default)]
    struct State {
        buf: Vec<u8>,
        /// Reader: the end of input was read. Writer: no more will be written.
        done: bool,
        /// Writer: bytes taken by the thread and not yet written.
        in_flight: bool,
        error: Option<io::Error>,
        waker: Option<Waker>,
    }

    struct Shared {
        state: Mutex<State>,
        /// Wakes the thread: room to read into, or bytes to write.
        cond: Condvar,
    }

    impl Shared {
        fn new() -> Arc<Shared> {
            Arc::new(Shared {
                state: Mutex::new(State::default()),
                cond: Condvar::new(),
            })
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    fn wake(state: &mut State) {
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Reads on a thread as long as there is room in the buffer.
    pub struct Reader {
        shared: Arc<Shared>,
    }

    impl Reader {
        pub fn spawn(mut input: impl Read + Send + 'static) -> Reader {
            let shared = Shared::new();
            let theirs = shared.clone();
            // a plain thread, not the runtime's blocking pool: a read that
            // never returns must not keep the runtime from shutting down
            std::thread::spawn(move || {
                let mut chunk = vec![0u8; CAP];
                loop {
                    let room = {
                        let mut state = theirs.lock();
                        while state.buf.len() >= CAP && !state.done {
                            state = theirs.cond.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                        if state.done {
                            return; // the reader was dropped
                        }
                        CAP - state.buf.len()
                    };
                    let got = input.read(&mut chunk[..room]);
                    let mut state = theirs.lock();
                    match got {
                        Ok(0) => state.done = true,
                        Ok(n) => state.buf.extend_from_slice(&chunk[..n]),
                        // a pipe whose writer is gone: the end of input
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => state.done = true,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            state.error = Some(e);
                            state.done = true;
                        }
                    }
                    let end = state.done;
                    wake(&mut state);
                    if end {
                        return;
                    }
                }
            });
            Reader { shared }
        }
    }

    impl AsyncRead for Reader {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let mut state = self.shared.lock();
            if !state.buf.is_empty() {
                let n = state.buf.len().min(out.remaining());
                out.put_slice(&state.buf[..n]);
                state.buf.drain(..n);
                self.shared.cond.notify_one();
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = state.error.take() {
                return Poll::Ready(Err(e));
            }
            if state.done {
                return Poll::Ready(Ok(()));
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for Reader {
        fn drop(&mut self) {
            self.shared.lock().done = true;
            self.shared.cond.notify_one();
        }
    }

    /// Writes on a thread what is handed to it, at most [`CAP`] at a time.
    pub struct Writer {
        shared: Arc<Shared>,
    }

    impl Writer {
        pub fn spawn(mut output: impl Write + Send + 'static) -> Writer {
            let shared = Shared::new();
            let theirs = shared.clone();
            std::thread::spawn(move || {
                loop {
                    let data = {
                        let mut state = theirs.lock();
                        while state.buf.is_empty() && !state.done {
                            state = theirs.cond.wait(state).unwrap_or_else(|e| e.into_inner());
                        }
                        if state.buf.is_empty() {
                            return; // done, and everything written
                        }
                        state.in_flight = true;
                        std::mem::take(&mut state.buf)
                    };
                    let result = output.write_all(&data).and_then(|()| output.flush());
                    let mut state = theirs.lock();
                    state.in_flight = false;
                    if let Err(e) = result {
                        state.error = Some(e);
                        state.done = true;
                        state.buf.clear();
                    }
                    wake(&mut state);
                    if state.error.is_some() {
                        return;
                    }
                }
            });
            Writer { shared }
        }

        /// Ready once the thread has written everything handed to it.
        fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut state = self.shared.lock();
            if let Some(e) = state.error.as_ref() {
                return Poll::Ready(Err(io::Error::new(e.kind(), e.to_string())));
            }
            if state.buf.is_empty() && !state.in_flight {
                return Poll::Ready(Ok(()));
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl AsyncWrite for Writer {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut state = self.shared.lock();
            if let Some(e) = state.error.as_ref() {
                return Poll::Ready(Err(io::Error::new(e.kind(), e.to_string())));
            }
            if state.done {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let room = CAP.saturating_sub(state.buf.len());
            if room == 0 {
                state.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = room.min(data.len());
            state.buf.extend_from_slice(&data[..n]);
            self.shared.cond.notify_one();
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_drained(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let drained = self.poll_drained(cx);
            if drained.is_ready() {
                self.shared.lock().done = true;
                self.shared.cond.notify_one();
            }
            drained
        }
    }

    impl Drop for Writer {
        fn drop(&mut self) {
            // the thread writes what it holds, then ends
            self.shared.lock().done = true;
            self.shared.cond.notify_one();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        /// A reader that hands out `total` bytes, counting what was read.
        struct Counted {
            left: usize,
            read: Arc<Mutex<usize>>,
        }

        impl Read for Counted {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.left).min(4096);
                buf[..n].fill(7);
                self.left -= n;
                *self.read.lock().unwrap() += n;
                Ok(n)
            }
        }

        #[tokio::test]
        async fn the_reader_stops_at_the_cap_and_ends_with_its_input() {
            let read = Arc::new(Mutex::new(0));
            let total = 10 * CAP;
            let mut reader = Reader::spawn(Counted {
                left: total,
                read: read.clone(),
            });
            // nothing consumed: the thread fills the buffer and stops
            let mut first = [0u8; 1];
            reader.read_exact(&mut first).await.unwrap();
            let mut rest = Vec::new();
            let start = *read.lock().unwrap();
            assert!(start <= CAP + 4096, "read ahead {start} bytes");
            reader.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest.len() + 1, total);
        }

        #[tokio::test]
        async fn the_writer_writes_everything_before_shutdown_returns() {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            struct Sink(std::sync::mpsc::Sender<Vec<u8>>);
            impl Write for Sink {
                fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                    self.0
                        .send(buf.to_vec())
                        .map_err(|_| io::ErrorKind::BrokenPipe)?;
                    Ok(buf.len())
                }
                fn flush(&mut self) -> io::Result<()> {
                    Ok(())
                }
            }
            let mut writer = Writer::spawn(Sink(tx));
            let data = vec![1u8; 3 * CAP + 5];
            writer.write_all(&data).await.unwrap();
            writer.shutdown().await.unwrap();
            let got: usize = rx.try_iter().map(|c| c.len()).sum();
            assert_eq!(got, data.len());
        }

        #[tokio::test]
        async fn a_writer_whose_output_is_gone_fails() {
            struct Gone;
            impl Write for Gone {
                fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                    Err(io::ErrorKind::BrokenPipe.into())
                }
                fn flush(&mut self) -> io::Result<()> {
                    Ok(())
                }
            }
            let mut writer = Writer::spawn(Gone);
            let _ = writer.write_all(b"x").await;
            let e = writer.flush().await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        }
    }
}
