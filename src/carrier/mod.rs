//! Carrying a TCP stream through Access over a websocket (docs/protocol.md 6):
//! `cfaccess ssh` as an ssh ProxyCommand (stdin/stdout) or as a local
//! listener.
//!
//! [`open`] runs the authentication of 6.2: a first dial (with a cached token
//! when the app info for this host was verified before, which saves the
//! discovery round trips; without one otherwise, as the official client
//! does), and on Access's login redirect: discovery, a token (cached, org
//! token, or browser login), a second dial, and once more with a fresh token
//! if that one is refused too. [`pump`] then carries the bytes.
//!
//! The whole open is bounded by [`limits::CARRIER_OPEN`], not counting the
//! time spent getting a token (a browser login has its own, longer limit),
//! so a listener never keeps a connection whose open went nowhere.

pub mod handshake;
pub mod listener;
pub mod pump;
pub mod transport;

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::access::host::AppUrl;
use crate::access::login_service::Redirect;
use crate::access::{Access, AccessError};
use crate::limits;
use handshake::{DialError, Dialer};
pub use transport::Stream;

/// Where to connect and what to send besides a token.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: AppUrl,
    /// User headers, service token and jump destination, ready to send.
    pub headers: HeaderMap,
    /// A service token is in the headers: never start a user login.
    pub service_token: bool,
}

impl Target {
    /// Whether a refused dial may lead to a user login: not with a service
    /// token, nor with a token the user gave in `-H cf-access-token`.
    fn may_log_in(&self) -> bool {
        !self.service_token && !self.headers.contains_key(handshake::TOKEN_HEADER)
    }

    fn host(&self) -> String {
        self.url.authority()
    }
}

/// Why no websocket could be opened.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("Access refused the connection to {host} ({detail})")]
    Forbidden { host: String, detail: String },
    #[error("the edge could not connect {host} to its server ({detail})")]
    Origin { host: String, detail: String },
    #[error("{host} answered {detail} instead of opening a websocket")]
    NotACarrier { host: String, detail: String },
    #[error("Access did not accept the service token for {host}: it asked for a login")]
    ServiceTokenRefused { host: String },
    #[error("Access did not accept the cf-access-token given with -H for {host}")]
    HeaderTokenRefused { host: String },
    #[error("Access refused a freshly fetched token for {host}")]
    RefusedAgain { host: String },
    #[error("the websocket handshake with {host} failed: {reason}")]
    Handshake { host: String, reason: String },
    #[error("{host} did not answer {step} within {}", limits::show(*.limit))]
    Stalled {
        host: String,
        step: &'static str,
        limit: Duration,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl CarrierError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            CarrierError::Unreachable { reason, .. } if reason.starts_with("TLS") => {
                crate::error::TLS_HINT.into()
            }
            CarrierError::Unreachable { .. } => {
                "check the hostname, your network and any HTTPS_PROXY setting".into()
            }
            CarrierError::Forbidden { .. } => {
                "check the service token or the destination, or ask the app's admin for access"
                    .into()
            }
            CarrierError::Origin { .. } => {
                "the server behind the app may be down; try again, or tell the app's admin".into()
            }
            CarrierError::NotACarrier { host, .. } => {
                format!("check that {host} is an Access application with a TCP service behind it")
            }
            CarrierError::ServiceTokenRefused { .. } => {
                "check --service-token-id and --service-token-secret".into()
            }
            CarrierError::HeaderTokenRefused { .. } => {
                "drop the -H cf-access-token header to log in".into()
            }
            CarrierError::RefusedAgain { .. } => {
                "your identity may not be allowed to use this application".into()
            }
            CarrierError::Stalled { .. } => {
                "the edge or a proxy on the way is not answering; check your network and any HTTPS_PROXY setting, then try again".into()
            }
            CarrierError::Handshake { .. } | CarrierError::Access(_) => return None,
        })
    }

    fn from_dial(e: DialError, target: &Target) -> CarrierError {
        let host = target.host();
        match e {
            DialError::Unreachable(reason) => CarrierError::Unreachable { host, reason },
            DialError::Handshake(reason) => CarrierError::Handshake { host, reason },
            DialError::Stalled => CarrierError::Stalled {
                host,
                step: "the websocket upgrade (TCP connect, TLS handshake, 101)",
                limit: limits::WS_UPGRADE,
            },
            DialError::Refused { status, .. } => {
                let detail = e.to_string();
                match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                        CarrierError::Forbidden { host, detail }
                    }
                    StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => CarrierError::Origin { host, detail },
                    _ => CarrierError::NotACarrier { host, detail },
                }
            }
            DialError::LoginRedirect if target.service_token => {
                CarrierError::ServiceTokenRefused { host }
            }
            DialError::LoginRedirect => CarrierError::HeaderTokenRefused { host },
        }
    }
}

