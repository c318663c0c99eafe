//! The wait for a browser login to be approved, as the user watches it: on
//! a terminal one live line (a spinner, the time spent and the time left)
//! redrawn in place; in a pipe or a log, a plain line every 30 s at most, so
//! `2>file` does not fill with progress.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::show as show_duration;
use crate::platform::terminal;

/// How often the live line is redrawn.
const FRAME: Duration = Duration::from_millis(100);
/// The most often a plain progress line is written.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How the wait is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line redrawn in place, cut to the terminal's width.
    Live { columns: Option<usize> },
    /// A line now and then.
    Plain,
}

impl Style {
    /// Live on a terminal, plain elsewhere. Plain too when debug logs are
    /// on: their lines would land in the middle of the live one.
    pub fn for_stderr() -> Style {
        if terminal::stderr_is_terminal() && !tracing::enabled!(tracing::Level::DEBUG) {
            Style::Live {
                columns: terminal::stderr_columns(),
            }
        } else {
            Style::Plain
        }
    }
}

/// Runs `wait` while showing its progress against `limit`. The live line is
/// wiped when `wait` ends, and ended with a newline when this future is
/// dropped unfinished (Ctrl-C drops the command where it stands), so what is
/// printed next starts on a line of its own.
pub async fn while_waiting<F: Future>(style: Style, limit: Duration, wait: F) -> F::Output {
    let mut line = Line {
        style,
        began: Instant::now(),
        limit,
        drawn: 0,
        frame: 0,
        finished: false,
    };
    let period = match style {
        Style::Live { .. } => FRAME,
        Style::Plain => PLAIN_EVERY,
    };
    let first = match style {
        Style::Live { .. } => line.began,
        Style::Plain => line.began + PLAIN_EVERY,
    };
    let mut ticks = tokio::time::interval_at(first, period);
    // a process stopped (Ctrl-Z) and resumed draws once, not a burst
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            biased;
            out = &mut wait => {
                line.finished = true;
                return out;
            }
            _ = ticks.tick() => line.draw(),
        }
    }
}

/// The progress shown so far.
struct Line {
    style: Style,
    began: Instant,
    limit: Duration,
    /// Characters of the live line on screen now.
    drawn: usize,
    frame: usize,
    /// The wait ended by itself, rather than being dropped (Ctrl-C).
    finished: bool,
}

impl Line {
    fn draw(&mut self) {
        let elapsed = self.began.elapsed();
        let left = self.limit.saturating_sub(elapsed);
        let (elapsed, left) = (
            show_duration(Duration::from_secs(elapsed.as_secs())),
            // rounded up: "0s left" only when nothing is
            show_duration(Duration::from_secs(left.as_secs_f64().ceil() as u64)),
        );
        let text = match self.style {
            Style::Live { columns } => {
                let spinner = SPINNER[self.frame % SPINNER.len()];
                self.frame += 1;
                let full = format!(
                    "{spinner} Waiting for approval: {elapsed} elapsed, {left} left (Ctrl-C to cancel)"
                );
                // one column short of the edge: a full line wraps on some
                // terminals, and \r then redraws only its second half
                let fit = columns.map_or(usize::MAX, |c| c.saturating_sub(1));
                let text: String = full.chars().take(fit).collect();
                let shown = text.chars().count();
                let pad = self.drawn.saturating_sub(shown);
                self.drawn = shown;
                // \r and spaces rather than an ANSI clear-to-end: every
                // console understands them, the Windows one unconfigured too
                format!("\r{text}{}", " ".repeat(pad))
            }
            Style::Plain => format!(
                "Still waiting for the login to be approved: {elapsed} elapsed, {left} left.\n"
            ),
        };
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

impl Drop for Line {
    /// A wait that ended wipes its line: what follows (the token, an
    /// error) starts on a clean one. One cut short keeps it, as the last
    /// state before the interruption, and ends it: the terminal has echoed
    /// `^C` after it, which a wipe of the drawn width would leave behind.
    fn drop(&mut self) {
        if self.drawn == 0 {
            return;
        }
        let end = if self.finished {
            format!("\r{}\r", " ".repeat(self.drawn))
        } else {
            "\n".to_owned()
        };
        let _ = std::io::stderr().write_all(end.as_bytes());
    }
}
