//! Handing the process over to another program (`cfaccess curl`), so that
//! its exit status, and on Unix its signals, are the command's own.

use std::io;
use std::process::{Command, ExitCode};

/// Unix: replaces this process with `command` (exec); returns only the
/// error if it cannot be started.
#[cfg(unix)]
pub fn replace_process_or_run(command: &mut Command) -> io::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    Err(command.exec())
}

/// Windows has no exec: runs `command` with our standard streams, waits for
/// it, and gives its exit code to return. Ctrl-C reaches it as well (the
/// console sends it to the whole process group), so it ends as it would
/// alone and we exit with its status.
#[cfg(not(unix))]
pub fn replace_process_or_run(command: &mut Command) -> io::Result<ExitCode> {
    let status = command.status()?;
    Ok(exit_code(status.code()))
}

/// A child's exit code as ours: the low byte where it fits (curl's codes
/// all do), 1 for anything else.
#[cfg_attr(unix, allow(dead_code))]
fn exit_code(code: Option<i32>) -> ExitCode {
    match code.and_then(|c| u8::try_from(c).ok()) {
        Some(c) => ExitCode::from(c),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_odd_ones_are_failures() {
        assert_eq!(exit_code(Some(0)), ExitCode::SUCCESS);
        assert_eq!(exit_code(Some(22)), ExitCode::from(22));
        assert_eq!(exit_code(Some(-1)), ExitCode::FAILURE);
        assert_eq!(exit_code(Some(0xC000_013A_u32 as i32)), ExitCode::FAILURE);
        assert_eq!(exit_code(None), ExitCode::FAILURE);
    }
}
