//! Every deadline and size cap of cfaccess, in one place.
//!
//! cfaccess runs inside every ssh connection its users make, against servers
//! and config dirs it cannot trust to behave. These numbers are its promise
//! (the README's "Limits and guarantees" lists them): no network step waits
//! longer than its deadline, no body or file is read past its cap, and no
//! retry loop runs without a pause between tries or past its command's end.
//! The protocol's own timeouts (PROTOCOL.md) are kept where it gives one.

use std::time::Duration;

// ---- deadlines ------------------------------------------------------------

/// TCP connect plus the TLS handshake, for every request.
pub const CONNECT: Duration = Duration::from_secs(10);
/// App discovery, the `HEAD` with `cf-access-metadata-request` (section 2).
pub const DISCOVERY: Duration = Duration::from_secs(7);
/// Fetching the team's key set (section 2.4).
pub const JWKS: Duration = Duration::from_secs(10);
/// The token check (section 5).
pub const TOKEN_CHECK: Duration = Duration::from_secs(5);
/// The whole org-token exchange, every hop included (section 4.3).
pub const ORG_EXCHANGE: Duration = Duration::from_secs(7);
/// One long poll of the login service (section 4.4).
pub const LOGIN_POLL: Duration = Duration::from_secs(60);
/// How many polls a browser login makes before giving up.
pub const LOGIN_POLLS: usize = 10;
/// The shortest gap between two polls of the login service: a service that
/// says "not yet" at once must not make the wait a busy loop.
pub const LOGIN_POLL_GAP: Duration = Duration::from_secs(1);
/// The whole browser login, as the user is told when it starts.
pub const LOGIN_WAIT: Duration = Duration::from_secs(4 * 60);
/// `cert_sign` (section 7.4), request and answer.
pub const CERT_SIGN: Duration = Duration::from_secs(10);
/// The websocket upgrade, from the dial to the `101` and its headers (or a
/// refusal and its body), connect and TLS included.
pub const WS_UPGRADE: Duration = Duration::from_secs(10);
/// Opening a carrier end to end, logins excepted: every dial, discovery and
/// token check of section 6.2 together.
pub const CARRIER_OPEN: Duration = Duration::from_secs(30);
/// How long a waiter waits for another process's login (section 3).
pub const LOCK_WAIT: Duration = Duration::from_secs(600);
/// A JWT naming a key the cached key set lacks makes cfaccess fetch the set
/// again (the edge rotated its keys), but never a set younger than this: a
/// server naming unknown keys cannot make it fetch in a loop.
pub const JWKS_REFETCH_MIN_AGE: Duration = Duration::from_secs(2);

/// After a failed `accept` (out of file descriptors, say), the listener
/// waits this long before the next: the failure would repeat at once.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

// ---- size caps ------------------------------------------------------------

/// An error answer's body: only its first line is ever shown.
pub const ERROR_BODY: usize = 4 << 10;
/// `cert_sign`'s answer: a certificate and two short fields.
pub const CERT_SIGN_BODY: usize = 64 << 10;
/// The login service's sealed transfer: two tokens, boxed and base64'd.
pub const TRANSFER_BODY: usize = 64 << 10;
/// The team's key set, served and cached.
pub const JWKS_BODY: usize = 1 << 20;
/// A token, in a file or a header: real Access tokens are 1–3 KiB.
pub const TOKEN: usize = 32 << 10;
/// The signed app metadata kept beside the tokens.
pub const METADATA_FILE: usize = 32 << 10;
/// An ssh key, public key or certificate file.
pub const SSH_FILE: usize = 64 << 10;
/// A lock file (`{"pid":…,"start_time":…}`) or a login URL file.
pub const LOCK_FILE: usize = 16 << 10;
/// The edge profile (`CFACCESS_EDGE`): a CA and a few names.
pub const EDGE_PROFILE: usize = 1 << 20;
/// An ssh config file that `ssh-config --install` edits.
pub const SSH_CONFIG_FILE: usize = 4 << 20;

/// A duration as a user reads it, the one way cfaccess writes them all
/// (deadlines, time left on a token or a certificate): `40s`, `4m`, `1m30s`,
/// `2h5m`, `23h59m`, `25h`. Hours are not folded into days: "23h59m" and
/// "24h" read as neighbours, "23h59m" and "1d0h" do not.
pub fn show(limit: Duration) -> String {
    let s = limit.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A size cap as a user reads it: `4 KiB`, `1 MiB`.
pub fn show_size(cap: usize) -> String {
    if cap >= 1 << 20 && cap.is_multiple_of(1 << 20) {
        format!("{} MiB", cap >> 20)
    } else if cap >= 1 << 10 && cap.is_multiple_of(1 << 10) {
        format!("{} KiB", cap >> 10)
    } else {
        format!("{cap} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_a_user_reads_them() {
        assert_eq!(show(LOGIN_WAIT), "4m");
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_secs(0)), "0s");
        assert_eq!(show(Duration::from_secs(7500)), "2h5m");
        assert_eq!(show(Duration::from_secs(86_399)), "23h59m");
        assert_eq!(show(Duration::from_secs(86_400)), "24h");
        assert_eq!(show(WS_UPGRADE), "10s");
        assert_eq!(show_size(ERROR_BODY), "4 KiB");
        assert_eq!(show_size(JWKS_BODY), "1 MiB");
        assert_eq!(show_size(100), "100 bytes");
    }
}
