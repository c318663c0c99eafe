//! `cfaccess doctor [<url>|--hostname H] [--json]`: runs `doctor`'s checks
//! and prints one line per check (or JSON); exits 1 when one fails.

use std::process::ExitCode;

use super::UsageError;
use crate::access::host::AppUrl;
use crate::cli::DoctorArgs;
use crate::doctor::{self, Options};
use crate::ui::checklist;

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
    let url = url.as_ref().map(|u| u.to_string());
    let heading = url.as_ref().map(|u| format!("cfaccess doctor for {u}"));
    checklist::print(
        &checks,
        heading.as_deref(),
        ("url", url.as_deref()),
        args.json,
    )
}
