//! Running a child and measuring what it cost: wall time, CPU seconds and
//! peak RSS, from the kernel's own accounting of that one child (`wait4`),
//! so a test can assert "fails within N s" or "stays under N MiB" without
//! sampling or sleeping.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Run;

/// What a measured run did and cost.
#[derive(Debug)]
pub struct Measured {
    pub run: Run,
    /// From spawn to exit.
    pub wall: Duration,
    /// User plus system CPU.
    pub cpu: Duration,
    /// The most resident memory the child ever had, in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    /// Killed by us at the deadline rather than exiting by itself.
    pub timed_out: bool,
}

impl Measured {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Runs `cmd` to its end (killing it after `limit`), collecting stdout and
/// stderr, and measures it. Unlike [`super::run_with_deadline`], a run past
/// the limit is returned (with `timed_out`), so a test can report the figure.
pub fn measure(mut cmd: Command, limit: Duration) -> Measured {
    use std::io::Read;
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    // drain both pipes on threads, keeping at most a few MiB of each: a test
    // of a runaway child must not itself run out of memory
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 64 << 10];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if kept.len() < (4 << 20) => kept.extend_from_slice(&buf[..n]),
                    Ok(_) => {}
                }
            }
            kept
        })
    };
    let out = drain(Box::new(out));
    let err = drain(Box::new(err));
    // a watchdog kills the child at the limit; wait4 below reaps it either way
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            // SAFETY: kill has no memory-safety preconditions; the pid is not
            // reaped until wait4 below returns, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be written into.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; status and usage are valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = start.elapsed();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // the child is reaped: std's Child must not wait for it again
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        run: Run {
            code,
            stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        },
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss as u64,
        timed_out,
    }
}
