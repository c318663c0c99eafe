//! The terminal on stderr, where cfaccess talks to its user (stdout may be
//! an ssh session or a token a script reads): whether there is one, and
//! how wide it is.

use std::io::IsTerminal;

/// Whether stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// The width of the terminal on stderr in columns, when it can be known.
pub fn stderr_columns() -> Option<usize> {
    imp::stderr_columns().filter(|&c| c > 0)
}

#[cfg(unix)]
mod imp {
    pub fn stderr_columns() -> Option<usize> {
        // SAFETY: a zeroed winsize is a valid value for the ioctl to fill.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer.
        let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
        (rc == 0).then_some(usize::from(size.ws_col))
    }
}

/// Elsewhere (Windows): not asked; what is drawn is kept narrow enough for
/// the 80 columns of a default console.
#[cfg(not(unix))]
mod imp {
    pub fn stderr_columns() -> Option<usize> {
        None
    }
}
