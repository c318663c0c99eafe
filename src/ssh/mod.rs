//! The SSH side of Access: keys, the `cert_sign` request for a short-lived
//! certificate (docs/protocol.md section 7), the ssh_config snippet (section 8),
//! and the ssh-agent that can hold the certificate.

pub mod agent;
pub mod cert_sign;
pub mod config;
pub mod install;
pub mod keys;
