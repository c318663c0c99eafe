//! The ssh_config snippet (PROTOCOL.md section 8), and installing it into an
//! ssh config file as a marked block that a second run replaces.
//!
//! The snippet names the running binary by its absolute path, and the config
//! dir as `~/.cloudflared` when it is the default (ssh expands `~` from the
//! password database, not from `HOME`) or by its absolute path when
//! `CFACCESS_DIR` moved it. Both are quoted and `%`-escaped as ssh needs.

use std::path::Path;

/// The block for `hostname`, with a final newline.
pub fn snippet(exe: &Path, hostname: &str, short_lived_cert: bool, key_dir: &KeyDir) -> String {
    let exe = shell_word(&exe.to_string_lossy());
    let proxy = format!("  ProxyCommand {exe} access ssh --hostname %h\n");
    if !short_lived_cert {
        return format!("Host {hostname}\n{proxy}");
    }
    let exec = format!("{exe} access ssh-gen --hostname %h").replace(['\\', '"'], "\\$0");
    let dir = key_dir.as_config_path();
    format!(
        "Match host {hostname} exec \"{exec}\"\n{proxy}  IdentityFile {}\n  CertificateFile {}\n",
        config_arg(&format!("{dir}/%h-cf_key")),
        config_arg(&format!("{dir}/%h-cf_key-cert.pub")),
    )
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

/// An ssh config argument: double-quoted when it holds white space.
fn config_arg(arg: &str) -> String {
    if arg.contains(char::is_whitespace) {
        format!("\"{arg}\"")
    } else {
        arg.to_owned()
    }
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
            snippet(Path::new(EXE), "ssh.example.com", false, &KeyDir::Default),
            "Host ssh.example.com\n  ProxyCommand /usr/local/bin/cfaccess access ssh --hostname %h\n"
        );
        assert_eq!(
            snippet(Path::new(EXE), "ssh.example.com", true, &KeyDir::Default),
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
        );
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
