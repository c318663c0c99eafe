//! The SSH CA's public key (docs/protocol.md 11: a CA's `public_key` is an
//! OpenSSH public key line) and the file sshd's `TrustedUserCAKeys` names:
//! one key per line, blank lines and `#` comments allowed (sshd_config(5)).
//!
//! Keys compare by their key data, whatever their comment, so adding a CA a
//! second time changes nothing; every other line of the file is kept byte for
//! byte, so an administrator's own CAs and notes survive.

use ssh_key::PublicKey;

/// Why a pasted or downloaded key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{origin}: holds no key; paste the whole line from the dashboard, like ecdsa-sha2-nistp256 AAAA…"
    )]
    Empty { origin: String },
    #[error(
        "{origin}: line {line} is a private key; give the CA's public key, the line from the dashboard, like ecdsa-sha2-nistp256 AAAA…"
    )]
    Private { origin: String, line: usize },
    #[error(
        "{origin}: line {line} is a certificate, not a CA key; paste the CA's public key from the dashboard, like ecdsa-sha2-nistp256 AAAA…"
    )]
    Certificate { origin: String, line: usize },
    #[error(
        "{origin}: line {line} is not an OpenSSH public key ({reason}); paste the whole line from the dashboard, like ecdsa-sha2-nistp256 AAAA…"
    )]
    NotAKey {
        origin: String,
        line: usize,
        reason: String,
    },
    #[error("{origin}: holds two keys (lines {first} and {second}); give one CA key at a time")]
    TwoKeys {
        origin: String,
        first: usize,
        second: usize,
    },
}

/// Exactly one OpenSSH public key, as pasted or read from `source` (named
/// in errors). Blank lines and `#` comments around it are allowed, as in a
/// saved `.pub` or CA file.
pub fn parse_key(text: &str, source: &str) -> Result<PublicKey, KeyError> {
    let mut found: Option<(usize, PublicKey)> = None;
    for (line, content) in lines(text) {
        let key = classify(content).map_err(|why| why.into_error(source, line))?;
        if let Some((first, _)) = found {
            return Err(KeyError::TwoKeys {
                origin: source.to_string(),
                first,
                second: line,
            });
        }
        found = Some((line, key));
    }
    found.map(|(_, key)| key).ok_or_else(|| KeyError::Empty {
        origin: source.to_string(),
    })
}

/// The lines of a CA file that are neither blank nor comments, with their
/// 1-based numbers, trimmed.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

enum Bad {
    Private,
    Certificate,
    NotAKey(String),
}

impl Bad {
    fn into_error(self, source: &str, line: usize) -> KeyError {
        let origin = source.to_string();
        match self {
            Bad::Private => KeyError::Private { origin, line },
            Bad::Certificate => KeyError::Certificate { origin, line },
            Bad::NotAKey(reason) => KeyError::NotAKey {
                origin,
                line,
                reason,
            },
        }
    }

    fn reason(&self) -> String {
        match self {
            Bad::Private => "a private key".into(),
            Bad::Certificate => "a certificate".into(),
            Bad::NotAKey(reason) => reason.clone(),
        }
    }
}

fn classify(line: &str) -> Result<PublicKey, Bad> {
    if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
        return Err(Bad::Private);
    }
    let algorithm = line.split_ascii_whitespace().next().unwrap_or("");
    if algorithm.ends_with("-cert-v01@openssh.com") {
        return Err(Bad::Certificate);
    }
    PublicKey::from_openssh(line).map_err(|e| Bad::NotAKey(e.to_string()))
}

/// A CA file's line that sshd would not read as a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// The keys of a CA file with their line numbers, and the lines that are
/// not keys (sshd skips those).
#[derive(Debug, Clone, Default)]
pub struct CaKeys {
    pub keys: Vec<(usize, PublicKey)>,
    pub bad: Vec<BadLine>,
}

impl CaKeys {
    /// Whether a key with the same key data is listed.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys
            .iter()
            .any(|(_, k)| k.key_data() == key.key_data())
    }
}

/// Reads a CA file's text.
pub fn keys(text: &str) -> CaKeys {
    let mut out = CaKeys::default();
    for (line, content) in lines(text) {
        match classify(content) {
            Ok(key) => out.keys.push((line, key)),
            Err(why) => out.bad.push(BadLine {
                line,
                reason: why.reason(),
            }),
        }
    }
    out
}

/// The CA file's new text with `key` appended under `comment` (the key's
/// own comment when empty), or `None` when the key is already there. The
/// other lines stay byte for byte; the file's line ending is kept.
pub fn with_key(existing: Option<&str>, key: &PublicKey, comment: &str) -> Option<String> {
    let text = existing.unwrap_or("");
    if keys(text).contains(key) {
        return None;
    }
    let mut key = key.clone();
    if !comment.is_empty() {
        key.set_comment(comment);
    }
    // Encoding a parsed public key cannot fail short of memory; a key
    // that will not encode is left out rather than written half.
    let line = key.to_openssh().ok()?;
    let eol = match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    };
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str(line.trim_end());
    out.push_str(eol);
    Some(out)
}

