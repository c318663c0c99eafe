//! Short-lived SSH certificates: each app's CA and `cert_sign`.

pub(crate) mod audit;
pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
