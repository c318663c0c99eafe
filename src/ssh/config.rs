//! The ssh_config snippet (PROTOCOL.md section 8), and installing it into an
//! ssh config file as a marked block that a second run replaces.
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

use std::path::Path;

/// Why no snippet can be written for these paths.
#[derive(Debug, thiserror::Error)]
#[error(
    "the path {path} holds {what}, which ssh's config file cannot carry the same way \
     on every OpenSSH version"
)]
pub struct Unquotable {
    pub path: String,
    pub what: &'static str,
}

/// The block for `hostname`, with a final newline.
pub fn snippet(
    exe: &Path,
    hostname: &str,
    short_lived_cert: bool,
    key_dir: &KeyDir,
) -> Result<String, Unquotable> {
    let exe_text = exe.to_string_lossy();
    let exe = shell_word(&exe_text);
    let proxy = format!("  ProxyCommand {exe} access ssh --hostname %h\n");
    if !short_lived_cert {
        return Ok(format!("Host {hostname}\n{proxy}"));
    }
    let exec = format!("{exe} access ssh-gen --hostname %h");
    let exec = quoted(&exec).ok_or_else(|| unquotable(&exe_text))?;
    let dir = key_dir.as_config_path();
    let arg = |file: &str| config_arg(&format!("{dir}/{file}")).ok_or_else(|| unquotable(&dir));
    Ok(format!(
        "Match host {hostname} exec {exec}\n{proxy}  IdentityFile {}\n  CertificateFile {}\n",
        arg("%h-cf_key")?,
        arg("%h-cf_key-cert.pub")?,
    ))
}

fn unquotable(path: &str) -> Unquotable {
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
    fn as_config_path(&self) -> String {
        match self {
            KeyDir::Default => "~/.cloudflared".into(),
            KeyDir::Path(p) => p.trim_end_matches('/').replace('%', "%%"),
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
    if arg.contains(|c: char| c.is_whitespace() || "\"'\\#".contains(c)) {
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

/// The result of installing a block into a config file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub text: String,
    /// The block that was there before, if any.
    pub replaced: Option<String>,
}

/// Puts `block` for `hostname` into `config` between markers: in place of
/// an earlier block for the same host, else at the end.
pub fn install(config: &str, hostname: &str, block: &str) -> Installed {
    let begin = format!("# BEGIN cfaccess {hostname}");
    let end = format!("# END cfaccess {hostname}");
    let marked = format!("{begin}\n{block}{end}\n");
    let lines: Vec<&str> = config.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == begin);
    let stop = start.and_then(|s| {
        lines[s..]
            .iter()
            .position(|l| l.trim_end() == end)
            .map(|i| s + i)
    });
    if let (Some(start), Some(stop)) = (start, stop) {
        let old: String = lines[start + 1..stop].concat();
        let text = format!(
            "{}{marked}{}",
            lines[..start].concat(),
            lines[stop + 1..].concat()
        );
        return Installed {
            text,
            replaced: Some(old),
        };
    }
    let mut text = config.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() && !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(&marked);
    Installed {
        text,
        replaced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/local/bin/cfaccess";

    #[test]
    fn the_snippets_are_the_documented_ones() {
        assert_eq!(
            snippet(Path::new(EXE), "ssh.example.com", false, &KeyDir::Default).unwrap(),
            "Host ssh.example.com\n  ProxyCommand /usr/local/bin/cfaccess access ssh --hostname %h\n"
        );
        assert_eq!(
            snippet(Path::new(EXE), "ssh.example.com", true, &KeyDir::Default).unwrap(),
            "Match host ssh.example.com exec \"/usr/local/bin/cfaccess access ssh-gen --hostname %h\"\n  \
             ProxyCommand /usr/local/bin/cfaccess access ssh --hostname %h\n  \
             IdentityFile ~/.cloudflared/%h-cf_key\n  \
             CertificateFile ~/.cloudflared/%h-cf_key-cert.pub\n"
        );
    }

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        let s = snippet(
            Path::new("/opt/my tools/100%/cfaccess"),
            "h",
            true,
            &KeyDir::Path("/var/keys 1/".into()),
        )
        .unwrap();
        assert_eq!(
            s,
            "Match host h exec \"'/opt/my tools/100%%/cfaccess' access ssh-gen --hostname %h\"\n  \
             ProxyCommand '/opt/my tools/100%%/cfaccess' access ssh --hostname %h\n  \
             IdentityFile \"/var/keys 1/%h-cf_key\"\n  \
             CertificateFile \"/var/keys 1/%h-cf_key-cert.pub\"\n"
        );
        assert_eq!(shell_word("/a/it's"), r"'/a/it'\''s'");
    }

    #[test]
    fn paths_both_parsers_read_alike_are_quoted_and_the_rest_refused() {
        // a backslash and a space: fine in double quotes for both parsers
        let s = snippet(
            Path::new(r"/opt/a\b c/cfaccess"),
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
            Path::new(r#"/o/it's "x"/cfaccess"#),
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
            let err = snippet(Path::new(exe), "h", true, &KeyDir::Default).unwrap_err();
            assert_eq!(err.what, what, "{exe}");
        }
        let dir = KeyDir::Path(r#"/k/"q""#.into());
        assert!(snippet(Path::new("/bin/cfaccess"), "h", true, &dir).is_err());
        let dir = KeyDir::Path("/k/it's".into());
        let s = snippet(Path::new("/bin/cfaccess"), "h", true, &dir).unwrap();
        assert!(s.contains("IdentityFile \"/k/it's/%h-cf_key\"\n"), "{s}");
    }

    #[test]
    fn installing_twice_leaves_one_block() {
        let block = "Host h\n  ProxyCommand x\n";
        let first = install("Host other\n  User me\n", "h", block);
        assert_eq!(first.replaced, None);
        assert_eq!(
            first.text,
            "Host other\n  User me\n\n# BEGIN cfaccess h\nHost h\n  ProxyCommand x\n# END cfaccess h\n"
        );
        let second = install(&first.text, "h", "Host h\n  ProxyCommand y\n");
        assert_eq!(second.replaced.as_deref(), Some(block));
        assert_eq!(second.text.matches("# BEGIN cfaccess h").count(), 1);
        assert!(second.text.contains("ProxyCommand y") && !second.text.contains("ProxyCommand x"));
        // another host gets its own block; the text around stays as it was
        let third = install(&second.text, "g", "Host g\n");
        assert!(third.text.starts_with(&second.text));
        assert_eq!(
            install("", "h", block).text,
            "# BEGIN cfaccess h\nHost h\n  ProxyCommand x\n# END cfaccess h\n"
        );
    }
}
