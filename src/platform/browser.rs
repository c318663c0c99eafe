//! Opening the login URL in the user's browser: `$BROWSER` when set (a
//! `:`-separated list, each entry a command, `%s` standing for the URL), else
//! the system opener. The browser gets no terminal streams: in ssh
//! ProxyCommand mode our stdout is the ssh session.

use std::process::{Command, Stdio};

/// Starts the browser on `url`; false if no browser could be started.
pub fn open(url: &str) -> bool {
    let from_env = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    match from_env {
        Some(list) => list.split(':').any(|entry| spawn_entry(entry, url)),
        None => system_openers().iter().any(|opener| spawn(opener, &[url])),
    }
}

fn system_openers() -> &'static [&'static str] {
    if cfg!(target_os = "macos") {
        &["open"]
    } else {
        &["xdg-open"]
    }
}

/// One `$BROWSER` entry: a command with optional arguments, `%s` replaced by
/// the URL, or the URL appended when there is no `%s`.
fn spawn_entry(entry: &str, url: &str) -> bool {
    let mut words = entry.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let mut args: Vec<String> = words.map(|w| w.replace("%s", url)).collect();
    if !entry.contains("%s") {
        args.push(url.to_owned());
    }
    spawn(program, &args)
}

fn spawn(program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> bool {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            // reap it whenever it ends, so a long-lived listener leaves no zombies
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}
