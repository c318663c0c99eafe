//! Diagnostics through `tracing`, taken as the official client takes them:
//! `--log-level` (`TUNNEL_LOGLEVEL`), `--output default|json`
//! (`TUNNEL_LOG_OUTPUT`) for stderr, and a copy in `--logfile`
//! (`TUNNEL_LOGFILE`, appended) or in `cfaccess.log` in `--log-directory`
//! (`TUNNEL_LOGDIRECTORY`, rotated as cloudflared rotates `cloudflared.log`).
//! Files hold JSON lines, as cloudflared's do (zerolog writes JSON and only
//! its console writer turns it into text).
//!
//! Only what the user asks for appears; the messages a command owes its user
//! (the login URL, "waiting for login") are printed by the command itself.
//! No token, secret or key is ever logged. Never to stdout: it may be an ssh
//! session or a token a script reads.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogLevel, LogOutput};
use crate::error::WithHint as _;

/// The file logs go to in a `--log-directory`.
pub const FILE_NAME: &str = "cfaccess.log";

/// cloudflared's rolling log (logger/configuration.go): lumberjack with
/// `MaxSize: 1` (MiB), `MaxBackups: 5`, `MaxAge: 0` (kept however old).
pub const ROTATE_AT: u64 = 1 << 20;
pub const BACKUPS_KEPT: usize = 5;

/// What the command line asked for.
pub struct Settings<'a> {
    pub level: Option<LogLevel>,
    pub output: LogOutput,
    pub file: Option<&'a Path>,
    pub directory: Option<&'a Path>,
    /// Whether stderr keeps its logs when they also go to a file (not for a
    /// carrier on stdin/stdout, whose stderr is ssh's terminal).
    pub console_with_file: bool,
}

/// Whether colour may be written to stderr: a terminal, and no `NO_COLOR`
/// (no-color.org: set and not empty).
pub fn colour_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && io::IsTerminal::is_terminal(&io::stderr())
}

/// Starts logging at the level asked for (warnings and errors when unset).
pub fn init(settings: &Settings<'_>) -> anyhow::Result<()> {
    let filter = match settings.level {
        // not TRACE: what our dependencies say there (frames, handshakes)
        // is not ours to vouch for
        Some(LogLevel::Trace | LogLevel::Debug) => LevelFilter::DEBUG,
        Some(LogLevel::Info) => LevelFilter::INFO,
        None | Some(LogLevel::Warn) => LevelFilter::WARN,
        Some(LogLevel::Error | LogLevel::Fatal | LogLevel::Panic) => LevelFilter::ERROR,
    };
    // --logfile wins over --log-directory, as for cloudflared (which says so)
    let both = settings.file.is_some() && settings.directory.is_some();
    let writer: Option<Box<dyn Write + Send>> = match (settings.file, settings.directory) {
        (Some(path), _) => Some(Box::new(open_file(path)?)),
        (None, Some(dir)) => {
            crate::platform::private_dir::create_all(dir)
                .with_context(|| format!("cannot create the log directory {}", dir.display()))
                .hint("give a --log-directory you can write to")?;
            let path = dir.join(FILE_NAME);
            let file = Rotating::open(path.clone(), ROTATE_AT, BACKUPS_KEPT)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            Some(Box::new(file))
        }
        (None, None) => None,
    };
    let console = (writer.is_none() || settings.console_with_file).then(|| {
        let layer = tracing_subscriber::fmt::layer().with_writer(io::stderr);
        match settings.output {
            LogOutput::Default => layer
                .with_target(false)
                .with_ansi(colour_on_stderr())
                .boxed(),
            LogOutput::Json => layer.event_format(ZerologJson).boxed(),
        }
    });
    let file = writer.map(|w| {
        tracing_subscriber::fmt::layer()
            .event_format(ZerologJson)
            .with_writer(std::sync::Mutex::new(w))
            .boxed()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file)
        .try_init();
    if both {
        tracing::warn!("both --logfile and --log-directory are set; --logfile wins");
    }
    Ok(())
}

/// `--logfile`: appended to, created 0600 (its missing directories 0700).
fn open_file(path: &Path) -> anyhow::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::platform::private_dir::create_all(parent)
            .with_context(|| format!("cannot create the directory of {}", path.display()))?;
    }
    crate::platform::atomic_file::open_append(path, 0o600)
        .with_context(|| format!("cannot open the log file {}", path.display()))
        .hint("give a --logfile you can write to")
}

/// One JSON object a line, as zerolog writes cloudflared's: `level`, `time`
/// (RFC 3339, UTC, seconds), `message`, then the event's other fields.
struct ZerologJson;

