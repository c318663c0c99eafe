//! Faults a test can inject, to see how a client copes with a login service
//! that fails or never answers (docs/protocol.md 4.4: a status of 500 or more is an
//! error for the client; a hung poll must end in the client's own timeout),
//! with app metadata that must not be trusted (docs/protocol.md 2.3–2.5), and with
//! a carrier that is slow to answer, cannot reach its origin, or cuts a
//! session mid-transfer (docs/protocol.md 6: the client must end with an error,
//! promptly, never hang), and with a `cert_sign` whose answer must not be
//! written to disk as it is (docs/protocol.md 7.5: a client checks the
//! certificate before trusting it), with a `Date` header that says the
//! client's clock is off (what `cfaccess doctor` measures), and with a
//! Cloudflare API that answers garbage, a proxy's error page, or nothing
//! (docs/protocol.md 11: a client must say so, not misread it).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the next transfer poll should do instead of its normal work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollFault {
    /// Answer this status at once.
    Fail(u16),
    /// Never answer (until the client gives up or the edge stops).
    Stall,
}

/// A flaw to put into every `cf-access-metadata` JWT until cleared: each is
/// something a client must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataFault {
    /// The signature does not match the claims.
    BadSignature,
    /// The header names a key that is not in the JWKS.
    UnknownKid,
    /// `hostname` names another host than the one asked.
    WrongHostname,
    /// `iat` is more than 24 hours old.
    StaleIat,
    /// `iat` is more than 5 minutes in the future.
    FutureIat,
    /// `auth_domain` is not under `.cloudflareaccess.com`.
    ForeignAuthDomain,
}

/// What `cert_sign` answers instead of the certificate asked for, until
/// cleared. Except for [`CertSignFault::Error`], a fault applies only to a
/// request that would have been granted (valid token, an app with a CA, a
/// usable public key), so a test sees the fault and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertSignFault {
    /// Answer `{"status":status,"message":message}` with that HTTP status,
    /// whatever the request.
    Error { status: u16, message: String },
    /// A valid user certificate for a freshly generated key (of the same type
    /// when possible) instead of the key sent.
    OtherKey,
    /// 200 with a body that is not JSON at all.
    Garbage,
    /// 200 with the usual JSON, but a `certificate` that does not parse.
    BadCertificate,
    /// A host certificate (principal: the app's hostname) for the key sent.
    HostCertificate,
    /// A user certificate for the key sent whose validity already ended.
    Expired,
}

/// What the Cloudflare API at `api.cloudflare.com` answers instead, until
/// cleared, whatever the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiFault {
    /// 200 with a body that is not JSON.
    Garbage,
    /// This status with an HTML body, like a proxy's error page.
    Status(u16),
    /// Never answer (until the client gives up or the edge stops).
    Stall,
}

impl ApiFault {
    /// The names `access-edge fault api` takes (`status` takes a status).
    pub const NAMES: [&'static str; 3] = ["garbage", "status", "stall"];

    pub fn name(self) -> &'static str {
        match self {
            ApiFault::Garbage => "garbage",
            ApiFault::Status(_) => "status",
            ApiFault::Stall => "stall",
        }
    }

    /// The fault named `name`; `status` answers `status`.
    pub fn from_name(name: &str, status: u16) -> Option<ApiFault> {
        Some(match name {
            "garbage" => ApiFault::Garbage,
            "status" => ApiFault::Status(status),
            "stall" => ApiFault::Stall,
            _ => return None,
        })
    }
}

impl MetadataFault {
    /// Every fault, with the name the control socket and `access-edge fault
    /// metadata` use.
    pub const ALL: [(MetadataFault, &'static str); 6] = [
        (MetadataFault::BadSignature, "bad-signature"),
        (MetadataFault::UnknownKid, "unknown-kid"),
        (MetadataFault::WrongHostname, "wrong-hostname"),
        (MetadataFault::StaleIat, "stale-iat"),
        (MetadataFault::FutureIat, "future-iat"),
        (MetadataFault::ForeignAuthDomain, "foreign-auth-domain"),
    ];

    pub fn name(self) -> &'static str {
        MetadataFault::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }

    pub fn from_name(name: &str) -> Option<MetadataFault> {
        MetadataFault::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }
}

