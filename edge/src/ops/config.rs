//! The edge's configuration: the team, its apps and their policies, the
//! identities the login page offers, service tokens and token lifetimes.
//!
//! It is a TOML file (`--config FILE`). Unknown keys are refused by name, and
//! every error is one line naming the file and, for a syntax error, the line:
//! a typo in a policy must never silently open an app.
//!
//! ```toml
//! team = "acme"                      # acme.cloudflareaccess.com
//! # auth_domain = "acme.cloudflareaccess.com"   (instead of team)
//! # fedramp = true                   # acme.fed.cloudflareaccess.com
//! identities = ["alice@acme.test", "bob@acme.test"]   # offered on the login page
//! app_token_lifetime = "24h"
//! org_token_lifetime = "24h"
//! ssh_cert_validity = "3m"           # how long cert_sign's certificates last
//!
//! [[apps]]
//! hostname = "ssh.acme.test"         # or "*.acme.test"
//! # aud = "…"                        # else generated and kept in the state dir
//! allow = ["*@acme.test"]            # "alice@acme.test", "*@acme.test" or "*"
//! service_tokens = ["ci"]
//! origin = "127.0.0.1:22"            # where the websocket carrier connects
//!
//! [[apps]]
//! hostname = "jump.acme.test"        # a bastion: the client names the destination
//! allow = ["*@acme.test"]
//! destinations = ["10.0.0.5:22", "db.internal:5432"]   # or ["*"]
//!
//! [[service_tokens]]
//! name = "ci"
//! client_id = "0123abcd.access"
//! client_secret = "s3cret"
//! ```
//!
//! The Cloudflare API the edge serves at `api.cloudflare.com`
//! (docs/protocol.md 11) takes these (top-level keys go before the first
//! `[[…]]` table, as TOML wants):
//!
//! ```toml
//! account_id = "0123456789abcdef0123456789abcdef"   # 32 hex; else generated, kept in DIR/account-id
//!
//! [[apps]]
//! hostname = "ssh.acme.test"
//! name = "SSH"                       # the app's name in the API (default: the hostname)
//! zone_id = "fedcba9876543210fedcba9876543210"  # a zone-level app: only under /zones/{zone_id}/
//! ssh_log_public_key = "…"           # log its terminal sessions, sealed for this key (ssh-logs keygen)
//!
//! [[api_tokens]]                     # Authorization: Bearer <token>
//! name = "deploy"
//! token = "…"
//! permission = "edit"                # "read": list and read; "edit": also POST and DELETE
//! # expires = "2030-01-01T00:00:00Z" # RFC 3339; an expired token is refused like a bad one
//!
//! [[api_keys]]                       # the legacy Global API Key: X-Auth-Email + X-Auth-Key
//! email = "admin@acme.test"
//! key = "…"                          # may edit
//! ```
//!
//! With neither `api_tokens` nor `api_keys`, the edge makes one token that
//! may edit, keeps it in `DIR/api-token` and writes it into its edge profile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::policy::{EmailPattern, is_valid_domain, is_valid_email};

/// The suffix every auth domain has: clients refuse any other.
pub const AUTH_DOMAIN_SUFFIX: &str = ".cloudflareaccess.com";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Team name: the auth domain is `<team>.cloudflareaccess.com`
    /// (`<team>.fed.cloudflareaccess.com` with `fedramp`). Default `demo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The auth domain itself, instead of `team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_domain: Option<String>,
    /// FedRAMP names: `<team>.fed.cloudflareaccess.com` and the login service
    /// `login.fed.cloudflareaccess.org`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fedramp: bool,
    /// Identities the login page offers to pick (one may also be typed).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Lifetime of app tokens (humantime: `24h`, `15m`, `90s`).
    #[serde(default = "default_lifetime", with = "humantime_str")]
    pub app_token_lifetime: Duration,
    /// Lifetime of org tokens.
    #[serde(default = "default_lifetime", with = "humantime_str")]
    pub org_token_lifetime: Duration,
    /// How long the SSH certificates of `cert_sign` are valid (whole
    /// seconds): minutes, like the real service's.
    #[serde(default = "default_cert_validity", with = "humantime_str")]
    pub ssh_cert_validity: Duration,
    /// The Access applications.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Service tokens that apps may allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_tokens: Vec<ServiceTokenConfig>,
    /// The account id of the Cloudflare API (32 hex digits); generated once
    /// and kept in the state dir when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// API tokens for the Cloudflare API (`Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_tokens: Vec<ApiTokenConfig>,
    /// Legacy Global API Keys (`X-Auth-Email` + `X-Auth-Key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConfig>,
}

