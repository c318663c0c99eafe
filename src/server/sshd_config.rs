//! sshd_config as sshd reads it, and the edit that makes sshd trust the
//! Access application's SSH CA (docs/protocol.md 7.6 and 11).
//!
//! sshd takes, for each single-valued keyword, the FIRST value it meets
//! outside any `Match` block. `Include` pulls files in where it stands, a
//! relative pattern being relative to sshd's compiled-in `/etc/ssh` (not to
//! the including file), the glob's results in byte order, a pattern without a
//! match being no error. A `Match` block in an included file ends with that
//! file (servconf.c saves and restores the match state around an `Include`
//! since OpenSSH 8.2); one in the main file lasts until the next `Match` or the
//! file's end. Lines are split as servconf.c does: the keyword up to blank or
//! one `=`, then `argv_split` (double and single quotes group, `\` escapes a
//! quote, a backslash or a blank, a word starting with `#` ends the line).
//!
//! Two placements, so the result wins and a second run changes nothing:
//! - a drop-in `00-cfaccess.conf` in the directory of the main file's first
//!   globbing `Include` (Debian's `sshd_config.d/*.conf`), sorted before the
//!   other drop-ins, all of it cfaccess's;
//! - otherwise marked blocks in the main file: the two global lines before its
//!   first directive, the `Match User` blocks at its end (a `Match` takes every
//!   line after it).
//!
//! Nothing here writes or runs anything: [`plan`] returns the new texts, then
//! re-reads the config with them overlaid ([`Overlay`]) to check that
//! cfaccess's values are the ones sshd would take.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// sshd's compiled-in config directory (`SSHDIR`), to which relative
/// `Include` patterns are relative.
pub const SSHDIR: &str = "/etc/ssh";

/// servconf.c's `SERVCONF_MAX_DEPTH`: sshd refuses deeper nesting.
pub const MAX_DEPTH: usize = 16;

/// The name of cfaccess's drop-in: `00` sorts before the usual drop-ins, so
/// its values are met first.
pub const DROP_IN_NAME: &str = "00-cfaccess.conf";

const HEADER: &str =
    "# Written by cfaccess server setup; changes here are replaced on its next run.";
const APPS_PREFIX: &str = "# Access applications: ";
const BEGIN_GLOBAL: &str = "# BEGIN cfaccess";
const END_GLOBAL: &str = "# END cfaccess";
const BEGIN_USERS: &str = "# BEGIN cfaccess users";
const END_USERS: &str = "# END cfaccess users";
const ECHO: &str = "/bin/echo";
const PRINCIPALS_USER: &str = "nobody";

/// The files sshd would read, so a plan can be re-read with its texts in place.
pub trait Files {
    /// The file's text, `None` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<String>>;
    /// The paths glob(3) (as sshd calls it: no `~`, no braces) gives for
    /// `pattern`, sorted byte-wise; unreadable directories give nothing.
    fn glob(&self, pattern: &str) -> Vec<PathBuf>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<Option<String>> {
        match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    // Hand-written rather than the `glob` crate: the overlay must match
    // virtual paths with the same rules, and glob(3)'s exact ones (a leading
    // dot only matched literally, no `**`, byte order) are a page of code.
    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = vec![if pattern.starts_with('/') {
            PathBuf::from("/")
        } else {
            PathBuf::from(".")
        }];
        let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut next = Vec::new();
            for dir in &found {
                if !has_magic(part) {
                    let path = dir.join(unescape(part));
                    if !last || path.symlink_metadata().is_ok() {
                        next.push(path);
                    }
                    continue;
                }
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if !fnmatch(part, name) {
                        continue;
                    }
                    let path = dir.join(name);
                    if last || path.is_dir() {
                        next.push(path);
                    }
                }
            }
            found = next;
        }
        if parts.is_empty() {
            found.retain(|p| p.exists());
        }
        found.sort();
        found.dedup();
        found
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// Other files' planned texts laid over a [`Files`].
pub struct Overlay<'a> {
    base: &'a dyn Files,
    texts: BTreeMap<PathBuf, String>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Files) -> Self {
        Overlay {
            base,
            texts: BTreeMap::new(),
        }
    }

    /// `path` reads as `text`.
    pub fn set(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) {
        self.texts.insert(path.into(), text.into());
    }
}

impl Files for Overlay<'_> {
    fn read(&self, path: &Path) -> io::Result<Option<String>> {
        match self.texts.get(path) {
            Some(text) => Ok(Some(text.clone())),
            None => self.base.read(path),
        }
    }

    fn glob(&self, pattern: &str) -> Vec<PathBuf> {
        let mut found = self.base.glob(pattern);
        found.extend(
            self.texts
                .keys()
                .filter(|p| path_matches(pattern, p))
                .cloned(),
        );
        found.sort();
        found.dedup();
        found
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.base.is_dir(path) || self.texts.keys().any(|p| p.parent() == Some(path))
    }
}

/// A file sshd reads, in the order it reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// One configuration line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// Lower-cased, as sshd compares keywords without case.
    pub keyword: String,
    /// The words after the keyword, unquoted.
    pub args: Vec<String>,
    /// The criteria of the `Match` block the line is under (for a `Match`
    /// line, its own), `None` outside every `Match`.
    pub match_criteria: Option<Vec<String>>,
}

impl Directive {
    pub fn in_match(&self) -> bool {
        self.match_criteria.is_some()
    }

    /// The first argument, or "" (sshd refuses a keyword without one).
    pub fn value(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }
}

/// One pattern of an `Include` line of the main file, outside any `Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub line: usize,
    /// As written.
    pub pattern: String,
    /// As sshd globs it: relative patterns under [`SSHDIR`].
    pub resolved: String,
}

/// A configuration as sshd reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdConfig {
    /// Every file read, the main one first, each once.
    pub files: Vec<SourceFile>,
    /// Every directive, in the order sshd meets them.
    pub directives: Vec<Directive>,
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("sshd's config {} does not exist; install OpenSSH's server or name its config file", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}; make it readable, then run again", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line} has a quote that does not close, which sshd refuses too; fix that line, then run again", path.display())]
    Quotes { path: PathBuf, line: usize },
    #[error("{}:{line}: '{keyword}' has no value, which sshd refuses too; give it one or delete the line, then run again", path.display())]
    NoArgument {
        path: PathBuf,
        line: usize,
        keyword: String,
    },
    #[error("{}:{line}: Include nests more than {MAX_DEPTH} files deep (does a file include itself?), which sshd refuses too; fix the Include lines, then run again", path.display())]
    TooDeep { path: PathBuf, line: usize },
}

