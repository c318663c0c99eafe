//! SSH: each app's CA and `cert_sign`; the edge as SSH client of an app's
//! origin, and the browser terminal on top of it.

pub(crate) mod audit;
pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