/// One Access application (`[[apps]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The host it protects; `*.example.test` protects every name under it.
    pub hostname: String,
    /// Its audience tag; generated (64 hex digits) and kept in the state dir
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Email patterns allowed in: `alice@x.com`, `*@x.com`, `*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names of the service tokens allowed in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_tokens: Vec<String>,
    /// The TCP origin (`HOST:PORT`) that the websocket carrier connects to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// For a bastion app: the destinations (`HOST:PORT`, or `*` for any) a
    /// client may ask for with `Cf-Access-Jump-Destination`. With an `origin`
    /// too, the origin is where a request naming no destination goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Its name in the Cloudflare API (default: the hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The zone (32 hex digits) of a zone-level app: the API lists it only
    /// under `/zones/{zone_id}/`, other apps only under
    /// `/accounts/{account_id}/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// Record every terminal session the edge relays for this app, sealed
    /// for this HPKE public key (base64, `access-edge ssh-logs keygen`), in
    /// `<state dir>/ssh-logs` (docs/protocol.md 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_log_public_key: Option<String>,
    /// `"ssh"`: a browser at the app's `/` gets a terminal on its origin
    /// (docs/protocol.md 13), as Cloudflare's browser rendering does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_rendering: Option<BrowserRendering>,
}

/// What an app renders in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowserRendering {
    /// A terminal on the app's SSH origin.
    Ssh,
}

/// A service token (`[[service_tokens]]`): what a client sends as
/// `Cf-Access-Client-Id` and `Cf-Access-Client-Secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTokenConfig {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ServiceTokenConfig {
    // The secret stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenConfig")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What an API token may do with Access apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiPermission {
    /// List apps and read their CAs.
    Read,
    /// Read, and also create and delete CAs.
    Edit,
}

/// An API token of the Cloudflare API (`[[api_tokens]]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    pub name: String,
    /// What a client sends as `Authorization: Bearer <token>`.
    pub token: String,
    pub permission: ApiPermission,
    /// When it stops working (RFC 3339, like `2030-01-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl std::fmt::Debug for ApiTokenConfig {
    // The token stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokenConfig")
            .field("name", &self.name)
            .field("permission", &self.permission)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A legacy Global API Key (`[[api_keys]]`): it may edit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// What a client sends as `X-Auth-Email`.
    pub email: String,
    /// What a client sends as `X-Auth-Key`.
    pub key: String,
}

impl std::fmt::Debug for ApiKeyConfig {
    // The key stays out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Whether `text` is `len` hex digits (either case).
pub(crate) fn is_hex_id(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// A configuration that cannot be used: one line, naming the file and, for a
/// syntax error, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    fn render(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{}:{line}: {}", file.display(), self.message),
            (Some(file), None) => format!("{}: {}", file.display(), self.message),
            (None, Some(line)) => format!("config line {line}: {}", self.message),
            (None, None) => format!("config: {}", self.message),
        }
    }
}

fn default_lifetime() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// The validity of the one real certificate on record (docs/protocol.md 7.6).
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(180);

fn default_cert_validity() -> Duration {
    DEFAULT_CERT_VALIDITY
}

impl Default for Config {
    fn default() -> Self {
        Config {
            team: None,
            auth_domain: None,
            fedramp: false,
            identities: Vec::new(),
            app_token_lifetime: default_lifetime(),
            org_token_lifetime: default_lifetime(),
            ssh_cert_validity: default_cert_validity(),
            apps: Vec::new(),
            service_tokens: Vec::new(),
            account_id: None,
            api_tokens: Vec::new(),
            api_keys: Vec::new(),
        }
    }
}

