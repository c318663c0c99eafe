//! The HTTP front: TLS from the local CA with a certificate per name, the
//! accept loop, and the router that sends each request by its `Host` to the
//! app host, the team's auth domain or the login service.

pub mod accept;
pub(crate) mod app_host;
pub(crate) mod router;
pub(crate) mod tls;
