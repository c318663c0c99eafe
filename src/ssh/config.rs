//! The ssh_config snippet (docs/protocol.md section 8); `ssh::install` puts it
//! into an ssh config file.
//!
//! The snippet names the running binary by its absolute path, and the config
//! dir as `~/.cloudflared` when it is the default (ssh expands `~` from the
//! password database, not from `HOME`) or by its absolute path when
//! `CFACCESS_DIR` moved it. Both are quoted and `%`-escaped as ssh needs.
//!
//! Quoting happens at two levels. ssh's config parser splits a line into
//! words, except for `ProxyCommand`, whose rest of line it keeps verbatim;
//! the commands of `ProxyCommand` and `Match exec` then run through the
//! user's shell. So the binary's path is a shell word everywhere, and the
//! other words are quoted for the config parser. That parser differs between
//! versions: OpenSSH 9 and older group double-quoted text and know no escapes
//! (`strdelim`), OpenSSH 10 also takes single quotes and backslash escapes
//! (`argv_split`). A word is written only in the form both read the same
//! way; a path that has no such form (a `"` in it, say) is refused with a
//! clear error rather than printed broken.
//!
//! Win32-OpenSSH reads the same config with the same `readconf.c`, but runs
//! the commands without a Unix shell, so [`Style::Windows`] writes them for
//! what does run them there (the evidence is in the `windows` module below):
//! - `ProxyCommand` goes to `CreateProcessW` as it is written (its
//!   `build_commandline_string` keeps a command that starts with `"`), so the
//!   path is in double quotes, which `CreateProcess` and every program's
//!   argument parser read as one argv[0].
//! - `Match exec` goes to `_wsystem`, that is `cmd.exe /c <command>`, and the
//!   command comes out of a config word that can hold no `"` at all (OpenSSH
//!   9's `strdelim` ends the word at the second `"`), so cmd.exe sees no
//!   quotes: the path must have no character cmd.exe splits a command at. It
//!   is the path itself or its 8.3 short form
//!   (`C:\PROGRA~1\cfaccess\cfaccess.exe`, which never holds a space, `,`,
//!   `;` or `=`), one needing no escape first; the characters cmd.exe reads
//!   specially (`&`, `(`, `)`, `^`, `%`) are `^`-escaped. With neither form
//!   there is no way to write it, and it is refused.
//! - Key paths use `/`, which Windows and Win32-OpenSSH take as `\`, so no
//!   backslash is left for OpenSSH 10's escapes to read; `~` is the user's
//!   profile for Win32-OpenSSH, which is where the config dir is by default.

use std::path::Path;

/// Which OpenSSH the snippet is for: the ones that run commands through a
/// Unix shell, or Win32-OpenSSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Unix,
    Windows,
}

impl Style {
    /// The style of the OS this binary runs on.
    pub fn native() -> Style {
        if cfg!(windows) {
            Style::Windows
        } else {
            Style::Unix
        }
    }
}

/// The binary the snippet runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Its path, as the OS names it.
    pub path: String,
    /// On Windows, its 8.3 short form when the volume keeps short names
    /// (`platform::short_path`); `None` elsewhere.
    pub short_path: Option<String>,
}

