//! SSH: each app's CA and `cert_sign`; the edge as SSH client of an app's
//! origin, the browser terminal on top of it, audited ssh (`audit`), and
//! the command logs of relayed sessions (`logs`).

pub(crate) mod audit;
pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
