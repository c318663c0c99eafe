//! `cfaccess server check`: the server's side of short-lived certificates,
//! as a checklist with a fix for each gap. Exits 1 when something needed is
//! missing; changes nothing.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use ssh_key::HashAlg;

use super::sshd::Effective;
use super::{Root, api, ca_file, principal_of, sshd_config};
use crate::access::host::AppUrl;
use crate::cli::ServerCheckArgs;
use crate::commands::UsageError;
use crate::platform::users;
use crate::ui::checklist::{self, Check, Status};

/// How long the listening check waits for sshd's banner.
const BANNER_WAIT: Duration = Duration::from_secs(3);

pub async fn run(args: ServerCheckArgs) -> anyhow::Result<ExitCode> {
    let hostname = match &args.hostname {
        Some(raw) => Some(
            AppUrl::parse(raw)
                .map_err(|e| UsageError(e.to_string()))?
                .hostname(),
        ),
        None => None,
    };
    let mut principals = Vec::new();
    for email in &args.user {
        principals.push((email.trim().to_owned(), principal_of(email, "--user")?));
    }
    let root = Root::new(args.paths.root.as_deref())?;
    let checks = checks(&args, &root, hostname.as_deref(), &principals).await;
    let heading = format!(
        "cfaccess server check{}",
        hostname
            .as_deref()
            .map(|h| format!(" for {h}"))
            .unwrap_or_default()
    );
    checklist::print(
        &checks,
        Some(&heading),
        ("hostname", hostname.as_deref()),
        args.json,
    )
}

async fn checks(
    args: &ServerCheckArgs,
    root: &Root,
    hostname: Option<&str>,
    principals: &[(String, String)],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let setup_fix = format!(
        "cfaccess server setup --hostname {}",
        hostname.unwrap_or("<app host>")
    );
    let sshd = match super::sshd_for(root, &args.paths) {
        Ok(sshd) => sshd,
        Err(e) => {
            checks.push(
                Check::new("sshd", Status::Fail, e.to_string())
                    .fix("install OpenSSH's server, or give --sshd and --sshd-config"),
            );
            return checks;
        }
    };
    checks.push(
        Check::new(
            "sshd",
            Status::Ok,
            format!("{} with {}", sshd.binary.display(), sshd.config.display()),
        )
        .data(json!({"binary": sshd.binary, "config": sshd.config})),
    );
    let effective = match sshd.test().and_then(|()| sshd.effective(None)) {
        Ok(effective) => {
            checks.push(Check::new(
                "config",
                Status::Ok,
                "sshd -t accepts the configuration",
            ));
            effective
        }
        Err(said) => {
            checks.push(
                Check::new("config", Status::Fail, format!("sshd rejects it: {said}"))
                    .fix("correct the line sshd names, then run sshd -t"),
            );
            return checks;
        }
    };

    let pubkey = effective.get("pubkeyauthentication").unwrap_or("?");
    checks.push(if pubkey == "yes" {
        Check::new("pubkey", Status::Ok, "pubkey authentication is on")
    } else {
        Check::new(
            "pubkey",
            Status::Fail,
            format!("sshd -T shows pubkeyauthentication {pubkey}"),
        )
        .fix(setup_fix.clone())
    });

    let file_keys = ca_file_check(&effective, &setup_fix, &mut checks);
    checks.push(app_ca_check(args, hostname, file_keys.as_deref(), &setup_fix).await);
    for (email, principal) in principals {
        checks.push(user_check(root, &sshd.config, email, principal));
    }
    checks.push(listening_check(&effective));
    checks
}