impl Program {
    pub fn new(path: &Path, short_path: Option<&Path>) -> Program {
        Program {
            path: path.to_string_lossy().into_owned(),
            short_path: short_path.map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

/// Why no snippet can be written for these paths.
#[derive(Debug, thiserror::Error)]
#[error("the path {path} holds {what}, {why}")]
pub struct Unquotable {
    pub path: String,
    pub what: &'static str,
    why: &'static str,
    pub style: Style,
}

const NO_COMMON_FORM: &str =
    "which ssh's config file cannot carry the same way on every OpenSSH version";

impl Unquotable {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self.style {
            Style::Unix => {
                "install cfaccess (or point CFACCESS_DIR) at a path without quotes, \
                 like /usr/local/bin/cfaccess"
            }
            Style::Windows => {
                "install cfaccess in a folder without spaces or any of , ; = (or on a volume \
                 with 8.3 short names, like C:\\Program Files\\cfaccess), or leave out \
                 --short-lived-cert"
            }
        }
    }
}

/// Which credentials the block has ssh use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certs {
    /// The user's own keys: only the ProxyCommand.
    Own,
    /// Short-lived certificates from `ssh-gen`, which with `agent` also
    /// puts each into the ssh-agent (`ssh-gen --agent`).
    ShortLived { agent: bool },
}

impl Certs {
    /// From ssh-config's `--short-lived-cert` and `--agent`.
    pub fn new(short_lived_cert: bool, agent: bool) -> Certs {
        if short_lived_cert {
            Certs::ShortLived { agent }
        } else {
            Certs::Own
        }
    }
}

/// `true` is `--short-lived-cert` without the agent.
impl From<bool> for Certs {
    fn from(short_lived_cert: bool) -> Certs {
        if short_lived_cert {
            Certs::ShortLived { agent: false }
        } else {
            Certs::Own
        }
    }
}

/// The block for `hostname`, with a final newline. A moved config dir
/// (`KeyDir::Path`) is passed to both commands as `--config-dir`: ssh does
/// not hand `CFACCESS_DIR` on to them unless the user exports it, and on
/// Windows a `ProxyCommand` cannot set a variable at all.
pub fn snippet(
    style: Style,
    exe: &Program,
    hostname: &str,
    certs: impl Into<Certs>,
    key_dir: &KeyDir,
) -> Result<String, Unquotable> {
    let certs = certs.into();
    let (proxy_dir, exec_dir) = match key_dir {
        KeyDir::Default => (String::new(), Ok(String::new())),
        KeyDir::Path(_) => {
            let dir = key_dir.as_config_path(style);
            let word = dir_word(style, &dir).ok_or_else(|| unquotable(&dir, style))?;
            let exec = match (word.exec, style) {
                (Some(w), _) => Ok(format!(" --config-dir {w}")),
                // cmd.exe cannot be handed a path with a space without
                // quotes, which a Match exec word cannot hold: ssh-gen
                // falls back to CFACCESS_DIR from the environment there, as
                // before --config-dir (README: Windows)
                (None, Style::Windows) => Ok(String::new()),
                (None, Style::Unix) => Err(unquotable(&dir, style)),
            };
            (format!(" --config-dir {}", word.proxy), exec)
        }
    };
    let agent = if certs == (Certs::ShortLived { agent: true }) {
        " --agent"
    } else {
        ""
    };
    let (proxy_exe, exec) = match style {
        Style::Unix => {
            let exe_path = exe;
            let exe = shell_word(&exe.path);
            let exec = exec_dir.and_then(|dir| {
                let exec = format!("{exe} access ssh-gen --hostname %h{dir}{agent}");
                quoted(&exec).ok_or_else(|| unquotable(&exe_path.path, style))
            });
            (exe, exec)
        }
        Style::Windows => (
            windows::proxy_program(&exe.path).ok_or_else(|| unquotable(&exe.path, style))?,
            exec_dir.and_then(|dir| {
                windows::exec_command(exe, &format!("{dir}{agent}")).ok_or_else(|| Unquotable {
                    path: exe.path.clone(),
                    what: "a space (or , ; =) and has no 8.3 short name",
                    why: "which cmd.exe cannot run from ssh's Match exec (it can hold no quotes)",
                    style,
                })
            }),
        ),
    };
    let proxy = format!("  ProxyCommand {proxy_exe} access ssh --hostname %h{proxy_dir}\n");
    if certs == Certs::Own {
        return Ok(format!("Host {hostname}\n{proxy}"));
    }
    let exec = exec?;
    let dir = key_dir.as_config_path(style);
    let arg =
        |file: &str| config_arg(&format!("{dir}/{file}")).ok_or_else(|| unquotable(&dir, style));
    Ok(format!(
        "Match host {hostname} exec {exec}\n{proxy}  IdentityFile {}\n  CertificateFile {}\n",
        arg("%h-cf_key")?,
        arg("%h-cf_key-cert.pub")?,
    ))
}

/// The config dir as an argument of the two commands.
struct DirWord {
    /// In `ProxyCommand`.
    proxy: String,
    /// In the command of `Match exec`, before that is quoted as a config
    /// word; `None` when it has no form there.
    exec: Option<String>,
}

/// `dir` (as [`KeyDir::as_config_path`] wrote it, `%` already doubled) as
/// a word of each command, if it has a form there.
fn dir_word(style: Style, dir: &str) -> Option<DirWord> {
    match style {
        Style::Unix => {
            // shell_word doubles `%` itself
            let word = shell_word(&dir.replace("%%", "%"));
            Some(DirWord {
                proxy: word.clone(),
                exec: Some(word),
            })
        }
        Style::Windows => {
            // CreateProcessW hands the line to cfaccess, whose argument
            // parser takes a double-quoted word whole; cmd.exe (Match exec)
            // leaves quotes out, so there the path must need none
            // (in double quotes when the config parser would read it otherwise)
            let proxy = config_arg(dir)?;
            let exec = windows::exec_arg(dir);
            Some(DirWord { proxy, exec })
        }
    }
}

fn unquotable(path: &str, style: Style) -> Unquotable {
    let what = if path.contains('"') {
        "a double quote"
    } else if path.contains('\'') {
        "a single quote"
    } else {
        "a backslash next to a quote or another backslash"
    };
    Unquotable {
        path: path.to_owned(),
        what,
        why: NO_COMMON_FORM,
        style,
    }
}

/// Where the keys are, as an ssh config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDir {
    /// `~/.cloudflared`
    Default,
    /// An absolute path elsewhere.
    Path(String),
}

