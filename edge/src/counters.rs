//! Per-endpoint request counters, so that tests can tell what a client did on
//! the wire (one login page visit for twenty concurrent logins, no request at
//! all on a cache hit) without parsing logs.

use std::collections::BTreeMap;
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
    /// A request for a host or path the edge does not serve.
    Unknown,
}

impl Endpoint {
    /// Every endpoint, in display order.
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::LoginPage,
        Endpoint::LoginSubmit,
        Endpoint::TransferPoll,
        Endpoint::OrgLogin,
        Endpoint::Authorized,
        Endpoint::TokenCheck,
        Endpoint::AppRequest,
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
    fn names_match_the_serde_form() {
        for e in Endpoint::ALL {
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                format!("\"{}\"", e.name())
            );
        }
    }
}
