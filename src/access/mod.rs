//! The Access protocol client, and getting an app token (docs/protocol.md
//! sections 4 and 5): the cache, then the lock, then single sign-on with the org token, then the browser.
//!
//! [`Access`] holds what every command shares: one HTTP client, the token
//! store, and the login options. Within one process only one login runs at a
//! time (a listener may need tokens for several connections at once); across
//! processes the lock files do the same job.

pub mod app_info;
pub mod config_dir;
pub mod edge_profile;
pub mod host;
pub mod http;
pub mod jwks;
pub mod jwt;
pub mod lock;
pub mod login_service;
pub mod org_exchange;
pub mod token_check;
pub mod token_store;

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::debug;

use self::app_info::{AppInfo, AppInfoError};
use self::config_dir::{ConfigDir, ConfigDirError};
use self::edge_profile::EdgeProfile;
use self::host::AppUrl;
use self::http::HttpError;
use self::lock::{Acquired, LockError};
use self::login_service::{LoginError, LoginRequest, Redirect};
use self::token_check::CheckError;
use self::token_store::{StoreError, TokenStore};
use crate::limits;
use crate::platform::browser::{self, Outcome};
use crate::platform::desktop::{self, Desktop};
use crate::platform::terminal;
use crate::ui::qr::{self, QrChoice};
use crate::ui::wait;

/// How a browser login, when one is needed, is run.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginOptions {
    /// Ask the login page to close itself when done.
    pub auto_close: bool,
    /// Use the FedRAMP login service.
    pub fedramp: bool,
    /// Only print the URL; do not start a browser.
    pub no_browser: bool,
    /// Whether to draw the login URL as a QR code.
    pub qr: QrChoice,
}

