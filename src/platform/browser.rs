//! Opening the login URL in the user's browser: `$BROWSER` when set (a list
//! of commands, each with `%s` standing for the URL, separated by `:` on
//! Unix and by `;` on Windows, where `:` is in every path), else the system
//! opener. The browser gets no terminal streams: in ssh ProxyCommand mode
//! our stdout is the ssh session.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long an opener is given to fail before it counts as started: openers
/// (`xdg-open`, `open`, `rundll32`) return at once, a browser named in
/// `$BROWSER` may run until it is closed.
const FAIL_WITHIN: Duration = Duration::from_secs(2);

/// Starts the browser on `url`; false if no browser could be started.
pub fn open(url: &str) -> bool {
    let from_env = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    match from_env {
        Some(list) => entries(&list).any(|entry| spawn_entry(entry, url)),
        None => {
            let (program, args) = system_opener(url);
            spawn(program, &args)
        }
    }
}

/// The entries of a `$BROWSER` list.
fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(if cfg!(windows) { ';' } else { ':' })
        .filter(|e| !e.trim().is_empty())
}

/// The system's opener and its arguments. On Windows `rundll32` hands the
/// URL to the default browser as one argument: `cmd /c start` would split
/// it at every `&` of the query string.
fn system_opener(url: &str) -> (&'static str, Vec<&str>) {
    if cfg!(windows) {
        ("rundll32", vec!["url.dll,FileProtocolHandler", url])
    } else if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else {
        ("xdg-open", vec![url])
    }
}

/// One `$BROWSER` entry: a command with optional arguments, `%s` replaced by
/// the URL, or the URL appended when there is no `%s`.
fn entry_command(entry: &str, url: &str) -> Option<(String, Vec<String>)> {
    let mut words = entry.split_whitespace();
    let program = words.next()?.to_owned();
    let mut args: Vec<String> = words.map(|w| w.replace("%s", url)).collect();
    if !entry.contains("%s") {
        args.push(url.to_owned());
    }
    Some((program, args))
}

fn spawn_entry(entry: &str, url: &str) -> bool {
    entry_command(entry, url).is_some_and(|(program, args)| spawn(&program, &args))
}

/// Starts the program; false if it cannot be, or exits unsuccessfully
/// within [`FAIL_WITHIN`].
fn spawn(program: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> bool {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let (tx, rx) = mpsc::channel();
    // reap it whenever it ends, so a long-lived listener leaves no zombies
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().map(|s| s.success()));
    });
    match rx.recv_timeout(FAIL_WITHIN) {
        Ok(Ok(success)) => success,
        Ok(Err(_)) => false,
        // still running: a browser, started
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_lists_split_where_paths_cannot() {
        if cfg!(windows) {
            let list: Vec<_> =
                entries(r"C:\Program Files\Firefox\firefox.exe;;chrome %s").collect();
            assert_eq!(list, [r"C:\Program Files\Firefox\firefox.exe", "chrome %s"]);
        } else {
            let list: Vec<_> = entries("firefox::/usr/bin/chromium --new-window %s").collect();
            assert_eq!(list, ["firefox", "/usr/bin/chromium --new-window %s"]);
        }
    }

    #[test]
    fn the_url_replaces_percent_s_or_comes_last() {
        let url = "https://t.example/cdn-cgi/access/cli?a=1&b=2";
        assert_eq!(
            entry_command("w3m -o x %s", url),
            Some(("w3m".into(), vec!["-o".into(), "x".into(), url.into()]))
        );
        assert_eq!(
            entry_command("firefox", url),
            Some(("firefox".into(), vec![url.into()]))
        );
        assert_eq!(entry_command("  ", url), None);
    }

    #[test]
    fn the_system_opener_gets_the_url_as_one_argument() {
        let url = "https://t.example/?a=1&b=2";
        let (_, args) = system_opener(url);
        assert_eq!(args.last(), Some(&url));
    }

    #[cfg(unix)]
    #[test]
    fn an_opener_that_fails_counts_as_not_started() {
        assert!(!spawn("false", &[""; 0]));
        assert!(spawn("true", &[""; 0]));
        assert!(!spawn("/nonexistent/opener", &[""; 0]));
    }
}
