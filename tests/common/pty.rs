//! Running a command on a real pseudo-terminal, as a user at a terminal
//! runs it: the pty is its controlling terminal and its stdin and stderr
//! (stdout stays a pipe, so the token it prints is read apart), Ctrl-C is a
//! `\x03` typed into it (the kernel's line discipline turns it into SIGINT
//! for the foreground process group), and everything it draws is collected
//! for the test to wait on, with a deadline.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command running on a pty.
pub struct Pty {
    master: File,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    /// Set when the reader reached the end: no process holds the pty.
    ended: Arc<AtomicBool>,
}

impl Pty {
    /// Starts `cmd` on a new pty of `cols` × `rows`.
    pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> Pty {
        let (mut master, mut slave) = (-1, -1);
        let mut size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two fds through valid pointers; the name
        // pointer may be null, and the termios one too (the default modes).
        // Mutable pointers: macOS declares them so, Linux takes them as const.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &raw mut size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened for us and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdin = slave.try_clone().expect("dup the pty");
        cmd.stdin(Stdio::from(stdin))
            .stderr(Stdio::from(slave))
            .stdout(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // a session of its own, with the pty (its stdin) as the
                // controlling terminal, so ^C reaches it as SIGINT
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        // the parent's copies of the slave end are dropped with `cmd`'s
        // Stdio here, so the reader sees EOF (EIO) when the child is done
        drop(cmd);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the pty master");
        let sink = output.clone();
        let ended = Arc::new(AtomicBool::new(false));
        let end = ended.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Linux answers EIO, not EOF, once the last slave fd is closed
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            end.store(true, Ordering::SeqCst);
        });
        Pty {
            master,
            child: Some(child),
            output,
            ended,
        }
    }

    /// Everything drawn so far (the pty turns `\n` into `\r\n`).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until what was drawn satisfies `cond`, failing the test after
    /// `limit`; returns it.
    pub fn wait_for(&self, limit: Duration, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.output();
            if cond(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the terminal shows:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `bytes` into the terminal.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
    }

    /// Waits for the command to exit (killing it after `limit`, a failed
    /// test): its status, what it wrote to stdout, and what the terminal
    /// showed.
    pub fn finish(mut self, limit: Duration) -> (ExitStatus, String, String) {
        let mut child = self.child.take().expect("running");
        let mut stdout = child.stdout.take().expect("stdout");
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the command did not exit within {limit:?}; the terminal shows:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = out_reader.join().unwrap_or_default();
        // what it drew last may still be in the pty: wait for the reader to
        // reach the end, which it does once no process holds the slave
        super::wait_for(Duration::from_secs(5), "the end of the pty output", || {
            self.ended.load(Ordering::SeqCst)
        });
        (status, stdout, self.output())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
