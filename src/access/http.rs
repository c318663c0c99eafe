//! The one HTTP client factory.
//!
//! Every request cfaccess makes, the websocket upgrade included, goes through
//! a client built here, so the User-Agent, the trust roots, the proxy, the
//! name overrides of an edge profile and the TLS settings live in one place.
//! The client never follows redirects by itself: the protocol needs to see
//! most of them (app discovery, the token check, the org-token exchange), and
//! the few requests that follow them do so through [`send_following`], which
//! never takes a request (its token, its body) to another origin or to plain
//! http. Every body is read through [`read_body`]: capped and under a deadline,
//! whatever the server sends.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::LOCATION;
use reqwest::{Client, Request, Response, StatusCode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::access::edge_profile::EdgeProfile;
use crate::limits;

/// Sent on every request: the official release whose protocol we speak first
/// (the real edge may look at it), then ourselves.
pub const USER_AGENT: &str = concat!("cloudflared/2026.8.2 cfaccess/", env!("CARGO_PKG_VERSION"));

/// How many redirects [`send_following`] takes before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the edge profile's CA certificate is not valid: {0}")]
    BadCa(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// A redirect [`send_following`] would not follow: the request it answered
/// carries a token or a body, which must reach no other origin than the one
/// it was meant for, and never travel in clear text.
#[derive(Debug, thiserror::Error)]
#[error("{from} redirected the request to {to}, another origin; it was not sent there")]
pub struct RedirectRefused {
    /// The origin that answered with the redirect.
    pub from: String,
    /// The origin of the refused `Location`.
    pub to: String,
}

/// Why [`send_following`] gave no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{}", crate::error::describe_reqwest(.0))]
    Request(reqwest::Error),
    #[error("{0}")]
    Redirect(#[source] RedirectRefused),
    #[error("refusing to send a request over plain http to {0}")]
    Insecure(String),
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("its answer is larger than {}", limits::show_size(*.cap))]
    TooLarge { cap: usize },
    #[error("its answer did not arrive within {}", limits::show(*.limit))]
    TimedOut { limit: Duration },
    #[error("reading its answer failed: {0}")]
    Read(String),
}

/// Builds the client: HTTP/1.1 only (the websocket upgrade needs it, and one
/// connection per host is all a CLI uses), no automatic redirects, proxies
/// from the environment. Trust: the system's (rustls-platform-verifier, as
/// reqwest sets it up); with an edge profile, its names are checked against
/// the profile's CA alone and every other name against the system's roots
/// alone (see [`EdgeVerifier`]).
pub fn client(profile: Option<&EdgeProfile>) -> Result<Client, HttpError> {
    install_crypto_provider();
    let mut builder = Client::builder()
        .user_agent(USER_AGENT)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        // reqwest's connect timeout wraps its whole connector, TLS handshake
        // included (and a proxy's CONNECT), so a server that accepts and then
        // says nothing during the handshake ends here too
        .connect_timeout(limits::CONNECT)
        .tcp_nodelay(true);
    if let Some(profile) = profile {
        builder = builder
            .tls_backend_preconfigured(tls_config(Some(profile))?)
            .dns_resolver(Arc::new(ProfileResolver(profile.clone())));
    }
    builder.build().map_err(HttpError::Build)
}

/// The TLS settings of the connections the carrier makes itself
/// (`carrier::transport`), the same as the client's: without a profile
/// those reqwest makes (TLS 1.2 and 1.3, SNI, ALPN `http/1.1`, the installed
/// provider, the platform verifier), and with one the [`EdgeVerifier`] of
/// `profile` in place of the platform verifier.
pub fn tls_config(profile: Option<&EdgeProfile>) -> Result<rustls::ClientConfig, HttpError> {
    install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(provider()));
    let verifier: Arc<dyn ServerCertVerifier> = match profile {
        Some(profile) => Arc::new(EdgeVerifier::new(profile, provider.clone(), {
            let provider = provider.clone();
            Box::new(move || {
                let system = rustls_platform_verifier::Verifier::new(provider.clone())?;
                Ok(Arc::new(system) as Arc<dyn ServerCertVerifier>)
            })
        })?),
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| HttpError::Tls(e.to_string()))?,
        ),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Builds the verifier of the names a profile does not name, when one is
