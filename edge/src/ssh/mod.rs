//! Short-lived SSH certificates (each app's CA and `cert_sign`) and the
//! SSH command logs of relayed sessions (`logs`).

pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
