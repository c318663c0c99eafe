//! Per-endpoint request counters, so that tests can tell what a client did on
//! the wire (one login page visit for twenty concurrent logins, no request at
//! all on a cache hit) without parsing logs; and the carrier's connection and
//! byte counts, so they can tell that a session ended (none left active) and
//! that every byte went through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What a request asked for, as counted by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Endpoint {
    /// A request on an app host with `cf-access-metadata-request: true`.
    Discovery,
    /// `GET /cdn-cgi/access/certs` on the auth domain.
    Jwks,
    /// `GET /cdn-cgi/access/cli` on an app host (auto-approved ones included).
    LoginPage,
    /// `POST /cdn-cgi/access/cli`: the login form's Approve or Deny.
    LoginSubmit,
    /// `GET /transfer/<key>` on the login service.
    TransferPoll,
    /// `/cdn-cgi/access/login/<app host>` on the auth domain.
    OrgLogin,
    /// `/cdn-cgi/access/authorized` on an app host.
    Authorized,
    /// A request with `cloudflared_token_check=true` on an app host.
    TokenCheck,
    /// Any other request on an app host, authenticated or not.
    AppRequest,
    /// A websocket upgrade asked on an app host, whatever its answer.
    Websocket,
    /// `/cdn-cgi/access/cert_sign` on the auth domain, whatever its answer.
    CertSign,
    /// Any request to the Cloudflare API at `api.cloudflare.com`, whatever
    /// its answer.
    Api,
    /// A request for a host or path the edge does not serve.
    Unknown,
}

impl Endpoint {
    /// Every endpoint, in display order.
    pub const ALL: [Endpoint; 13] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::LoginPage,
        Endpoint::LoginSubmit,
        Endpoint::TransferPoll,
        Endpoint::OrgLogin,
        Endpoint::Authorized,
        Endpoint::TokenCheck,
        Endpoint::AppRequest,
        Endpoint::Websocket,
        Endpoint::CertSign,
        Endpoint::Api,
        Endpoint::Unknown,
    ];

    /// The name used in `access-edge stats` and in the control protocol.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::LoginPage => "login_page",
            Endpoint::LoginSubmit => "login_submit",
            Endpoint::TransferPoll => "transfer_poll",
            Endpoint::OrgLogin => "org_login",
            Endpoint::Authorized => "authorized",
            Endpoint::TokenCheck => "token_check",
            Endpoint::AppRequest => "app_request",
            Endpoint::Websocket => "websocket",
            Endpoint::CertSign => "cert_sign",
            Endpoint::Api => "api",
            Endpoint::Unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        Endpoint::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The counters themselves: one atomic per endpoint.
#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; Endpoint::ALL.len()]);

impl Counters {
    pub fn hit(&self, endpoint: Endpoint) {
        self.0[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, endpoint: Endpoint) -> u64 {
        self.0[endpoint.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> BTreeMap<Endpoint, u64> {
        Endpoint::ALL.iter().map(|e| (*e, self.get(*e))).collect()
    }

    pub fn total(&self) -> u64 {
        Endpoint::ALL.iter().map(|e| self.get(*e)).sum()
    }
}

/// The carrier's counts, as [`crate::Edge::carried`] reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierStats {
    /// Websockets connected to an origin (answered 101) so far.
    pub total: u64,
    /// Those still relaying.
    pub active: u64,
    /// Payload bytes written to origins.
    pub bytes_to_origin: u64,
    /// Payload bytes sent to clients.
    pub bytes_to_client: u64,
}

/// The live carrier counts: atomics bumped by every relay.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    total: AtomicU64,
    active: AtomicU64,
    to_origin: AtomicU64,
    to_client: AtomicU64,
}

impl Carried {
    /// Counts a connection that starts now; it stays active until the guard
    /// is dropped, however its task ends (even aborted).
    pub fn start(self: &Arc<Self>) -> ActiveGuard {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    pub fn to_origin(&self, bytes: usize) {
        self.to_origin.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn to_client(&self, bytes: usize) {
        self.to_client.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CarrierStats {
        CarrierStats {
            total: self.total.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            bytes_to_origin: self.to_origin.load(Ordering::Relaxed),
            bytes_to_client: self.to_client.load(Ordering::Relaxed),
        }
    }
}

/// One active carried connection (see [`Carried::start`]).
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<Carried>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_endpoint_apart() {
        let c = Counters::default();
        c.hit(Endpoint::LoginPage);
        c.hit(Endpoint::LoginPage);
        c.hit(Endpoint::Unknown);
        assert_eq!(c.get(Endpoint::LoginPage), 2);
        assert_eq!(c.get(Endpoint::Unknown), 1);
        assert_eq!(c.get(Endpoint::Jwks), 0);
        assert_eq!(c.total(), 3);
        assert_eq!(c.snapshot().len(), Endpoint::ALL.len());
    }

    #[test]
    fn carried_connections_stay_active_until_their_guard_goes() {
        let carried = Arc::new(Carried::default());
        let first = carried.start();
        let second = carried.start();
        carried.to_origin(10);
        carried.to_client(7);
        drop(first);
        assert_eq!(
            carried.snapshot(),
            CarrierStats {
                total: 2,
                active: 1,
                bytes_to_origin: 10,
                bytes_to_client: 7
            }
        );
        drop(second);
        assert_eq!(carried.snapshot().active, 0);
    }

    #[test]
    fn names_match_the_serde_form() {
        for e in Endpoint::ALL {
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                format!("\"{}\"", e.name())
            );
        }
    }
}