impl CertSignFault {
    /// The names of the faults, as `access-edge fault cert-sign` takes them
    /// (`error` takes a status and a message besides).
    pub const NAMES: [&'static str; 6] = [
        "error",
        "other-key",
        "garbage",
        "bad-certificate",
        "host-certificate",
        "expired",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            CertSignFault::Error { .. } => "error",
            CertSignFault::OtherKey => "other-key",
            CertSignFault::Garbage => "garbage",
            CertSignFault::BadCertificate => "bad-certificate",
            CertSignFault::HostCertificate => "host-certificate",
            CertSignFault::Expired => "expired",
        }
    }

    /// The fault named `name`; `error` answers `status` with `message`.
    pub fn from_name(name: &str, status: u16, message: &str) -> Option<CertSignFault> {
        Some(match name {
            "error" => CertSignFault::Error {
                status,
                message: message.to_owned(),
            },
            "other-key" => CertSignFault::OtherKey,
            "garbage" => CertSignFault::Garbage,
            "bad-certificate" => CertSignFault::BadCertificate,
            "host-certificate" => CertSignFault::HostCertificate,
            "expired" => CertSignFault::Expired,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(crate) struct Faults {
    /// The flaw put into app metadata, if any.
    metadata: Mutex<Option<MetadataFault>>,
    /// Pending failures: how many polls are left, and with what status.
    fail: Mutex<(u32, u16)>,
    /// How many polls are left to stall.
    stall: Mutex<u32>,
    /// Cut each carried connection once it has sent this many bytes to its
    /// client (`u64::MAX`: never). An atomic: every origin read looks at it.
    cut_after: AtomicU64,
    /// Answer every upgrade as if the origin refused.
    refuse_origin: AtomicBool,
    /// Wait this long before answering an upgrade.
    handshake_delay: Mutex<Option<Duration>>,
    /// What `cert_sign` answers instead, if anything.
    cert_sign: Mutex<Option<CertSignFault>>,
    /// What the Cloudflare API answers instead, if anything.
    api: Mutex<Option<ApiFault>>,
    /// Seconds added to the `Date` header of every answer (0: none): the
    /// clock of a client that is off by as much, as the client sees it.
    date_skew: std::sync::atomic::AtomicI64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            metadata: Mutex::default(),
            fail: Mutex::default(),
            stall: Mutex::default(),
            cut_after: AtomicU64::new(u64::MAX),
            refuse_origin: AtomicBool::new(false),
            handshake_delay: Mutex::default(),
            cert_sign: Mutex::default(),
            api: Mutex::default(),
            date_skew: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl Faults {
    /// The next `n` transfer polls answer `status` at once.
    pub fn fail_login_service(&self, n: u32, status: u16) {
        *self.fail.lock().unwrap_or_else(|p| p.into_inner()) = (n, status);
    }

    /// The next `n` transfer polls never answer.
    pub fn stall_login_service(&self, n: u32) {
        *self.stall.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    /// Puts `fault` into every metadata JWT from now on (`None`: none).
    pub fn set_metadata_fault(&self, fault: Option<MetadataFault>) {
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// The flaw to put into metadata now.
    pub fn metadata_fault(&self) -> Option<MetadataFault> {
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cut every carried connection, running ones included, abruptly (no
    /// close frame) once it has relayed `bytes` to its client (`None`: stop).
    pub fn cut_websockets_after(&self, bytes: Option<u64>) {
        self.cut_after
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How many bytes a carried connection may send its client before it is
    /// cut.
    pub fn cut_after(&self) -> Option<u64> {
        let limit = self.cut_after.load(Ordering::Relaxed);
        (limit != u64::MAX).then_some(limit)
    }

    /// Answer upgrades with the 502 of an origin that refused (or stop).
    pub fn refuse_origin(&self, refuse: bool) {
        self.refuse_origin.store(refuse, Ordering::Relaxed);
    }

    pub fn origin_refused(&self) -> bool {
        self.refuse_origin.load(Ordering::Relaxed)
    }

    /// Wait `delay` before answering each upgrade (`None`: answer at once).
    pub fn delay_handshake(&self, delay: Option<Duration>) {
        *self
            .handshake_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = delay;
    }

    pub fn handshake_delay(&self) -> Option<Duration> {
        *self
            .handshake_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `cert_sign` answer `fault` from now on (`None`: answer right).
    pub fn set_cert_sign_fault(&self, fault: Option<CertSignFault>) {
        *self.cert_sign.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    pub fn cert_sign_fault(&self) -> Option<CertSignFault> {
        self.cert_sign
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes the Cloudflare API answer `fault` from now on (`None`: answer
    /// right).
    pub fn set_api_fault(&self, fault: Option<ApiFault>) {
        *self.api.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    pub fn api_fault(&self) -> Option<ApiFault> {
        *self.api.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a `Date` header `seconds` ahead of the edge's clock (behind when
    /// negative; 0: the right time).
    pub fn skew_date(&self, seconds: i64) {
        self.date_skew.store(seconds, Ordering::Relaxed);
    }

    pub fn date_skew(&self) -> i64 {
        self.date_skew.load(Ordering::Relaxed)
    }

    /// Every fault off.
    pub fn clear(&self) {
        self.fail_login_service(0, 0);
        self.stall_login_service(0);
        self.set_metadata_fault(None);
        self.cut_websockets_after(None);
        self.refuse_origin(false);
        self.delay_handshake(None);
        self.set_cert_sign_fault(None);
        self.set_api_fault(None);
        self.skew_date(0);
    }

    /// One line per fault in force, for `access-edge fault list`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let (fail, status) = *self.fail.lock().unwrap_or_else(|p| p.into_inner());
        if fail > 0 {
            lines.push(format!(
                "login-service: fail with {status} ({})",
                polls(fail)
            ));
        }
        let stall = *self.stall.lock().unwrap_or_else(|p| p.into_inner());
        if stall > 0 {
            lines.push(format!("login-service: stall ({})", polls(stall)));
        }
        if let Some(bytes) = self.cut_after() {
            lines.push(format!(
                "cut-after: {bytes} bytes to each carried connection's client"
            ));
        }
        if self.origin_refused() {
            lines.push("origin: refuse (every websocket upgrade gets 502)".into());
        }
        if let Some(delay) = self.handshake_delay() {
            lines.push(format!(
                "handshake-delay: {}",
                humantime::format_duration(delay)
            ));
        }
        if let Some(fault) = self.cert_sign_fault() {
            lines.push(match fault {
                CertSignFault::Error { status, message } => {
                    format!("cert-sign: error {status} {message:?}")
                }
                other => format!("cert-sign: {}", other.name()),
            });
        }
        if let Some(fault) = self.metadata_fault() {
            lines.push(format!("metadata: {}", fault.name()));
        }
        match self.api_fault() {
            Some(ApiFault::Status(status)) => {
                lines.push(format!("api: status {status} (an HTML error page)"));
            }
            Some(fault) => lines.push(format!("api: {}", fault.name())),
            None => {}
        }
        let skew = self.date_skew();
        if skew != 0 {
            lines.push(format!("date-skew: {skew:+}s in every Date header"));
        }
        lines
    }

    /// Takes the fault for one transfer poll, if any is pending (failures
    /// before stalls).
    pub fn take_poll_fault(&self) -> Option<PollFault> {
        {
            let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
            if fail.0 > 0 {
                fail.0 -= 1;
                return Some(PollFault::Fail(fail.1));
            }
        }
        let mut stall = self.stall.lock().unwrap_or_else(|p| p.into_inner());
        if *stall > 0 {
            *stall -= 1;
            return Some(PollFault::Stall);
        }
        None
    }
}

/// How many polls a login service fault has left.
fn polls(n: u32) -> String {
    if n == u32::MAX {
        "every poll until cleared".into()
    } else {
        format!("the next {n} polls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_turns_everything_off_and_list_says_what_is_on() {
        let f = Faults::default();
        assert!(f.describe().is_empty());
        f.fail_login_service(u32::MAX, 503);
        f.refuse_origin(true);
        f.set_metadata_fault(Some(MetadataFault::StaleIat));
        f.set_api_fault(Some(ApiFault::Status(502)));
        f.skew_date(-300);
        assert_eq!(
            f.describe(),
            [
                "login-service: fail with 503 (every poll until cleared)",
                "origin: refuse (every websocket upgrade gets 502)",
                "metadata: stale-iat",
                "api: status 502 (an HTML error page)",
                "date-skew: -300s in every Date header"
            ]
        );
        f.clear();
        assert!(f.describe().is_empty());
        assert_eq!(f.take_poll_fault(), None);
    }

    #[test]
    fn fault_names_round_trip() {
        for (fault, name) in MetadataFault::ALL {
            assert_eq!(MetadataFault::from_name(name), Some(fault));
            assert_eq!(fault.name(), name);
        }
        for name in ApiFault::NAMES {
            assert_eq!(ApiFault::from_name(name, 502).unwrap().name(), name);
        }
        for name in CertSignFault::NAMES {
            assert_eq!(
                CertSignFault::from_name(name, 500, "x").unwrap().name(),
                name
            );
        }
    }

    #[test]
    fn faults_run_out() {
        let f = Faults::default();
        assert_eq!(f.take_poll_fault(), None);
        f.fail_login_service(2, 503);
        f.stall_login_service(1);
        assert_eq!(f.take_poll_fault(), Some(PollFault::Fail(503)));
        assert_eq!(f.take_poll_fault(), Some(PollFault::Fail(503)));
        assert_eq!(f.take_poll_fault(), Some(PollFault::Stall));
        assert_eq!(f.take_poll_fault(), None);
    }

    #[test]
    fn carrier_faults_are_off_until_set() {
        let f = Faults::default();
        assert_eq!(f.cut_after(), None);
        assert!(!f.origin_refused());
        assert_eq!(f.handshake_delay(), None);
        f.cut_websockets_after(Some(0));
        f.refuse_origin(true);
        f.delay_handshake(Some(Duration::from_millis(5)));
        assert_eq!(f.cut_after(), Some(0));
        assert!(f.origin_refused());
        assert_eq!(f.handshake_delay(), Some(Duration::from_millis(5)));
        f.cut_websockets_after(None);
        assert_eq!(f.cut_after(), None);
    }

    #[test]
    fn a_cert_sign_fault_stays_until_cleared() {
        let f = Faults::default();
        assert_eq!(f.cert_sign_fault(), None);
        f.set_cert_sign_fault(Some(CertSignFault::Garbage));
        assert_eq!(f.cert_sign_fault(), Some(CertSignFault::Garbage));
        assert_eq!(f.cert_sign_fault(), Some(CertSignFault::Garbage));
        f.set_cert_sign_fault(None);
        assert_eq!(f.cert_sign_fault(), None);
    }
}
