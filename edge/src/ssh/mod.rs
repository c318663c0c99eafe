//! SSH: each app's CA and `cert_sign`, the SSH command logs of relayed
//! sessions (`logs`), the edge as SSH client of an app's origin (`origin`)
//! and the browser terminal on top of it (`terminal`, `page`).

pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
pub(crate) mod page;
pub(crate) mod terminal;
