//! Every deadline and size cap of cfaccess, in one place.
//!
//! cfaccess runs inside every ssh connection its users make, against servers
//! and config dirs it cannot trust to behave. These numbers are its promise
//! (the README's "Limits and guarantees" lists them): no network step waits
//! longer than its deadline, no body or file is read past its cap, and no
//! retry loop runs without a pause between tries or past its command's end.
//! The protocol's own timeouts (docs/protocol.md) are kept where it gives one.

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
/// The shortest gap between two polls of the login service: a service that
/// says "not yet" at once must not make the wait a busy loop.
pub const LOGIN_POLL_GAP: Duration = Duration::from_secs(1);
/// The whole browser login, as the user is told when it starts; polls go
/// on (at least [`LOGIN_POLL_GAP`] apart) until it runs out.
pub const LOGIN_WAIT: Duration = Duration::from_secs(4 * 60);
/// Sets another [`LOGIN_WAIT`] (`90s`, `2m`, `1m30s`; plain seconds too),
/// up to [`LOCK_WAIT`], which is how long other processes wait on ours.
pub const LOGIN_WAIT_ENV: &str = "CFACCESS_LOGIN_WAIT";
/// `cert_sign` (section 7.4), request and answer.
pub const CERT_SIGN: Duration = Duration::from_secs(10);
/// The websocket upgrade, from the dial to the `101` and its headers (or a
/// refusal and its body), connect and TLS included.
pub const WS_UPGRADE: Duration = Duration::from_secs(10);
/// Opening a carrier end to end, logins excepted: every dial, discovery and
/// token check of section 6.2 together.
pub const CARRIER_OPEN: Duration = Duration::from_secs(30);
/// One exchange with the ssh-agent (`ssh-gen --agent`, `logout`): a local
/// process that answers at once, or is stuck.
pub const AGENT: Duration = Duration::from_secs(5);
/// One Cloudflare API call (`cfaccess server`), answer included.
pub const API: Duration = Duration::from_secs(15);
/// `ssh -V` and `ssh -G`, which `cfaccess doctor` runs.
pub const SSH_PROBE: Duration = Duration::from_secs(10);
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

/// The browser login's whole wait: [`LOGIN_WAIT`], or what
/// [`LOGIN_WAIT_ENV`] says; `Err` is the message for a value that is not a
/// duration from 1s to [`LOCK_WAIT`].
pub fn login_wait() -> Result<Duration, String> {
    match std::env::var(LOGIN_WAIT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(LOGIN_WAIT),
        Ok(text) if text.trim().is_empty() => Ok(LOGIN_WAIT),
        Ok(text) => parse(&text)
            .filter(|d| (Duration::from_secs(1)..=LOCK_WAIT).contains(d))
            .ok_or_else(|| {
                format!(
                    "{LOGIN_WAIT_ENV}={text:?} is not a wait from 1s to {}",
                    show(LOCK_WAIT)
                )
            }),
        Err(_) => Err(format!("{LOGIN_WAIT_ENV} is not UTF-8")),
    }
}

/// A duration as [`show`] writes it (`4m`, `1m30s`, `90s`) or plain seconds.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    let mut seen_unit = false;
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
                number.clear();
                seen_unit = true;
            }
            _ => return None,
        }
    }
    (seen_unit && number.is_empty()).then(|| Duration::from_secs(total))
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
        assert_eq!(show(Duration::from_secs(0)), "0s");
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(show(Duration::from_secs(86399)), "23h59m");
        assert_eq!(show_size(ERROR_BODY), "4 KiB");
        assert_eq!(show_size(JWKS_BODY), "1 MiB");
        assert_eq!(show_size(100), "100 bytes");
    }

    #[test]
    fn durations_parse_as_they_are_shown() {
        for d in [LOGIN_WAIT, WS_UPGRADE, Duration::from_secs(90)] {
            assert_eq!(parse(&show(d)), Some(d));
        }
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse("1h2m3s"), Some(Duration::from_secs(3723)));
        for bad in ["", "m", "3x", "1.5m", "2m3", "-1s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