/// `existing` with every key of `other` (another CA file's text) that it
/// lacks appended with its comment, or `None` when it lacks none. Lines of
/// `other` that are not keys are left out.
pub fn merge(existing: Option<&str>, other: &str) -> Option<String> {
    let mut text: Option<String> = None;
    for (_, key) in keys(other).keys {
        let current = text.as_deref().or(existing);
        if let Some(next) = with_key(current, &key, "") {
            text = Some(next);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real public keys made with ssh-keygen for these tests.
    const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLp2/7zZoLCeOrCKNWbafYIa+vVZKCymR/7618JORjiskjIus5Q93QTAyHQWGIDT/Lbz3fPbsA/tesE8sCuLt2o= ca@dashboard";
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFibWV8Cf546dP7jMiHpl8bzGywX1lNGzwJ8UdqvuIH other-ca";

    fn key(text: &str) -> PublicKey {
        parse_key(text, "test").unwrap()
    }

    #[test]
    fn one_key_line_parses_with_comments_and_blanks_around() {
        let k = parse_key(
            &format!("\n# the CA of ssh.example.com\n  {P256}  \n\n"),
            "--ca-key k",
        )
        .unwrap();
        assert_eq!(k.algorithm().as_str(), "ecdsa-sha2-nistp256");
        assert_eq!(k.comment(), "ca@dashboard");
        let crlf = parse_key(&format!("{ED25519}\r\n"), "x").unwrap();
        assert!(crlf.key_data().is_ed25519());
    }

    #[test]
    fn refusals_name_the_source_and_line() {
        let e = parse_key("", "--ca-key /tmp/k").unwrap_err();
        assert!(matches!(e, KeyError::Empty { .. }));
        assert!(e.to_string().starts_with("--ca-key /tmp/k: holds no key"));

        let e = parse_key("# only\n\n", "f").unwrap_err();
        assert!(matches!(e, KeyError::Empty { .. }));

        let e = parse_key("hello world", "--ca-key /tmp/k").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("--ca-key /tmp/k: line 1 is not an OpenSSH public key ("),
            "{text}"
        );
        assert!(text.ends_with("like ecdsa-sha2-nistp256 AAAA…"), "{text}");
        assert!(!text.contains('\n'));

        let e = parse_key(&format!("{P256}\n\n{ED25519}\n"), "f").unwrap_err();
        assert_eq!(
            e,
            KeyError::TwoKeys {
                origin: "f".into(),
                first: 1,
                second: 3
            }
        );

        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(
            parse_key(private, "f").unwrap_err(),
            KeyError::Private { line: 1, .. }
        ));

        let cert = "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20= u";
        assert!(matches!(
            parse_key(cert, "f").unwrap_err(),
            KeyError::Certificate { line: 1, .. }
        ));

        // A cut-short paste: the base64 does not decode to a whole key.
        let cut = &P256[..60];
        assert!(matches!(
            parse_key(cut, "f").unwrap_err(),
            KeyError::NotAKey { line: 1, .. }
        ));
    }

    #[test]
    fn keys_lists_keys_and_bad_lines() {
        let text = format!("# CAs\n{P256}\n\nnot a key\n{ED25519}\n");
        let found = keys(&text);
        let lines: Vec<usize> = found.keys.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 5]);
        assert_eq!(found.bad.len(), 1);
        assert_eq!(found.bad[0].line, 4);
        assert!(found.contains(&key(ED25519)));
    }

    #[test]
    fn with_key_appends_keeping_every_other_byte() {
        let k = key(P256);
        let new = with_key(None, &k, "cfaccess ssh.example.com").unwrap();
        assert_eq!(
            new,
            format!(
                "{} cfaccess ssh.example.com\n",
                P256.rsplit_once(' ').unwrap().0
            )
        );
        // Already there, under another comment: nothing to do.
        assert_eq!(
            with_key(Some(&new), &key(&P256.replace("ca@dashboard", "x")), "y"),
            None
        );

        let existing = "# mine\r\n  ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFibWV8Cf546dP7jMiHpl8bzGywX1lNGzwJ8UdqvuIH  old  \r\n# tail";
        let new = with_key(Some(existing), &k, "").unwrap();
        assert!(new.starts_with(existing), "{new:?}");
        assert_eq!(&new[existing.len()..], format!("\r\n{P256}\r\n"));
        assert_eq!(keys(&new).keys.len(), 2);
    }

    #[test]
    fn merge_adds_only_missing_keys() {
        let ours = format!("{P256}\n");
        assert_eq!(merge(Some(&ours), &format!("# theirs\n{P256}\n")), None);
        let merged = merge(Some(&ours), &format!("{ED25519}\n{P256}\ngarbage\n")).unwrap();
        assert_eq!(merged, format!("{P256}\n{ED25519}\n"));
        assert_eq!(merge(None, "# nothing\n"), None);
        assert_eq!(merge(None, ED25519).unwrap(), format!("{ED25519}\n"));
    }
}
