//! Opening the login URL in the user's browser, and knowing whether that
//! worked: `$BROWSER` when set, else the desktop's opener (`xdg-open`,
//! `open`, `rundll32`, or Windows' browser from inside WSL), and nothing at
//! all on a machine without a screen (see [`super::desktop`]).
//!
//! `$BROWSER` follows its convention (as Python's `webbrowser` and `man`
//! read it): a list of commands tried in turn, separated by `:` on Unix
//! (where a Windows path's drive, `C:\…`, is not a separator) and by `;` on
//! Windows; `%s` in a command stands for the URL, else the URL is appended.
//! A command whose program path holds spaces (`/mnt/c/Program Files/…/chrome.exe`)
//! is taken whole when that file exists, or may be quoted.
//!
//! Why not the `webbrowser` crate: it reports success as soon as a
//! background command has been spawned (so `BROWSER=/bin/false` or an
//! `xdg-open` that exits 3, "no method available", count as opened, which is
//! exactly the lie this module exists to avoid), splits `$BROWSER` at every
//! `:` and space (breaking `C:\…` and `Program Files`), and on a machine
//! without a display falls through to text browsers that would take over
//! the terminal of an ssh session.
//!
//! The browser gets no terminal streams: in ssh ProxyCommand mode our stdout
//! is the ssh session.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::desktop::Desktop;

/// How long an opener is given to fail before it counts as started: openers
/// (`xdg-open`, `open`, `rundll32`, `wslview`) return at once, a browser
/// named in `$BROWSER` may run until it is closed.
pub const FAIL_WITHIN: Duration = Duration::from_secs(2);

/// What became of the attempt to open a URL.
#[derive(Debug)]
pub enum Outcome {
    /// The last of `attempts` took the URL.
    Opened { attempts: Vec<Attempt> },
    /// Every opener failed; `from_env` when they came from `$BROWSER`.
    Failed {
        attempts: Vec<Attempt>,
        from_env: bool,
    },
    /// No browser was tried, for this reason.
    NotTried(&'static str),
}

/// One opener run, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The program, as the user would recognise it.
    pub opener: String,
    pub result: Tried,
}

/// How one opener went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tried {
    /// It exited successfully within [`FAIL_WITHIN`].
    Succeeded,
    /// Still running after [`FAIL_WITHIN`]: a browser, started.
    StillRunning,
    /// Started; its exit status means nothing (`explorer.exe` exits 1 when it
    /// has opened the URL).
    Started,
    /// It exited unsuccessfully: how, as a user reads it.
    Exited(String),
    NotFound,
    CannotStart(String),
}

impl Tried {
    pub fn worked(&self) -> bool {
        matches!(
            self,
            Tried::Succeeded | Tried::StillRunning | Tried::Started
        )
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opener = &self.opener;
        match &self.result {
            Tried::Succeeded => write!(f, "{opener} took the URL"),
            Tried::StillRunning => write!(
                f,
                "{opener} is still running after {} s (a browser, started)",
                FAIL_WITHIN.as_secs()
            ),
            Tried::Started => write!(f, "{opener} started"),
            Tried::Exited(how) => write!(f, "{opener} {how}"),
            Tried::NotFound => write!(f, "{opener} is not installed"),
            Tried::CannotStart(why) => write!(f, "{opener} cannot be started: {why}"),
        }
    }
}

/// Opens `url` in a browser of `desktop`: `$BROWSER` when set (whatever the
/// desktop: the user said what to run), else the desktop's opener.
pub fn open(url: &str, desktop: &Desktop) -> Outcome {
    let (candidates, from_env) = match &configured() {
        Some(list) => {
            let exists = |p: &str| Path::new(p).is_file();
            let commands = entries(list)
                .into_iter()
                .filter_map(|entry| entry_command(entry, url, exists))
                .map(|(program, args)| Candidate {
                    program,
                    args,
                    trust_status: true,
                })
                .collect();
            (commands, true)
        }
        None => match desktop {
            Desktop::Headless(why) => return Outcome::NotTried(why),
            Desktop::Wsl => (wsl_openers(url), false),
            Desktop::Local => (vec![system_opener(url)], false),
        },
    };
    let mut attempts = Vec::new();
    for candidate in candidates {
        let result = run(&candidate);
        let worked = result.worked();
        attempts.push(Attempt {
            opener: candidate.program,
            result,
        });
        if worked {
            return Outcome::Opened { attempts };
        }
    }
    Outcome::Failed { attempts, from_env }
}

/// `$BROWSER`, when it is set to something.
pub fn configured() -> Option<String> {
    std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
}

/// A command that may open the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    program: String,
    args: Vec<String>,
    /// Whether a failed exit status means it failed.
    trust_status: bool,
}

