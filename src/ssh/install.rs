//! Installing the ssh_config snippet (docs/protocol.md section 8) where it wins.
//!
//! ssh takes, for each option, the first value it meets: a `Host *` (or
//! `Match all`) section above cfaccess's block that sets `ProxyCommand` or
//! `CertificateFile` would silently win over it. So the block goes before the
//! first section that may apply to the host (`Host *`, `Host *.example.com`,
//! `Match all`, a `Match` whose conditions cannot be told offline), and
//! before any global line (outside every section) that sets what the block
//! sets or `Include`s a file we cannot see into. A block put among global
//! lines would turn the lines after it into part of itself, so it then ends
//! with `Host *`, which gives them back to every host.
//!
//! With `--include`, as `step ssh config` does, the blocks live in a file of
//! their own, pulled in by an `Include` at the very top of the config: ssh
//! reads it before anything else, and a `Host` line inside it does not carry
//! over into the including file (readconf.c restores its match state after
//! an `Include`).
//!
//! Either way a block sits between `# BEGIN cfaccess <host>` and
//! `# END cfaccess <host>` markers, and a second run replaces it: the result
//! of installing twice is the result of installing once.

use std::path::Path;

/// The directives a block sets, which a global line setting first would
/// take away from it (`ProxyJump` competes with `ProxyCommand`; identity and
/// certificate files accumulate, but ssh tries them in order).
const BLOCK_KEYS: [&str; 5] = [
    "proxycommand",
    "proxyjump",
    "certificatefile",
    "identityfile",
    "include",
];

/// Why a config cannot be edited safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("line {line} opens a cfaccess block ('{marker}') that no '# END' line closes")]
    Unclosed { line: usize, marker: String },
    #[error(
        "the path {path} holds '{what}', which an ssh Include line would read as a pattern or cannot carry"
    )]
    IncludePath { path: String, what: char },
    #[error(
        "the path '{path}' of the application holds '{what}', which ssh's config cannot carry the same way on every system"
    )]
    AppPath { path: String, what: char },
}

impl InstallError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            InstallError::Unclosed { .. } => {
                "delete the stray '# BEGIN cfaccess' line, or add its '# END cfaccess' line, and run this again"
            }
            InstallError::IncludePath { .. } => {
                "leave out --include, or give --config a file in a folder without such characters"
            }
            InstallError::AppPath { .. } => {
                "give the path with letters, digits and . _ ~ - / only, or the hostname alone"
            }
        }
    }
}

/// Where a block went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// At the end: nothing in the file applies to the host.
    End,
    /// Before the line that would otherwise win (its number in the file
    /// as it was, without any earlier block for the host, 1-based, and the
    /// line itself).
    Before { line: usize, text: String },
    /// Where an earlier block for the host was, which still wins.
    InPlace,
}

/// The outcome of installing a block into a config's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub text: String,
    /// Whether a block for the host was there before.
    pub replaced: bool,
    pub position: Position,
}

/// The markers of `hostname`'s block.
fn markers(hostname: &str) -> (String, String) {
    (
        format!("# BEGIN cfaccess {hostname}"),
        format!("# END cfaccess {hostname}"),
    )
}

/// `text` without the marked blocks for `hostname` (each with one blank
/// line after it, which [`place`] adds), and the line index where the
/// first one was.
fn cut_blocks(text: &str, hostname: &str) -> Result<(Vec<String>, Option<usize>), InstallError> {
    let (begin, end) = markers(hostname);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut kept = Vec::with_capacity(lines.len());
    let mut first = None;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != begin {
            kept.push(lines[i].to_owned());
            i += 1;
            continue;
        }
        let Some(stop) = lines[i..].iter().position(|l| l.trim() == end) else {
            return Err(InstallError::Unclosed {
                line: i + 1,
                marker: begin,
            });
        };
        first.get_or_insert(kept.len());
        i += stop + 1;
        if lines.get(i).is_some_and(|l| l.trim().is_empty()) {
            i += 1;
        }
    }
    // a last line without its newline would run into whatever comes next
    if let Some(last) = kept.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    Ok((kept, first))
}

/// `config` without any block for `hostname`; `None` when it has none.
pub fn remove(config: &str, hostname: &str) -> Result<Option<String>, InstallError> {
    let (kept, first) = cut_blocks(config, hostname)?;
    Ok(first.map(|_| kept.concat()))
}