/// Reads `main` and what it includes, as sshd would.
pub fn read(main: &Path, fs: &dyn Files) -> Result<SshdConfig, ReadError> {
    let text = fs
        .read(main)
        .map_err(|source| ReadError::Io {
            path: main.to_path_buf(),
            source,
        })?
        .ok_or_else(|| ReadError::Missing {
            path: main.to_path_buf(),
        })?;
    let mut config = SshdConfig {
        files: Vec::new(),
        directives: Vec::new(),
    };
    parse_file(&mut config, main, text, None, 0, fs)?;
    Ok(config)
}

fn parse_file(
    config: &mut SshdConfig,
    path: &Path,
    text: String,
    inherited: Option<Vec<String>>,
    depth: usize,
    fs: &dyn Files,
) -> Result<(), ReadError> {
    if !config.files.iter().any(|f| f.path == path) {
        config.files.push(SourceFile {
            path: path.to_path_buf(),
            text: text.clone(),
        });
    }
    let mut criteria = inherited;
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let (keyword, args) = match tokenize(raw) {
            Ok(Some(words)) => words,
            Ok(None) => continue,
            Err(LineError::Quotes) => {
                return Err(ReadError::Quotes {
                    path: path.to_path_buf(),
                    line,
                });
            }
            Err(LineError::NoArgument(keyword)) => {
                return Err(ReadError::NoArgument {
                    path: path.to_path_buf(),
                    line,
                    keyword,
                });
            }
        };
        if keyword == "match" {
            criteria = Some(args.clone());
        }
        config.directives.push(Directive {
            file: path.to_path_buf(),
            line,
            keyword: keyword.clone(),
            args: args.clone(),
            match_criteria: criteria.clone(),
        });
        if keyword != "include" {
            continue;
        }
        for pattern in &args {
            if pattern.is_empty() {
                continue;
            }
            if depth + 1 > MAX_DEPTH {
                return Err(ReadError::TooDeep {
                    path: path.to_path_buf(),
                    line,
                });
            }
            for included in fs.glob(&resolve_include(pattern)) {
                let text = fs.read(&included).map_err(|source| ReadError::Io {
                    path: included.clone(),
                    source,
                })?;
                // Gone between the glob and the read: as if never matched.
                let Some(text) = text else { continue };
                parse_file(config, &included, text, criteria.clone(), depth + 1, fs)?;
            }
        }
    }
    Ok(())
}

/// An `Include` pattern as sshd globs it (servconf.c: neither `/` nor `~`
/// first means under `SSHDIR`; `~` is not expanded).
pub fn resolve_include(pattern: &str) -> String {
    if pattern.starts_with('/') || pattern.starts_with('~') {
        pattern.to_string()
    } else {
        format!("{SSHDIR}/{pattern}")
    }
}

impl SshdConfig {
    /// The main file's path.
    pub fn main(&self) -> &Path {
        &self.files[0].path
    }

    /// The value sshd takes for a single-valued keyword: its first directive
    /// outside any `Match`. (`HostKey`, `AcceptEnv` and the like accumulate
    /// instead.)
    pub fn effective(&self, keyword: &str) -> Option<&Directive> {
        let keyword = keyword.to_ascii_lowercase();
        self.directives
            .iter()
            .find(|d| d.keyword == keyword && !d.in_match())
    }

    /// The patterns of the main file's `Include` lines outside `Match`, in order.
    pub fn main_includes(&self) -> Vec<Include> {
        let main = self.main();
        self.directives
            .iter()
            .filter(|d| d.file == main && d.keyword == "include" && !d.in_match())
            .flat_map(|d| {
                d.args.iter().map(|p| Include {
                    line: d.line,
                    pattern: p.clone(),
                    resolved: resolve_include(p),
                })
            })
            .collect()
    }

    /// The directive that gives `keyword` its value for a connection as
    /// `user`: the first in a `Match` block that surely applies to the user
    /// (criteria `User …` or `All` only; others cannot be told offline and
    /// are passed over), else the global one.
    pub fn for_user(&self, keyword: &str, user: &str) -> Option<&Directive> {
        let keyword = keyword.to_ascii_lowercase();
        self.directives
            .iter()
            .filter(|d| d.keyword == keyword)
            .find(|d| {
                d.match_criteria
                    .as_deref()
                    .is_some_and(|c| criteria_match_user(c, user))
            })
            .or_else(|| self.effective(&keyword))
    }

    /// Whether sshd, for a connection as `user`, runs
    /// `AuthorizedPrincipalsCommand /bin/echo <principal>` (as some
    /// `AuthorizedPrincipalsCommandUser`), which is how a certificate for
    /// `principal` is accepted for `user`.
    pub fn maps_user(&self, user: &str, principal: &str) -> bool {
        let Some(command) = self.for_user("authorizedprincipalscommand", user) else {
            return false;
        };
        command.args == [ECHO, principal]
            && self
                .for_user("authorizedprincipalscommanduser", user)
                .is_some()
    }
}

/// Whether `Match` criteria surely apply to every connection as `user`.
fn criteria_match_user(criteria: &[String], user: &str) -> bool {
    let mut words = criteria.iter();
    let mut any = false;
    while let Some(word) = words.next() {
        any = true;
        if word.eq_ignore_ascii_case("all") {
            continue;
        }
        if !word.eq_ignore_ascii_case("user") {
            return false;
        }
        match words.next() {
            Some(list) if pattern_list_match(list, user) => {}
            _ => return false,
        }
    }
    any
}