/// first needed.
type SystemVerifier =
    Box<dyn Fn() -> Result<Arc<dyn ServerCertVerifier>, rustls::Error> + Send + Sync>;

/// Trust with an edge profile: a name the profile sends to the edge is
/// vouched for by the profile's CA(s) and nothing else (a public CA cannot
/// stand in for the local edge), and every other name by the system's roots
/// and nothing else (the edge's CA cannot vouch for a bank). The system
/// verifier is made at the first name that needs it, so a session with the
/// local edge alone never loads the system's roots; and it is made without
/// extra roots, which Windows' verifier could not take under Wine.
struct EdgeVerifier {
    profile: EdgeProfile,
    edge: Arc<WebPkiServerVerifier>,
    make_system: SystemVerifier,
    system: OnceLock<Result<Arc<dyn ServerCertVerifier>, rustls::Error>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl EdgeVerifier {
    fn new(
        profile: &EdgeProfile,
        provider: Arc<rustls::crypto::CryptoProvider>,
        make_system: SystemVerifier,
    ) -> Result<Self, HttpError> {
        let mut roots = RootCertStore::empty();
        // a bundle: a profile may trust more than one local CA
        for cert in CertificateDer::pem_slice_iter(profile.ca_cert.as_bytes()) {
            let cert = cert.map_err(|e| HttpError::BadCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| HttpError::BadCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(HttpError::BadCa("it holds no certificate".into()));
        }
        let edge = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| HttpError::Tls(e.to_string()))?;
        Ok(EdgeVerifier {
            profile: profile.clone(),
            edge,
            make_system,
            system: OnceLock::new(),
            provider,
        })
    }

    /// Whether `name` is one the profile sends to the edge: the same test as
    /// its resolver's, so whatever reaches the edge is checked as the edge.
    fn is_edge(&self, name: &ServerName<'_>) -> bool {
        match name {
            ServerName::DnsName(dns) => self.profile.address_for(dns.as_ref()).is_some(),
            _ => false,
        }
    }
}

impl std::fmt::Debug for EdgeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeVerifier")
            .field("hosts", &self.profile.hosts.keys())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for EdgeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.is_edge(server_name) {
            return self.edge.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        match self.system.get_or_init(|| (self.make_system)()) {
            Ok(system) => system.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            Err(e) => Err(e.clone()),
        }
    }

    // The handshake signatures are checked the same way whoever vouched for
    // the certificate: with the provider's algorithms, as both verifiers do.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// reqwest is built without a default provider: ring keeps the binary small.
/// AES-128-GCM goes first: it is as safe for a session of minutes to hours
/// and costs less per byte than AES-256 on a stream of gigabytes.
fn install_crypto_provider() {
    let _ = provider().install_default();
}

/// ring, with the cipher suites in our order.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    let mut provider = default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        let s = suite.suite();
        if s == cipher_suite::TLS13_AES_128_GCM_SHA256.suite() {
            0
        } else if s == cipher_suite::TLS13_AES_256_GCM_SHA384.suite() {
            1
        } else {
            2
        }
    });
    provider
}

/// Sends `request`, following up to ten redirects by hand, on the request's
/// own origin only: a redirect to another origin (plain http included) is
/// refused, since the request may carry a token or a body. A 303, and a 301
/// or 302 answering a POST, turn into a GET without a body, as browsers and
/// Go do.
pub async fn send_following(client: &Client, request: Request) -> Result<Response, SendError> {
    follow(client, request, true).await
}

/// Sends `request` and follows up to ten redirects anywhere, as a browser
/// does: only for requests that carry no token, no cookie and no body of
/// ours (access-edge's browser helper). Everything else uses
/// [`send_following`].
pub async fn follow_anywhere(client: &Client, request: Request) -> Result<Response, SendError> {
    follow(client, request, false).await
}