/// The desktop's opener and its arguments. On Windows `rundll32` hands the
/// URL to the default browser as one argument: `cmd /c start` would split
/// it at every `&` of the query string.
fn system_opener(url: &str) -> Candidate {
    let (program, args) = if cfg!(windows) {
        (
            "rundll32",
            vec!["url.dll,FileProtocolHandler".to_owned(), url.to_owned()],
        )
    } else if cfg!(target_os = "macos") {
        ("open", vec![url.to_owned()])
    } else {
        ("xdg-open", vec![url.to_owned()])
    };
    Candidate {
        program: program.into(),
        args,
        trust_status: true,
    }
}

/// Windows' browser from inside WSL, through interop: `wslview` (wslu, on
/// most WSL distributions) knows the default browser; `explorer.exe` opens a
/// URL in it too, but exits 1 either way; `cmd.exe /c start` is the last
/// resort, and needs the query's `&` escaped from cmd's parser.
fn wsl_openers(url: &str) -> Vec<Candidate> {
    vec![
        Candidate {
            program: "wslview".into(),
            args: vec![url.into()],
            trust_status: true,
        },
        Candidate {
            program: "explorer.exe".into(),
            args: vec![url.into()],
            trust_status: false,
        },
        Candidate {
            program: "cmd.exe".into(),
            args: vec!["/c".into(), "start".into(), cmd_escape(url)],
            trust_status: true,
        },
    ]
}

/// `url` as one word of a `cmd.exe` command line: its metacharacters
/// escaped with `^`.
fn cmd_escape(url: &str) -> String {
    let mut out = String::with_capacity(url.len() + 16);
    for c in url.chars() {
        if "^&|<>()".contains(c) {
            out.push('^');
        }
        out.push(c);
    }
    out
}

/// The entries of a `$BROWSER` list: separated by `;` on Windows, by `:`
/// elsewhere, except the colon of a drive (`C:\…`, `D:/…`) at the start of
/// an entry, which WSL and MSYS users write.
fn entries(list: &str) -> Vec<&str> {
    let separator = if cfg!(windows) { ';' } else { ':' };
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in list.char_indices() {
        if c != separator {
            continue;
        }
        if separator == ':' && is_drive(&list[start..i], &list[i + 1..]) {
            continue;
        }
        out.push(&list[start..i]);
        start = i + 1;
    }
    out.push(&list[start..]);
    out.retain(|e| !e.trim().is_empty());
    out
}

/// Whether a `:` after `before` (the entry so far) and before `after` is a
/// drive's: one letter, perhaps after an opening quote, then a slash.
fn is_drive(before: &str, after: &str) -> bool {
    let letter = before.trim_start().trim_start_matches(['"', '\'']);
    letter.len() == 1
        && letter.chars().all(|c| c.is_ascii_alphabetic())
        && after.starts_with(['\\', '/'])
}

/// One `$BROWSER` entry as a program and its arguments, `%s` replaced by the
/// URL (or the URL appended when there is no `%s`). The program is, in
/// order: a quoted first word; the whole entry, when that is a file
/// (`/mnt/c/Program Files/Google/Chrome/Application/chrome.exe`); the longest
/// run of leading words that is a file (the same path with arguments after
/// it); else the first word.
fn entry_command(
    entry: &str,
    url: &str,
    exists: impl Fn(&str) -> bool,
) -> Option<(String, Vec<String>)> {
    let entry = entry.trim();
    let words: Vec<String> = if entry.contains(['"', '\'']) {
        quoted_words(entry)
    } else if exists(entry) {
        vec![entry.to_owned()]
    } else {
        let plain: Vec<&str> = entry.split_whitespace().collect();
        let path_words = (2..=plain.len())
            .rev()
            .find(|&n| exists(&plain[..n].join(" ")));
        match path_words {
            Some(n) => std::iter::once(plain[..n].join(" "))
                .chain(plain[n..].iter().map(|w| (*w).to_owned()))
                .collect(),
            None => plain.iter().map(|w| (*w).to_owned()).collect(),
        }
    };
    let (program, rest) = words.split_first()?;
    let mut args: Vec<String> = rest.iter().map(|w| w.replace("%s", url)).collect();
    if !rest.iter().any(|w| w.contains("%s")) {
        args.push(url.to_owned());
    }
    Some((program.clone(), args))
}

