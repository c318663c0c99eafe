//! A running edge: start-up, the shared state its handlers use, the handle
//! tests drive it with, and shutdown.
//!
//! Start-up order matters to scripts: the listener is bound first (a port in
//! use fails fast, before keys are made), then the state is prepared, then the
//! server accepts, and only then are `profile.json` and `browser` written, so
//! that waiting for the profile file means waiting for a ready edge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;

use crate::api::{Api, Credentials};
use crate::auth::login_nonce::Nonces;
use crate::auth::login_service::LoginService;
use crate::auth::org_exchange::Exchange;
use crate::auth::policy::is_valid_email;
use crate::auth::signing::Keys;
use crate::auth::tokens::{Kind, Tokens};
use crate::error::EdgeError;
use crate::front::accept::{ClientAcceptor, Timeouts};
use crate::front::router;
use crate::front::tls::{self, Ca};
use crate::limits;
use crate::ops::config::Config;
use crate::ops::control;
use crate::ops::counters::{Carried, CarrierStats, Counters, Endpoint};
use crate::ops::faults::{ApiFault, CertSignFault, Faults};
use crate::ops::profile;
use crate::ops::state::{SECRET, StateDir, files};
use crate::site::Site;
use crate::ssh::ca::{self as ssh_ca, CaKeyType};

/// How long the login service holds a transfer poll before answering "not
/// yet": well under the official client's 60 s timeout.
pub const DEFAULT_POLL_HOLD: Duration = Duration::from_secs(25);

/// How to start an edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// What to serve.
    pub config: Config,
    /// Where to keep state; `None` for a temporary directory removed with the
    /// edge.
    pub state_dir: Option<PathBuf>,
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Approve every login page at once as this identity.
    pub auto_approve: Option<String>,
    /// How long a transfer poll is held before "not yet".
    pub poll_hold: Duration,
    /// The `access-edge` binary that `DIR/browser` runs; by default this
    /// process's executable when it is access-edge, else an `access-edge`
    /// beside it or one directory up (where Cargo puts it for tests).
    pub edge_binary: Option<PathBuf>,
    /// The deadlines of HTTP connections (carried websockets have none).
    pub timeouts: Timeouts,
}

impl EdgeOptions {
    /// The zero-config demo on `127.0.0.1:0` with a temporary state dir.
    pub fn demo() -> Self {
        Self::new(Config::demo())
    }