/// Why no usable app token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    AppInfo(#[from] AppInfoError),
    #[error(transparent)]
    ConfigDir(#[from] ConfigDirError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("cannot delete the refused token {path}: {source}")]
    Remove {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the edge refused a freshly fetched token for {url}")]
    RefusedAgain { url: String },
    /// `CFACCESS_LOGIN_WAIT` is not a wait cfaccess can keep.
    #[error("{0}")]
    LoginWait(String),
}

/// The shared context of the commands that talk to Access.
pub struct Access {
    /// Built on first use: loading the trust roots costs milliseconds that
    /// the offline fast paths (`token`, a valid certificate) do not need.
    http: OnceLock<reqwest::Client>,
    /// The TLS settings of the carrier's own connections, built on first use.
    carrier_tls: OnceLock<Arc<rustls::ClientConfig>>,
    profile: Option<EdgeProfile>,
    store: TokenStore,
    options: LoginOptions,
    one_login: tokio::sync::Mutex<()>,
    /// The URLs (by key stem) discovered afresh in this process: the app
    /// info for those is as new as it gets.
    discovered: std::sync::Mutex<Vec<String>>,
}

impl Access {
    pub fn new(profile: Option<EdgeProfile>, dir: ConfigDir, options: LoginOptions) -> Self {
        Access {
            http: OnceLock::new(),
            carrier_tls: OnceLock::new(),
            profile,
            store: TokenStore::new(dir),
            options,
            one_login: tokio::sync::Mutex::new(()),
            discovered: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The HTTP client, built now if it was not yet.
    pub fn http(&self) -> Result<&reqwest::Client, HttpError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = http::client(self.profile.as_ref())?;
        Ok(self.http.get_or_init(|| client))
    }

    /// The TLS settings of the carrier's own connections
    /// (`carrier::transport`), built now if they were not yet.
    pub fn carrier_tls(&self) -> Result<&Arc<rustls::ClientConfig>, HttpError> {
        if let Some(tls) = self.carrier_tls.get() {
            return Ok(tls);
        }
        let tls = Arc::new(http::tls_config(self.profile.as_ref())?);
        Ok(self.carrier_tls.get_or_init(|| tls))
    }

    /// The edge profile in use, if any.
    pub fn profile(&self) -> Option<&EdgeProfile> {
        self.profile.as_ref()
    }

    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// Finds and checks the application behind `url` (section 2), and
    /// remembers it for [`Access::known_app_info`]. When the app now answers
    /// with another aud than the one kept (it was re-created), the old aud's
    /// token is deleted: nothing may vouch for it any more.
    pub async fn app_info(&self, url: &AppUrl) -> Result<AppInfo, AccessError> {
        let kept = self.known_app_info(url);
        let app = app_info::discover(self.http()?, self.store.dir(), url, true).await?;
        if let Ok(mut discovered) = self.discovered.lock() {
            discovered.push(url.key_stem());
        }
        if let Some(old) = kept.filter(|old| old.aud != app.aud) {
            tracing::info!(
                host = %url.authority(),
                "the application answers with a new aud; forgetting the old one's token"
            );
            self.forget_app_token(&old)?;
        }
        Ok(app)
    }

    /// Whether the app info of `url` was discovered afresh in this process.
    fn discovered(&self, url: &AppUrl) -> bool {
        let stem = url.key_stem();
        self.discovered.lock().is_ok_and(|d| d.contains(&stem))
    }

    /// The app info and an app token for `url`: the kept app info when its
    /// token is cached too; otherwise a fresh discovery first, since a login
    /// follows and a login for a stale aud (an app re-created since) is
    /// rejected by the login page, which the client never gets to see.
    pub async fn app_and_token(
        &self,
        url: &AppUrl,
        redirect: Redirect,
    ) -> Result<(AppInfo, String), AccessError> {
        if let Some(app) = self.known_app_info(url)
            && let Some(token) = self.cached_app_token(url, &app)
        {
            return Ok((app, token));
        }
        let app = self.app_info(url).await?;
        let token = self.app_token(url, &app, redirect).await?;
        Ok((app, token))
    }

    /// After the edge refused `app`'s token: deletes it and, unless this
    /// process has just discovered it, drops the kept app info and discovers
    /// once more (the app may have been re-created with a new aud), then
    /// gets a new token for the app as it is now.
    pub async fn after_refusal(
        &self,
        url: &AppUrl,
        app: &AppInfo,
        redirect: Redirect,
    ) -> Result<(AppInfo, String), AccessError> {
        self.forget_app_token(app)?;
        let app = if self.discovered(url) {
            app.clone()
        } else {
            let kept = self.store.dir().app_metadata(&url.key_stem());
            if let Err(e) = std::fs::remove_file(&kept)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                debug!(path = %kept.display(), error = %e, "cannot drop the kept app info");
            }
            self.app_info(url).await?
        };
        let token = self.app_token(url, &app, redirect).await?;
        Ok((app, token))
    }

    /// The same, for a one-off URL: nothing is remembered.
    pub async fn app_info_once(&self, url: &AppUrl) -> Result<AppInfo, AccessError> {
        Ok(app_info::discover(self.http()?, self.store.dir(), url, false).await?)
    }

    /// The app info for `url` verified by an earlier discovery, checked again
    /// offline; `None` when there is none (see [`app_info::cached`]).
    pub fn known_app_info(&self, url: &AppUrl) -> Option<AppInfo> {
        app_info::cached(self.store.dir(), url)
    }

    /// The app info for `url`: known, else discovered.
    pub async fn app_info_cached(&self, url: &AppUrl) -> Result<AppInfo, AccessError> {
        match self.known_app_info(url) {
            Some(app) => Ok(app),
            None => self.app_info(url).await,
        }
    }

    /// An app token for `app`: cached, or fetched (section 4).
    pub async fn app_token(
        &self,
        url: &AppUrl,
        app: &AppInfo,
        redirect: Redirect,
    ) -> Result<String, AccessError> {
        if let Some(token) = self.cached_app_token(url, app) {
            return Ok(token);
        }
        let _one_login = self.one_login.lock().await;
        if let Some(token) = self.store.app_token(app) {
            return Ok(token);
        }
        debug!("no cached app token for {}", url.authority());
        self.store.dir().ensure()?;
        let app_lock = match lock::acquire(
            &self.store.dir().app_token(app),
            || self.store.app_token(app),
            show_other_login,
        )
        .await?
        {
            Acquired::Token(token) => {
                debug!("another process fetched the app token while we waited for its lock");
                return Ok(token);
            }
            Acquired::Lock(lock) => lock,
        };
        // another process may have finished between our look and our lock
        if let Some(token) = self.store.app_token(app) {
            return Ok(token);
        }

        // An org token lets us skip the browser. Without one, wait for any
        // login for another app of this team, which will leave one behind.
        let mut org_lock = None;
        let org_token = match self.store.org_token(&app.auth_domain) {
            Some(token) => Some(token),
            None => match lock::acquire(
                &self.store.dir().org_token(&app.auth_domain),
                || self.store.org_token(&app.auth_domain),
                show_other_login,
            )
            .await?
            {
                Acquired::Token(token) => Some(token),
                Acquired::Lock(lock) => {
                    org_lock = Some(lock);
                    self.store.org_token(&app.auth_domain)
                }
            },
        };
        if let Some(org_token) = org_token {
            debug!(
                "found the team's org token for {} ({}); exchanging it for an app token",
                app.auth_domain,
                validity(&org_token)
            );
            match org_exchange::exchange(self.http()?, url, &app.auth_domain, &org_token).await {
                Ok(token) => {
                    debug!(
                        "exchanged the org token for an app token ({}): no browser needed",
                        validity(&token)
                    );
                    self.store.store_app_token(app, &token)?;
                    return Ok(token);
                }
                Err(e) => {
                    debug!(error = %e, "org token exchange failed; logging in with the browser")
                }
            }
        } else {
            debug!(
                "no org token for the team {}: logging in with the browser",
                app.auth_domain
            );
        }

        let limit = limits::login_wait().map_err(AccessError::LoginWait)?;
        let login = LoginRequest::new(url, &app.aud, redirect, self.options.auto_close);
        app_lock.publish_url(login.url());
        if let Some(lock) = &org_lock {
            lock.publish_url(login.url());
        }
        self.announce(login.url(), limit).await;
        let service = if self.options.fedramp {
            login_service::LOGIN_SERVICE_FEDRAMP
        } else {
            login_service::LOGIN_SERVICE
        };
        let tokens = wait::while_waiting(
            wait::Style::for_stderr(),
            limit,
            login.wait(self.http()?, service, limit),
        )
        .await?;
        if !tokens.org_token.is_empty() {
            self.store
                .store_org_token(&app.auth_domain, &tokens.org_token)?;
        }
        self.store.store_app_token(app, &tokens.app_token)?;
        debug!(
            "stored the app token ({}){}",
            validity(&tokens.app_token),
            if tokens.org_token.is_empty() {
                String::new()
            } else {
                format!(
                    " and the team's org token ({})",
                    validity(&tokens.org_token)
                )
            }
        );
        Ok(tokens.app_token)
    }

    /// The cached app token for `app`, said in the debug log when found.
    fn cached_app_token(&self, url: &AppUrl, app: &AppInfo) -> Option<String> {
        let token = self.store.app_token(app)?;
        debug!(
            "found a cached app token for {} in {} ({})",
            url.authority(),
            self.store.dir().app_token(app).display(),
            validity(&token)
        );
        Some(token)
    }

    /// An app token the edge has just accepted (section 5): a refused one is
    /// deleted and fetched again, once.
    pub async fn checked_app_token(
        &self,
        url: &AppUrl,
        app: &AppInfo,
        redirect: Redirect,
    ) -> Result<String, AccessError> {
        let token = self.app_token(url, app, redirect).await?;
        if token_check::accepted(self.http()?, url, &token).await? {
            debug!("the edge accepted the token (token check)");
            return Ok(token);
        }
        debug!("the edge refused the cached token; fetching a new one");
        self.forget_app_token(app)?;
        let token = self.app_token(url, app, redirect).await?;
        if token_check::accepted(self.http()?, url, &token).await? {
            Ok(token)
        } else {
            Err(AccessError::RefusedAgain {
                url: url.to_string(),
            })
        }
    }

    /// Deletes the cached app token, after the edge refused it.
    pub fn forget_app_token(&self, app: &AppInfo) -> Result<(), AccessError> {
        self.store
            .remove_app_token(app)
            .map_err(|source| AccessError::Remove {
                path: self.store.dir().app_token(app),
                source,
            })
    }

    /// Opens the login URL in a browser, unless told not to or there is no
    /// screen here, and shows on stderr (stdout may be an ssh session) what
    /// happened and the URL, as a QR code too when no browser was started.
    async fn announce(&self, url: &str, limit: Duration) {
        let outcome = if self.options.no_browser {
            debug!("not starting a browser: --no-browser");
            None
        } else {
            let desktop = desktop::detect();
            match (&desktop, browser::configured().is_some()) {
                (_, true) => debug!("BROWSER is set: trying its commands in turn"),
                (Desktop::Wsl, false) => debug!("this is WSL: opening Windows' browser"),
                (Desktop::Local, false) => {
                    debug!("opening the login page with the desktop's opener")
                }
                (Desktop::Headless(_), false) => {}
            }
            // up to FAIL_WITHIN of waiting on the opener, off the runtime's
            // thread: a listener's other connections go on meanwhile
            let (link, screen) = (url.to_owned(), desktop.clone());
            let outcome = tokio::task::spawn_blocking(move || browser::open(&link, &screen))
                .await
                .unwrap_or_else(|_| Outcome::Failed {
                    attempts: Vec::new(),
                    from_env: false,
                });
            narrate(&outcome);
            Some(outcome)
        };
        const LEAVE_RUNNING: &str = "Leave cfaccess running to download the token automatically.\n";
        let (head, tail) = match &outcome {
            Some(Outcome::Opened { .. }) => (
                "A browser window should have opened at the following URL:".to_owned(),
                "If the browser failed to open, please visit the URL above directly in your browser.\n",
            ),
            Some(Outcome::Failed { attempts, from_env }) => {
                let mut why: Vec<String> = attempts.iter().map(ToString::to_string).collect();
                if why.is_empty() {
                    why.push(
                        if *from_env {
                            "it names no command"
                        } else {
                            "no opener could be run"
                        }
                        .into(),
                    );
                }
                let source = if *from_env { " from $BROWSER" } else { "" };
                (
                    format!(
                        "Could not open a browser{source}: {}.\n\
                         Please open the following URL and log in with your Cloudflare account:",
                        why.join("; ")
                    ),
                    LEAVE_RUNNING,
                )
            }
            Some(Outcome::NotTried(why)) => (
                format!(
                    "No browser was started: {why}.\n\
                     Please open the following URL on any device and log in with your Cloudflare account:"
                ),
                LEAVE_RUNNING,
            ),
            None => (
                "Please open the following URL and log in with your Cloudflare account:".to_owned(),
                LEAVE_RUNNING,
            ),
        };
        let mut text = format!("{head}\n\n{url}\n\n");
        let no_browser_here = matches!(outcome, None | Some(Outcome::NotTried(_)));
        let show_qr = match self.options.qr {
            QrChoice::Always => true,
            QrChoice::Never => false,
            QrChoice::Auto => no_browser_here && terminal::stderr_is_terminal(),
        };
        if show_qr {
            match qr::render(url) {
                Some(code)
                    if self.options.qr == QrChoice::Always
                        || terminal::stderr_columns().is_none_or(|c| c >= code.columns) =>
                {
                    text.push_str("Or scan this code with a phone to log in there:\n\n");
                    text.push_str(&code.text);
                    text.push_str("\n\n");
                }
                Some(code) => text.push_str(&format!(
                    "(The terminal is too narrow for the QR code of the URL: it needs {} columns; see --qr.)\n",
                    code.columns
                )),
                None => debug!("the login URL is too long for a QR code"),
            }
        }
        text.push_str(tail);
        text.push_str(&format!(
            "Waiting up to {} for the login to be approved.\n",
            limits::show(limit)
        ));
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// Says in the debug log how opening the browser went, opener by opener.
fn narrate(outcome: &Outcome) {
    match outcome {
        Outcome::NotTried(why) => debug!("not starting a browser: {why}"),
        Outcome::Opened { attempts } | Outcome::Failed { attempts, .. } => {
            for attempt in attempts {
                debug!("browser: {attempt}");
            }
            if let (Outcome::Opened { .. }, Some(last)) = (outcome, attempts.last()) {
                debug!("opened the login page with {}", last.opener);
            }
        }
    }
}

/// How long a token stays valid, for the debug log: `valid for 23h59m more,
/// until <date>`; never the token itself.
fn validity(token: &str) -> String {
    match jwt::peek(token).ok().and_then(|c| c.exp) {
        Some(exp) => {
            let left = Duration::from_secs((exp - jwt::now()).max(0) as u64);
            let until = std::time::UNIX_EPOCH + Duration::from_secs(exp.max(0) as u64);
            format!(
                "valid for {} more, until {}",
                limits::show(left),
                httpdate::fmt_http_date(until)
            )
        }
        None => "no expiry".into(),
    }
}

/// What a process waiting on another's login shows, once per URL.
pub(crate) fn show_other_login(pid: i64, url: &str) {
    eprintln!(
        "\nAnother cfaccess or cloudflared process (pid {pid}) is already waiting for authentication.\n\n\
         If a browser window did not open, please visit the following URL:\n\n{url}\n"
    );
}
