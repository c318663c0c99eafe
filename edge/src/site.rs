//! The served site: the config resolved into what the edge answers for.
//!
//! Auds are settled here (configured, or generated once and kept in the state
//! dir so that cached tokens stay valid across restarts), patterns are parsed,
//! and the names to serve (and to put in certificates and the edge profile)
//! are listed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::auth::policy::EmailPattern;
use crate::error::EdgeError;
use crate::ops::config::Config;
use crate::ops::state::{StateDir, files};
use crate::ssh::logs::LogKey;

/// The login service (token transfer) name.
pub const LOGIN_SERVICE: &str = "login.cloudflareaccess.org";
/// The FedRAMP login service name; always answered too.
pub const LOGIN_SERVICE_FED: &str = "login.fed.cloudflareaccess.org";
/// Where the Cloudflare API is served (docs/protocol.md 11).
pub const API_HOST: &str = "api.cloudflare.com";

/// Everything the handlers need to know about what is served.
#[derive(Debug)]
pub(crate) struct Site {
    /// `<team>.cloudflareaccess.com`, lower case.
    pub auth_domain: String,
    /// The team's name as shown on pages (the auth domain's first label).
    pub team: String,
    /// The login service this team uses (FedRAMP or not).
    pub login_service: &'static str,
    /// Identities the login page offers.
    pub identities: Vec<String>,
    pub apps: Vec<App>,
    pub service_tokens: Vec<ServiceToken>,
    /// Configured token lifetimes (the edge may change them at run time).
    pub app_token_lifetime: Duration,
    pub org_token_lifetime: Duration,
    /// Configured validity of SSH certificates (changeable at run time too).
    pub cert_validity: Duration,
}

/// One Access application, resolved.
#[derive(Debug)]
pub(crate) struct App {
    /// As configured, lower case; may start with `*.`.
    pub hostname: String,
    pub aud: String,
    /// Its id in the Cloudflare API: a UUID (v5) over the aud, so it stays
    /// the same across restarts as the aud does.
    pub id: String,
    /// Its name in the Cloudflare API.
    pub name: String,
    /// The zone of a zone-level app (lower case hex).
    pub zone_id: Option<String>,
    pub allow: Vec<EmailPattern>,
    /// Names of the service tokens allowed in.
    pub service_tokens: Vec<String>,
    /// The TCP origin the carrier connects to (`HOST:PORT`).
    pub origin: Option<String>,
    /// For a bastion: the allowed jump destinations (`HOST:PORT` or `*`).
    pub destinations: Vec<String>,
    /// Its terminal sessions are logged, sealed for this key.
    pub ssh_log_key: Option<LogKey>,
    /// `browser_rendering = "ssh"`: `/` is a terminal on the origin.
    pub browser_rendering: bool,
}

/// A service token.
#[derive(Clone)]
pub(crate) struct ServiceToken {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Resolves `config`, generating and keeping the auds it leaves out.
    pub fn resolve(config: &Config, state: &StateDir) -> Result<Site, EdgeError> {
        config.validate()?;
        let auth_domain = config.resolved_auth_domain();
        let mut auds: BTreeMap<String, String> = match state.read(files::AUDS)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                EdgeError::state(state.file(files::AUDS), format!("not valid JSON: {e}"))
            })?,
            None => BTreeMap::new(),
        };
        let mut generated = false;
        let mut apps = Vec::new();
        for app in &config.apps {
            let hostname = normalize_app_hostname(&app.hostname);
            let aud = match &app.aud {
                Some(aud) => aud.clone(),
                None => auds
                    .entry(hostname.clone())
                    .or_insert_with(|| {
                        generated = true;
                        hex::encode(rand::random::<[u8; 32]>())
                    })
                    .clone(),
            };
            apps.push(App {
                id: app_id(&aud),
                name: app
                    .name
                    .as_deref()
                    .map_or_else(|| hostname.clone(), |n| n.trim().to_owned()),
                zone_id: app
                    .zone_id
                    .as_deref()
                    .map(|z| z.trim().to_ascii_lowercase()),
                hostname,
                aud,
                allow: app
                    .allow
                    .iter()
                    .filter_map(|p| EmailPattern::parse(p).ok())
                    .collect(),
                service_tokens: app.service_tokens.clone(),
                origin: app.origin.clone(),
                destinations: app.destinations.clone(),
                // Validated with the config: a key that does not parse is
                // refused before the site is built.
                ssh_log_key: app
                    .ssh_log_public_key
                    .as_deref()
                    .and_then(|k| LogKey::from_base64(k).ok()),
                browser_rendering: app.browser_rendering.is_some(),
            });
        }
        if generated {
            let json = serde_json::to_vec_pretty(&auds)
                .map_err(|e| EdgeError::state(state.file(files::AUDS), e))?;
            state.write(files::AUDS, &json, 0o644)?;
        }
        let team = auth_domain
            .split('.')
            .next()
            .unwrap_or(&auth_domain)
            .to_owned();
        Ok(Site {
            login_service: if config.fedramp || auth_domain.ends_with(".fed.cloudflareaccess.com") {
                LOGIN_SERVICE_FED
            } else {
                LOGIN_SERVICE
            },
            auth_domain,
            team,
            identities: config.identities.clone(),
            apps,
            service_tokens: config
                .service_tokens
                .iter()
                .map(|t| ServiceToken {
                    name: t.name.clone(),
                    client_id: t.client_id.clone(),
                    client_secret: t.client_secret.clone(),
                })
                .collect(),
            app_token_lifetime: config.app_token_lifetime,
            org_token_lifetime: config.org_token_lifetime,
            cert_validity: config.ssh_cert_validity,
        })
    }

    /// The index of the app protecting `host` (lower case, no port): an exact
    /// hostname first, then the wildcard with the longest suffix, as Access
    /// does.
    pub fn app_index(&self, host: &str) -> Option<usize> {
        protecting(self.apps.iter().map(|a| a.hostname.as_str()), host)
    }

    /// The app protecting `host` (see [`Site::app_index`]).
    pub fn app_for_host(&self, host: &str) -> Option<&App> {
        self.app_index(host).map(|i| &self.apps[i])
    }

    /// The app with this configured hostname, or else the one protecting it.
    pub fn app_named(&self, hostname: &str) -> Option<&App> {
        named(self.apps.iter().map(|a| a.hostname.as_str()), hostname).map(|i| &self.apps[i])
    }

    /// Whether `host` is one of the login service names.
    pub fn is_login_service(host: &str) -> bool {
        host == LOGIN_SERVICE || host == LOGIN_SERVICE_FED
    }

    /// Every name served: the auth domain, both login service names, the
    /// Cloudflare API, and each app's hostname (wildcards as `*.domain`).
    /// Certificates and the edge profile list exactly these.
    pub fn served_names(&self) -> Vec<String> {
        let mut names = vec![
            self.auth_domain.clone(),
            LOGIN_SERVICE.to_owned(),
            LOGIN_SERVICE_FED.to_owned(),
            API_HOST.to_owned(),
        ];
        names.extend(self.apps.iter().map(|a| a.hostname.clone()));
        names
    }

    /// The service token with this client id.
    pub fn service_token(&self, client_id: &str) -> Option<&ServiceToken> {
        self.service_tokens
            .iter()
            .find(|t| t.client_id == client_id)
    }
}

