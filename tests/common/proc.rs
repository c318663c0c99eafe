//! Running a child and measuring what it cost: wall time, CPU seconds and
//! peak RSS, from the kernel's own accounting (`wait4`), so a test can assert
//! "fails within N s" or "stays under N MiB" without sampling or sleeping.
//!
//! The command runs under GNU `time` and `timeout`. A child spawned straight
//! from the test would inherit, in `ru_maxrss`, the high-water mark of the
//! test process itself (Rust spawns with vfork, and exec folds the replaced
//! memory's peak into the figure: ~180 MiB with an edge running), while a
//! child forked by `time` starts from `time`'s few hundred KiB. `timeout`
//! stops the command at the limit and reaps it, so its CPU time is counted
//! (killing `time` would leave the command running, holding the pipes).

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
    /// The most resident memory the command had, in KiB (GNU time's `%M`).
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
///
/// `cmd` must carry its whole environment (the harness's commands do, see
/// [`super::TestEnv::isolate`]): it is rebuilt under `time`.
pub fn measure(cmd: Command, limit: Duration) -> Measured {
    measure_with_input(cmd, Stdio::null(), limit)
}

/// [`measure`], with `stdin` as the command's input.
pub fn measure_with_input(cmd: Command, stdin: Stdio, limit: Duration) -> Measured {
    use std::io::Read;
    const TIME: &str = "/usr/bin/time";
    assert!(
        std::path::Path::new(TIME).exists(),
        "these tests measure with GNU time at {TIME} (apt-get install time)"
    );
    let rss_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut outer = Command::new(TIME);
    outer
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .args(["timeout", "-k", "2"])
        .arg(format!("{}", limit.as_secs_f64()))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    if let Some(dir) = cmd.get_current_dir() {
        outer.current_dir(dir);
    }
    let start = Instant::now();
    let mut child = outer
        .stdin(stdin)
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
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be written into.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our unreaped child; status and usage are valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let wall = start.elapsed();
    // the child is reaped: std's Child must not wait for it again
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // the last line is the figure; before it, time may say how the child ended
    let peak_rss_kib = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);
    // timeout's own statuses for "stopped at the limit"
    let timed_out = matches!(code, Some(124) | Some(137));
    Measured {
        run: Run {
            code,
            stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        },
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib,
        timed_out,
    }
}