/// match.c's `match_pattern_list`: comma-separated `*`/`?` patterns, a `!`
/// one that matches refuses.
fn pattern_list_match(list: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if wildcard(pattern.as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

enum LineError {
    Quotes,
    NoArgument(String),
}

/// One line as servconf.c splits it: `None` for blank and comment lines,
/// else the lower-cased keyword and its words.
fn tokenize(raw: &str) -> Result<Option<(String, Vec<String>)>, LineError> {
    const BLANK: &[char] = &[' ', '\t', '\r', '\n'];
    let line = raw
        .trim_start_matches([' ', '\t', '\r'])
        .trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    if line.is_empty() {
        return Ok(None);
    }
    // strdelim(): the keyword ends at a blank, a quote or one `=`.
    let (keyword, rest) = match line.find(|c: char| BLANK.contains(&c) || c == '"' || c == '=') {
        None => (line.to_string(), ""),
        Some(i) if line[i..].starts_with('"') => {
            let after = &line[i + 1..];
            // No closing quote: strdelim gives no keyword and sshd skips the line.
            let Some(j) = after.find('"') else {
                return Ok(None);
            };
            (
                format!("{}{}", &line[..i], &after[..j]),
                after[j + 1..].trim_start_matches(BLANK),
            )
        }
        Some(i) => {
            let equals = line[i..].starts_with('=');
            let mut rest = line[i + 1..].trim_start_matches(BLANK);
            if !equals && let Some(r) = rest.strip_prefix('=') {
                rest = r.trim_start_matches(BLANK);
            }
            (line[..i].to_string(), rest)
        }
    };
    if keyword.is_empty() || keyword.starts_with('#') {
        return Ok(None);
    }
    if rest.is_empty() {
        return Err(LineError::NoArgument(keyword));
    }
    let args = argv_split(rest).ok_or(LineError::Quotes)?;
    Ok(Some((keyword.to_ascii_lowercase(), args)))
}

/// misc.c's `argv_split(s, …, terminate_on_comment = 1)`; `None` for an
/// unclosed quote.
fn argv_split(s: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = s.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' || chars[i] == '\t' {
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            break;
        }
        let mut arg = String::new();
        let mut quote = None;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                match chars.get(i + 1) {
                    Some(&n)
                        if n == '\'' || n == '"' || n == '\\' || (quote.is_none() && n == ' ') =>
                    {
                        arg.push(n);
                        i += 1;
                    }
                    _ => arg.push(c),
                }
            } else if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            } else if quote == Some(c) {
                quote = None;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if quote.is_some() {
            return None;
        }
        args.push(arg);
    }
    Some(args)
}

fn has_magic(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

fn unescape(part: &str) -> String {
    let mut out = String::new();
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Whether `path` is one glob(3) would give for `pattern` (component by
/// component).
fn path_matches(pattern: &str, path: &Path) -> bool {
    let Some(path) = path.to_str() else {
        return false;
    };
    if pattern.starts_with('/') != path.starts_with('/') {
        return false;
    }
    let pattern: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    pattern.len() == path.len() && pattern.iter().zip(&path).all(|(p, n)| fnmatch(p, n))
}

/// fnmatch(3) with FNM_PERIOD for one path component: `*`, `?`, `[…]`
/// (`!` or `^` negates, ranges), `\` quotes; a leading `.` only matches a
/// literal one.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let literal_dot = p.first() == Some(&'.') || p.starts_with(&['\\', '.']);
    if n.first() == Some(&'.') && !literal_dot {
        return false;
    }
    fnmatch_at(&p, &n)
}

fn fnmatch_at(p: &[char], n: &[char]) -> bool {
    let Some((&c, rest)) = p.split_first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len()).any(|i| fnmatch_at(rest, &n[i..])),
        '?' => !n.is_empty() && fnmatch_at(rest, &n[1..]),
        '[' => match bracket(rest) {
            Some((set, negated, after)) => {
                let Some(&first) = n.first() else {
                    return false;
                };
                let inside = set.iter().any(|&(lo, hi)| lo <= first && first <= hi);
                inside != negated && fnmatch_at(after, &n[1..])
            }
            None => n.first() == Some(&'[') && fnmatch_at(rest, &n[1..]),
        },
        '\\' if !rest.is_empty() => n.first() == Some(&rest[0]) && fnmatch_at(&rest[1..], &n[1..]),
        c => n.first() == Some(&c) && fnmatch_at(rest, &n[1..]),
    }
}

type Bracket<'a> = (Vec<(char, char)>, bool, &'a [char]);

/// The ranges of a bracket expression after its `[`, whether it is negated,
/// and what follows its `]`; `None` if it does not close.
fn bracket(p: &[char]) -> Option<Bracket<'_>> {
    let mut i = 0;
    let negated = matches!(p.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut set = Vec::new();
    let start = i;
    while i < p.len() {
        let c = p[i];
        if c == ']' && i > start {
            return Some((set, negated, &p[i + 1..]));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&h| h != ']') {
            set.push((c, p[i + 2]));
            i += 3;
        } else {
            set.push((c, c));
            i += 1;
        }
    }
    None
}

/// A Unix account that logs in with certificates for another principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    pub unix_user: String,
    pub principal: String,
}

/// What `cfaccess server setup` wants sshd to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The CA key file, as written into the config (under `--root` already).
    pub ca_file: PathBuf,
    pub maps: Vec<Mapping>,
    /// The Access application's hostname, named in the header.
    pub hostname: String,
}

/// Where cfaccess's settings live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A file of cfaccess's own in an included directory.
    DropIn(PathBuf),
    /// Marked blocks in this (the main) file.
    Block(PathBuf),
}

/// A file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    /// The text now, `None` for a new file.
    pub old: Option<String>,
    pub new: String,
}

/// The edit; `changes` is empty when the config already says it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub placement: Placement,
    pub changes: Vec<FileChange>,
}

/// Why the settings cannot be made to take effect.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{keyword} {value} at {}:{line} comes before cfaccess's setting and wins; {}", file.display(), fix(keyword))]
    Shadowed {
        keyword: &'static str,
        value: String,
        file: PathBuf,
        line: usize,
    },
    #[error("{keyword} {value} at {}:{line}, under 'Match all', overrides cfaccess's setting for every connection; {}", file.display(), fix(keyword))]
    Overridden {
        keyword: &'static str,
        value: String,
        file: PathBuf,
        line: usize,
    },
    #[error("AuthorizedPrincipalsCommand {value} at {}:{line} comes before cfaccess's for {user} and wins; remove it or its Match block, then run again", file.display())]
    PrincipalShadowed {
        user: String,
        value: String,
        file: PathBuf,
        line: usize,
    },
    #[error("{}:{line} opens a cfaccess block ('{marker}') that no '# END' line closes; delete the stray line or add its END line, then run again", path.display())]
    Unclosed {
        path: PathBuf,
        line: usize,
        marker: &'static str,
    },
    #[error(
        "the {what} '{value}' cannot go into sshd_config as is; use letters, digits and . _ - (not first) only"
    )]
    Name { what: &'static str, value: String },
    #[error("the CA file path '{}' cannot go into sshd_config; give an absolute path without quotes, backslashes or control characters", path.display())]
    CaPath { path: PathBuf },
    #[error("the planned {keyword} did not show in a re-read of {}; this is a bug in cfaccess, please report it", main.display())]
    NotSeen {
        keyword: &'static str,
        main: PathBuf,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
}

fn fix(keyword: &str) -> &'static str {
    match keyword {
        "PubkeyAuthentication" => "remove it or set it to yes, then run again",
        _ => "remove it, then run again (cfaccess's CA file lists every CA it was given)",
    }
}

