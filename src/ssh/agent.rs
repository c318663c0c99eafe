//! The short-lived certificate in the user's ssh-agent, as `tsh` and
//! `step ssh` put theirs there: `ssh-gen --agent` adds the key with its
//! certificate, for as long as the certificate is valid (`ssh-add -t`, the
//! protocol's lifetime constraint), so agent forwarding (`ssh -A`) carries it
//! to the next hop; `logout` takes it out again.
//!
//! The few messages this takes (list, add with a lifetime, remove) are
//! written here, over `platform::agent_socket`'s stream, rather than with
//! an agent crate: ssh-agent-lib fits (its blocking client, on ssh-key 0.6),
//! but it needs ssh-key's `crypto` feature (RSA, P-384, P-521), and that made
//! `ssh-gen`'s fast path, which ssh runs before every connection, 250 KiB
//! bigger in resident memory for key types cfaccess never makes; and
//! ssh-agent-client-rs can add neither a certificate nor a lifetime. The
//! wire format is draft-miller-ssh-agent (sections 3.2, 3.3, 3.4 and 3.6)
//! and OpenSSH's PROTOCOL.certkeys for a certificate's private half.
//!
//! An identity is cfaccess's when its comment is
//! the private key's path, which is what `ssh-add <key>` would have named it:
//! `ssh-add -l` shows `… /home/me/.cloudflared/ssh.example.com-cf_key
//! (ECDSA-CERT)`. That names the config dir too, so two config dirs (two
//! accounts) each keep their own certificate for the same host.

use std::io::{Read, Write};
use std::path::Path;

use ssh_key::private::{EcdsaKeypair, KeypairData};
use ssh_key::{Certificate, PrivateKey};
use zeroize::Zeroizing;

use crate::platform::agent_socket::{self, AgentSocketError, Stream};

// message numbers (draft-miller-ssh-agent, section 5.1)
const FAILURE: u8 = 5;
const SUCCESS: u8 = 6;
const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const REMOVE_IDENTITY: u8 = 18;
const ADD_ID_CONSTRAINED: u8 = 25;
const CONSTRAIN_LIFETIME: u8 = 1;
/// The longest answer read, as OpenSSH's own client caps it (AGENT_MAX_LEN).
const MAX_ANSWER: usize = 256 << 10;

/// Why the agent did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Socket(#[from] AgentSocketError),
    #[error("the ssh-agent refused to {0} (is it locked? `ssh-add -X` unlocks it)")]
    Refused(&'static str),
    #[error("the ssh-agent could not be asked to {what}: {reason}")]
    Talk { what: &'static str, reason: String },
    #[error("the certificate cannot be given to the ssh-agent: {0}")]
    Cert(String),
    #[error("the key {path} cannot be read: {reason}")]
    Key { path: String, reason: String },
    #[error("the key type {0} cannot be given to an ssh-agent by cfaccess")]
    KeyType(String),
}

impl AgentError {
    /// Whether there simply is no agent (as opposed to one that failed).
    pub fn is_absent(&self) -> bool {
        matches!(self, AgentError::Socket(AgentSocketError::NotSet))
    }
}

/// A connection to the running agent.
pub struct Agent {
    stream: Box<dyn Stream>,
}

/// One identity the agent holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// The public key or certificate, as the agent encodes it.
    pub blob: Vec<u8>,
    pub comment: String,
}

impl Agent {
    /// Connects to the agent `SSH_AUTH_SOCK` names.
    pub fn connect() -> Result<Agent, AgentError> {
        let stream = agent_socket::connect(crate::limits::AGENT)?;
        Ok(Agent { stream })
    }

    /// Every identity the agent holds.
    pub fn identities(&mut self) -> Result<Vec<Held>, AgentError> {
        const WHAT: &str = "list its keys";
        let answer = self.ask(WHAT, &[REQUEST_IDENTITIES])?;
        let bad = || talk(WHAT, "its answer is not a list of keys");
        let mut r = Reader(&answer);
        if r.byte().ok_or_else(bad)? != IDENTITIES_ANSWER {
            return Err(refused_or(WHAT, answer[0]));
        }
        let count = r.u32().ok_or_else(bad)?;
        let mut held = Vec::new();
        for _ in 0..count {
            let blob = r.string().ok_or_else(bad)?.to_vec();
            let comment = String::from_utf8_lossy(r.string().ok_or_else(bad)?).into_owned();
            held.push(Held { blob, comment });
        }
        Ok(held)
    }