async fn follow(
    client: &Client,
    request: Request,
    same_origin: bool,
) -> Result<Response, SendError> {
    let mut request = request;
    let mut hops = 0;
    loop {
        if same_origin && request.url().scheme() != "https" {
            return Err(SendError::Insecure(
                request.url().origin().ascii_serialization(),
            ));
        }
        let retry = request.try_clone();
        let response = client.execute(request).await.map_err(SendError::Request)?;
        let status = response.status();
        let Some(mut next) = retry.filter(|_| status.is_redirection() && hops < MAX_REDIRECTS)
        else {
            return Ok(response);
        };
        let Some(location) = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| response.url().join(loc).ok())
        else {
            return Ok(response);
        };
        if same_origin && location.origin() != response.url().origin() {
            return Err(SendError::Redirect(RedirectRefused {
                from: response.url().origin().ascii_serialization(),
                to: location.origin().ascii_serialization(),
            }));
        }
        let to_get = status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && next.method() == reqwest::Method::POST);
        if to_get {
            *next.method_mut() = reqwest::Method::GET;
            *next.body_mut() = None;
            next.headers_mut().remove(reqwest::header::CONTENT_TYPE);
            next.headers_mut().remove(reqwest::header::CONTENT_LENGTH);
        }
        *next.url_mut() = location;
        request = next;
        hops += 1;
    }
}

/// Reads `response`'s body chunk by chunk, never holding more than `cap`
/// bytes, and gives up when it has not all arrived within `limit`. Over the
/// cap is an error: a body that large is not the answer expected.
pub async fn read_body(
    response: Response,
    cap: usize,
    limit: Duration,
) -> Result<Vec<u8>, BodyError> {
    match read_capped(response, cap, limit).await? {
        (body, false) => Ok(body),
        (_, true) => Err(BodyError::TooLarge { cap }),
    }
}

/// An error answer's text, for a message: at most [`limits::ERROR_BODY`]
/// bytes are read (the rest is left unread) and only its first line that is
/// not markup is kept. A body that stalls or fails yields what arrived.
pub async fn error_text(response: Response, limit: Duration) -> String {
    let body = match read_capped(response, limits::ERROR_BODY, limit).await {
        Ok((body, _)) => body,
        Err(_) => Vec::new(),
    };
    first_line(&String::from_utf8_lossy(&body))
}

/// The body up to `cap` bytes, and whether there was more.
async fn read_capped(
    response: Response,
    cap: usize,
    limit: Duration,
) -> Result<(Vec<u8>, bool), BodyError> {
    let length = response.content_length();
    let body = reqwest::Body::from(response);
    read_body_capped(body, length, cap, limit, |e: reqwest::Error| {
        crate::error::describe_reqwest(&e)
    })
    .await
}

/// An error answer's text from a bare HTTP body (the carrier's own
/// connection, `carrier::transport`), as [`error_text`] gives it.
pub async fn error_text_of(body: hyper::body::Incoming, limit: Duration) -> String {
    let length = http_body::Body::size_hint(&body).exact();
    let read = read_body_capped(
        body,
        length,
        limits::ERROR_BODY,
        limit,
        |e: hyper::Error| e.to_string(),
    );
    match read.await {
        Ok((body, _)) => first_line(&String::from_utf8_lossy(&body)),
        Err(_) => String::new(),
    }
}

/// `body` up to `cap` bytes, and whether there was more; `length` is what
/// its head announced.
async fn read_body_capped<B>(
    mut body: B,
    length: Option<u64>,
    cap: usize,
    limit: Duration,
    describe: impl Fn(B::Error) -> String,
) -> Result<(Vec<u8>, bool), BodyError>
where
    B: http_body::Body<Data = hyper::body::Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    if length.is_some_and(|n| n > cap as u64) {
        return Ok((Vec::new(), true));
    }
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(chunk) = frame
                .map_err(&describe)
                .map_err(BodyError::Read)?
                .into_data()
            else {
                continue; // trailers
            };
            let room = cap - out.len();
            if chunk.len() > room {
                out.extend_from_slice(&chunk[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk);
        }
        Ok((out, false))
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| BodyError::TimedOut { limit })?
}