/// The `TrustedUserCAKeys` file: named, readable, holding keys. Returns
/// its keys when there are some.
fn ca_file_check(
    effective: &Effective,
    setup_fix: &str,
    checks: &mut Vec<Check>,
) -> Option<Vec<ssh_key::PublicKey>> {
    let Some(path) = effective.trusted_ca_file() else {
        checks.push(
            Check::new(
                "ca-file",
                Status::Fail,
                "sshd trusts no user CA (trustedusercakeys none)",
            )
            .fix(setup_fix),
        );
        return None;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            checks.push(
                Check::new(
                    "ca-file",
                    Status::Fail,
                    format!(
                        "sshd trusts the CAs in {}, which cannot be read: {e}",
                        path.display()
                    ),
                )
                .fix(setup_fix),
            );
            return None;
        }
    };
    let ca_file::CaKeys { keys, bad } = ca_file::keys(&text);
    let keys: Vec<ssh_key::PublicKey> = keys.into_iter().map(|(_, key)| key).collect();
    let bad: Vec<usize> = bad.into_iter().map(|b| b.line).collect();
    let data = json!({
        "path": path,
        "keys": keys.iter().map(|k| k.fingerprint(HashAlg::Sha256).to_string()).collect::<Vec<_>>(),
        "bad_lines": bad,
    });
    checks.push(if keys.is_empty() {
        Check::new(
            "ca-file",
            Status::Fail,
            format!("{} holds no CA key", path.display()),
        )
        .fix(setup_fix)
        .data(data)
    } else if !bad.is_empty() {
        Check::new(
            "ca-file",
            Status::Warn,
            format!(
                "{} holds {} CA key{}, and lines sshd skips: {}",
                path.display(),
                keys.len(),
                if keys.len() == 1 { "" } else { "s" },
                bad.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .fix("remove or correct those lines")
        .data(data)
    } else {
        Check::new(
            "ca-file",
            Status::Ok,
            format!(
                "sshd trusts {} in {}",
                match keys.len() {
                    1 => "1 CA key".to_owned(),
                    n => format!("{n} CA keys"),
                },
                path.display()
            ),
        )
        .data(data)
    });
    Some(keys)
}

/// The app's current CA (from the API) is among the file's keys.
async fn app_ca_check(
    args: &ServerCheckArgs,
    hostname: Option<&str>,
    file_keys: Option<&[ssh_key::PublicKey]>,
    setup_fix: &str,
) -> Check {
    let Some(hostname) = hostname else {
        return Check::new(
            "app-ca",
            Status::Skip,
            "no --hostname: the app's CA is not compared",
        );
    };
    let api = match super::api_for(&args.api) {
        Ok(Some(api)) => api,
        Ok(None) => {
            return Check::new(
                "app-ca",
                Status::Skip,
                format!(
                    "no API token: the CA of {hostname} is not compared (set {} and {})",
                    api::TOKEN_ENV,
                    api::ACCOUNT_ENV
                ),
            );
        }
        Err(e) => {
            return Check::new("app-ca", Status::Fail, crate::error::describe(&e));
        }
    };
    let found = async {
        let apps = api.apps().await?;
        let Some(app) = api::find_app(&apps, hostname) else {
            return Ok(Err(format!(
                "no Access application for {hostname} in {}",
                api.scope().describe()
            )));
        };
        Ok(match api.ca(&app.id).await? {
            Some(ca) => Ok(ca),
            None => Err(format!("the Access app {hostname} has no SSH CA yet")),
        })
    };
    let ca = match found.await {
        Ok(Ok(ca)) => ca,
        Ok(Err(missing)) => {
            return Check::new("app-ca", Status::Fail, missing)
                .fix(format!("{setup_fix} --create-ca"));
        }
        Err(e) => {
            let e: api::ApiError = e;
            let mut check = Check::new("app-ca", Status::Fail, e.to_string());
            if let Some(advice) = e.advice() {
                check = check.fix(advice);
            }
            return check;
        }
    };
    let key = match ca_file::parse_key(&ca.public_key, "the Cloudflare API's CA") {
        Ok(key) => key,
        Err(e) => return Check::new("app-ca", Status::Fail, e.to_string()),
    };
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let trusted = file_keys.is_some_and(|keys| keys.iter().any(|k| k.key_data() == key.key_data()));
    if trusted {
        Check::new(
            "app-ca",
            Status::Ok,
            format!("the CA of {hostname} ({fingerprint}) is trusted"),
        )
        .data(json!({"fingerprint": fingerprint}))
    } else {
        Check::new(
            "app-ca",
            Status::Fail,
            format!("the current CA of {hostname} ({fingerprint}) is not in sshd's CA file"),
        )
        .fix(setup_fix)
        .data(json!({"fingerprint": fingerprint}))
    }
}

/// `email` can log in: its Unix user exists, or a `Match User` rule lets
/// another user in with its principal.
fn user_check(root: &Root, config: &Path, email: &str, principal: &str) -> Check {
    let config_read = sshd_config::read(config, &sshd_config::Disk).ok();
    let mapped = config_read
        .as_ref()
        .map(|c| users_mapped_to(c, principal))
        .unwrap_or_default();
    if let Some(user) = mapped.first() {
        return Check::new(
            "user",
            Status::Ok,
            format!("{email} logs in as {user} (Match User {user}, principal {principal})"),
        )
        .data(json!({"email": email, "unix_user": user}));
    }
    let shut_out = config_read.as_ref().and_then(|c| {
        let command = c.for_user("authorizedprincipalscommand", principal)?;
        (!c.maps_user(principal, principal)).then(|| command.args.join(" "))
    });
    match (users::exists(root.path(), principal), shut_out) {
        (Ok(true), Some(command)) => {
            let other = command.strip_prefix("/bin/echo ").unwrap_or(&command);
            Check::new(
                "user",
                Status::Fail,
                format!(
                    "the Unix user {principal} exists, but a Match User {principal} rule lets in only the certificate of {other}, not {email}'s"
                ),
            )
            .fix(format!(
                "remove {principal}'s --map rule from sshd's config, or log in as {principal} with that identity"
            ))
            .data(json!({"email": email, "unix_user": principal}))
        }
        (Ok(true), None) => Check::new(
            "user",
            Status::Ok,
            format!("{email} logs in as the Unix user {principal}"),
        )
        .data(json!({"email": email, "unix_user": principal})),
        (Ok(false), _) => Check::new(
            "user",
            Status::Fail,
            format!("no Unix user {principal} for {email}"),
        )
        .fix(format!(
            "cfaccess server setup --user {email} --create-user, or --map USER={email}"
        ))
        .data(json!({"email": email, "unix_user": null})),
        (Err(e), _) => Check::new(
            "user",
            Status::Fail,
            format!("cannot look up the Unix user {principal}: {e}"),
        ),
    }
}

/// The users of `Match User <name>` blocks that let a certificate for
/// `principal` in (Cloudflare's `AuthorizedPrincipalsCommand /bin/echo`).
fn users_mapped_to(config: &sshd_config::SshdConfig, principal: &str) -> Vec<String> {
    let mut users: Vec<String> = config
        .directives
        .iter()
        .filter(|d| d.keyword == "authorizedprincipalscommand")
        .filter_map(|d| match d.match_criteria.as_deref() {
            Some([kind, user]) if kind.eq_ignore_ascii_case("user") => Some(user.clone()),
            _ => None,
        })
        .filter(|user| config.maps_user(user, principal))
        .collect();
    users.dedup();
    users
}

/// Something answers with an SSH banner on the first address sshd listens on.
fn listening_check(effective: &Effective) -> Check {
    let addrs: Vec<SocketAddr> = effective
        .all("listenaddress")
        .iter()
        .filter_map(|a| connectable(a))
        .collect();
    let Some(first) = addrs.first() else {
        return Check::new("listening", Status::Skip, "sshd -T names no listen address");
    };
    let answered = addrs
        .iter()
        .find_map(|addr| banner(addr).map(|b| (addr, b)));
    match answered {
        Some((addr, banner)) => Check::new(
            "listening",
            Status::Ok,
            format!("sshd answers on {addr} ({banner})"),
        )
        .data(json!({"address": addr.to_string(), "banner": banner})),
        None => Check::new(
            "listening",
            Status::Fail,
            format!("nothing answers with an SSH banner on {first}"),
        )
        .fix("start sshd (systemctl start ssh, or service ssh start)"),
    }
}

/// A listen address (`0.0.0.0:22`, `[::]:22`) as one to connect to.
fn connectable(text: &str) -> Option<SocketAddr> {
    let mut addr: SocketAddr = text
        .parse()
        .ok()
        .or_else(|| text.to_socket_addrs().ok()?.next())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Some(addr)
}

/// The first line an SSH server sends, when it starts with `SSH-`.
fn banner(addr: &SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(addr, BANNER_WAIT).ok()?;
    stream.set_read_timeout(Some(BANNER_WAIT)).ok()?;
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        let n = stream.read(&mut buf[got..]).ok()?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].contains(&b'\n') {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let line = line.lines().next()?.trim();
    line.starts_with("SSH-").then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_through_loopback() {
        assert_eq!(
            connectable("0.0.0.0:22"),
            Some("127.0.0.1:22".parse().unwrap())
        );
        assert_eq!(
            connectable("[::]:2222"),
            Some("[::1]:2222".parse().unwrap())
        );
        assert_eq!(
            connectable("10.0.0.1:22"),
            Some("10.0.0.1:22".parse().unwrap())
        );
        assert_eq!(connectable("nonsense"), None);
    }
}
