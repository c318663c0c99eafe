//! SSH: each app's CA and `cert_sign`, the SSH command logs of relayed
//! sessions (`logs`), the edge as SSH client of an app's origin (`origin`),
//! the browser terminal on top of it (`terminal`, `page`), and audited ssh
//! (`audit`).

pub(crate) mod audit;
pub mod ca;
pub(crate) mod cert_sign;
pub mod logs;
pub(crate) mod origin;
pub(crate) mod page;
pub(crate) mod terminal;
