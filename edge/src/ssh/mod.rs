//! SSH: each app's CA and `cert_sign`; the edge as SSH client of an app's
//! origin, the browser terminal on top of it, and the SSH command logs of
//! the sessions it relays (`logs`).

pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
pub(crate) mod page;
pub(crate) mod terminal;
