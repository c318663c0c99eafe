//! The short-lived certificate in the user's ssh-agent, as `tsh` and
//! `step ssh` put theirs there: `ssh-gen --agent` adds the key with its
//! certificate, for as long as the certificate is valid (`ssh-add -t`, the
//! protocol's lifetime constraint), so agent forwarding (`ssh -A`) carries it
//! to the next hop; `logout` takes it out again.
//!
//! The messages are ssh-agent-lib's (its blocking client over any stream,
//! on the ssh-key 0.6 types the rest of cfaccess uses); the socket is
//! `platform::agent_socket`'s. An identity is cfaccess's when its comment is
//! the private key's path, which is what `ssh-add <key>` would have named it:
//! `ssh-add -l` shows `… /home/me/.cloudflared/ssh.example.com-cf_key
//! (ECDSA-CERT)`. That names the config dir too, so two config dirs (two
//! accounts) each keep their own certificate for the same host.

use std::path::Path;

use ssh_agent_lib::blocking::Client;
use ssh_agent_lib::proto::{
    AddIdentity, AddIdentityConstrained, EcdsaPrivateKey, KeyConstraint, PrivateCredential,
    PrivateKeyData, PublicCredential, RemoveIdentity,
};
use ssh_key::private::{EcdsaKeypair, KeypairData};
use ssh_key::{Certificate, PrivateKey};

use crate::platform::agent_socket::{self, AgentSocketError, Stream};

/// Why the agent did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Socket(#[from] AgentSocketError),
    #[error("the ssh-agent refused to {0} (is it locked? `ssh-add -X` unlocks it)")]
    Refused(&'static str),
    #[error("the ssh-agent could not be asked to {what}: {reason}")]
    Talk { what: &'static str, reason: String },
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
    client: Client<Box<dyn Stream>>,
}

/// One identity the agent holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub credential: PublicCredential,
    pub comment: String,
}

impl Agent {
    /// Connects to the agent `SSH_AUTH_SOCK` names.
    pub fn connect() -> Result<Agent, AgentError> {
        let stream = agent_socket::connect(crate::limits::AGENT)?;
        Ok(Agent {
            client: Client::new(stream),
        })
    }

    /// Every identity the agent holds.
    pub fn identities(&mut self) -> Result<Vec<Held>, AgentError> {
        let list = self
            .client
            .request_identities()
            .map_err(|e| talk("list its keys", e))?;
        Ok(list
            .into_iter()
            .map(|i| Held {
                credential: i.credential,
                comment: i.comment,
            })
            .collect())
    }

    /// Whether the agent holds exactly `cert` under `comment`.
    pub fn holds(&mut self, cert: &Certificate, comment: &str) -> Result<bool, AgentError> {
        Ok(self.identities()?.iter().any(|held| {
            held.comment == comment
                && matches!(&held.credential, PublicCredential::Cert(c) if **c == *cert)
        }))
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
        let privkey = private_key_data(key_path)?;
        let removed = self.remove_where(|held| held.comment == comment)?;
        let add = AddIdentityConstrained {
            identity: AddIdentity {
                credential: PrivateCredential::Cert {
                    algorithm: cert.algorithm(),
                    certificate: Box::new(cert.clone()),
                    privkey,
                    comment,
                },
            },
            constraints: vec![KeyConstraint::Lifetime(lifetime_s.max(1))],
        };
        self.client
            .add_identity_constrained(add)
            .map_err(|e| refused_or("add the certificate", e))?;
        Ok(removed)
    }

    /// Takes out every identity `pick` chooses; returns how many.
    pub fn remove_where(&mut self, pick: impl Fn(&Held) -> bool) -> Result<usize, AgentError> {
        let mut removed = 0;
        for held in self.identities()?.into_iter().filter(|h| pick(h)) {
            self.client
                .remove_identity(RemoveIdentity {
                    credential: held.credential,
                })
                .map_err(|e| refused_or("remove a certificate", e))?;
            removed += 1;
        }
        Ok(removed)
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

/// The private half of the key at `path`, as the agent protocol carries it
/// beside a certificate.
fn private_key_data(path: &Path) -> Result<PrivateKeyData, AgentError> {
    let err = |reason: String| AgentError::Key {
        path: path.display().to_string(),
        reason,
    };
    let text = crate::platform::read::read_capped_string(path, crate::limits::SSH_FILE)
        .map_err(|e| err(e.to_string()))?;
    let key = PrivateKey::from_openssh(text.trim()).map_err(|e| err(e.to_string()))?;
    match key.key_data() {
        KeypairData::Ecdsa(EcdsaKeypair::NistP256 { private, .. }) => Ok(PrivateKeyData::Ecdsa(
            EcdsaPrivateKey::NistP256(private.clone()),
        )),
        KeypairData::Ed25519(pair) => Ok(PrivateKeyData::Ed25519(pair.clone())),
        other => Err(AgentError::KeyType(
            other
                .algorithm()
                .map_or("unknown".into(), |a| a.to_string()),
        )),
    }
}

fn talk(what: &'static str, e: ssh_agent_lib::error::AgentError) -> AgentError {
    AgentError::Talk {
        what,
        reason: e.to_string(),
    }
}

/// The agent answers SSH_AGENT_FAILURE, which the library reports as an
/// unexpected answer, when it will not: a locked agent, a key it cannot use.
fn refused_or(what: &'static str, e: ssh_agent_lib::error::AgentError) -> AgentError {
    use ssh_agent_lib::error::AgentError as E;
    use ssh_agent_lib::proto::ProtoError;
    match e {
        E::Failure | E::Proto(ProtoError::UnexpectedResponse) => AgentError::Refused(what),
        e => talk(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