/// The edit that makes `wanted` take effect in `config` (read from the
/// files of `fs`). Under a `root` other than `/`, a drop-in directory outside
/// it is not used.
pub fn plan(
    config: &SshdConfig,
    wanted: &Wanted,
    root: &Path,
    fs: &dyn Files,
) -> Result<Plan, PlanError> {
    let ca = ca_word(&wanted.ca_file)?;
    check_name("application hostname", &wanted.hostname, true)?;
    for map in &wanted.maps {
        check_name("Unix user name", &map.unix_user, false)?;
        check_name("principal", &map.principal, true)?;
    }
    let main = config.main().to_path_buf();
    let plan = match drop_in_dir(config, root, fs) {
        Some(dir) => {
            let path = dir.join(DROP_IN_NAME);
            let old = fs.read(&path).map_err(|source| ReadError::Io {
                path: path.clone(),
                source,
            })?;
            let ours = old.as_deref().map(Ours::parse).unwrap_or_default();
            let eol = old.as_deref().map_or("\n", eol);
            let (apps, maps) = ours.union(wanted);
            let mut new = header(&apps, eol);
            new.push_str(&globals(&ca, eol));
            if !maps.is_empty() {
                new.push_str(eol);
                new.push_str(&match_blocks(&maps, eol));
            }
            let changes = if old.as_deref() == Some(new.as_str()) {
                vec![]
            } else {
                vec![FileChange {
                    path: path.clone(),
                    old,
                    new,
                }]
            };
            Plan {
                placement: Placement::DropIn(path),
                changes,
            }
        }
        None => {
            let old = config.files[0].text.clone();
            let new = edit_blocks(&main, &old, &ca, wanted)?;
            let changes = if new == old {
                vec![]
            } else {
                vec![FileChange {
                    path: main.clone(),
                    old: Some(old),
                    new,
                }]
            };
            Plan {
                placement: Placement::Block(main.clone()),
                changes,
            }
        }
    };
    verify(&main, &plan, wanted, fs)?;
    Ok(plan)
}

/// The directory of the main file's first `Include` (outside `Match`) whose
/// last component globs and takes [`DROP_IN_NAME`], if it exists (under
/// `root`).
fn drop_in_dir(config: &SshdConfig, root: &Path, fs: &dyn Files) -> Option<PathBuf> {
    config.main_includes().into_iter().find_map(|include| {
        let (dir, last) = include.resolved.rsplit_once('/')?;
        if !has_magic(last) || has_magic(dir) || !fnmatch(last, DROP_IN_NAME) || dir.is_empty() {
            return None;
        }
        let dir = PathBuf::from(unescape(dir));
        let inside = root == Path::new("/") || dir.starts_with(root);
        (dir.is_absolute() && inside && fs.is_dir(&dir)).then_some(dir)
    })
}

/// What an earlier run of cfaccess left: hostnames and mappings.
#[derive(Debug, Default)]
struct Ours {
    apps: BTreeSet<String>,
    maps: BTreeMap<String, String>,
}

impl Ours {
    fn parse(text: &str) -> Ours {
        let mut ours = Ours::default();
        let mut user = None;
        for raw in text.split('\n') {
            let line = raw.trim();
            if let Some(apps) = line.strip_prefix(APPS_PREFIX.trim_end()) {
                ours.apps.extend(
                    apps.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from),
                );
                continue;
            }
            let Ok(Some((keyword, args))) = tokenize(raw) else {
                continue;
            };
            match keyword.as_str() {
                "match" => {
                    user = match args.as_slice() {
                        [u, name] if u.eq_ignore_ascii_case("user") => Some(name.clone()),
                        _ => None,
                    }
                }
                "authorizedprincipalscommand" => {
                    if let (Some(u), [echo, principal]) = (&user, args.as_slice())
                        && echo == ECHO
                    {
                        ours.maps.insert(u.clone(), principal.clone());
                    }
                }
                _ => {}
            }
        }
        ours
    }

    /// Ours and the wanted, the wanted principal winning for a user.
    fn union(mut self, wanted: &Wanted) -> (BTreeSet<String>, BTreeMap<String, String>) {
        self.apps.insert(wanted.hostname.clone());
        for map in &wanted.maps {
            self.maps
                .insert(map.unix_user.clone(), map.principal.clone());
        }
        (self.apps, self.maps)
    }
}

fn header(apps: &BTreeSet<String>, eol: &str) -> String {
    let apps: Vec<&str> = apps.iter().map(String::as_str).collect();
    format!("{HEADER}{eol}{APPS_PREFIX}{}{eol}", apps.join(", "))
}

fn globals(ca: &str, eol: &str) -> String {
    format!("PubkeyAuthentication yes{eol}TrustedUserCAKeys {ca}{eol}")
}

fn match_blocks(maps: &BTreeMap<String, String>, eol: &str) -> String {
    maps.iter()
        .map(|(user, principal)| {
            format!(
                "Match User {user}{eol}  AuthorizedPrincipalsCommand {ECHO} {principal}{eol}  AuthorizedPrincipalsCommandUser {PRINCIPALS_USER}{eol}"
            )
        })
        .collect()
}