impl KeyDir {
    fn as_config_path(&self, style: Style) -> String {
        match (self, style) {
            (KeyDir::Default, _) => "~/.cloudflared".into(),
            (KeyDir::Path(p), Style::Unix) => p.trim_end_matches('/').replace('%', "%%"),
            // `C:/Users/me/keys`: Windows takes `/` for `\\` and leaves no
            // backslash for OpenSSH 10's escapes to read
            (KeyDir::Path(p), Style::Windows) => windows::strip_verbatim(p)
                .replace('\\', "/")
                .trim_end_matches('/')
                .replace('%', "%%"),
        }
    }
}

/// A word for the shell ssh runs commands with: `%` doubled (ssh expands
/// `%` tokens first), single-quoted when it holds anything but plain path
/// characters.
fn shell_word(word: &str) -> String {
    let escaped = word.replace('%', "%%");
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@=%".contains(c);
    if escaped.chars().all(plain) {
        escaped
    } else {
        format!("'{}'", escaped.replace('\'', r"'\''"))
    }
}

/// An ssh config argument: as it is when it holds nothing the config
/// parser reads specially, else double-quoted; `None` when no quoting reads
/// the same under every OpenSSH version.
fn config_arg(arg: &str) -> Option<String> {
    if arg.contains(|c: char| c.is_whitespace() || "\"'\\#=".contains(c)) {
        quoted(arg)
    } else {
        Some(arg.to_owned())
    }
}

/// `text` in double quotes, if OpenSSH 9's parser (no escapes: the first
/// `"` ends the word) and OpenSSH 10's (`\\`, `\'` and `\"` are escapes)
/// read it back the same: no `"` in it, and no backslash before a quote or
/// a backslash. (A shell word's `'\''` for a single quote is such a case.)
fn quoted(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escape_like = bytes
        .windows(2)
        .any(|w| w[0] == b'\\' && matches!(w[1], b'\\' | b'\'' | b'"'));
    if text.contains('"') || escape_like || text.ends_with('\\') {
        return None;
    }
    Some(format!("\"{text}\""))
}

/// The commands as Win32-OpenSSH runs them.
///
/// Read from PowerShell/openssh-portable (the same at v8.1.0.0, v9.5.0.0 and
/// its latest): `ssh_proxy_connect` hands the expanded `ProxyCommand` to
/// `posix_spawnp` as one string, whose `build_commandline_string` keeps a
/// command starting with `"` as it is (and otherwise quotes up to the first
/// `.exe` followed by a space, a guess this avoids) for `CreateProcessW`.
/// `execute_in_shell` (`Match exec`) is `system(cmd)`, i.e. `w32_system`:
/// `_wsystem`, which the CRT runs as `%COMSPEC% /c <command>`, joined
/// unquoted. What cmd.exe does with that command:
/// - `/c` with no `"` in the command leaves it as it is (its quote rules
///   only strip a leading `"` and the last one);
/// - `%name%` is replaced when `name` is set (on cmd's own command line an
///   unset one stays as written, and there is no `%%` escape), so each `%` is
///   followed by a `^`: the name then starts with `^`, which no variable has,
///   and the `^` goes away with the other escapes;
/// - outside quotes `^` makes the next character plain and is dropped; `&`,
///   `|`, `<`, `>`, `(` and `)` would end or group commands, so they get one;
/// - the command name ends at the first space, tab, `,`, `;` or `=` (or
///   0x0B, 0x0C, 0xFF), and a `^` does not make a space part of a path the
///   program then sees as its argv[0]: the started program gets the line
///   with the carets gone, and `CommandLineToArgvW` (and Rust's std, which
///   follows it) splits argv[0] at the first space outside quotes. So a
///   space in the path cannot be escaped: the 8.3 short name is the only
///   form without one. `GetShortPathNameW` gives it; on a volume without
///   short names it returns the long path, and the path is refused.
/// - `!` is plain: delayed expansion is off for `cmd /c` unless turned on
///   in the registry.
///
/// Seen under Wine too (its own cmd.exe, started through `_wsystem` as
/// Win32-OpenSSH does): `C:\PROG~FBU\cfaccess\cfaccess.exe access ssh-gen
/// --hostname h` (Wine's short name) ran with exactly that argv, while
/// `C:\Program^ Files\…` was not found, and Wine's cmd.exe did not take
/// `C:\a^&b^(x^)\…` as a name either: hence a form needing no `^` first.
mod windows {
    use super::{Program, quoted};

