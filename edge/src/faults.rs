//! Faults a test can inject, to see how a client copes with a login service
//! that fails or never answers (PROTOCOL.md 4.4: a status of 500 or more is an
//! error for the client; a hung poll must end in the client's own timeout),
//! and with app metadata that must not be trusted (PROTOCOL.md 2.3–2.5).

use std::sync::Mutex;

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

#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The flaw put into app metadata, if any.
    metadata: Mutex<Option<MetadataFault>>,
    /// Pending failures: how many polls are left, and with what status.
    fail: Mutex<(u32, u16)>,
    /// How many polls are left to stall.
    stall: Mutex<u32>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
