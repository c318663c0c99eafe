//! `cfaccess help [command…]` (alias `h`, as the official client has it):
//! clap's own help subcommand cannot take an alias, so this one stands in
//! for it and prints the same long help as `--help`.

use std::process::ExitCode;

use crate::cli::HelpArgs;

use super::UsageError;

/// The help of `within` (the path to where `help` was given) + the command asked about.
pub fn run(within: &[&str], args: &HelpArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::cli::command();
    // builds every subcommand: global flags copied in, usage names set
    cmd.build();
    let mut current = &mut cmd;
    for name in within
        .iter()
        .copied()
        .chain(args.command.iter().map(String::as_str))
    {
        let path = current.get_bin_name().unwrap_or("cfaccess").to_owned();
        current = current.find_subcommand_mut(name).ok_or_else(|| {
            UsageError(format!(
                "{path} has no command '{name}'; run `{path} --help` for the list"
            ))
        })?;
    }
    current
        .print_long_help()
        .map_err(|e| anyhow::anyhow!("cannot write the help: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