impl<S, N> FormatEvent<S, N> for ZerologJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        let level = match *event.metadata().level() {
            tracing::Level::TRACE => "trace",
            tracing::Level::DEBUG => "debug",
            tracing::Level::INFO => "info",
            tracing::Level::WARN => "warn",
            tracing::Level::ERROR => "error",
        };
        fields.insert("level".into(), level.into());
        fields.insert(
            "time".into(),
            rfc3339(time::OffsetDateTime::now_utc()).into(),
        );
        event.record(&mut JsonFields(&mut fields));
        writeln!(writer, "{}", serde_json::Value::Object(fields))
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// `2026-12-02T00:45:58Z`, zerolog's `time.RFC3339` in UTC.
fn rfc3339(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A log file rotated by size, as lumberjack rotates cloudflared's: before
/// a write that would take it past `max_size`, the file is renamed to
/// `cfaccess-<UTC time>.log` (lumberjack's `2006-01-02T15-04-05.000`), a new
/// one is started, and only the `keep` newest of those are kept.
///
/// Written here rather than taken from a crate: tracing-appender rotates by
/// time only (minutely to daily, `max_log_files`), and the size-based crates
/// (file-rotate, rolling-file, logroller) each bring chrono, and most of them
/// flate2 for compression we do not use, into a binary kept small, for what
/// is forty lines here; none names its backups as lumberjack does.
///
/// Many cfaccess may write one directory at once (ssh starts one per
/// connection). Each appends whole lines; one that finds the file already
/// rotated by another (the path is smaller than what it wrote) reopens it
/// instead of rotating a second time.
pub struct Rotating {
    path: PathBuf,
    /// `None` only while it is being rotated: Windows renames no open file.
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: usize,
}

impl Rotating {
    pub fn open(path: PathBuf, max_size: u64, keep: usize) -> io::Result<Self> {
        let file = crate::platform::atomic_file::open_append(&path, 0o600)?;
        let size = file.metadata()?.len();
        let rotating = Rotating {
            path,
            file: Some(file),
            size,
            max_size,
            keep,
        };
        rotating.prune();
        Ok(rotating)
    }

    fn rotate(&mut self, incoming: u64) -> io::Result<&mut File> {
        self.file = None;
        let on_disk = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if on_disk + incoming > self.max_size {
            // another process holding it open on Windows refuses the rename:
            // then this file grows on until a later write rotates it
            let _ = std::fs::rename(
                &self.path,
                self.backup_path(time::OffsetDateTime::now_utc()),
            );
        }
        let file = crate::platform::atomic_file::open_append(&self.path, 0o600)?;
        self.size = file.metadata()?.len();
        self.prune();
        Ok(self.file.insert(file))
    }

    /// `cfaccess-2026-12-02T00-45-58.123.log` beside `cfaccess.log`.
    fn backup_path(&self, t: time::OffsetDateTime) -> PathBuf {
        let (stem, ext) = split_name(&self.path);
        self.path.with_file_name(format!(
            "{stem}-{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}{ext}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ))
    }

    /// Removes the rotated files past the newest `keep` (their names sort
    /// as their times do).
    fn prune(&self) {
        let (stem, ext) = split_name(&self.path);
        let prefix = format!("{stem}-");
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut backups: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&ext))
                    .is_some_and(is_backup_time)
            })
            .collect();
        backups.sort_unstable_by(|a, b| b.cmp(a));
        for old in backups.iter().skip(self.keep) {
            let _ = std::fs::remove_file(dir.join(old));
        }
    }
}

/// `("cfaccess", ".log")` from `…/cfaccess.log`.
fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    (stem, ext)
}

/// `2026-12-02T00-45-58.123`: digits where lumberjack's format has them.
fn is_backup_time(text: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00-00-00.000";
    text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, &s)| {
            if s == b'0' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = buf.len() as u64;
        let file = match self.file.take() {
            Some(file) if self.size > 0 && self.size + incoming > self.max_size => {
                drop(file);
                self.rotate(incoming)?
            }
            Some(file) => self.file.insert(file),
            // a rotation that could not reopen the file: try again
            None => self.rotate(0)?,
        };
        let n = file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        // six old ones, the oldest first: one must go at the first rotation
        for i in 0..6 {
            std::fs::write(
                tmp.path()
                    .join(format!("cfaccess-2020-01-0{}T00-00-00.000.log", i + 1)),
                "old\n",
            )
            .unwrap();
        }
        std::fs::write(tmp.path().join("cfaccess-notes.log"), "not a backup").unwrap();
        let mut log = Rotating::open(path.clone(), 100, 5).unwrap();
        let names = || {
            let mut n: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        };
        // opening prunes to five already
        assert!(!names().contains(&"cfaccess-2020-01-01T00-00-00.000.log".to_owned()));
        let line = [b'x'; 39];
        log.write_all(&line).unwrap();
        log.write_all(&line).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 78);
        log.write_all(&line).unwrap(); // 117 > 100: rotate first
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 39);
        let now = names();
        assert!(now.contains(&"cfaccess-notes.log".to_owned()), "{now:?}");
        let backups: Vec<_> = now
            .iter()
            .filter(|n| n.len() == "cfaccess-2020-01-01T00-00-00.000.log".len())
            .collect();
        assert_eq!(backups.len(), 5, "{now:?}");
        assert!(!now.contains(&"cfaccess-2020-01-02T00-00-00.000.log".to_owned()));
    }

    #[test]
    fn times_read_as_zerolog_and_lumberjack_write_them() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_172_358).unwrap()
            + time::Duration::milliseconds(7);
        assert_eq!(rfc3339(t), "2026-12-02T00:45:58Z");
        let r = Rotating {
            path: PathBuf::from("/l/cfaccess.log"),
            file: None,
            size: 0,
            max_size: 1,
            keep: 1,
        };
        assert_eq!(
            r.backup_path(t),
            PathBuf::from("/l/cfaccess-2026-12-02T00-45-58.007.log")
        );
        assert!(is_backup_time("2026-12-02T00-45-58.007"));
        assert!(!is_backup_time("2026-12-02T00:45:58.007"));
    }
}
