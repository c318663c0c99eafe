//! `cfaccess version`: the same line as `--version`, or with `--short` the
//! bare version number, as the official client's `version` prints them.

use std::process::ExitCode;

use crate::cli::VersionArgs;

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    if args.short {
        println!("{}", env!("CARGO_PKG_VERSION"));
    } else {
        println!("cfaccess {}", crate::cli::VERSION);
    }
    Ok(ExitCode::SUCCESS)
}
