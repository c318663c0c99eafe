//! When a process started, as the official client's lock code computes it
//! (gopsutil's `CreateTime()`, milliseconds since the Unix epoch), so both
//! clients agree on whether a lock's owner is still the process that took
//! it (docs/protocol.md section 3). `None` means there is no such process, or its
//! start cannot be read (another user's, on some systems): the official
//! client takes such a lock for stale, and so do we.

/// The start time of process `pid`, in ms since the Unix epoch.
pub fn start_time_ms(pid: i64) -> Option<i64> {
    if pid <= 0 {
        return None;
    }
    imp::start_time_ms(pid)
}

/// Linux: boot time plus the start ticks from `/proc/<pid>/stat`, so 10 ms
/// granularity, as gopsutil computes it.
#[cfg(target_os = "linux")]
mod imp {
    pub fn start_time_ms(pid: i64) -> Option<i64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // the command name may hold spaces and parentheses: fields start after the last ')'
        let fields = &stat[stat.rfind(')')? + 1..];
        let ticks: i64 = fields.split_whitespace().nth(19)?.parse().ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: i64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as i64 } else { 100 };
        Some(ticks * 1000 / hz + btime * 1000)
    }
}

/// Windows: the creation time from `GetProcessTimes`, a FILETIME (100 ns
/// since 1601) turned into ms since the Unix epoch, as gopsutil does.
#[cfg(windows)]
mod imp {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    /// `STILL_ACTIVE`: the exit code of a process that has not exited.
    const STILL_ACTIVE: u32 = 259;
    /// 100 ns intervals from 1601-01-01 to 1970-01-01.
    const EPOCH_DIFF: i64 = 116_444_736_000_000_000;

    pub fn start_time_ms(pid: i64) -> Option<i64> {
        let pid = u32::try_from(pid).ok()?;
        // SAFETY: OpenProcess has no memory preconditions; a null handle is checked.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return None;
        }
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        let mut code = 0u32;
        // SAFETY: a valid process handle and valid out pointers; the handle is closed below.
        let ok = unsafe {
            GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) != 0
                && GetExitCodeProcess(handle, &mut code) != 0
        };
        // SAFETY: the handle came from OpenProcess and is closed once.
        unsafe { CloseHandle(handle) };
        if !ok || code != STILL_ACTIVE {
            return None;
        }
        let ticks = (i64::from(created.dwHighDateTime) << 32) | i64::from(created.dwLowDateTime);
        Some((ticks - EPOCH_DIFF) / 10_000)
    }
}

/// macOS: the kernel's record of the process start, read as gopsutil reads
/// it (the `kern.proc.pid` sysctl's `kinfo_proc`, `p_starttime`): seconds *
/// 1000 + microseconds / 1000. The sysctl, not `proc_pidinfo`: its BSD info
/// holds the same fields but is refused for another user's process (launchd,
/// pid 1, included), where gopsutil gets an answer.
#[cfg(target_os = "macos")]
mod imp {
    /// `struct kinfo_proc` (648 bytes on x86_64 and arm64): it opens with
    /// `kp_proc.p_un`, a union whose timeval member is `p_starttime`; the
    /// rest is not read, and libc has no binding for it.
    #[repr(C)]
    struct KinfoProc {
        starttime: libc::timeval,
        _rest: [u8; KINFO_PROC_SIZE - std::mem::size_of::<libc::timeval>()],
    }
    const KINFO_PROC_SIZE: usize = 648;
    const _: () = assert!(std::mem::size_of::<KinfoProc>() == KINFO_PROC_SIZE);

    pub fn start_time_ms(pid: i64) -> Option<i64> {
        let pid = libc::c_int::try_from(pid).ok()?;
        let mut mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
        // SAFETY: all-zero bytes are a valid KinfoProc (integers only).
        let mut info: KinfoProc = unsafe { std::mem::zeroed() };
        let mut len = KINFO_PROC_SIZE;
        // SAFETY: the buffer is `len` writable bytes; sysctl writes at most that.
        let rc = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                mib.len() as libc::c_uint,
                (&mut info as *mut KinfoProc).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        // no such process: success with nothing written (gopsutil: EIO)
        if rc != 0 || len != KINFO_PROC_SIZE {
            return None;
        }
        // time_t is an i64 on every 64-bit macOS
        let secs = info.starttime.tv_sec as i64;
        let usecs = i64::from(info.starttime.tv_usec);
        Some(secs * 1000 + usecs / 1000)
    }
}

/// Elsewhere only liveness is known; a start time of 0 stands for "unknown".
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
    pub fn start_time_ms(pid: i64) -> Option<i64> {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: kill with signal 0 only checks for the process.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        alive.then_some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_start_time_is_recent_and_a_missing_process_has_none() {
        let me = start_time_ms(i64::from(std::process::id())).expect("our own start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(me <= now + 1000 && me > now - 3_600_000, "{me} vs {now}");
        assert_eq!(start_time_ms(i64::from(i32::MAX)), None);
        assert_eq!(start_time_ms(0), None);
        assert_eq!(start_time_ms(-1), None);
    }
}