    /// Whether the agent holds exactly `cert` under `comment`.
    pub fn holds(&mut self, cert: &Certificate, comment: &str) -> Result<bool, AgentError> {
        let blob = cert_blob(cert)?;
        Ok(self
            .identities()?
            .iter()
            .any(|held| held.comment == comment && held.blob == blob))
    }

    /// Puts `cert` (with its private key from `key_path`) into the agent for
    /// `lifetime_s` seconds under the key's path as its comment, after
    /// taking out whatever the agent held under that comment (the previous
    /// certificate of the host). Returns how many were taken out.
    pub fn replace(
        &mut self,
        key_path: &Path,
        cert: &Certificate,
        lifetime_s: u32,
    ) -> Result<usize, AgentError> {
        let comment = comment_for(key_path);
        let private = private_half(key_path)?;
        let removed = self.remove_where(|held| held.comment == comment)?;
        // SSH_AGENTC_ADD_ID_CONSTRAINED: the certificate's type and blob,
        // the private key's own fields, the comment, then the lifetime
        let mut msg = Zeroizing::new(vec![ADD_ID_CONSTRAINED]);
        put_string(&mut msg, cert.algorithm().to_certificate_type().as_bytes());
        put_string(&mut msg, &cert_blob(cert)?);
        msg.extend_from_slice(&private);
        put_string(&mut msg, comment.as_bytes());
        msg.push(CONSTRAIN_LIFETIME);
        msg.extend_from_slice(&lifetime_s.max(1).to_be_bytes());
        self.expect_success("add the certificate", &msg)?;
        Ok(removed)
    }

