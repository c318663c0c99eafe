//! `cfaccess completions <shell>` and the hidden `cfaccess man <dir>`: both
//! generated from the same clap definitions as the parser ([`crate::cli::command`]),
//! so they cannot drift from what the command line takes. The release
//! workflow runs both to ship the scripts and pages in every archive.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell as Gen;

use crate::cli::{CompletionsArgs, ManArgs, Shell};

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => Gen::Bash,
        Shell::Zsh => Gen::Zsh,
        Shell::Fish => Gen::Fish,
        Shell::Powershell => Gen::PowerShell,
        Shell::Elvish => Gen::Elvish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), "cfaccess", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// One page per command (`cfaccess.1`, `cfaccess-login.1`, …) in `dir`.
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(crate::cli::command(), &args.dir)
        .with_context(|| format!("cannot write the man pages into {}", args.dir.display()))?;
    eprintln!("Wrote the man pages into {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}