/// The first line of an error body, short enough for an error message.
pub fn first_line(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('<'))
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// Sends the names of an edge profile to its addresses; every other name goes
/// to the system resolver.
struct ProfileResolver(EdgeProfile);

impl Resolve for ProfileResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let profile = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Addrs = Box::new(addresses(Some(&profile), &host).await?.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses of `host`: the profile's for a name it serves, else the
/// system resolver's (with port 0, for the caller to set).
pub async fn addresses(
    profile: Option<&EdgeProfile>,
    host: &str,
) -> std::io::Result<Vec<SocketAddr>> {
    if let Some(addr) = profile.and_then(|p| p.address_for(host)) {
        return Ok(vec![addr]);
    }
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_shrink_to_one_line() {
        assert_eq!(first_line("\n  origin refused\nmore"), "origin refused");
        assert_eq!(first_line("<html>\n<body>\nx"), "x");
        assert_eq!(first_line(""), "");
        assert_eq!(first_line("a\u{1b}[2Jb"), "a[2Jb");
    }

    /// A CA: its PEM and what signs with it.
    fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.clone().self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(params, key))
    }

    fn leaf(
        name: &str,
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    #[test]
    fn the_profile_ca_vouches_for_the_profile_names_alone_and_the_system_for_the_rest() {
        let (edge_pem, edge_ca) = ca("edge CA");
        // stands in for the system's roots
        let (system_pem, system_ca) = ca("system CA");
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert("ssh.demo.test".to_owned(), "127.0.0.1:1".parse().unwrap());
        hosts.insert(
            "*.cloudflareaccess.com".to_owned(),
            "127.0.0.1:1".parse().unwrap(),
        );
        let profile = EdgeProfile {
            ca_cert: edge_pem,
            hosts,
            api: None,
            audited_ssh: Default::default(),
        };
        let provider = Arc::new(provider());
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let verifier = EdgeVerifier::new(&profile, provider.clone(), {
            let made = made.clone();
            Box::new(move || {
                made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(system_pem.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let system =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .unwrap();
                Ok(system as Arc<dyn ServerCertVerifier>)
            })
        })
        .unwrap();
        let check = |name: &str, cert: &CertificateDer<'static>| {
            let server = ServerName::try_from(name.to_owned()).unwrap();
            verifier
                .verify_server_cert(cert, &[], &server, &[], UnixTime::now())
                .is_ok()
        };

        assert!(check("ssh.demo.test", &leaf("ssh.demo.test", &edge_ca)));
        assert!(check(
            "team.cloudflareaccess.com",
            &leaf("team.cloudflareaccess.com", &edge_ca)
        ));
        assert_eq!(
            made.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no system roots for profile names"
        );
        // a public CA cannot stand in for the local edge
        assert!(!check("ssh.demo.test", &leaf("ssh.demo.test", &system_ca)));
        // the edge's CA cannot vouch for any other name; the system's roots still do
        assert!(!check("bank.example", &leaf("bank.example", &edge_ca)));
        assert!(check("bank.example", &leaf("bank.example", &system_ca)));
        assert!(!check("127.0.0.1", &leaf("127.0.0.1", &edge_ca)));
        assert_eq!(
            made.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "made once"
        );
    }

    #[test]
    fn a_profile_ca_that_is_no_certificate_is_refused() {
        let profile = |ca_cert: &str| EdgeProfile {
            ca_cert: ca_cert.to_owned(),
            hosts: Default::default(),
            api: None,
            audited_ssh: Default::default(),
        };
        let none =
            || -> SystemVerifier { Box::new(|| Err(rustls::Error::General("unused".into()))) };
        let provider = Arc::new(provider());
        for bad in [
            "",
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let got = EdgeVerifier::new(&profile(bad), provider.clone(), none());
            assert!(matches!(got, Err(HttpError::BadCa(_))), "{bad:?}");
        }
    }
}
