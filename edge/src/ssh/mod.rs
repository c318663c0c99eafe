//! Short-lived SSH certificates: each app's CA and `cert_sign`.

pub mod ca;
pub(crate) mod cert_sign;