/// What is left of [`limits::CARRIER_OPEN`] for one open.
struct Budget {
    deadline: Instant,
}

impl Budget {
    fn new() -> Self {
        Budget {
            deadline: Instant::now() + limits::CARRIER_OPEN,
        }
    }

    /// Runs a network step of the open within what is left.
    async fn step<T>(
        &self,
        target: &Target,
        f: impl Future<Output = Result<T, CarrierError>>,
    ) -> Result<T, CarrierError> {
        tokio::time::timeout_at(self.deadline, f)
            .await
            .map_err(|_| CarrierError::Stalled {
                host: target.host(),
                step: "the opening of the connection",
                limit: limits::CARRIER_OPEN,
            })?
    }

    /// Runs the getting of a token, whose time is not charged: it may wait
    /// for the user's browser login, which has its own limit.
    async fn uncharged<T>(&mut self, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.deadline += started.elapsed();
        out
    }
}

/// Opens an authenticated websocket to `target`, within
/// [`limits::CARRIER_OPEN`] (logins excepted).
pub async fn open(access: &Access, target: &Target) -> Result<Stream, CarrierError> {
    let mut budget = Budget::new();
    let dialer = if transport::proxied() {
        Dialer::Proxied(access.http().map_err(AccessError::from)?)
    } else {
        Dialer::Direct {
            tls: access.carrier_tls().map_err(AccessError::from)?,
            profile: access.profile(),
        }
    };
    let dialer = &dialer;
    let dial = |token: Option<String>| async move {
        handshake::dial(dialer, &target.url, &target.headers, token.as_deref()).await
    };
    let known = target
        .may_log_in()
        .then(|| access.known_app_info(&target.url))
        .flatten();
    let cached_token = known.as_ref().and_then(|app| access.store().app_token(app));
    match budget
        .step(target, async { Ok(dial(cached_token.clone()).await) })
        .await?
    {
        Ok(ws) => return Ok(ws),
        Err(DialError::LoginRedirect) if target.may_log_in() => {}
        Err(e) => return Err(CarrierError::from_dial(e, target)),
    }

    tracing::debug!(host = %target.host(), "Access asked for a login; finding the app");
    // always a fresh discovery here: the app may have been re-created with
    // another aud since its info was kept, and a login for the old one fails
    let app = budget
        .step(target, async { Ok(access.app_info(&target.url).await?) })
        .await?;
    let token = budget
        .uncharged(access.app_token(&target.url, &app, Redirect::FullUrl))
        .await?;
    // the cached token we just sent was refused: go straight to a fresh one
    if cached_token.as_deref() != Some(token.as_str()) {
        match budget
            .step(target, async { Ok(dial(Some(token)).await) })
            .await?
        {
            Ok(ws) => return Ok(ws),
            Err(DialError::LoginRedirect) => {}
            Err(e) => return Err(CarrierError::from_dial(e, target)),
        }
    }

    tracing::debug!("the edge refused the token; fetching a new one");
    access.forget_app_token(&app)?;
    let token = budget
        .uncharged(access.app_token(&target.url, &app, Redirect::FullUrl))
        .await?;
    match budget
        .step(target, async { Ok(dial(Some(token)).await) })
        .await?
    {
        Ok(ws) => Ok(ws),
        Err(DialError::LoginRedirect) => Err(CarrierError::RefusedAgain {
            host: target.host(),
        }),
        Err(e) => Err(CarrierError::from_dial(e, target)),
    }
}