/// The API id of the app with this aud: a name-based UUID, so that it is
/// stable for as long as the aud is, with nothing more to keep.
fn app_id(aud: &str) -> String {
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:access-edge:access-apps");
    uuid::Uuid::new_v5(&namespace, aud.as_bytes()).to_string()
}

/// An app hostname as the edge keeps it: trimmed, lower case, no final dot.
pub(crate) fn normalize_app_hostname(hostname: &str) -> String {
    hostname.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The index of the hostname (normalized) protecting `host` (lower case, no
/// port): an exact hostname first, then the wildcard with the longest
/// suffix, as Access does.
fn protecting<'a>(hostnames: impl Iterator<Item = &'a str> + Clone, host: &str) -> Option<usize> {
    if let Some(i) = hostnames.clone().position(|h| h == host) {
        return Some(i);
    }
    hostnames
        .enumerate()
        .filter(|(_, h)| cfaccess::access::edge_profile::wildcard_matches(h, host))
        .max_by_key(|(_, h)| h.len())
        .map(|(i, _)| i)
}

/// The index of the hostname (normalized) equal to `name` as configured
/// (`*.x.test` names the wildcard app itself), or else protecting it.
pub(crate) fn named<'a>(
    hostnames: impl Iterator<Item = &'a str> + Clone,
    name: &str,
) -> Option<usize> {
    protecting(hostnames, &normalize_app_hostname(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(text: &str) -> (Site, StateDir) {
        let state = StateDir::open(None).unwrap();
        let config = Config::parse(text).unwrap();
        (Site::resolve(&config, &state).unwrap(), state)
    }

    #[test]
    fn exact_hosts_win_over_wildcards_and_longer_wildcards_win() {
        let (site, _state) = site(
            "[[apps]]\nhostname = \"*.a.test\"\n[[apps]]\nhostname = \"x.a.test\"\n[[apps]]\nhostname = \"*.b.a.test\"\n",
        );
        assert_eq!(site.app_for_host("x.a.test").unwrap().hostname, "x.a.test");
        assert_eq!(site.app_for_host("y.a.test").unwrap().hostname, "*.a.test");
        assert_eq!(
            site.app_for_host("y.b.a.test").unwrap().hostname,
            "*.b.a.test"
        );
        assert!(site.app_for_host("a.test").is_none());
        assert_eq!(site.app_named("*.a.test").unwrap().hostname, "*.a.test");
        assert_eq!(site.app_named("Z.a.test").unwrap().hostname, "*.a.test");
    }

    #[test]
    fn generated_auds_are_64_hex_digits_and_kept() {
        let (first, state) = site(
            "[[apps]]\nhostname = \"x.test\"\n[[apps]]\nhostname = \"y.test\"\naud = \"given\"\n",
        );
        let aud = &first.apps[0].aud;
        assert_eq!(aud.len(), 64);
        assert!(
            aud.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(first.apps[1].aud, "given");
        let config = Config::parse("[[apps]]\nhostname = \"x.test\"\n").unwrap();
        let again = Site::resolve(&config, &state).unwrap();
        assert_eq!(&again.apps[0].aud, aud);
        // the API id follows the aud
        assert_eq!(again.apps[0].id, first.apps[0].id);
        assert_ne!(first.apps[1].id, first.apps[0].id);
        assert_eq!(
            uuid::Uuid::parse_str(&first.apps[0].id)
                .unwrap()
                .get_version_num(),
            5
        );
        assert_eq!(first.apps[0].name, "x.test");
    }

    #[test]
    fn fedramp_uses_the_fed_login_service() {
        let (site, _state) =
            site("team = \"t\"\nfedramp = true\n[[apps]]\nhostname = \"x.test\"\n");
        assert_eq!(site.auth_domain, "t.fed.cloudflareaccess.com");
        assert_eq!(site.login_service, LOGIN_SERVICE_FED);
        assert_eq!(site.team, "t");
        assert_eq!(site.served_names().len(), 5);
        assert!(site.served_names().contains(&API_HOST.to_owned()));
    }
}