    /// `"C:\Program Files\cfaccess\cfaccess.exe"` for `ProxyCommand`.
    pub(super) fn proxy_program(path: &str) -> Option<String> {
        let path = strip_verbatim(path);
        (!path.contains('"')).then(|| format!("\"{}\"", path.replace('%', "%%")))
    }

    /// The `Match exec` word: the command in double quotes, with a path
    /// cmd.exe runs as one name. A form that needs no `^` at all comes
    /// first (the long path, then the short one), so that escapes are
    /// relied on only where no name avoids them: an 8.3 name keeps `&`, `(`,
    /// `)`, `^` and `%`, which are valid in one.
    pub(super) fn exec_command(exe: &Program, extra: &str) -> Option<String> {
        let forms: Vec<&str> = [Some(exe.path.as_str()), exe.short_path.as_deref()]
            .into_iter()
            .flatten()
            .map(strip_verbatim)
            .filter(|p| !p.contains(splits_command) && !p.contains('"'))
            .collect();
        let plain = forms.iter().filter(|p| !p.contains(escaped));
        plain.chain(forms.iter()).find_map(|p| {
            let program = cmd_escape(p).replace('%', "%%");
            quoted(&format!("{program} access ssh-gen --hostname %h{extra}"))
        })
    }

    /// An argument for the `Match exec` command: one that cmd.exe passes on
    /// as it is and cfaccess reads as one word (no space or other splitter,
    /// no quote), cmd.exe's specials escaped as for the program's path.
    pub(super) fn exec_arg(arg: &str) -> Option<String> {
        if arg.contains(splits_command) || arg.contains('"') {
            return None;
        }
        // `%` comes doubled for ssh; cmd_escape wants it single
        Some(cmd_escape(&arg.replace("%%", "%")).replace('%', "%%"))
    }

    /// What [`cmd_escape`] puts a `^` before or after.
    fn escaped(c: char) -> bool {
        matches!(c, '&' | '|' | '<' | '>' | '(' | ')' | '^' | '%')
    }

    /// Where cmd.exe ends a command's name.
    fn splits_command(c: char) -> bool {
        matches!(
            c,
            ' ' | '\t' | ',' | ';' | '=' | '\u{0B}' | '\u{0C}' | '\u{FF}' | '\u{A0}'
        )
    }

    /// `path` with cmd.exe's specials `^`-escaped and each `%` kept from
    /// expanding (see the module's comment).
    pub(super) fn cmd_escape(path: &str) -> String {
        let special = |c: char| matches!(c, '&' | '|' | '<' | '>' | '(' | ')' | '^');
        let mut out = String::with_capacity(path.len() * 2);
        let mut chars = path.chars().peekable();
        while let Some(c) = chars.next() {
            if special(c) {
                out.push('^');
            }
            out.push(c);
            // the next character's own `^` does the same job
            if c == '%' && !chars.peek().is_some_and(|&n| special(n)) {
                out.push('^');
            }
        }
        out
    }

    /// `C:\x` for `\\?\C:\x`, `\\server\share` for `\\?\UNC\server\share`: the
    /// same file, in the form every program takes.
    pub(super) fn strip_verbatim(path: &str) -> &str {
        match path.strip_prefix(r"\\?\") {
            Some(rest) if rest.as_bytes().get(1) == Some(&b':') => rest,
            _ => path,
        }
    }
}

