//! TLS on every endpoint: a local CA and one certificate per served name.
//!
//! Clients check certificates exactly as against the real edge; they only
//! trust the local CA besides the system roots (the edge profile, or
//! `SSL_CERT_FILE` for the official client). The CA (ECDSA P-256) lives in
//! the state dir so that trust survives restarts; leaf certificates are made
//! afresh at each start. One listener serves every name: SNI picks the leaf
//! (exact name, then the longest matching wildcard), ALPN offers h2 and
//! http/1.1 (Go's client prefers h2; cfaccess speaks http/1.1).

use std::collections::HashMap;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::EdgeError;
use crate::ops::state::{SECRET, StateDir, files};

/// The local certificate authority.
pub(crate) struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads the CA kept in the state dir, or makes one and keeps it.
    pub fn load_or_create(state: &StateDir) -> Result<Ca, EdgeError> {
        let cert = state.read_string(files::CA_CERT)?;
        let key = state.read_string(files::CA_KEY)?;
        if let (Some(cert_pem), Some(key_pem)) = (cert, key) {
            let key = KeyPair::from_pem(&key_pem).map_err(|e| {
                EdgeError::state(state.file(files::CA_KEY), format!("not a usable key: {e}"))
            })?;
            if !cert_pem.contains("BEGIN CERTIFICATE") {
                return Err(EdgeError::state(
                    state.file(files::CA_CERT),
                    "not a PEM certificate",
                ));
            }
            return Ok(Ca {
                cert_pem,
                issuer: Issuer::new(ca_params(), key),
            });
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| EdgeError::crypto("cannot make the CA key", e))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| EdgeError::crypto("cannot make the CA certificate", e))?;
        state.write(files::CA_KEY, key.serialize_pem().as_bytes(), SECRET)?;
        state.write(files::CA_CERT, cert.pem().as_bytes(), 0o644)?;
        tracing::info!("made a new local CA in {}", state.path().display());
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A fresh key and a certificate for `name` (`*.domain` for a wildcard).
    fn issue(&self, name: &str) -> Result<Arc<CertifiedKey>, EdgeError> {
        let failed = |e: rcgen::Error| {
            EdgeError::crypto(&format!("cannot make a certificate for {name}"), e)
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = rustls::crypto::ring::sign::any_ecdsa_type(&der)
            .map_err(|e| EdgeError::crypto(&format!("cannot load the key for {name}"), e))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            signing_key,
        )))
    }
}

/// The CA's fixed parameters. The issuer of every leaf is derived from these
/// and the kept key, so they must not change between releases.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "access-edge");
    params
        .distinguished_name
        .push(DnType::CommonName, "access-edge local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The TLS server configuration for `names`, all signed by `ca`.
pub(crate) fn server_config(
    ca: &Ca,
    names: &[String],
) -> Result<Arc<rustls::ServerConfig>, EdgeError> {
    let mut exact = HashMap::new();
    let mut wildcards = Vec::new();
    let mut first = None;
    for name in names {
        let key = ca.issue(name)?;
        first.get_or_insert_with(|| key.clone());
        if name.starts_with("*.") {
            wildcards.push((name.clone(), key));
        } else {
            exact.insert(name.clone(), key);
        }
    }
    let default = first.ok_or_else(|| EdgeError::Crypto("no names to serve".into()))?;
    let resolver = SniResolver {
        exact,
        wildcards,
        default,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EdgeError::crypto("cannot set up TLS", e))?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate by SNI. A client that sends no name (an address) or
/// an unknown one gets the auth domain's certificate, which it will refuse:
/// the same as reaching the real edge under a wrong name.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcards: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        self.wildcards
            .iter()
            .filter(|(pattern, _)| cfaccess::access::edge_profile::wildcard_matches(pattern, &name))
            .max_by_key(|(pattern, _)| pattern.len())
            .map(|(_, key)| key.clone())
            .or_else(|| Some(self.default.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_across_loads() {
        let state = StateDir::open(None).unwrap();
        let first = Ca::load_or_create(&state).unwrap();
        let again = Ca::load_or_create(&state).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        assert!(first.cert_pem().contains("BEGIN CERTIFICATE"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.file(files::CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_broken_ca_key_is_a_clear_error() {
        let state = StateDir::open(None).unwrap();
        Ca::load_or_create(&state).unwrap();
        state.write(files::CA_KEY, b"garbage", SECRET).unwrap();
        let err = Ca::load_or_create(&state).err().unwrap().to_string();
        assert!(
            err.contains("ca-key.pem") && err.contains("not a usable key"),
            "{err}"
        );
    }

    #[test]
    fn server_config_covers_wildcards() {
        let state = StateDir::open(None).unwrap();
        let ca = Ca::load_or_create(&state).unwrap();
        let config = server_config(&ca, &["a.test".into(), "*.b.test".into()]).unwrap();
        assert_eq!(config.alpn_protocols.len(), 2);
    }
}
