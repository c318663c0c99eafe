//! The signals that ask cfaccess to stop: Ctrl-C everywhere, and SIGTERM
//! on Unix; on Windows Ctrl-Break and the console being closed (or the user
//! logging off, or shutdown) stand for termination. A command raced against [`stop_signal`] is dropped
//! when it resolves, so whatever it holds (a login lock, its `.url` file) is
//! released by its `Drop` before the process exits.

/// Which stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The exit code a shell gives a process killed by this signal (128 + n),
    /// so scripts see the same status as if we had not caught it.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Resolves when the process receives SIGINT or SIGTERM. Call within the
/// runtime; if the handlers cannot be installed, it never resolves (the
/// default action then still ends the process).
#[cfg(unix)]
pub async fn stop_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// Windows: Ctrl-C is an interrupt; Ctrl-Break, and the console window
/// being closed, a termination (Windows gives a process a few seconds after
/// a close event, enough to drop a lock).
#[cfg(windows)]
pub async fn stop_signal() -> Signal {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown};
    let (Ok(mut int), Ok(mut brk), Ok(mut close), Ok(mut logoff), Ok(mut shutdown)) = (
        ctrl_c(),
        ctrl_break(),
        ctrl_close(),
        ctrl_logoff(),
        ctrl_shutdown(),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Signal::Interrupt,
        _ = brk.recv() => Signal::Terminate,
        _ = close.recv() => Signal::Terminate,
        _ = logoff.recv() => Signal::Terminate,
        _ = shutdown.recv() => Signal::Terminate,
    }
}

#[cfg(not(any(unix, windows)))]
pub async fn stop_signal() -> Signal {
    match tokio::signal::ctrl_c().await {
        Ok(()) => Signal::Interrupt,
        Err(_) => std::future::pending().await,
    }
}

/// While this lives, SIGINT and SIGTERM (Ctrl-C and Ctrl-Break on Windows)
/// no longer end the process: for a step that must finish or be undone
/// whole (`cfaccess server setup` writing sshd's files). Handlers stay
/// installed after it is dropped, so use it near the end of a command.
pub struct Deferred {
    #[cfg(unix)]
    _streams: Vec<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    _streams: (
        Option<tokio::signal::windows::CtrlC>,
        Option<tokio::signal::windows::CtrlBreak>,
    ),
}

/// Installs [`Deferred`]'s handlers; call within the runtime.
pub fn defer_stops() -> Deferred {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Deferred {
            _streams: [SignalKind::interrupt(), SignalKind::terminate()]
                .into_iter()
                .filter_map(|kind| signal(kind).ok())
                .collect(),
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_c};
        Deferred {
            _streams: (ctrl_c().ok(), ctrl_break().ok()),
        }
    }
}
