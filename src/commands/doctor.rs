//! `cfaccess doctor [<url>|--hostname H] [--json]`: runs `doctor`'s checks
//! and prints one line per check (or JSON); exits 1 when one fails.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::UsageError;
use crate::access::host::AppUrl;
use crate::cli::DoctorArgs;
use crate::doctor::{self, Options, Status};

/// The version of `--json`'s shape: fields are added, never renamed or
/// removed, without a new number.
const SCHEMA: u32 = 1;

/// What `--json` prints (see the README's schema).
#[derive(Serialize)]
struct Report<'a> {
    schema: u32,
    url: Option<String>,
    /// No check failed.
    ok: bool,
    checks: &'a [doctor::Check],
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let url = match args.url.as_deref().or(args.hostname.as_deref()) {
        Some(raw) => Some(AppUrl::parse(raw).map_err(|e| UsageError(e.to_string()))?),
        None => None,
    };
    let options = Options {
        url: url.clone(),
        ssh_config: args.ssh_config,
    };
    let checks = doctor::run(&options).await;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let out = if args.json {
        let report = Report {
            schema: SCHEMA,
            url: url.as_ref().map(|u| u.to_string()),
            ok: failed == 0,
            checks: &checks,
        };
        let mut text =
            serde_json::to_string_pretty(&report).context("cannot write the checks as JSON")?;
        text.push('\n');
        text
    } else {
        let mut text = String::new();
        if let Some(url) = &url {
            let _ = writeln!(text, "cfaccess doctor for {url}");
        }
        for c in &checks {
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