impl Config {
    /// The zero-config demo: team `demo` and the app `ssh.demo.test`, open to
    /// `*@example.com`, whose login page offers `<unix user>@example.com` and
    /// `alice@example.com`, with the origin `127.0.0.1:22`.
    pub fn demo() -> Self {
        let me = format!("{}@example.com", unix_user());
        let mut identities = vec![me];
        if identities[0] != "alice@example.com" {
            identities.push("alice@example.com".into());
        }
        Config {
            team: Some("demo".into()),
            identities,
            apps: vec![AppConfig {
                hostname: "ssh.demo.test".into(),
                aud: None,
                allow: vec!["*@example.com".into()],
                service_tokens: Vec::new(),
                origin: Some("127.0.0.1:22".into()),
                destinations: Vec::new(),
                name: None,
                zone_id: None,
                ssh_log_public_key: None,
                browser_rendering: Some(BrowserRendering::Ssh),
            }],
            ..Config::default()
        }
    }

    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(path))?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The copy of the config an edge keeps in its state dir, if there is
    /// one, and its path: what a restart with the same state dir serves.
    pub fn load_kept(state_dir: &Path) -> Result<Option<(Self, PathBuf)>, ConfigError> {
        let path = state_dir.join(crate::ops::state::files::CONFIG);
        if !path.is_file() {
            return Ok(None);
        }
        Self::load(&path).map(|config| Some((config, path)))
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|b| **b == b'\n').count() + 1
            });
            ConfigError {
                file: None,
                line,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML, as kept in the state dir.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::new(format!("cannot write as TOML: {e}")))
    }

    /// The auth domain the config names (lower case).
    pub fn resolved_auth_domain(&self) -> String {
        match (&self.auth_domain, &self.team) {
            (Some(domain), _) => domain.trim().trim_end_matches('.').to_ascii_lowercase(),
            (None, team) => {
                let team = team
                    .as_deref()
                    .unwrap_or("demo")
                    .trim()
                    .to_ascii_lowercase();
                if self.fedramp {
                    format!("{team}.fed{AUTH_DOMAIN_SUFFIX}")
                } else {
                    format!("{team}{AUTH_DOMAIN_SUFFIX}")
                }
            }
        }
    }

    /// Checks everything a parse cannot: names, patterns, references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.team.is_some() && self.auth_domain.is_some() {
            return Err(ConfigError::new(
                "set either `team` or `auth_domain`, not both",
            ));
        }
        if let Some(team) = &self.team
            && (!is_valid_domain(team) || team.contains('.'))
        {
            return Err(ConfigError::new(format!(
                "team {team:?} is not a valid name (letters, digits and '-')"
            )));
        }
        let auth_domain = self.resolved_auth_domain();
        if !auth_domain.ends_with(AUTH_DOMAIN_SUFFIX) || !is_valid_domain(&auth_domain) {
            return Err(ConfigError::new(format!(
                "auth_domain {auth_domain:?} must be a name ending with {AUTH_DOMAIN_SUFFIX} (clients refuse any other)"
            )));
        }
        for identity in &self.identities {
            if !is_valid_email(identity) {
                return Err(ConfigError::new(format!(
                    "identities: {identity:?} is not an email address"
                )));
            }
        }
        for (what, lifetime) in [
            ("app_token_lifetime", self.app_token_lifetime),
            ("org_token_lifetime", self.org_token_lifetime),
        ] {
            if lifetime.is_zero() {
                return Err(ConfigError::new(format!("{what} must be longer than 0s")));
            }
        }
        // Certificates count whole seconds.
        if self.ssh_cert_validity.as_secs() == 0 {
            return Err(ConfigError::new(
                "ssh_cert_validity must be at least 1s (real certificates last minutes, like \"3m\")",
            ));
        }
        self.validate_service_tokens()?;
        self.validate_api()?;
        self.validate_apps(&auth_domain)
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.account_id
            && !is_hex_id(id.trim(), 32)
        {
            return Err(ConfigError::new(format!(
                "account_id {id:?} must be 32 hex digits, like Cloudflare's account ids"
            )));
        }
        let mut names = BTreeSet::new();
        let mut values = BTreeSet::new();
        for token in &self.api_tokens {
            let name = &token.name;
            if name.trim().is_empty() {
                return Err(ConfigError::new("api_tokens: a token has an empty name"));
            }
            if !names.insert(name.as_str()) {
                return Err(ConfigError::new(format!(
                    "api token {name:?} is defined twice"
                )));
            }
            if !is_header_secret(&token.token) {
                return Err(ConfigError::new(format!(
                    "api token {name:?}: token must be visible ASCII with no spaces (Cloudflare's are 40 of A-Z, a-z, 0-9, '-', '_')"
                )));
            }
            if !values.insert(token.token.as_str()) {
                return Err(ConfigError::new(format!(
                    "api token {name:?}: its token is used by another token"
                )));
            }
            if let Some(expires) = &token.expires
                && humantime::parse_rfc3339(expires.trim()).is_err()
            {
                return Err(ConfigError::new(format!(
                    "api token {name:?}: expires {expires:?} is not an RFC 3339 time like \"2030-01-01T00:00:00Z\""
                )));
            }
        }
        let mut emails = BTreeSet::new();
        for key in &self.api_keys {
            let email = &key.email;
            if !is_valid_email(email) {
                return Err(ConfigError::new(format!(
                    "api_keys: {email:?} is not an email address"
                )));
            }
            if !emails.insert(email.to_ascii_lowercase()) {
                return Err(ConfigError::new(format!(
                    "api key of {email:?} is defined twice"
                )));
            }
            if !is_header_secret(&key.key) {
                return Err(ConfigError::new(format!(
                    "api key of {email:?}: key must be visible ASCII with no spaces"
                )));
            }
        }
        Ok(())
    }

    fn validate_service_tokens(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for token in &self.service_tokens {
            let name = &token.name;
            if name.trim().is_empty() {
                return Err(ConfigError::new(
                    "service_tokens: a token has an empty name",
                ));
            }
            if token.client_id.trim().is_empty() || token.client_secret.is_empty() {
                return Err(ConfigError::new(format!(
                    "service token {name:?}: client_id and client_secret must not be empty"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(ConfigError::new(format!(
                    "service token {name:?} is defined twice"
                )));
            }
            if !ids.insert(token.client_id.as_str()) {
                return Err(ConfigError::new(format!(
                    "service token {name:?}: its client_id is used by another token"
                )));
            }
        }
        Ok(())
    }

    fn validate_apps(&self, auth_domain: &str) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            return Err(ConfigError::new(
                "no [[apps]]: add at least one, with a hostname",
            ));
        }
        let reserved = [
            auth_domain.to_owned(),
            crate::site::LOGIN_SERVICE.to_owned(),
            crate::site::LOGIN_SERVICE_FED.to_owned(),
            crate::site::API_HOST.to_owned(),
        ];
        let mut hostnames = BTreeSet::new();
        let mut auds = BTreeSet::new();
        for app in &self.apps {
            let host = app
                .hostname
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            if !is_valid_domain(bare) || !bare.contains('.') {
                return Err(ConfigError::new(format!(
                    "app hostname {:?} is not a host name (like \"ssh.example.test\" or \"*.example.test\", no scheme, port or path)",
                    app.hostname
                )));
            }
            if reserved.contains(&host) {
                return Err(ConfigError::new(format!(
                    "app hostname {host:?} is a name the edge itself serves"
                )));
            }
            if !hostnames.insert(host.clone()) {
                return Err(ConfigError::new(format!(
                    "app hostname {host:?} is configured twice"
                )));
            }
            if let Some(aud) = &app.aud {
                let ok = !aud.is_empty()
                    && aud.len() <= 128
                    && aud
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    return Err(ConfigError::new(format!(
                        "app {host}: aud {aud:?} must be letters, digits, '-' or '_' (real ones are 64 hex digits)"
                    )));
                }
                if !auds.insert(aud.as_str()) {
                    return Err(ConfigError::new(format!(
                        "app {host}: aud {aud:?} is used by another app"
                    )));
                }
            }
            for pattern in &app.allow {
                EmailPattern::parse(pattern)
                    .map_err(|e| ConfigError::new(format!("app {host}: allow: {e}")))?;
            }
            for name in &app.service_tokens {
                if !self.service_tokens.iter().any(|t| &t.name == name) {
                    return Err(ConfigError::new(format!(
                        "app {host}: service token {name:?} is not defined in [[service_tokens]]"
                    )));
                }
            }
            if let Some(origin) = &app.origin {
                check_host_port(origin)
                    .map_err(|e| ConfigError::new(format!("app {host}: origin: {e}")))?;
            }
            if app.browser_rendering.is_some() && app.origin.is_none() {
                return Err(ConfigError::new(format!(
                    "app {host}: browser_rendering = \"ssh\" needs an origin (the sshd's HOST:PORT)"
                )));
            }
            if let Some(name) = &app.name
                && name.trim().is_empty()
            {
                return Err(ConfigError::new(format!(
                    "app {host}: name must not be empty (leave it out to use the hostname)"
                )));
            }
            if let Some(zone) = &app.zone_id
                && !is_hex_id(zone.trim(), 32)
            {
                return Err(ConfigError::new(format!(
                    "app {host}: zone_id {zone:?} must be 32 hex digits, like Cloudflare's zone ids"
                )));
            }
            if let Some(key) = &app.ssh_log_public_key {
                crate::ssh::logs::LogKey::from_base64(key)
                    .map_err(|e| ConfigError::new(format!("app {host}: {e}")))?;
            }
            for destination in &app.destinations {
                if destination != "*" && check_host_port(destination).is_err() {
                    return Err(ConfigError::new(format!(
                        "app {host}: destinations: {destination:?} is not HOST:PORT or \"*\""
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether `text` can be sent as a header value and compared as is: visible
/// ASCII, no spaces, not empty.
fn is_header_secret(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a `HOST:PORT` (IPv6 in brackets).
pub(crate) fn check_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

/// The name of the user running the edge, for the demo identity
/// `<user>@example.com` (the same name `id -un` prints, so that later
/// short-lived SSH certificates name a real Unix account).
pub(crate) fn unix_user() -> String {
    passwd_name()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|name| !name.is_empty() && is_valid_email(&format!("{name}@example.com")))
        .unwrap_or_else(|| "user".into())
}

/// The password database's name for this process's uid.
fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// Durations as humantime strings (`24h`, `90s`).
mod humantime_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"24h\" ({e})"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_valid_and_round_trips_through_toml() {
        let demo = Config::demo();
        demo.validate().unwrap();
        assert_eq!(demo.resolved_auth_domain(), "demo.cloudflareaccess.com");
        let text = demo.to_toml().unwrap();
        assert_eq!(Config::parse(&text).unwrap(), demo);
    }

    #[test]
    fn a_full_config_parses() {
        let config = Config::parse(
            r#"
team = "acme"
fedramp = true
identities = ["alice@acme.test"]
app_token_lifetime = "15m"
ssh_cert_validity = "90s"

[[apps]]
hostname = "*.acme.test"
allow = ["*@acme.test", "bob@other.test"]
service_tokens = ["ci"]
origin = "[::1]:2222"
destinations = ["10.0.0.1:22"]

[[service_tokens]]
name = "ci"
client_id = "abc.access"
client_secret = "xyz"
"#,
        )
        .unwrap();
        assert_eq!(
            config.resolved_auth_domain(),
            "acme.fed.cloudflareaccess.com"
        );
        assert_eq!(config.app_token_lifetime, Duration::from_secs(900));
        assert_eq!(config.org_token_lifetime, Duration::from_secs(86400));
        assert_eq!(config.ssh_cert_validity, Duration::from_secs(90));
        assert_eq!(Config::demo().ssh_cert_validity, Duration::from_secs(180));
        assert_eq!(config.apps[0].hostname, "*.acme.test");
        assert!(!format!("{:?}", config.service_tokens[0]).contains("xyz"));
    }

    #[test]
    fn the_api_keys_parse_round_trip_and_stay_out_of_debug() {
        let config = Config::parse(
            r#"
account_id = "0123456789abcdef0123456789ABCDEF"

[[apps]]
hostname = "ssh.acme.test"
name = "SSH"
zone_id = "fedcba9876543210fedcba9876543210"

[[api_tokens]]
name = "deploy"
token = "s3cret-token"
permission = "edit"
expires = "2030-01-01T00:00:00Z"

[[api_keys]]
email = "admin@acme.test"
key = "s3cret-key"
"#,
        )
        .unwrap();
        assert_eq!(config.api_tokens[0].permission, ApiPermission::Edit);
        assert_eq!(config.apps[0].name.as_deref(), Some("SSH"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_eq!(Config::parse(&config.to_toml().unwrap()).unwrap(), config);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = Config::parse("team = \"x\"\n\n[[apps]]\nhostname = \"a.b\"\nallwo = [\"*\"]\n")
            .unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("allwo"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn semantic_errors_say_what_is_wrong() {
        let cases = [
            ("team = \"a.b\"\n[[apps]]\nhostname = \"x.y\"", "team"),
            (
                "auth_domain = \"x.example.com\"\n[[apps]]\nhostname = \"x.y\"",
                ".cloudflareaccess.com",
            ),
            (
                "team = \"t\"\nauth_domain = \"t.cloudflareaccess.com\"\n[[apps]]\nhostname = \"x.y\"",
                "not both",
            ),
            ("team = \"t\"", "no [[apps]]"),
            ("[[apps]]\nhostname = \"https://x.y\"", "not a host name"),
            ("[[apps]]\nhostname = \"x.y:22\"", "not a host name"),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[apps]]\nhostname = \"X.y\"",
                "twice",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\nallow = [\"bob\"]",
                "not an email pattern",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\nservice_tokens = [\"ci\"]",
                "not defined",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\norigin = \"x.y\"",
                "HOST:PORT",
            ),
            ("[[apps]]\nhostname = \"x.y\"\naud = \"a b\"", "aud"),
            (
                "[[apps]]\nhostname = \"x.y\"\ndestinations = [\"db.internal\"]",
                "destinations",
            ),
            (
                "identities = [\"bob\"]\n[[apps]]\nhostname = \"x.y\"",
                "identities",
            ),
            (
                "app_token_lifetime = \"soon\"\n[[apps]]\nhostname = \"x.y\"",
                "duration",
            ),
            (
                "app_token_lifetime = \"0s\"\n[[apps]]\nhostname = \"x.y\"",
                "longer than 0s",
            ),
            (
                "ssh_cert_validity = \"500ms\"\n[[apps]]\nhostname = \"x.y\"",
                "at least 1s",
            ),
            (
                "[[apps]]\nhostname = \"demo.cloudflareaccess.com\"",
                "edge itself serves",
            ),
            (
                "[[apps]]\nhostname = \"api.cloudflare.com\"",
                "edge itself serves",
            ),
            (
                "account_id = \"abc\"\n[[apps]]\nhostname = \"x.y\"",
                "account_id",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\nzone_id = \"0123456789abcdef0123456789abcdeg\"",
                "zone_id",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\nssh_log_public_key = \"AAAA\"",
                "app x.y: ssh_log_public_key is not an HPKE X25519 public key",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\nname = \" \"",
                "name must not be empty",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"t\"\npermission = \"write\"",
                "unknown variant",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"t\"\npermission = \"read\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"u\"\npermission = \"read\"",
                "defined twice",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"t\"\npermission = \"read\"\n[[api_tokens]]\nname = \"b\"\ntoken = \"t\"\npermission = \"edit\"",
                "used by another token",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"t t\"\npermission = \"read\"",
                "no spaces",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_tokens]]\nname = \"a\"\ntoken = \"t\"\npermission = \"read\"\nexpires = \"tomorrow\"",
                "RFC 3339",
            ),
            (
                "[[apps]]\nhostname = \"x.y\"\n[[api_keys]]\nemail = \"nobody\"\nkey = \"k\"",
                "not an email address",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn an_ssh_log_public_key_from_keygen_is_accepted() {
        let (_, key) = crate::ssh::logs::key::generate();
        let text = format!(
            "[[apps]]\nhostname = \"x.y\"\nssh_log_public_key = \"{}\"\n",
            key.to_base64()
        );
        let config = Config::parse(&text).unwrap();
        let kept = config.apps[0].ssh_log_public_key.as_deref().unwrap();
        assert_eq!(crate::ssh::logs::LogKey::from_base64(kept).unwrap(), key);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, "team = 3\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:1: ", path.display())), "{err}");
        let err = Config::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml: cannot read"), "{err}");
    }

    #[test]
    fn host_port() {
        assert!(check_host_port("127.0.0.1:22").is_ok());
        assert!(check_host_port("[::1]:22").is_ok());
        assert!(check_host_port("db.internal:5432").is_ok());
        assert!(check_host_port("x").is_err());
        assert!(check_host_port("x:0").is_err());
        assert!(check_host_port(":22").is_err());
        assert!(check_host_port("x:99999").is_err());
    }
}
