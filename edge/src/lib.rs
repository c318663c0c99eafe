//! access-edge: a faithful local stand-in for the Cloudflare Access edge.
//!
//! It answers everything a Cloudflare Access client says on the wire
//! (`docs/protocol.md` sections 2–7) the way the real edge does, over TLS from a
//! local CA, so that cfaccess and the official `cloudflared access` client can
//! run their whole flow with no internet: app discovery, the JWKS, the login
//! page, the login service's sealed transfer, the org-token exchange, the token
//! check, service tokens, the websocket carrier to each app's TCP origin
//! (`cloudflared access ssh` as an ssh `ProxyCommand`), and short-lived SSH
//! certificates from each app's own SSH CA (`cloudflared access ssh-gen`),
//! and the Cloudflare API calls that list the apps and make, read and
//! remove their SSH CAs (section 11).
//!
//! The binary (`access-edge`) is a thin layer over this library. Tests start an
//! edge in-process:
//!
//! ```no_run
//! use access_edge::{Edge, EdgeOptions, Endpoint};
//!
//! // From a plain #[test]: the edge runs on its own runtime thread.
//! let edge = Edge::spawn(EdgeOptions::demo()).expect("edge starts");
//! // Point a client at it: CFACCESS_EDGE=<profile>, BROWSER=<browser>.
//! println!("{} {}", edge.profile_path().display(), edge.browser_path().display());
//! // … run the client …
//! assert_eq!(edge.count(Endpoint::LoginPage), 0);
//! edge.shutdown();
//! ```
//!
//! Generating the two RSA signing keys of a fresh state dir takes seconds in
//! a debug build. A suite that starts many edges can make one state dir once
//! and seed the others from it with [`copy_secrets`].
//!
//! Module map, by layer (each file named after the protocol noun it serves):
//! `front` (TLS, accept, router, app host), `auth` (discovery, keys, login,
//! tokens, policy), `carrier`, `ssh` (CA, `cert_sign`) and `ops` (config,
//! state dir, control socket, faults, counters, profile, browser helper).
//! [`config`] reads the TOML config; `site` resolves it into the served
//! names; `state` keeps the state dir; `tls` is the local CA and SNI;
//! `signing` holds the JWT keys and the JWKS; `tokens` mints and verifies
//! Access tokens; `router` routes on the Host; `discovery` answers
//! unauthenticated requests; `app_host` serves requests on an app host;
//! `carrier` answers its websocket upgrades, `destination` picks the origin
//! (or bastion destination) and `relay` pumps the bytes;
//! `login_page` and `html` are the browser login, and `login_nonce` binds
//! a form's post to the page served for it; `login_service` is the
//! sealed transfer long poll; `org_exchange` is single sign-on with the org
//! token; [`ssh_ca`] keeps each app's SSH CA and `cert_sign` issues its
//! certificates; `control` is the operator socket; `counters` and `faults`
//! are for tests (and `access-edge fault`); [`browse`] is the headless
//! browser; `profile` writes the edge profile; `limits` holds every deadline
//! and size cap the edge imposes on its clients, and `accept` enforces the
//! connection-level ones.

mod api;
pub mod auth;
pub mod carrier;
mod edge;
mod error;
pub mod front;
mod limits;
pub mod ops;
mod site;
pub mod ssh;

pub use ops::browse;
pub use ops::config;
pub use ops::control;
pub use ssh::ca as ssh_ca;

pub use auth::policy::{EmailPattern, is_valid_email};
pub use auth::tokens::AccessClaims;
pub use config::{
    ApiKeyConfig, ApiPermission, ApiTokenConfig, AppConfig, Config, ConfigError, ServiceTokenConfig,
};
pub use edge::{DEFAULT_POLL_HOLD, Edge, EdgeOptions};
pub use error::EdgeError;
pub use front::accept::Timeouts;
pub use ops::counters::{CarrierStats, Endpoint};
pub use ops::faults::{ApiFault, CertSignFault, MetadataFault};
pub use ops::profile::shell_word;
pub use ops::state::copy_secrets;
pub use ssh::ca::CaKeyType;
