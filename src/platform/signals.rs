//! The signals that ask cfaccess to stop: Ctrl-C everywhere, and SIGTERM
//! where there is one. A command raced against [`stop_signal`] is dropped
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

#[cfg(not(unix))]
pub async fn stop_signal() -> Signal {
    match tokio::signal::ctrl_c().await {
        Ok(()) => Signal::Interrupt,
        Err(_) => std::future::pending().await,
    }
}