    /// Takes out every identity `pick` chooses; returns how many.
    pub fn remove_where(&mut self, pick: impl Fn(&Held) -> bool) -> Result<usize, AgentError> {
        let mut removed = 0;
        for held in self.identities()?.into_iter().filter(|h| pick(h)) {
            let mut msg = vec![REMOVE_IDENTITY];
            put_string(&mut msg, &held.blob);
            self.expect_success("remove a certificate", &msg)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn expect_success(&mut self, what: &'static str, msg: &[u8]) -> Result<(), AgentError> {
        let answer = self.ask(what, msg)?;
        match answer[0] {
            SUCCESS => Ok(()),
            other => Err(refused_or(what, other)),
        }
    }

    /// Sends one message and reads the answer (never empty).
    fn ask(&mut self, what: &'static str, msg: &[u8]) -> Result<Vec<u8>, AgentError> {
        let io = |e: std::io::Error| talk(what, &e.to_string());
        let len = u32::try_from(msg.len()).map_err(|_| talk(what, "the message is too long"))?;
        let mut framed = Zeroizing::new(Vec::with_capacity(4 + msg.len()));
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(msg);
        self.stream.write_all(&framed).map_err(io)?;
        self.stream.flush().map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_ANSWER {
            return Err(talk(what, &format!("it answered a message of {len} bytes")));
        }
        let mut answer = vec![0u8; len];
        self.stream.read_exact(&mut answer).map_err(io)?;
        Ok(answer)
    }
}

/// The comment cfaccess gives the identity of the key at `key_path`.
pub fn comment_for(key_path: &Path) -> String {
    key_path.to_string_lossy().into_owned()
}

/// Whether `comment` names a key of cfaccess in the config dir `dir`
/// (`<dir>/<stem>-cf_key`), so that `logout` takes out only its own.
pub fn is_ours_in(comment: &str, dir: &Path) -> bool {
    let Some(name) = Path::new(comment)
        .parent()
        .filter(|parent| *parent == dir)
        .and(Path::new(comment).file_name())
    else {
        return false;
    };
    name.to_string_lossy().ends_with("-cf_key")
}

/// The private key's fields at `path` as the agent protocol carries them
/// after a certificate (PROTOCOL.certkeys): ECDSA, `mpint d`; Ed25519,
/// `string public, string private||public`.
fn private_half(path: &Path) -> Result<Zeroizing<Vec<u8>>, AgentError> {
    let err = |reason: String| AgentError::Key {
        path: path.display().to_string(),
        reason,
    };
    let text = crate::platform::read::read_capped_string(path, crate::limits::SSH_FILE)
        .map_err(|e| err(e.to_string()))?;
    let text = Zeroizing::new(text);
    let key = PrivateKey::from_openssh(text.trim()).map_err(|e| err(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::new());
    match key.key_data() {
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { private, .. }) => {
            put_mpint(&mut out, private.as_slice())
        }
        KeypairData::Ed25519(pair) => {
            put_string(&mut out, pair.public.as_ref());
            put_string(&mut out, Zeroizing::new(pair.to_bytes()).as_ref());
        }
        other => {
            return Err(AgentError::KeyType(
                other
                    .algorithm()
                    .map_or("unknown".into(), |a| a.to_string()),
            ));
        }
    }
    Ok(out)
}

fn cert_blob(cert: &Certificate) -> Result<Vec<u8>, AgentError> {
    cert.to_bytes().map_err(|e| AgentError::Cert(e.to_string()))
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // every string here is a key, a certificate or a path: far below 4 GiB
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A positive big-endian integer as an SSH `mpint` (RFC 4251 section 5):
/// no leading zero bytes, except one when the top bit is set.
fn put_mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = &bytes[start..];
    let pad = digits.first().is_some_and(|b| b & 0x80 != 0);
    out.extend_from_slice(&((digits.len() + usize::from(pad)) as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

/// Reads the fields of an agent's answer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn talk(what: &'static str, reason: &str) -> AgentError {
    AgentError::Talk {
        what,
        reason: reason.to_owned(),
    }
}

/// SSH_AGENT_FAILURE is how an agent says no: locked, or a key it will not
/// take. Anything else is an answer that makes no sense here.
fn refused_or(what: &'static str, answer: u8) -> AgentError {
    if answer == FAILURE {
        AgentError::Refused(what)
    } else {
        talk(what, &format!("it answered message {answer}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpints_are_minimal_and_positive() {
        let mpint = |b: &[u8]| {
            let mut out = Vec::new();
            put_mpint(&mut out, b);
            out
        };
        assert_eq!(mpint(&[0x00, 0x7f, 0x01]), [0, 0, 0, 2, 0x7f, 0x01]);
        assert_eq!(mpint(&[0x80, 0x01]), [0, 0, 0, 3, 0, 0x80, 0x01]);
        assert_eq!(mpint(&[0, 0]), [0, 0, 0, 0]);
    }

    #[test]
    fn answers_are_read_field_by_field_and_short_ones_refused() {
        let mut answer = vec![IDENTITIES_ANSWER, 0, 0, 0, 1];
        put_string(&mut answer, b"blob");
        put_string(&mut answer, b"/c/h-cf_key");
        let mut r = Reader(&answer);
        assert_eq!(r.byte(), Some(IDENTITIES_ANSWER));
        assert_eq!(r.u32(), Some(1));
        assert_eq!(r.string(), Some(&b"blob"[..]));
        assert_eq!(r.string(), Some(&b"/c/h-cf_key"[..]));
        assert_eq!(r.byte(), None);
        let mut short = Reader(&[0, 0, 0, 9, 1, 2]);
        assert_eq!(short.string(), None);
    }

    #[test]
    fn only_our_keys_in_this_dir_are_ours() {
        let dir = Path::new("/home/me/.cloudflared");
        assert!(is_ours_in(
            "/home/me/.cloudflared/ssh.example.com-cf_key",
            dir
        ));
        assert!(!is_ours_in("/home/me/other/ssh.example.com-cf_key", dir));
        assert!(!is_ours_in("/home/me/.cloudflared/id_ed25519", dir));
        assert!(!is_ours_in("me@laptop", dir));
        assert!(!is_ours_in("", dir));
    }
}