    /// Serve `config` on `127.0.0.1:0` with a temporary state dir.
    pub fn new(config: Config) -> Self {
        EdgeOptions {
            config,
            state_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auto_approve: None,
            poll_hold: DEFAULT_POLL_HOLD,
            edge_binary: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// What can change while the edge runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub app_token_lifetime: Duration,
    pub org_token_lifetime: Duration,
    pub auto_approve: Option<String>,
    pub poll_hold: Duration,
    /// How long `cert_sign`'s certificates are valid (whole seconds).
    pub cert_validity: Duration,
}

/// Everything the handlers share.
pub(crate) struct EdgeState {
    pub site: Site,
    /// The Cloudflare API's own state (credentials, apps, the CAs' dir).
    pub api: Arc<Api>,
    pub keys: Keys,
    pub tokens: Tokens,
    pub login_service: LoginService,
    pub login_nonces: Nonces,
    pub exchange: Exchange,
    pub counters: Counters,
    pub carried: Arc<Carried>,
    /// Browser terminal sessions (`ssh::terminal`), counted while they live.
    pub terminals: Arc<Carried>,
    pub faults: Faults,
    /// Turns true when the edge stops: carried connections end then.
    pub stopping: watch::Receiver<bool>,
    settings: Mutex<Settings>,
    /// Dropped last: a temporary state dir goes away with the final handler.
    pub state: StateDir,
}

impl EdgeState {
    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Mints an app token for `app_aud`.
    pub fn mint_app_token(&self, aud: &str, email: &str, lifetime: Duration) -> Option<String> {
        self.tokens
            .mint(&self.keys, Kind::App, aud, email, lifetime)
            .map_err(|e| tracing::error!("cannot sign an app token: {e}"))
            .ok()
    }

    /// Mints an org token.
    pub fn mint_org_token(&self, email: &str, lifetime: Duration) -> Option<String> {
        self.tokens
            .mint(
                &self.keys,
                Kind::Org,
                &self.site.auth_domain,
                email,
                lifetime,
            )
            .map_err(|e| tracing::error!("cannot sign an org token: {e}"))
            .ok()
    }

    pub fn revoke_user(&self, email: &str) {
        self.tokens.revoke(email);
        tracing::info!(%email, "revoked every token issued so far");
    }

    pub fn rotate_keys(&self) -> Result<(), EdgeError> {
        self.keys.rotate(&self.state)
    }

    pub fn expire_previous_key(&self) {
        self.keys.expire_previous(&self.state)
    }
}

/// A running edge. Dropping it (or [`Edge::shutdown`]) stops it and removes
/// a temporary state dir.
///
/// The methods are synchronous and cheap, except [`Edge::rotate_keys`],
/// which generates an RSA key and blocks for it.
pub struct Edge {
    state: Arc<EdgeState>,
    addr: SocketAddr,
    server: axum_server::Handle<SocketAddr>,
    stop: watch::Sender<bool>,
    /// The runtime thread of an edge made by [`Edge::spawn`].
    thread: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Edge {
    /// Starts an edge on the current tokio runtime (it must have the time and
    /// I/O drivers enabled).
    pub async fn start(opts: EdgeOptions) -> Result<Edge, EdgeError> {
        if let Some(email) = &opts.auto_approve
            && !is_valid_email(email)
        {
            return Err(EdgeError::Usage(format!(
                "--auto-approve: {email:?} is not an email address"
            )));
        }
        let listener = bind(opts.listen)?;
        let timeouts = opts.timeouts;
        let prepared = tokio::task::spawn_blocking(move || prepare(opts))
            .await
            .map_err(|e| EdgeError::Runtime(format!("start-up failed: {e}")))??;
        let Prepared {
            state,
            tls,
            ca_pem,
            edge_binary,
            stop,
        } = prepared;

        let server = axum_server::Handle::new();
        let app = router::build(state.clone());
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(RustlsConfig::from_config(tls))
            .handshake_timeout(timeouts.handshake)
            .acceptor(ClientAcceptor { timeouts });
        let mut listening = axum_server::from_tcp(listener)
            .map_err(|e| EdgeError::Runtime(format!("cannot serve: {e}")))?
            .acceptor(acceptor)
            .handle(server.clone());
        // hyper answers a head over the cap with 431 and closes.
        let http = listening.http_builder();
        http.http1().max_buf_size(limits::REQUEST_HEAD.max(8192));
        http.http2()
            .max_header_list_size(u32::try_from(limits::REQUEST_HEAD).unwrap_or(u32::MAX));
        let serving = tokio::spawn(async move {
            if let Err(e) = listening.serve(app.into_make_service()).await {
                tracing::error!("the server stopped: {e}");
            }
        });
        let Some(addr) = server.listening().await else {
            serving.abort();
            return Err(EdgeError::Runtime("the server did not start".into()));
        };

        let stop_rx = state.stopping.clone();
        let names = state.site.served_names();
        let ready = control::bind(&state.state).and_then(|control| {
            profile::write(
                &state.state,
                &ca_pem,
                &names,
                addr,
                &edge_binary,
                state.api.profile_api(),
                audited_host_cas(&state)?,
            )?;
            Ok(control)
        });
        match ready {
            Ok(Some(listener)) => {
                tokio::spawn(control::serve(listener, state.clone(), stop_rx));
            }
            Ok(None) => {}
            Err(e) => {
                server.shutdown();
                return Err(e);
            }
        }
        tracing::info!(%addr, "access-edge ready");
        Ok(Edge {
            state,
            addr,
            server,
            stop,
            thread: None,
        })
    }

    /// Starts an edge on a runtime of its own, on a background thread, so a
    /// plain synchronous `#[test]` can use it.
    pub fn spawn(opts: EdgeOptions) -> Result<Edge, EdgeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("access-edge")
            .enable_all()
            .build()
            .map_err(|e| EdgeError::Runtime(format!("cannot start a runtime: {e}")))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("access-edge".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let started = Edge::start(opts).await;
                    let ok = started.is_ok();
                    if ready_tx.send(started).is_ok() && ok {
                        let _ = done_rx.await;
                    }
                });
                // Held transfer polls and the like must not keep a test waiting.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| EdgeError::Runtime(format!("cannot start a thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(mut edge)) => {
                edge.thread = Some((done_tx, thread));
                Ok(edge)
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(EdgeError::Runtime(
                    "the edge's thread ended during start-up".into(),
                ))
            }
        }
    }

    /// The address the edge listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state dir (temporary unless one was given).
    pub fn state_dir(&self) -> &Path {
        self.state.state.path()
    }

    /// `DIR/profile.json`: the edge profile for `CFACCESS_EDGE`.
    pub fn profile_path(&self) -> PathBuf {
        self.state.state.file(files::PROFILE)
    }

    /// `DIR/browser`: the headless browser for `BROWSER`.
    pub fn browser_path(&self) -> PathBuf {
        self.state.state.file(files::BROWSER)
    }

    /// The team's auth domain.
    pub fn auth_domain(&self) -> &str {
        &self.state.site.auth_domain
    }

    /// The team's login service name (`login.cloudflareaccess.org`, or the
    /// FedRAMP one); both names are answered.
    pub fn login_service(&self) -> &str {
        self.state.site.login_service
    }

    /// The aud of the app configured as `hostname` (or protecting it).
    pub fn app_aud(&self, hostname: &str) -> Option<String> {
        self.state.site.app_named(hostname).map(|a| a.aud.clone())
    }

    /// The account id of the Cloudflare API this edge serves (32 hex
    /// digits; also in `DIR/account-id`).
    pub fn account_id(&self) -> &str {
        &self.state.api.credentials.account_id
    }

    /// An API token that may edit Access apps: the one the edge made (also
    /// in `DIR/api-token`), else the config's first `edit` token; `None`
    /// when the config has only read tokens or legacy keys.
    pub fn api_token(&self) -> Option<String> {
        self.state.api.credentials.edit_token().map(str::to_owned)
    }

    /// The API id (a UUID) of the app configured as (or protecting)
    /// `hostname`.
    pub fn app_id(&self, hostname: &str) -> Option<String> {
        self.state.site.app_named(hostname).map(|a| a.id.clone())
    }

    /// Makes the Cloudflare API answer `fault` to every request from now on
    /// (`None`: answer right).
    pub fn set_api_fault(&self, fault: Option<ApiFault>) {
        self.state.faults.set_api_fault(fault);
    }

    /// How many requests `endpoint` has had.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.state.counters.get(endpoint)
    }

    /// Every endpoint's count.
    pub fn counters(&self) -> BTreeMap<Endpoint, u64> {
        self.state.counters.snapshot()
    }

    /// All requests so far.
    pub fn total_requests(&self) -> u64 {
        self.state.counters.total()
    }

    /// Every token issued to `email` so far (app and org) is refused from now
    /// on; tokens issued later are fine.
    pub fn revoke_user(&self, email: &str) {
        self.state.revoke_user(email);
    }

    /// A new current signing key; the current one becomes the previous one
    /// (still in the JWKS, still verifying), the previous one is dropped.
    /// Blocks while the RSA key is generated.
    pub fn rotate_keys(&self) {
        if let Err(e) = self.state.rotate_keys() {
            tracing::error!("key rotation failed: {e}");
        }
    }

    /// Drops the previous signing key from the JWKS: tokens it signed stop
    /// verifying.
    pub fn expire_previous_key(&self) {
        self.state.expire_previous_key();
    }

    /// The next `n` transfer polls answer `status` at once.
    pub fn fail_login_service(&self, n: u32, status: u16) {
        self.state.faults.fail_login_service(n, status);
    }

    /// The next `n` transfer polls never answer (until the client gives up).
    pub fn stall_login_service(&self, n: u32) {
        self.state.faults.stall_login_service(n);
    }

    /// Puts `fault` into every app metadata JWT from now on (`None`: stop).
    pub fn set_metadata_fault(&self, fault: Option<crate::ops::faults::MetadataFault>) {
        self.state.faults.set_metadata_fault(fault);
    }

    /// Websocket connections carried so far, those still active, and the
    /// bytes they carried each way.
    pub fn carried(&self) -> CarrierStats {
        self.state.carried.snapshot()
    }

    /// Browser terminal sessions: how many ran, how many still run (their
    /// byte counts stay 0).
    pub fn terminals(&self) -> CarrierStats {
        self.state.terminals.snapshot()
    }

    /// Cut every carried connection (running ones too) abruptly, with no
    /// close frame, once it has relayed `bytes` from its origin to its client
    /// (`None`: stop cutting). Counted per connection from its start.
    pub fn cut_websockets_after(&self, bytes: Option<u64>) {
        self.state.faults.cut_websockets_after(bytes);
    }

    /// Answer every authorised websocket upgrade with the `502 Bad Gateway`
    /// of an origin that refused the connection (or stop doing so).
    pub fn refuse_origin(&self, refuse: bool) {
        self.state.faults.refuse_origin(refuse);
    }

    /// Wait `delay` before answering each websocket upgrade, whatever the
    /// answer (`None`: answer at once).
    pub fn delay_handshake(&self, delay: Option<Duration>) {
        self.state.faults.delay_handshake(delay);
    }

    /// Send every answer's `Date` header `seconds` ahead of the real time
    /// (behind when negative; 0: the real time), as a client with a clock
    /// that far off would read it.
    pub fn skew_date(&self, seconds: i64) {
        self.state.faults.skew_date(seconds);
    }

    /// Lifetimes of the tokens minted from now on.
    pub fn set_token_lifetimes(&self, app: Duration, org: Duration) {
        self.state.update_settings(|s| {
            s.app_token_lifetime = app;
            s.org_token_lifetime = org;
        });
    }

    /// Approve every login page at once as `email` (or stop doing so).
    pub fn set_auto_approve(&self, email: Option<String>) {
        self.state.update_settings(|s| s.auto_approve = email);
    }

    /// How long transfer polls are held from now on.
    pub fn set_poll_hold(&self, hold: Duration) {
        self.state.update_settings(|s| s.poll_hold = hold);
    }

    /// How long the SSH certificates `cert_sign` issues from now on are valid
    /// (whole seconds, at least one; the default is the config's
    /// `ssh_cert_validity`, 3 minutes unless set).
    pub fn set_cert_validity(&self, validity: Duration) {
        let validity = Duration::from_secs(validity.as_secs().max(1));
        self.state.update_settings(|s| s.cert_validity = validity);
    }

    /// Makes `cert_sign` answer `fault` from now on (`None`: answer right).
    pub fn cert_sign_fault(&self, fault: Option<CertSignFault>) {
        self.state.faults.set_cert_sign_fault(fault);
    }

    /// Creates the SSH CA of the app configured as (or protecting) `hostname`
    /// unless it has one, as `access-edge ca generate` does, and returns its
    /// public key as one `authorized_keys` line (no newline) for sshd's
    /// `TrustedUserCAKeys`. Asking again gives the same line; asking for
    /// another key type than the existing CA's is an error.
    pub fn generate_ca(&self, hostname: &str, key_type: CaKeyType) -> Result<String, EdgeError> {
        let app = self.state.site.app_named(hostname).ok_or_else(|| {
            EdgeError::Usage(format!("no Access application {hostname} on this edge"))
        })?;
        ssh_ca::generate(self.state_dir(), &app.hostname, Some(key_type))
            .map(|generated| generated.ca.public_line())
    }

    /// The public key line (no newline) of the SSH CA of the app configured
    /// as (or protecting) `hostname`, if it has one (made by
    /// [`Edge::generate_ca`] or by `access-edge ca generate` on this state
    /// dir).
    pub fn ca_public_key(&self, hostname: &str) -> Option<String> {
        let app = self.state.site.app_named(hostname)?;
        match ssh_ca::load(self.state_dir(), &app.hostname) {
            Ok(ca) => ca.map(|ca| ca.public_line()),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }

    /// A valid app token for the app configured as (or protecting)
    /// `hostname`, for `email`, valid for `lifetime` (zero: already expired).
    /// Returns an empty string when no app matches.
    pub fn mint_app_token(&self, hostname: &str, email: &str, lifetime: Duration) -> String {
        self.state
            .site
            .app_named(hostname)
            .and_then(|app| self.state.mint_app_token(&app.aud, email, lifetime))
            .unwrap_or_default()
    }

    /// A valid org token for `email`, valid for `lifetime`.
    pub fn mint_org_token(&self, email: &str, lifetime: Duration) -> String {
        self.state
            .mint_org_token(email, lifetime)
            .unwrap_or_default()
    }

    /// Stops the edge (as dropping it does).
    pub fn shutdown(self) {}
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("addr", &self.addr)
            .field("auth_domain", &self.state.site.auth_domain)
            .field("state_dir", &self.state.state.path())
            .finish_non_exhaustive()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.server.shutdown();
        let _ = self.stop.send(true);
        if !self.state.state.is_temporary() {
            profile::remove(&self.state.state);
            self.state.state.remove(files::CONTROL);
        }
        if let Some((done, thread)) = self.thread.take() {
            let _ = done.send(());
            let _ = thread.join();
        }
    }
}

