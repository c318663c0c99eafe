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
    /// The most resident memory the child had, in KiB: its `VmHWM`, sampled
    /// every 2 ms until it exits (`ru_maxrss` where that could not be read).
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
    // a watchdog kills the child at the limit; wait4 below reaps it either
    // way. Meanwhile it samples the child's VmHWM: ru_maxrss is no good here,
    // as exec folds the high-water mark of the mm it replaces into it, and
    // with vfork that mm is this (large, multi-edge) test process's own.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let mut hwm_kib = 0;
        loop {
            hwm_kib = vm_hwm_kib(pid).unwrap_or(0).max(hwm_kib);
            match done_rx.recv_timeout(Duration::from_millis(2)) {
                Ok(()) => return (false, hwm_kib),
                Err(_) if Instant::now() >= deadline => break,
                Err(_) => {}
            }
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is not
        // reaped until wait4 below returns, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        (true, hwm_kib)
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be written into.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; status and usage are valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = start.elapsed();
    let _ = done_tx.send(());
    let (timed_out, hwm_kib) = watchdog.join().unwrap_or((false, 0));
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
        peak_rss_kib: if hwm_kib > 0 {
            hwm_kib
        } else {
            usage.ru_maxrss as u64
        },
        timed_out,
    }
}

/// `VmHWM` of `/proc/<pid>/status` (the peak RSS since exec), in KiB; `None`
/// once the process is a zombie.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