#[cfg(test)]
mod windows_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/local/bin/cfaccess";

    fn unix(path: &str) -> Program {
        Program::new(Path::new(path), None)
    }

    #[test]
    fn the_snippets_are_the_documented_ones() {
        assert_eq!(
            snippet(
                Style::Unix,
                &unix(EXE),
                "ssh.example.com",
                false,
                &KeyDir::Default
            )
            .unwrap(),
            "Host ssh.example.com\n  ProxyCommand /usr/local/bin/cfaccess access ssh --hostname %h\n"
        );
        assert_eq!(
            snippet(
                Style::Unix,
                &unix(EXE),
                "ssh.example.com",
                true,
                &KeyDir::Default
            )
            .unwrap(),
            "Match host ssh.example.com exec \"/usr/local/bin/cfaccess access ssh-gen --hostname %h\"\n  \
             ProxyCommand /usr/local/bin/cfaccess access ssh --hostname %h\n  \
             IdentityFile ~/.cloudflared/%h-cf_key\n  \
             CertificateFile ~/.cloudflared/%h-cf_key-cert.pub\n"
        );
    }

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        let s = snippet(
            Style::Unix,
            &unix("/opt/my tools/100%/cfaccess"),
            "h",
            true,
            &KeyDir::Path("/var/keys 1/".into()),
        )
        .unwrap();
        assert_eq!(
            s,
            "Match host h exec \"'/opt/my tools/100%%/cfaccess' access ssh-gen --hostname %h \
             --config-dir '/var/keys 1'\"\n  \
             ProxyCommand '/opt/my tools/100%%/cfaccess' access ssh --hostname %h \
             --config-dir '/var/keys 1'\n  \
             IdentityFile \"/var/keys 1/%h-cf_key\"\n  \
             CertificateFile \"/var/keys 1/%h-cf_key-cert.pub\"\n"
        );
        assert_eq!(shell_word("/a/it's"), r"'/a/it'\''s'");
    }

    #[test]
    fn paths_both_parsers_read_alike_are_quoted_and_the_rest_refused() {
        // a backslash and a space: fine in double quotes for both parsers
        let s = snippet(
            Style::Unix,
            &unix(r"/opt/a\b c/cfaccess"),
            "h",
            true,
            &KeyDir::Default,
        )
        .unwrap();
        assert!(
            s.starts_with(
                r#"Match host h exec "'/opt/a\b c/cfaccess' access ssh-gen --hostname %h""#
            ),
            "{s}"
        );
        // any path works in ProxyCommand, which ssh keeps verbatim
        let plain = snippet(
            Style::Unix,
            &unix(r#"/o/it's "x"/cfaccess"#),
            "h",
            false,
            &KeyDir::Default,
        );
        assert_eq!(
            plain.unwrap(),
            "Host h\n  ProxyCommand '/o/it'\\''s \"x\"/cfaccess' access ssh --hostname %h\n"
        );
        for (exe, what) in [
            (r#"/o/"x"/cfaccess"#, "a double quote"),
            ("/o/it's/cfaccess", "a single quote"),
        ] {
            let err = snippet(Style::Unix, &unix(exe), "h", true, &KeyDir::Default).unwrap_err();
            assert_eq!(err.what, what, "{exe}");
        }
        let dir = KeyDir::Path(r#"/k/"q""#.into());
        assert!(snippet(Style::Unix, &unix("/bin/cfaccess"), "h", true, &dir).is_err());
        // a single quote: the shell word of --config-dir is `'/k/it'\''s'`,
        // which no config word reads alike, but ProxyCommand takes it
        let dir = KeyDir::Path("/k/it's".into());
        assert!(snippet(Style::Unix, &unix("/bin/cfaccess"), "h", true, &dir).is_err());
        let s = snippet(Style::Unix, &unix("/bin/cfaccess"), "h", false, &dir).unwrap();
        assert!(s.ends_with("--config-dir '/k/it'\\''s'\n"), "{s}");
        let dir = KeyDir::Path("/k/a=b#c".into());
        let s = snippet(Style::Unix, &unix("/bin/cfaccess"), "h", true, &dir).unwrap();
        assert!(s.contains("IdentityFile \"/k/a=b#c/%h-cf_key\"\n"), "{s}");
        assert!(s.contains("--hostname %h --config-dir '/k/a=b#c'\""), "{s}");
    }
}