/// Binds the listen address, with a message that says what to do.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, EdgeError> {
    std::net::TcpListener::bind(addr).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is in use (another edge? pick another --listen port)".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_owned()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "no local interface has this address".to_owned()
            }
            _ => e.to_string(),
        };
        EdgeError::Bind { addr, reason }
    })
}

/// What start-up prepares off the async runtime (it reads files and may
/// generate keys).
struct Prepared {
    state: Arc<EdgeState>,
    tls: Arc<rustls::ServerConfig>,
    ca_pem: String,
    edge_binary: PathBuf,
    stop: watch::Sender<bool>,
}

/// Each audited app's hostname with the public key of the edge's SSH host
/// CA (made now if it was not yet), for the profile: `cfaccess ssh-config`
/// prints the `@cert-authority` line from it without asking.
fn audited_host_cas(state: &EdgeState) -> Result<BTreeMap<String, String>, EdgeError> {
    let audited: Vec<&str> = state
        .site
        .apps
        .iter()
        .filter(|a| a.audit_ssh)
        .map(|a| a.hostname.as_str())
        .collect();
    if audited.is_empty() {
        return Ok(BTreeMap::new());
    }
    let key = crate::ssh::audit::host::HostIdentity::load_or_create(state.state.path())?.ca_line();
    Ok(audited
        .into_iter()
        .map(|host| (host.to_owned(), key.clone()))
        .collect())
}