/// Puts `block` for `hostname` into `config` between markers, where ssh
/// reads it before anything else that applies to the host (see the module's
/// comment). An earlier block for the host is replaced, in place when that
/// place still wins.
pub fn place(config: &str, hostname: &str, block: &str) -> Result<Placed, InstallError> {
    let (lines, old) = cut_blocks(config, hostname)?;
    let threat = first_threat(&lines, hostname);
    let (at, position) = match (old, threat) {
        (Some(old), Some(t)) if old <= t => (old, Position::InPlace),
        (Some(old), None) => (old, Position::InPlace),
        (_, Some(t)) => (
            t,
            Position::Before {
                line: t + 1,
                text: lines[t].trim_end().to_owned(),
            },
        ),
        (None, None) => (lines.len(), Position::End),
    };
    let (begin, end) = markers(hostname);
    let mut marked = format!("{begin}\n{block}");
    if in_preamble(&lines, at) && has_directives_until_section(&lines, at) {
        marked.push_str("# back to every host for the lines below\nHost *\n");
    }
    marked.push_str(&end);
    marked.push('\n');
    let mut text: String = lines[..at].concat();
    if at == lines.len() {
        // at the end, a blank line apart from what is above
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&marked);
    } else {
        text.push_str(&marked);
        text.push('\n');
        text.push_str(&lines[at..].concat());
    }
    Ok(Placed {
        text,
        replaced: old.is_some(),
        position,
    })
}

/// The marked `Include` line of `include` and where it goes: the very top of
/// `config` (an earlier one is moved there, so it is always read first).
/// `home` is given for Win32-OpenSSH, which reads a path with a drive
/// letter as one relative to `~/.ssh`: a path under it is written `~/…`.
pub fn place_include(
    config: &str,
    include: &Path,
    home: Option<&Path>,
) -> Result<String, InstallError> {
    // no hostname holds parentheses, so no host's markers are these
    const NAME: &str = "(include)";
    let line = include_line(include, home)?;
    let (lines, _) = cut_blocks(config, NAME)?;
    let (begin, end) = markers(NAME);
    let mut text = format!("{begin}\n{line}\n{end}\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    text.push_str(&lines.concat());
    Ok(text)
}

/// `Include <path>`: absolute, since ssh expands `~` and relative paths from
/// the password database's home, not from `HOME`; quoted when it holds a
/// space. ssh globs the path, so glob characters (and quotes, which no
/// version reads alike) are refused.
fn include_line(path: &Path, home: Option<&Path>) -> Result<String, InstallError> {
    let text = match home.and_then(|h| path.strip_prefix(h).ok()) {
        Some(rest) => format!("~/{}", rest.to_string_lossy()).into(),
        None => path.to_string_lossy(),
    };
    let refused = |c: char| {
        let windows_separator = cfg!(windows) && c == '\\';
        ("*?[]\"'\\#".contains(c) || c.is_control()) && !windows_separator
    };
    if let Some(what) = text.chars().find(|c| refused(*c)) {
        return Err(InstallError::IncludePath {
            path: text.into_owned(),
            what,
        });
    }
    // Windows takes `/` for `\`, and leaves no backslash for OpenSSH 10's escapes
    let text = text.replace('\\', "/");
    if text.contains(char::is_whitespace) {
        Ok(format!("Include \"{text}\""))
    } else {
        Ok(format!("Include {text}"))
    }
}

/// The index of the first line that would win over a block for `hostname`
/// put after it: a section that may apply to the host, or a global line that
/// sets what the block sets.
fn first_threat(lines: &[String], hostname: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, line) in lines.iter().enumerate() {
        let Some((key, args)) = directive(line) else {
            continue;
        };
        match key.as_str() {
            "host" => {
                if host_may_match(&args, hostname) {
                    return Some(i);
                }
                in_section = true;
            }
            "match" => {
                if match_may_apply(&args, hostname) {
                    return Some(i);
                }
                in_section = true;
            }
            _ if !in_section && BLOCK_KEYS.contains(&key.as_str()) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether line `at` is before every section.
fn in_preamble(lines: &[String], at: usize) -> bool {
    !lines[..at.min(lines.len())]
        .iter()
        .any(|l| directive(l).is_some_and(|(k, _)| k == "host" || k == "match"))
}

/// Whether a directive other than a section's start follows line `at`
/// before the next section (it would fall into a block put there).
fn has_directives_until_section(lines: &[String], at: usize) -> bool {
    for line in &lines[at.min(lines.len())..] {
        match directive(line) {
            Some((k, _)) if k == "host" || k == "match" => return false,
            Some(_) => return true,
            None => {}
        }
    }
    false
}

/// A config line's keyword (lower case) and its arguments, as ssh splits
/// them: the keyword ends at a space or `=`, one `=` may follow, and double
/// quotes group words. `None` for blank lines and comments.
fn directive(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let key = line[..end].to_ascii_lowercase();
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((key, words(rest)))
}

/// Words split at whitespace, `"…"` kept together, a `#` word ending the line.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return out;
        };
        if first == '#' {
            return out;
        }
        let mut word = String::new();
        if first == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                word.push(c);
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
}

/// Whether a `Host` line with `patterns` applies to `host`: one pattern
/// matches and no negated one does.
fn host_may_match(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if glob(neg, host) => return false,
            Some(_) => {}
            None => matched |= glob(p, host),
        }
    }
    matched
}

