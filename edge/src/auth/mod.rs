//! Who may use an app: discovery and its signed metadata, the team's keys,
//! the login page, the login service's sealed transfer, single sign-on with
//! the org token, the Access tokens themselves, and the policy.

pub(crate) mod discovery;
pub(crate) mod html;
pub(crate) mod login_nonce;
pub(crate) mod login_page;
pub(crate) mod login_service;
pub(crate) mod org_exchange;
pub(crate) mod policy;
pub(crate) mod signing;
pub(crate) mod tokens;