/// Words split at whitespace, where `"…"` or `'…'` keeps what it holds
/// together (no escapes: Windows paths are full of backslashes).
fn quoted_words(entry: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in entry.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Runs the candidate, and says how it went within [`FAIL_WITHIN`].
fn run(candidate: &Candidate) -> Tried {
    let child = Command::new(&candidate.program)
        .args(&candidate.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Tried::NotFound,
        Err(e) => return Tried::CannotStart(e.to_string()),
    };
    let (tx, rx) = mpsc::channel();
    // reap it whenever it ends, so a long-lived browser leaves no zombie
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(FAIL_WITHIN) {
        Ok(Ok(_)) if !candidate.trust_status => Tried::Started,
        Ok(Ok(status)) if status.success() => Tried::Succeeded,
        Ok(Ok(status)) => Tried::Exited(how_it_ended(status)),
        Ok(Err(e)) => Tried::CannotStart(e.to_string()),
        Err(_) => Tried::StillRunning,
    }
}

/// "exited with status 3", or how else it ended.
fn how_it_ended(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        // killed by a signal (Unix): std says which
        None => format!("ended: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://t.example/cdn-cgi/access/cli?a=1&b=2";

    fn command(entry: &str, files: &[&str]) -> Option<(String, Vec<String>)> {
        entry_command(entry, URL, |p| files.contains(&p))
    }

    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn browser_lists_split_where_paths_cannot() {
        if cfg!(windows) {
            let list = entries(r"C:\Program Files\Firefox\firefox.exe;;chrome %s");
            assert_eq!(list, [r"C:\Program Files\Firefox\firefox.exe", "chrome %s"]);
        } else {
            let list = entries("firefox::/usr/bin/chromium --new-window %s");
            assert_eq!(list, ["firefox", "/usr/bin/chromium --new-window %s"]);
            // a drive's colon is not a separator
            let list = entries(r"C:\Program Files\Mozilla Firefox\firefox.exe:w3m");
            assert_eq!(
                list,
                [r"C:\Program Files\Mozilla Firefox\firefox.exe", "w3m"]
            );
            let list = entries(r#"lynx:"D:/Apps/chrome.exe" %s"#);
            assert_eq!(list, ["lynx", r#""D:/Apps/chrome.exe" %s"#]);
            // but a one-letter program followed by a plain entry is split
            assert_eq!(entries("w:firefox"), ["w", "firefox"]);
        }
    }

    #[test]
    fn the_url_replaces_percent_s_or_comes_last() {
        assert_eq!(
            command("w3m -o x %s", &[]),
            Some(("w3m".into(), owned(&["-o", "x", URL])))
        );
        assert_eq!(
            command("firefox --url=%s --new-tab", &[]),
            Some((
                "firefox".into(),
                owned(&[&format!("--url={URL}"), "--new-tab"])
            ))
        );
        assert_eq!(
            command("firefox", &[]),
            Some(("firefox".into(), owned(&[URL])))
        );
        assert_eq!(command("  ", &[]), None);
    }

    #[test]
    fn a_program_path_with_spaces_is_taken_whole_or_quoted() {
        let chrome = "/mnt/c/Program Files/Google/Chrome/Application/chrome.exe";
        assert_eq!(
            command(chrome, &[chrome]),
            Some((chrome.into(), owned(&[URL])))
        );
        assert_eq!(
            command(&format!("{chrome} --incognito %s"), &[chrome]),
            Some((chrome.into(), owned(&["--incognito", URL])))
        );
        assert_eq!(
            command(&format!("\"{chrome}\" --new-window"), &[]),
            Some((chrome.into(), owned(&["--new-window", URL])))
        );
        assert_eq!(
            command(r"'C:\Program Files\Firefox\firefox.exe' -new-tab %s", &[]),
            Some((
                r"C:\Program Files\Firefox\firefox.exe".into(),
                owned(&["-new-tab", URL])
            ))
        );
    }

    #[test]
    fn the_system_opener_gets_the_url_as_one_argument() {
        assert_eq!(
            system_opener(URL).args.last().map(String::as_str),
            Some(URL)
        );
        for opener in wsl_openers(URL) {
            let last = opener.args.last().unwrap();
            assert!(last.starts_with("https://"), "{opener:?}");
        }
    }

    #[test]
    fn cmd_start_gets_the_query_escaped() {
        assert_eq!(
            cmd_escape("https://h/?a=1&b=(2)"),
            "https://h/?a=1^&b=^(2^)"
        );
    }

    #[test]
    fn a_headless_desktop_tries_nothing() {
        // without $BROWSER only; with it, the user's command runs anyway
        if std::env::var_os("BROWSER").is_none() {
            assert!(matches!(
                open(URL, &Desktop::Headless("why")),
                Outcome::NotTried("why")
            ));
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_opener_is_judged_by_how_it_ends() {
        let run_one = |program: &str, trust_status| {
            run(&Candidate {
                program: program.into(),
                args: vec![],
                trust_status,
            })
        };
        assert_eq!(
            run_one("false", true),
            Tried::Exited("exited with status 1".into())
        );
        assert_eq!(run_one("false", false), Tried::Started);
        assert_eq!(run_one("true", true), Tried::Succeeded);
        assert_eq!(run_one("/nonexistent/opener", true), Tried::NotFound);
        assert!(!run_one("/nonexistent/opener", false).worked());
    }
}
