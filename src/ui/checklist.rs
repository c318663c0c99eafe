//! A checklist as `cfaccess doctor` and `cfaccess server check` print it:
//! one line per check (status, id, what was found, the fix when it is not
//! ok) and a count of failures, or the same as JSON for scripts.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use serde_json::Value;

/// The result of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but something is worth knowing.
    Warn,
    Fail,
    /// Not checked (nothing to check it against).
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check: its id (stable, for `--json`), result, one line saying what
/// was found, the fix when there is one, and figures for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub summary: String,
    pub fix: Option<String>,
    pub data: Value,
}

impl Check {
    pub(crate) fn new(id: &'static str, status: Status, summary: impl Into<String>) -> Check {
        Check {
            id,
            status,
            summary: summary.into(),
            fix: None,
            data: Value::Null,
        }
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn data(mut self, data: Value) -> Check {
        self.data = data;
        self
    }
}

/// The version of `--json`'s shape: fields are added, never renamed or
/// removed, without a new number.
const SCHEMA: u32 = 1;

/// What `--json` prints: `{"schema", <subject>, "ok", "checks"}`.
#[derive(Serialize)]
struct Report<'a> {
    schema: u32,
    #[serde(flatten)]
    subject: std::collections::BTreeMap<&'a str, Option<&'a str>>,
    /// No check failed.
    ok: bool,
    checks: &'a [Check],
}

/// Prints `checks` under `heading` (text) or as JSON with `subject` (the
/// key and value naming what was checked, like `url`); exit 1 when one failed.
pub fn print(
    checks: &[Check],
    heading: Option<&str>,
    subject: (&str, Option<&str>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let out = if json {
        let report = Report {
            schema: SCHEMA,
            subject: [subject].into_iter().collect(),
            ok: failed == 0,
            checks,
        };
        let mut text =
            serde_json::to_string_pretty(&report).context("cannot write the checks as JSON")?;
        text.push('\n');
        text
    } else {
        let mut text = String::new();
        if let Some(heading) = heading {
            let _ = writeln!(text, "{heading}");
        }
        for c in checks {
            let _ = write!(text, "{:<4}  {:<12}  {}", c.status.label(), c.id, c.summary);
            if let Some(fix) = c.fix.as_ref().filter(|_| c.status != Status::Ok) {
                let _ = write!(text, "; fix: {fix}");
            }
            text.push('\n');
        }
        let _ = match failed {
            0 => writeln!(text, "No check failed."),
            1 => writeln!(text, "1 check failed."),
            n => writeln!(text, "{n} checks failed."),
        };
        text
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