fn prepare(opts: EdgeOptions) -> Result<Prepared, EdgeError> {
    let state = StateDir::open(opts.state_dir.as_deref())?;
    control::ensure_not_running(&state)?;
    profile::remove(&state);
    let site = Site::resolve(&opts.config, &state)?;
    let credentials = Credentials::resolve(&opts.config, &state)?;
    let api = Arc::new(Api::new(&site, credentials, state.path()));
    state.write(files::CONFIG, opts.config.to_toml()?.as_bytes(), SECRET)?;
    let ca = Ca::load_or_create(&state)?;
    let tls = tls::server_config(&ca, &site.served_names())?;
    let keys = Keys::load_or_create(&state)?;
    let login_service = LoginService::load_or_create(&state)?;
    if let Some(email) = &opts.auto_approve {
        for app in site
            .apps
            .iter()
            .filter(|a| !crate::auth::policy::allows(&a.allow, email))
        {
            tracing::warn!(
                "--auto-approve {email}: the policy of {} does not allow it; its logins will be refused",
                app.hostname
            );
        }
    }
    let settings = Settings {
        app_token_lifetime: site.app_token_lifetime,
        org_token_lifetime: site.org_token_lifetime,
        auto_approve: opts.auto_approve.clone(),
        poll_hold: opts.poll_hold,
        cert_validity: site.cert_validity,
    };
    let edge_binary = opts
        .edge_binary
        .clone()
        .unwrap_or_else(profile::default_edge_binary);
    let (stop, stopping) = watch::channel(false);
    Ok(Prepared {
        ca_pem: ca.cert_pem().to_owned(),
        tls,
        edge_binary,
        stop,
        state: Arc::new(EdgeState {
            tokens: Tokens::new(&site.auth_domain),
            site,
            api,
            keys,
            login_service,
            login_nonces: Nonces::default(),
            exchange: Exchange::default(),
            counters: Counters::default(),
            carried: Arc::default(),
            terminals: Arc::default(),
            faults: Faults::default(),
            stopping,
            settings: Mutex::new(settings),
            state,
        }),
    })
}