/// The file's line ending: CRLF when its first line ends so.
fn eol(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

/// The main file with cfaccess's blocks put in or replaced; no other line
/// changes.
fn edit_blocks(path: &Path, text: &str, ca: &str, wanted: &Wanted) -> Result<String, PlanError> {
    let eol = eol(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let find = |begin: &'static str, end: &str| -> Result<Option<(usize, usize)>, PlanError> {
        let Some(start) = lines.iter().position(|l| l.trim() == begin) else {
            return Ok(None);
        };
        match lines[start + 1..].iter().position(|l| l.trim() == end) {
            Some(n) => Ok(Some((start, start + 1 + n))),
            None => Err(PlanError::Unclosed {
                path: path.to_path_buf(),
                line: start + 1,
                marker: begin,
            }),
        }
    };
    let top = find(BEGIN_GLOBAL, END_GLOBAL)?;
    let users = find(BEGIN_USERS, END_USERS)?;
    let inside =
        |i: usize, block: Option<(usize, usize)>| block.is_some_and(|(s, e)| s <= i && i <= e);
    let mut ours = Ours::default();
    for block in [top, users].into_iter().flatten() {
        let parsed = Ours::parse(&lines[block.0..=block.1].concat());
        ours.apps.extend(parsed.apps);
        ours.maps.extend(parsed.maps);
    }
    let (apps, maps) = ours.union(wanted);
    let top_text = format!(
        "{BEGIN_GLOBAL}{eol}{}{}{END_GLOBAL}{eol}",
        header(&apps, eol),
        globals(ca, eol)
    );
    let users_text = format!(
        "{BEGIN_USERS}{eol}{}{END_USERS}{eol}",
        match_blocks(&maps, eol)
    );
    let first_directive = if top.is_some() {
        None
    } else {
        (0..lines.len()).find(|&i| !inside(i, users) && !matches!(tokenize(lines[i]), Ok(None)))
    };
    let mut out = String::with_capacity(text.len() + top_text.len() + users_text.len());
    let mut i = 0;
    while i < lines.len() {
        if let Some((_, end)) = top.filter(|b| b.0 == i) {
            out.push_str(&top_text);
            i = end + 1;
            continue;
        }
        if let Some((_, end)) = users.filter(|b| b.0 == i) {
            out.push_str(&users_text);
            i = end + 1;
            continue;
        }
        if first_directive == Some(i) {
            out.push_str(&top_text);
        }
        out.push_str(lines[i]);
        i += 1;
    }
    let append = |block: &str, out: &mut String| {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str(block);
    };
    if top.is_none() && first_directive.is_none() {
        append(&top_text, &mut out);
    }
    if users.is_none() && !maps.is_empty() {
        append(&users_text, &mut out);
    }
    Ok(out)
}

/// Re-reads the config with the plan's texts in place and checks that sshd
/// takes cfaccess's values.
fn verify(main: &Path, plan: &Plan, wanted: &Wanted, fs: &dyn Files) -> Result<(), PlanError> {
    let mut overlay = Overlay::new(fs);
    for change in &plan.changes {
        overlay.set(change.path.clone(), change.new.clone());
    }
    let config = read(main, &overlay)?;
    // Errors name lines as the file has them now, before cfaccess's blocks.
    let at = |d: &Directive| match plan.changes.iter().find(|c| c.path == d.file) {
        Some(FileChange {
            old: Some(old),
            new,
            ..
        }) => line_before(old, new, d.line),
        _ => d.line,
    };
    let ca = wanted.ca_file.to_string_lossy();
    let checks: [(&'static str, &str, bool); 2] = [
        ("PubkeyAuthentication", "yes", true),
        ("TrustedUserCAKeys", &ca, false),
    ];
    for (keyword, want, fold) in checks {
        let same = |d: &Directive| {
            if fold {
                d.value().eq_ignore_ascii_case(want)
            } else {
                d.value() == want
            }
        };
        let Some(found) = config.effective(keyword) else {
            return Err(PlanError::NotSeen {
                keyword,
                main: main.to_path_buf(),
            });
        };
        if !same(found) {
            return Err(PlanError::Shadowed {
                keyword,
                value: found.value().to_string(),
                file: found.file.clone(),
                line: at(found),
            });
        }
        let lower = keyword.to_ascii_lowercase();
        if let Some(over) = config.directives.iter().find(|d| {
            d.keyword == lower
                && d.match_criteria
                    .as_deref()
                    .is_some_and(|c| c.len() == 1 && c[0].eq_ignore_ascii_case("all"))
                && !same(d)
        }) {
            return Err(PlanError::Overridden {
                keyword,
                value: over.value().to_string(),
                file: over.file.clone(),
                line: at(over),
            });
        }
    }
    for map in &wanted.maps {
        if !config.maps_user(&map.unix_user, &map.principal) {
            let Some(found) = config.for_user("authorizedprincipalscommand", &map.unix_user) else {
                return Err(PlanError::NotSeen {
                    keyword: "AuthorizedPrincipalsCommand",
                    main: main.to_path_buf(),
                });
            };
            return Err(PlanError::PrincipalShadowed {
                user: map.unix_user.clone(),
                value: found.args.join(" "),
                file: found.file.clone(),
                line: at(found),
            });
        }
    }
    Ok(())
}

/// The number in `old` of line `line` of `new`, a line outside cfaccess's
/// blocks, which an edit keeps in order.
fn line_before(old: &str, new: &str, line: usize) -> usize {
    let outside = |text: &str| -> Vec<usize> {
        let mut ours = false;
        let mut numbers = Vec::new();
        for (i, l) in text.split('\n').enumerate() {
            let l = l.trim();
            if l == BEGIN_GLOBAL || l == BEGIN_USERS {
                ours = true;
            } else if l == END_GLOBAL || l == END_USERS {
                ours = false;
            } else if !ours {
                numbers.push(i + 1);
            }
        }
        numbers
    };
    outside(new)
        .iter()
        .position(|&n| n == line)
        .and_then(|k| outside(old).get(k).copied())
        .unwrap_or(line)
}

/// The CA file's path as one sshd_config word.
fn ca_word(path: &Path) -> Result<String, PlanError> {
    let bad = || PlanError::CaPath {
        path: path.to_path_buf(),
    };
    let text = path.to_str().ok_or_else(bad)?;
    if !path.is_absolute()
        || text
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(bad());
    }
    Ok(if text.contains([' ', '\t']) {
        format!("\"{text}\"")
    } else {
        text.to_string()
    })
}

/// Names go into `Match User` and `/bin/echo` words: letters, digits and
/// `. _ -` (a principal may also hold `+` and `@`), never `-` first, which
/// echo would take for an option.
fn check_name(what: &'static str, value: &str, lenient: bool) -> Result<(), PlanError> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-')
                || (lenient && matches!(c, '+' | '@'))
        });
    if ok {
        Ok(())
    } else {
        Err(PlanError::Name {
            what,
            value: value.to_string(),
        })
    }
}