/// Whether a `Match` line may apply to `host`. Its criteria all have to
/// hold; those that cannot be told here (`exec`, `user`, …) might.
fn match_may_apply(args: &[String], host: &str) -> bool {
    let mut args = args.iter();
    while let Some(word) = args.next() {
        let lower = word.to_ascii_lowercase();
        let (negated, criterion) = match lower.strip_prefix('!') {
            Some(c) => (true, c.to_owned()),
            None => (false, lower),
        };
        let holds = match criterion.as_str() {
            "all" => Some(true),
            // the passes of canonicalisation: either may be the one
            "canonical" | "final" => None,
            "host" | "originalhost" => args.next().map(|list| pattern_list(list, host)),
            _ => {
                args.next();
                None
            }
        };
        if holds.is_some_and(|h| h == negated) {
            return false;
        }
    }
    true
}

/// ssh's `match_pattern_list`: a comma-separated list, `!` negating.
fn pattern_list(list: &str, host: &str) -> bool {
    let patterns: Vec<String> = list.split(',').map(str::to_owned).collect();
    host_may_match(&patterns, host)
}

/// ssh's `*` and `?` patterns, without regard to case (ssh lower-cases the
/// host it matches).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `block` for the application at `app_path` under the ssh host: its
/// commands name the app with its path (`--hostname h/path`, where ssh's
/// `%h` is the host alone) and its key files are the ones `ssh-gen` keeps
/// for that path (`h-path-cf_key`). Paths are limited to characters that
/// need no quoting for ssh, sh or cmd.exe.
pub fn with_app_path(
    block: &str,
    hostname: &str,
    app_path: &str,
    key_stem: &str,
) -> Result<String, InstallError> {
    if let Some(what) = app_path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._~-/".contains(*c)))
    {
        return Err(InstallError::AppPath {
            path: app_path.to_owned(),
            what,
        });
    }
    Ok(block
        .replace("--hostname %h", &format!("--hostname {hostname}{app_path}"))
        .replace("%h-cf_key", &format!("{key_stem}-cf_key")))
}

/// A unified diff of `old` to `new`, both named `path` (`/dev/null` for a
/// file that is not there yet); empty when they are the same.
pub fn diff(path: &Path, old: Option<&str>, new: &str) -> String {
    let name = path.display().to_string();
    let from = if old.is_some() {
        name.as_str()
    } else {
        "/dev/null"
    };
    similar::TextDiff::from_lines(old.unwrap_or(""), new)
        .unified_diff()
        .context_radius(3)
        .header(from, &name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ssh.example.com";
    const BLOCK: &str = "Host ssh.example.com\n  ProxyCommand cf access ssh --hostname %h\n";

    fn placed(config: &str) -> Placed {
        place(config, H, BLOCK).unwrap()
    }

    fn marked(extra: &str) -> String {
        format!("# BEGIN cfaccess {H}\n{BLOCK}{extra}# END cfaccess {H}\n")
    }

    #[test]
    fn goes_before_the_first_section_for_every_host() {
        for star in [
            "Host *",
            "host *",
            "HOST=*",
            "Host = *",
            "  Host\t* ",
            "Match all",
            "match ALL",
            "Match=all",
            "Host \"*\"",
            "Host *.example.com",
            "Host ssh.*",
            "Host other ssh.example.com",
            "Host ssh.example.co?",
            "Match host *.example.com",
            "Match exec \"true\"",
            "Match user me",
            "Match canonical host ssh.example.com",
        ] {
            let config = format!("Host a\n  User x\n\n{star}\n  ProxyCommand nc %h %p\n");
            let p = placed(&config);
            assert_eq!(
                p.text,
                format!(
                    "Host a\n  User x\n\n{}\n{star}\n  ProxyCommand nc %h %p\n",
                    marked("")
                ),
                "{star}"
            );
            assert_eq!(
                p.position,
                Position::Before {
                    line: 4,
                    text: star.trim_end().to_owned()
                }
            );
        }
    }

    #[test]
    fn sections_for_other_hosts_do_not_count() {
        for other in [
            "Host a.example.org",
            "Host *.example.org",
            "Host * !ssh.example.com",
            "Host !ssh.example.com *",
            "Match host other",
            "Match host *,!ssh.example.com",
            "Match !host ssh.example.com",
            "Match all !all",
            "Match exec true host other",
            "Host ssh.example.com.evil",
        ] {
            let config = format!("{other}\n  ProxyCommand nc %h %p\n");
            let p = placed(&config);
            assert_eq!(p.position, Position::End, "{other}");
            assert_eq!(p.text, format!("{config}\n{}", marked("")), "{other}");
        }
        // neither a comment nor another keyword starting with "Host" is a section
        for not_a_section in ["# Host *", "#Host *", "Hostname *", "HostKeyAlias *"] {
            let config = format!("{not_a_section}\nUser me\n");
            assert_eq!(placed(&config).position, Position::End, "{not_a_section}");
        }
    }

    #[test]
    fn global_lines_that_set_what_the_block_sets_are_passed_too() {
        // the block goes first, and gives the global lines back to every host
        let config =
            "# mine\nServerAliveInterval 30\nProxyCommand nc %h %p\nUser me\n\nHost *\n  User x\n";
        let p = placed(config);
        assert_eq!(
            p.text,
            format!(
                "# mine\nServerAliveInterval 30\n{}\nProxyCommand nc %h %p\nUser me\n\nHost *\n  User x\n",
                marked("# back to every host for the lines below\nHost *\n")
            )
        );
        // an Include at the top may hold anything
        let p = placed("Include ~/.orbstack/ssh/config\n\nHost a\n");
        assert!(
            p.text.starts_with(&format!(
                "{}\nInclude",
                marked("# back to every host for the lines below\nHost *\n")
            )),
            "{}",
            p.text
        );
        // a global line that does not compete stays above, and no trailer is needed
        let p = placed("ServerAliveInterval 30\nHost *\n  User x\n");
        assert_eq!(
            p.text,
            format!("ServerAliveInterval 30\n{}\nHost *\n  User x\n", marked(""))
        );
        // inside a section for another host, ProxyCommand does not matter
        assert_eq!(placed("Host a\n  ProxyCommand x\n").position, Position::End);
    }

    #[test]
    fn installing_again_replaces_the_block_and_changes_nothing_else() {
        for config in [
            "",
            "Host a\n  User x\n",
            "Host a\n  User x",
            "Host *\n  ProxyCommand nc %h %p\n",
            "User me\nProxyCommand x\nHost *\n",
            "Host a\n\n\nHost *\n  User x\n\n",
        ] {
            let once = placed(config);
            assert!(!once.replaced);
            let twice = place(&once.text, H, BLOCK).unwrap();
            assert!(twice.replaced);
            assert_eq!(twice.text, once.text, "{config:?}");
            assert_eq!(twice.text.matches("# BEGIN cfaccess").count(), 1);
            let changed =
                place(&once.text, H, "Host ssh.example.com\n  ProxyCommand new\n").unwrap();
            assert!(
                changed.text.contains("ProxyCommand new") && !changed.text.contains("cf access")
            );
            assert_eq!(changed.text.lines().count(), once.text.lines().count());
            // removing it gives the file back as it was (a missing last newline added)
            let back = remove(&once.text, H).unwrap().unwrap();
            let mut expected = config.to_owned();
            if !expected.is_empty() && !expected.ends_with('\n') {
                expected.push('\n');
            }
            if back != expected {
                // at the end, the blank line that set the block apart stays
                assert_eq!(back, format!("{expected}\n"), "{config:?}");
            }
        }
        assert_eq!(remove("Host a\n", H).unwrap(), None);
    }

    #[test]
    fn an_old_block_that_lost_is_moved_up_and_one_that_wins_stays() {
        let old = format!("Host *\n  ProxyCommand nc %h %p\n\n{}", marked(""));
        let p = placed(&old);
        assert!(p.replaced);
        assert_eq!(
            p.text,
            format!("{}\nHost *\n  ProxyCommand nc %h %p\n\n", marked(""))
        );
        // put at the top by hand, above a section that does not compete: kept there
        let top = format!("{}\nHost a\n  User x\nHost *\n", marked(""));
        let p = placed(&top);
        assert_eq!(p.position, Position::InPlace);
        assert_eq!(p.text, top);
        // two copies (a hand-made duplicate) become one
        let two = format!("{}\n{}\nHost a\n", marked(""), marked(""));
        assert_eq!(placed(&two).text.matches("# BEGIN").count(), 1);
    }

    #[test]
    fn blocks_of_other_hosts_are_left_alone() {
        let other = "# BEGIN cfaccess a.example.com\nMatch host a.example.com exec \"x\"\n  ProxyCommand y\n# END cfaccess a.example.com\n";
        let p = placed(other);
        assert_eq!(p.position, Position::End);
        assert!(p.text.starts_with(other));
        assert_eq!(p.text.matches("# BEGIN").count(), 2);
    }

    #[test]
    fn a_block_left_open_is_refused() {
        let broken = format!("# BEGIN cfaccess {H}\nHost {H}\nHost *\n  User me\n");
        let e = place(&broken, H, BLOCK).unwrap_err();
        assert!(matches!(e, InstallError::Unclosed { line: 1, .. }), "{e}");
        assert!(remove(&broken, H).is_err());
    }

    #[test]
    fn the_include_line_goes_first_once() {
        let inc = Path::new("/home/me/.ssh/cfaccess/config");
        let once = place_include("# mine\nHost *\n  User x\n", inc, None).unwrap();
        assert_eq!(
            once,
            "# BEGIN cfaccess (include)\nInclude /home/me/.ssh/cfaccess/config\n# END cfaccess (include)\n\n# mine\nHost *\n  User x\n"
        );
        assert_eq!(place_include(&once, inc, None).unwrap(), once);
        // one the user moved down is moved back up
        let moved = format!(
            "Host *\n  User x\n\n{}",
            once.lines().take(3).collect::<Vec<_>>().join("\n") + "\n"
        );
        assert!(
            place_include(&moved, inc, None)
                .unwrap()
                .starts_with("# BEGIN cfaccess (include)\n")
        );
        assert_eq!(
            place_include("", Path::new("/home/my self/c"), None).unwrap(),
            "# BEGIN cfaccess (include)\nInclude \"/home/my self/c\"\n# END cfaccess (include)\n"
        );
        assert_eq!(
            place_include(
                "",
                Path::new("/h/me/.ssh/cfaccess/config"),
                Some(Path::new("/h/me"))
            )
            .unwrap(),
            "# BEGIN cfaccess (include)\nInclude ~/.ssh/cfaccess/config\n# END cfaccess (include)\n"
        );
        for bad in ["/home/a*b/c", "/h/[x]/c", "/h/\"q\"/c"] {
            assert!(place_include("", Path::new(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_carried_by_the_commands_and_key_names() {
        let block = "Match host h exec \"/bin/cf access ssh-gen --hostname %h\"\n  ProxyCommand /bin/cf access ssh --hostname %h\n  IdentityFile ~/.cloudflared/%h-cf_key\n  CertificateFile ~/.cloudflared/%h-cf_key-cert.pub\n";
        let with = with_app_path(block, "h", "/some/path", "h-some-path").unwrap();
        assert_eq!(
            with,
            "Match host h exec \"/bin/cf access ssh-gen --hostname h/some/path\"\n  ProxyCommand /bin/cf access ssh --hostname h/some/path\n  IdentityFile ~/.cloudflared/h-some-path-cf_key\n  CertificateFile ~/.cloudflared/h-some-path-cf_key-cert.pub\n"
        );
        for bad in ["/a b", "/a%20b", "/it's", "/a;b", "/a?x=1"] {
            assert!(with_app_path(block, "h", bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_diff_is_unified_with_the_markers() {
        let p = placed("Host *\n  User x\n");
        let d = diff(
            Path::new("/h/.ssh/config"),
            Some("Host *\n  User x\n"),
            &p.text,
        );
        assert!(
            d.starts_with("--- /h/.ssh/config\n+++ /h/.ssh/config\n@@ -1,2 +1,7 @@\n"),
            "{d}"
        );
        assert!(d.contains(&format!("+# BEGIN cfaccess {H}\n")), "{d}");
        assert!(d.contains(" Host *\n"), "{d}");
        let new = diff(Path::new("/h/c"), None, "x\n");
        assert!(
            new.starts_with("--- /dev/null\n+++ /h/c\n@@ -0,0 +1 @@\n+x\n"),
            "{new}"
        );
        assert_eq!(diff(Path::new("/h/c"), Some("x\n"), "x\n"), "");
    }

    #[test]
    fn globs_match_as_ssh_does() {
        assert!(glob("*", "a"));
        assert!(glob("*.example.com", "ssh.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(glob("s?h.*", "SSH.example.com"));
        assert!(glob("**a*", "xxa"));
        assert!(!glob("a", "ab"));
        assert!(glob("", "") && !glob("", "a"));
    }
}