// sshd's paths are Unix paths (`cfaccess server` refuses to run on Windows)
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Files in memory: a map of texts, directories being their parents.
    #[derive(Default)]
    struct Mem(BTreeMap<PathBuf, String>);

    impl Mem {
        fn with(files: &[(&str, &str)]) -> Mem {
            Mem(files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect())
        }
    }

    impl Files for Mem {
        fn read(&self, path: &Path) -> io::Result<Option<String>> {
            Ok(self.0.get(path).cloned())
        }
        fn glob(&self, pattern: &str) -> Vec<PathBuf> {
            self.0
                .keys()
                .filter(|p| path_matches(pattern, p))
                .cloned()
                .collect()
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.0.keys().any(|p| p.starts_with(path) && p != path)
        }
    }

    const DEBIAN: &str = include_str!("../../tests/data/debian-sshd_config");
    const ROOT: &str = "/r";
    const MAIN: &str = "/r/etc/ssh/sshd_config";

    fn wanted(maps: &[(&str, &str)]) -> Wanted {
        Wanted {
            ca_file: PathBuf::from("/r/etc/ssh/ca.pub"),
            maps: maps
                .iter()
                .map(|(u, p)| Mapping {
                    unix_user: u.to_string(),
                    principal: p.to_string(),
                })
                .collect(),
            hostname: "ssh.example.com".into(),
        }
    }

    /// Plans on `fs`, applies the plan to it, and returns the plan.
    fn plan_and_apply(fs: &mut Mem, want: &Wanted) -> Result<Plan, PlanError> {
        let config = read(Path::new(MAIN), fs)?;
        let plan = plan(&config, want, Path::new(ROOT), fs)?;
        for change in &plan.changes {
            assert_eq!(fs.0.get(&change.path), change.old.as_ref());
            fs.0.insert(change.path.clone(), change.new.clone());
        }
        Ok(plan)
    }

    fn debian_in_root() -> Mem {
        Mem::with(&[
            (
                MAIN,
                &DEBIAN.replace(
                    "Include /etc/ssh/sshd_config.d/*.conf",
                    "Include /r/etc/ssh/sshd_config.d/*.conf",
                ),
            ),
            ("/r/etc/ssh/sshd_config.d/10-test.conf", "Port 2222\n"),
        ])
    }

    fn words(line: &str) -> Option<(String, Vec<String>)> {
        tokenize(line).ok().flatten()
    }

    #[test]
    fn tokenizes_as_servconf() {
        let w =
            |k: &str, a: &[&str]| Some((k.to_string(), a.iter().map(|s| s.to_string()).collect()));
        assert_eq!(words("Port=22"), w("port", &["22"]));
        assert_eq!(words("  Port = 22 "), w("port", &["22"]));
        assert_eq!(words("Port =22\r"), w("port", &["22"]));
        assert_eq!(words("PORT\t22"), w("port", &["22"]));
        assert_eq!(words("Banner \"/a b/c\" x"), w("banner", &["/a b/c", "x"]));
        assert_eq!(words("Banner '/a b'"), w("banner", &["/a b"]));
        assert_eq!(words("Banner /a\\ b"), w("banner", &["/a b"]));
        assert_eq!(
            words("AcceptEnv LANG # the rest"),
            w("acceptenv", &["LANG"])
        );
        assert_eq!(words("AcceptEnv LANG#x"), w("acceptenv", &["LANG#x"]));
        assert_eq!(words("# Port 22"), None);
        assert_eq!(words("   #Port 22"), None);
        assert_eq!(words("  \t "), None);
        assert!(matches!(tokenize("Banner \"/a"), Err(LineError::Quotes)));
        assert!(matches!(tokenize("Port"), Err(LineError::NoArgument(k)) if k == "Port"));
    }

    #[test]
    fn fnmatch_follows_glob3() {
        assert!(fnmatch("*.conf", "00-cfaccess.conf"));
        assert!(!fnmatch("*.conf", ".hidden.conf"));
        assert!(fnmatch(".*", ".hidden"));
        assert!(fnmatch("[0-9]*.conf", "00-cfaccess.conf"));
        assert!(!fnmatch("[!0-9]*.conf", "00-cfaccess.conf"));
        assert!(fnmatch("?0-*", "00-x"));
        assert!(!fnmatch("*.conf", "x.conf.bak"));
        assert!(fnmatch("a\\*", "a*"));
        assert!(!fnmatch("a\\*", "ab"));
    }

    #[test]
    fn debian_stock_gets_a_drop_in() {
        let mut fs = debian_in_root();
        let want = wanted(&[("johndoe", "jdoe")]);
        let plan = plan_and_apply(&mut fs, &want).unwrap();
        let path = PathBuf::from("/r/etc/ssh/sshd_config.d/00-cfaccess.conf");
        assert_eq!(plan.placement, Placement::DropIn(path.clone()));
        assert_eq!(plan.changes.len(), 1, "only the drop-in is written");
        assert_eq!(
            fs.0[&path],
            "# Written by cfaccess server setup; changes here are replaced on its next run.\n\
             # Access applications: ssh.example.com\n\
             PubkeyAuthentication yes\n\
             TrustedUserCAKeys /r/etc/ssh/ca.pub\n\
             \n\
             Match User johndoe\n\
             \x20 AuthorizedPrincipalsCommand /bin/echo jdoe\n\
             \x20 AuthorizedPrincipalsCommandUser nobody\n"
        );
        let config = read(Path::new(MAIN), &fs).unwrap();
        let names: Vec<&Path> = config.files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(
            names,
            [
                Path::new(MAIN),
                &path,
                Path::new("/r/etc/ssh/sshd_config.d/10-test.conf")
            ]
        );
        let tuk = config.effective("TrustedUserCAKeys").unwrap();
        assert_eq!(
            (tuk.value(), tuk.file.as_path(), tuk.line),
            ("/r/etc/ssh/ca.pub", path.as_path(), 4)
        );
        // The drop-in's Match ends with it: the next file's Port is global.
        assert_eq!(config.effective("port").unwrap().value(), "2222");
        assert_eq!(config.effective("usepam").unwrap().value(), "yes");
        assert!(config.maps_user("johndoe", "jdoe"));
        assert!(!config.maps_user("johndoe", "other"));
        assert!(!config.maps_user("alice", "jdoe"));
        // Again: nothing to do.
        assert_eq!(plan_and_apply(&mut fs, &want).unwrap().changes, vec![]);
    }

    #[test]
    fn a_second_setup_adds_its_user_and_app() {
        let mut fs = debian_in_root();
        plan_and_apply(&mut fs, &wanted(&[("johndoe", "jdoe")])).unwrap();
        let mut second = wanted(&[("alice", "al")]);
        second.hostname = "b.example.com".into();
        plan_and_apply(&mut fs, &second).unwrap();
        let text = &fs.0[Path::new("/r/etc/ssh/sshd_config.d/00-cfaccess.conf")];
        assert!(
            text.contains("# Access applications: b.example.com, ssh.example.com\n"),
            "{text}"
        );
        let alice = text.find("Match User alice").unwrap();
        let john = text.find("Match User johndoe").unwrap();
        assert!(alice < john, "sorted by user: {text}");
        let config = read(Path::new(MAIN), &fs).unwrap();
        assert!(config.maps_user("johndoe", "jdoe") && config.maps_user("alice", "al"));
        // Same again, in the other order: the same text.
        let before = text.clone();
        assert_eq!(
            plan_and_apply(&mut fs, &wanted(&[("johndoe", "jdoe")]))
                .unwrap()
                .changes,
            vec![]
        );
        assert_eq!(
            fs.0[Path::new("/r/etc/ssh/sshd_config.d/00-cfaccess.conf")],
            before
        );
    }

    #[test]
    fn without_include_blocks_go_top_and_bottom() {
        let old = "# my sshd\n\n# more notes\nPort 22\nPermitRootLogin no\n\nMatch Address 10.0.0.0/8\n  PasswordAuthentication yes\n";
        let mut fs = Mem::with(&[(MAIN, old)]);
        let want = wanted(&[("johndoe", "jdoe")]);
        let plan = plan_and_apply(&mut fs, &want).unwrap();
        assert_eq!(plan.placement, Placement::Block(PathBuf::from(MAIN)));
        let new = &fs.0[Path::new(MAIN)];
        assert_eq!(
            new.as_str(),
            "# my sshd\n\n# more notes\n\
             # BEGIN cfaccess\n\
             # Written by cfaccess server setup; changes here are replaced on its next run.\n\
             # Access applications: ssh.example.com\n\
             PubkeyAuthentication yes\n\
             TrustedUserCAKeys /r/etc/ssh/ca.pub\n\
             # END cfaccess\n\
             Port 22\nPermitRootLogin no\n\nMatch Address 10.0.0.0/8\n  PasswordAuthentication yes\n\
             # BEGIN cfaccess users\n\
             Match User johndoe\n\
             \x20 AuthorizedPrincipalsCommand /bin/echo jdoe\n\
             \x20 AuthorizedPrincipalsCommandUser nobody\n\
             # END cfaccess users\n"
        );
        let config = read(Path::new(MAIN), &fs).unwrap();
        assert!(config.maps_user("johndoe", "jdoe"));
        assert_eq!(plan_and_apply(&mut fs, &want).unwrap().changes, vec![]);
        // A second user joins the bottom block, in place.
        plan_and_apply(&mut fs, &wanted(&[("alice", "al")])).unwrap();
        let config = read(Path::new(MAIN), &fs).unwrap();
        assert!(config.maps_user("johndoe", "jdoe") && config.maps_user("alice", "al"));
        assert_eq!(fs.0[Path::new(MAIN)].matches("# BEGIN cfaccess").count(), 2);
    }

    #[test]
    fn no_mappings_no_match_block() {
        let mut fs = Mem::with(&[(MAIN, "Port 22\n")]);
        plan_and_apply(&mut fs, &wanted(&[])).unwrap();
        let new = &fs.0[Path::new(MAIN)];
        assert!(new.ends_with("# END cfaccess\nPort 22\n"), "{new}");
        assert!(!new.contains("Match"));
    }

    #[test]
    fn relative_or_outside_include_is_not_used_under_a_root() {
        for include in [
            "Include sshd_config.d/*.conf",
            "Include /etc/ssh/sshd_config.d/*.conf",
        ] {
            let mut fs = Mem::with(&[
                (MAIN, &format!("{include}\nPort 22\n")),
                ("/r/etc/ssh/sshd_config.d/10-x.conf", "Port 1\n"),
                ("/etc/ssh/sshd_config.d/10-x.conf", "Port 2\n"),
            ]);
            let config = read(Path::new(MAIN), &fs).unwrap();
            assert_eq!(
                config.main_includes()[0].resolved,
                "/etc/ssh/sshd_config.d/*.conf"
            );
            // sshd reads /etc/ssh's file, not the one under the root.
            assert_eq!(config.effective("port").unwrap().value(), "2");
            let plan = plan_and_apply(&mut fs, &wanted(&[])).unwrap();
            assert_eq!(
                plan.placement,
                Placement::Block(PathBuf::from(MAIN)),
                "{include}"
            );
        }
    }

    #[test]
    fn an_include_whose_glob_cannot_take_our_name_is_passed_over() {
        let mut fs = Mem::with(&[
            (MAIN, "Include /r/a/*.cfg\nInclude /r/b/*.conf\n"),
            ("/r/a/x.cfg", "Port 1\n"),
            ("/r/b/x.conf", "Port 2\n"),
        ]);
        let plan = plan_and_apply(&mut fs, &wanted(&[])).unwrap();
        assert_eq!(
            plan.placement,
            Placement::DropIn(PathBuf::from("/r/b/00-cfaccess.conf"))
        );
    }

    #[test]
    fn shadowing_lines_are_named_with_file_and_line() {
        let fs = Mem::with(&[
            (
                MAIN,
                "# top\n\nPubkeyAuthentication no\nInclude /r/etc/ssh/sshd_config.d/*.conf\n",
            ),
            ("/r/etc/ssh/sshd_config.d/10-x.conf", "Port 1\n"),
        ]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        let err = plan(&config, &wanted(&[]), Path::new(ROOT), &fs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PubkeyAuthentication no at /r/etc/ssh/sshd_config:3 comes before cfaccess's setting and wins; remove it or set it to yes, then run again"
        );

        let fs = Mem::with(&[
            (MAIN, "Include /r/d/*.conf\n"),
            ("/r/d/00-aaa.conf", "TrustedUserCAKeys=/x\n"),
        ]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        match plan(&config, &wanted(&[]), Path::new(ROOT), &fs).unwrap_err() {
            PlanError::Shadowed {
                keyword,
                value,
                file,
                line,
            } => {
                assert_eq!(
                    (keyword, value.as_str(), file.to_str().unwrap(), line),
                    ("TrustedUserCAKeys", "/x", "/r/d/00-aaa.conf", 1)
                );
            }
            other => panic!("{other}"),
        }

        let fs = Mem::with(&[(MAIN, "Port 22\nMatch all\n  PubkeyAuthentication no\n")]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        let err = plan(&config, &wanted(&[]), Path::new(ROOT), &fs).unwrap_err();
        assert!(
            matches!(err, PlanError::Overridden { line: 3, .. }),
            "{err}"
        );

        let fs = Mem::with(&[
            (MAIN, "Include /r/d/*.conf\n"),
            (
                "/r/d/0-x.conf",
                "Match User johndoe\n AuthorizedPrincipalsCommand /bin/echo someone\n",
            ),
        ]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        let err = plan(
            &config,
            &wanted(&[("johndoe", "jdoe")]),
            Path::new(ROOT),
            &fs,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AuthorizedPrincipalsCommand /bin/echo someone at /r/d/0-x.conf:2 comes before cfaccess's for johndoe and wins; remove it or its Match block, then run again"
        );
    }

    #[test]
    fn match_in_an_included_file_ends_with_it() {
        let fs = Mem::with(&[
            (
                MAIN,
                "Include /r/d/*.conf\nPasswordAuthentication no\nMatch User x\n  X11Forwarding no\nInclude /r/e/*.conf\n",
            ),
            (
                "/r/d/a.conf",
                "Match User bob\n  PasswordAuthentication yes\n",
            ),
            ("/r/e/a.conf", "AllowTcpForwarding no\n"),
        ]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        let pa = config.effective("passwordauthentication").unwrap();
        assert_eq!(
            (pa.value(), pa.line, pa.file.as_path()),
            ("no", 2, Path::new(MAIN))
        );
        // In the main file, a Match lasts to its end, into what it includes.
        let atf = config
            .directives
            .iter()
            .find(|d| d.keyword == "allowtcpforwarding")
            .unwrap();
        assert_eq!(
            atf.match_criteria.as_deref(),
            Some(&["User".to_string(), "x".to_string()][..])
        );
        assert!(config.effective("allowtcpforwarding").is_none());
        assert_eq!(
            config
                .for_user("passwordauthentication", "bob")
                .unwrap()
                .value(),
            "yes"
        );
        assert_eq!(
            config.main_includes().len(),
            1,
            "the second Include is under Match"
        );
    }

    #[test]
    fn include_nesting_is_limited() {
        let fs = Mem::with(&[(MAIN, "Include /r/etc/ssh/sshd_config\n")]);
        let err = read(Path::new(MAIN), &fs).unwrap_err();
        assert!(matches!(err, ReadError::TooDeep { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("more than 16 files deep"));
    }

    #[test]
    fn reading_fails_with_the_path() {
        let err = read(Path::new(MAIN), &Mem::default()).unwrap_err();
        assert!(matches!(err, ReadError::Missing { .. }));
        assert!(err.to_string().contains(MAIN));
        let fs = Mem::with(&[(MAIN, "Port 22\nBanner \"/x\n")]);
        let err = read(Path::new(MAIN), &fs).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/r/etc/ssh/sshd_config:2 has a quote"),
            "{err}"
        );
        // An Include without a match is fine.
        let fs = Mem::with(&[(MAIN, "Include /nowhere/*.conf\nPort 22\n")]);
        assert_eq!(read(Path::new(MAIN), &fs).unwrap().files.len(), 1);
    }

    #[test]
    fn crlf_files_keep_their_line_ends() {
        let mut fs = Mem::with(&[(MAIN, "# x\r\nPort 22\r\nUsePAM yes\r\n")]);
        plan_and_apply(&mut fs, &wanted(&[("johndoe", "jdoe")])).unwrap();
        let new = &fs.0[Path::new(MAIN)];
        assert_eq!(
            new.matches('\n').count(),
            new.matches("\r\n").count(),
            "{new:?}"
        );
        assert!(new.starts_with("# x\r\n# BEGIN cfaccess\r\n"));
        let config = read(Path::new(MAIN), &fs).unwrap();
        assert_eq!(
            config.effective("trustedusercakeys").unwrap().value(),
            "/r/etc/ssh/ca.pub"
        );
        assert!(config.maps_user("johndoe", "jdoe"));
        assert_eq!(
            plan_and_apply(&mut fs, &wanted(&[("johndoe", "jdoe")]))
                .unwrap()
                .changes,
            vec![]
        );
    }

    #[test]
    fn a_file_without_final_newline() {
        let mut fs = Mem::with(&[(MAIN, "Port 22\nUsePAM yes")]);
        plan_and_apply(&mut fs, &wanted(&[("johndoe", "jdoe")])).unwrap();
        let new = &fs.0[Path::new(MAIN)];
        assert!(
            new.contains("UsePAM yes\n# BEGIN cfaccess users\n"),
            "{new}"
        );
        let config = read(Path::new(MAIN), &fs).unwrap();
        assert_eq!(config.effective("usepam").unwrap().value(), "yes");
        // Only comments: the block goes at the end.
        let mut fs = Mem::with(&[(MAIN, "# nothing")]);
        plan_and_apply(&mut fs, &wanted(&[])).unwrap();
        assert!(fs.0[Path::new(MAIN)].starts_with("# nothing\n# BEGIN cfaccess\n"));
    }

    #[test]
    fn bad_names_and_paths_are_refused() {
        let fs = Mem::with(&[(MAIN, "Port 22\n")]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        for (user, principal) in [("john doe", "jd"), ("j", "-n"), ("j", "a%u"), ("*", "x")] {
            let err =
                plan(&config, &wanted(&[(user, principal)]), Path::new(ROOT), &fs).unwrap_err();
            assert!(matches!(err, PlanError::Name { .. }), "{err}");
        }
        let mut want = wanted(&[]);
        want.ca_file = PathBuf::from("ca.pub");
        assert!(matches!(
            plan(&config, &want, Path::new(ROOT), &fs),
            Err(PlanError::CaPath { .. })
        ));
        want.ca_file = PathBuf::from("/r/my keys/ca.pub");
        let plan = plan(&config, &want, Path::new(ROOT), &fs).unwrap();
        assert!(
            plan.changes[0]
                .new
                .contains("TrustedUserCAKeys \"/r/my keys/ca.pub\"\n")
        );
    }

    #[test]
    fn an_unclosed_block_is_refused() {
        let fs = Mem::with(&[(
            MAIN,
            "Port 22\n# BEGIN cfaccess\nPubkeyAuthentication yes\n",
        )]);
        let config = read(Path::new(MAIN), &fs).unwrap();
        let err = plan(&config, &wanted(&[]), Path::new(ROOT), &fs).unwrap_err();
        assert!(matches!(err, PlanError::Unclosed { line: 2, .. }), "{err}");
    }

    #[test]
    fn overlay_globs_planned_files() {
        let base = Mem::with(&[("/r/d/10-x.conf", "")]);
        let mut overlay = Overlay::new(&base);
        overlay.set("/r/d/00-cfaccess.conf", "Port 1\n");
        overlay.set("/r/d/.hidden.conf", "");
        assert_eq!(
            overlay.glob("/r/d/*.conf"),
            [
                PathBuf::from("/r/d/00-cfaccess.conf"),
                PathBuf::from("/r/d/10-x.conf")
            ]
        );
    }

    #[test]
    fn disk_glob_sorts_and_skips_dot_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sshd_config.d");
        std::fs::create_dir(&d).unwrap();
        for name in ["b.conf", "a.conf", ".x.conf", "c.txt"] {
            std::fs::write(d.join(name), "").unwrap();
        }
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/z.conf"), "").unwrap();
        let pattern = format!("{}/*.conf", d.display());
        assert_eq!(Disk.glob(&pattern), [d.join("a.conf"), d.join("b.conf")]);
        let deep = format!("{}/*/*.conf", dir.path().display());
        assert_eq!(Disk.glob(&deep), [d.join("a.conf"), d.join("b.conf")]);
        assert_eq!(
            Disk.glob(&format!("{}/a.conf", d.display())),
            [d.join("a.conf")]
        );
        assert!(Disk.glob(&format!("{}/none.conf", d.display())).is_empty());
        assert!(Disk.read(&d.join("none")).unwrap().is_none());
    }
}
