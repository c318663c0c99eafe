//! `cfaccess doctor`: the checks users otherwise make by hand when Access
//! does not let them in, each with its result and, when it fails, the fix.
//!
//! The checks read and never repair: the config dir and its files are
//! inspected, not tightened (every other command tightens them as it goes,
//! which would hide what is wrong); tokens are read from their files, not
//! through the token store, which deletes an expired one. The network steps
//! go through the one HTTP client factory (so `CFACCESS_EDGE` and the proxy
//! variables count as they do for every command), each under its deadline
//! from `limits`. `ssh -G` runs with `CFACCESS_DOCTOR` set: ssh runs a
//! `Match exec` even then, and the `ssh-gen` it would start must not log in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::access::app_info::{self, AppInfo};
use crate::access::config_dir::{self, ConfigDir};
use crate::access::edge_profile::{self, EdgeProfile};
use crate::access::host::AppUrl;
use crate::access::{jwt, token_check, token_store};
use crate::inventory::remaining;
use crate::limits;
use crate::platform::private_dir;
use crate::platform::read::read_capped_string;
use crate::ssh::keys::{CertProblem, KeyFiles, check_cert};

/// Set for the `ssh -G` the doctor runs: `ssh-gen` then does nothing.
pub const PROBE_ENV: &str = "CFACCESS_DOCTOR";

/// A clock this far from the edge's breaks logins and certificates: the
/// edge's certificates may last minutes only, and app metadata from more
/// than 5 minutes ahead is refused.
const MAX_SKEW_S: i64 = 30;

pub use crate::ui::checklist::{Check, Status};

/// What to check.
pub struct Options {
    /// The application, if one was named.
    pub url: Option<AppUrl>,
    /// `ssh -F` for the ssh config check (default: ssh's own choice).
    pub ssh_config: Option<PathBuf>,
}

/// Everything the checks found out along the way.
#[derive(Default)]
struct Found {
    http: Option<reqwest::Client>,
    profile: Option<EdgeProfile>,
    proxy: Option<String>,
    app: Option<AppInfo>,
    app_reached: bool,
    date: Option<String>,
    metadata: Option<String>,
    uses_cert: bool,
}

/// Runs every check, in the order a user would debug: the local tools and
/// files, then the network to the app and its team, then the credentials.
pub async fn run(options: &Options) -> Vec<Check> {
    let mut checks = vec![ssh_client()];
    let dir = config_dir_path();
    checks.push(match &dir {
        Ok(dir) => config_dir(dir),
        Err(e) => Check::new("config-dir", Status::Fail, e.to_string())
            .fix(format!("set HOME or {}", config_dir::ENV)),
    });
    let mut found = Found::default();
    checks.push(edge_profile(&mut found));
    checks.push(proxy(&mut found));
    let Some(url) = &options.url else {
        checks.push(Check::new(
            "app",
            Status::Skip,
            "no application named: give its URL (cfaccess doctor https://app.example.com) to check the rest",
        ));
        return checks;
    };
    let dir = dir.ok();
    checks.push(dns("dns-app", &url.hostname(), &found).await);
    checks.push(reach_app(url, &mut found).await);
    checks.push(clock(&found));
    checks.push(app(url, dir.as_ref(), &mut found).await);
    match found.app.clone() {
        Some(app) => {
            checks.push(dns("dns-auth", &app.auth_domain, &found).await);
            checks.push(reach_auth(&app.auth_domain, &found).await);
        }
        None => {
            for id in ["dns-auth", "tls-auth"] {
                checks.push(Check::new(
                    id,
                    Status::Skip,
                    "the team's auth domain is not known: the app did not answer",
                ));
            }
        }
    }
    checks.push(token(url, dir.as_ref(), &found).await);
    checks.push(ssh_config(
        url,
        dir.as_ref(),
        options.ssh_config.as_deref(),
        &mut found,
    ));
    checks.push(certificate(url, dir.as_ref(), &found));
    checks
}

/// The config dir as [`ConfigDir::locate`] finds it, but without making it
/// private first: that would hide a bad mode from the check.
fn config_dir_path() -> Result<ConfigDir, config_dir::ConfigDirError> {
    if let Some(dir) = std::env::var_os(config_dir::ENV).filter(|d| !d.is_empty()) {
        let path = std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir));
        return Ok(ConfigDir::at(path));
    }
    let home = crate::platform::home::home_dir().ok_or(config_dir::ConfigDirError::NoHome)?;
    Ok(ConfigDir::at(home.join(".cloudflared")))
}

/// `program args…` to its end within [`limits::SSH_PROBE`]: its exit
/// status, stdout and stderr; `Err` when it cannot start or overruns (it is
/// killed then).
fn run_probe(mut cmd: Command) -> Result<(bool, String, String), String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // drained on their own threads, so a chatty child never blocks on a full pipe
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limits::SSH_PROBE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it did not finish within {}",
                    limits::show(limits::SSH_PROBE)
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    Ok((status.success(), out, err))
}

fn ssh_client() -> Check {
    let mut cmd = Command::new("ssh");
    cmd.arg("-V");
    match run_probe(cmd) {
        Ok((_, out, err)) => {
            let version = err.lines().chain(out.lines()).next().unwrap_or("").trim().to_owned();
            Check::new("ssh-client", Status::Ok, version.clone()).data(json!({ "version": version }))
        }
        Err(e) => Check::new("ssh-client", Status::Fail, format!("cannot run ssh -V: {e}")).fix(
            "install the OpenSSH client (openssh-client, or Windows' optional feature OpenSSH Client) and put ssh on PATH",
        ),
    }
}

/// Which files in the config dir hold secrets (what `tighten_file` guards).
fn is_secret(name: &str) -> bool {
    name.ends_with("-token") || name.ends_with("-cf_key") || name.ends_with("-cf_key-cert.pub")
}

fn config_dir(dir: &ConfigDir) -> Check {
    let path = dir.path();
    let shown = path.display().to_string();
    let exposure = match private_dir::inspect(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(
                "config-dir",
                Status::Warn,
                format!("{shown} does not exist yet"),
            )
            .fix("cfaccess login <url> creates it")
            .data(json!({ "path": shown }));
        }
        Err(e) => {
            return Check::new(
                "config-dir",
                Status::Fail,
                format!("cannot read {shown}: {e}"),
            )
            .fix(format!(
                "make it readable, or point {} elsewhere",
                config_dir::ENV
            ));
        }
    };
    let data = json!({ "path": shown, "mode": exposure.mode.map(|m| format!("{m:04o}")) });
    if let Some((owner, me)) = exposure.foreign_owner {
        return Check::new(
            "config-dir",
            Status::Fail,
            format!("{shown} is owned by uid {owner}, not by you (uid {me}); cfaccess refuses it"),
        )
        .fix(format!(
            "chown $(id -u) {shown}, or point {} at a dir of your own",
            config_dir::ENV
        ))
        .data(data);
    }
    if exposure.open_to_others() {
        let mode = exposure.mode.unwrap_or(0);
        return Check::new(
            "config-dir",
            Status::Fail,
            format!("{shown} has mode {mode:04o}: others may enter it and read your tokens"),
        )
        .fix(format!("chmod 700 {shown}"))
        .data(data);
    }
    let mut open = Vec::new();
    let mut secrets = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_secret(&name) {
                continue;
            }
            secrets += 1;
            if private_dir::inspect(&entry.path()).is_ok_and(|e| e.open_to_others()) {
                open.push(entry.path().display().to_string());
            }
        }
    }
    open.sort();
    if !open.is_empty() {
        return Check::new(
            "config-dir",
            Status::Fail,
            format!("others may read {}", open.join(", ")),
        )
        .fix(format!("chmod 600 {}", open.join(" ")))
        .data(data);
    }
    let mode = exposure
        .mode
        .map_or(String::new(), |m| format!(", mode {m:04o}"));
    Check::new(
        "config-dir",
        Status::Ok,
        format!("{shown}: yours{mode}, {secrets} secret files private"),
    )
    .data(data)
}

fn edge_profile(found: &mut Found) -> Check {
    let var = std::env::var_os(edge_profile::ENV).filter(|v| !v.is_empty());
    let profile = match EdgeProfile::from_env() {
        Ok(p) => p,
        Err(e) => {
            return Check::new("edge-profile", Status::Fail, e.to_string())
                .fix(format!("fix or unset {}", edge_profile::ENV));
        }
    };
    let check = match (&profile, var) {
        (Some(p), Some(path)) => Check::new(
            "edge-profile",
            Status::Ok,
            format!(
                "{}={}: {} names go to a local access-edge, trusting its CA",
                edge_profile::ENV,
                Path::new(&path).display(),
                p.hosts.len()
            ),
        ),
        _ => Check::new(
            "edge-profile",
            Status::Ok,
            format!(
                "{} not set: the real Cloudflare edge, system DNS and roots",
                edge_profile::ENV
            ),
        ),
    };
    match crate::access::http::client(profile.as_ref()) {
        Ok(client) => found.http = Some(client),
        Err(e) => {
            return Check::new(
                "edge-profile",
                Status::Fail,
                format!("cannot make the HTTP client: {e}"),
            )
            .fix(format!("fix or unset {}", edge_profile::ENV));
        }
    }
    found.profile = profile;
    check
}

/// The proxy variables reqwest reads for an `https` URL, in its order, with
/// any password hidden.
fn proxy(found: &mut Found) -> Check {
    let get = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::var(n)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (n.to_string(), v))
        })
    };
    let proxy = get(&["HTTPS_PROXY", "https_proxy"]).or_else(|| get(&["ALL_PROXY", "all_proxy"]));
    let no_proxy = get(&["NO_PROXY", "no_proxy"]);
    let Some((name, value)) = proxy else {
        return Check::new(
            "proxy",
            Status::Ok,
            "none (HTTPS_PROXY and ALL_PROXY are unset)",
        )
        .data(json!({ "proxy": null }));
    };
    let shown = hide_password(&value);
    found.proxy = Some(format!("{name}={shown}"));
    let mut summary = format!("{name}={shown}: requests to the app and its team go through it");
    if let Some((n, v)) = &no_proxy {
        summary.push_str(&format!(" (except {n}={v})"));
    }
    Check::new("proxy", Status::Ok, summary)
        .data(json!({ "proxy": shown, "no_proxy": no_proxy.map(|(_, v)| v) }))
}

fn hide_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => value.to_owned(),
    }
}

async fn dns(id: &'static str, host: &str, found: &Found) -> Check {
    if let Some(addr) = found.profile.as_ref().and_then(|p| p.address_for(host)) {
        return Check::new(
            id,
            Status::Ok,
            format!("{host} → {addr} (from the edge profile)"),
        )
        .data(json!({ "host": host, "addresses": [addr.to_string()] }));
    }
    let lookup = tokio::net::lookup_host((host.to_owned(), 443));
    let result = match tokio::time::timeout(limits::CONNECT, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip().to_string()).collect::<Vec<_>>()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            limits::show(limits::CONNECT)
        )),
    };
    match result {
        Ok(mut addrs) if !addrs.is_empty() => {
            addrs.dedup();
            Check::new(id, Status::Ok, format!("{host} → {}", addrs.join(", ")))
                .data(json!({ "host": host, "addresses": addrs }))
        }
        Ok(_) | Err(_) => {
            let why = result.err().unwrap_or_else(|| "no address".into());
            // through a proxy, the proxy resolves the name
            let status = if found.proxy.is_some() {
                Status::Warn
            } else {
                Status::Fail
            };
            Check::new(id, status, format!("cannot resolve {host}: {why}"))
                .fix("check the hostname, and your DNS (resolv.conf, VPN)")
                .data(json!({ "host": host, "addresses": [] }))
        }
    }
}

/// What to do when a request got no answer.
fn unreachable_fix(found: &Found, e: &reqwest::Error) -> String {
    let tls = crate::error::describe_reqwest(e).starts_with("TLS");
    // the request went to the proxy first
    if let Some(p) = &found.proxy {
        return format!("check the proxy {p} (or unset it), and your network");
    }
    if found.profile.is_some() {
        return format!(
            "is the access-edge behind {} running? start it (or unset {} for the real edge)",
            edge_profile::ENV,
            edge_profile::ENV
        );
    }
    if tls {
        return crate::error::TLS_HINT.into();
    }
    "check the hostname, your network and any firewall or VPN".into()
}

/// The app's discovery request, as every command makes it: it proves TCP,
/// TLS and HTTP, and its answer carries the edge's `Date` and the app's
/// metadata.
async fn reach_app(url: &AppUrl, found: &mut Found) -> Check {
    let Some(http) = &found.http else {
        return Check::new("tls-app", Status::Skip, "no HTTP client (see edge-profile)");
    };
    let request = http
        .head(url.url().clone())
        .header("cf-access-metadata-request", "true")
        .timeout(limits::DISCOVERY)
        .send();
    match request.await {
        Ok(response) => {
            found.app_reached = true;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            found.date = header("date");
            found.metadata = header("cf-access-metadata");
            let status = response.status().as_u16();
            Check::new(
                "tls-app",
                Status::Ok,
                format!("TLS to {} and an HTTP answer ({status})", url.authority()),
            )
            .data(json!({ "status": status }))
        }
        Err(e) => {
            let fix = unreachable_fix(found, &e);
            Check::new(
                "tls-app",
                Status::Fail,
                format!("cannot reach {url}: {}", crate::error::describe_reqwest(&e)),
            )
            .fix(fix)
        }
    }
}

fn clock(found: &Found) -> Check {
    let Some(date) = &found.date else {
        let why = if found.app_reached {
            "the edge's answer had no Date header"
        } else {
            "no answer from the edge to compare with"
        };
        return Check::new("clock", Status::Skip, why);
    };
    let Ok(theirs) = httpdate::parse_http_date(date) else {
        return Check::new(
            "clock",
            Status::Warn,
            format!("the edge's Date header is not a date: {date:?}"),
        );
    };
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    // a Date is cut to the whole second: the edge's time was half a second
    // later, on the average
    let skew = (secs(std::time::SystemTime::now()) - secs(theirs) - 0.5).round() as i64;
    let data = json!({ "skew_seconds": skew, "edge_date": date });
    let amount = limits::show(Duration::from_secs(skew.unsigned_abs()));
    // a Date has whole seconds, and the answer took some time to come
    if skew.abs() <= 2 {
        return Check::new("clock", Status::Ok, "in step with the edge's Date").data(data);
    }
    let way = if skew > 0 { "ahead of" } else { "behind" };
    let summary = format!("your clock is {amount} {way} the edge's Date ({date})");
    if skew.abs() <= MAX_SKEW_S {
        return Check::new("clock", Status::Ok, summary).data(data);
    }
    Check::new("clock", Status::Fail, summary)
        .fix("turn on time sync: timedatectl set-ntp true (Linux), sntp -sS time.apple.com (macOS), w32tm /resync (Windows)")
        .data(data)
}

/// Whether an Access application answers, from the discovery answer (or,
/// when the edge is out of reach, what an earlier discovery left).
async fn app(url: &AppUrl, dir: Option<&ConfigDir>, found: &mut Found) -> Check {
    let cached = dir.and_then(|d| app_info::cached(d, url));
    let (Some(http), Some(dir), Some(jwt)) = (&found.http, dir, &found.metadata) else {
        if let Some(app) = cached {
            let check = Check::new(
                "app",
                if found.app_reached {
                    Status::Fail
                } else {
                    Status::Skip
                },
                format!(
                    "not asked now; last seen as aud {} of {}",
                    app.aud, app.auth_domain
                ),
            );
            found.app = Some(app);
            return if found.app_reached {
                check.fix("check that this hostname is protected by Cloudflare Access")
            } else {
                check
            };
        }
        return if found.app_reached {
            Check::new(
                "app",
                Status::Fail,
                format!("no Access application answers at {url} (no cf-access-metadata header)"),
            )
            .fix("check that this hostname is protected by Cloudflare Access")
        } else {
            Check::new("app", Status::Skip, "the app did not answer")
        };
    };
    match app_info::verify_metadata(http, dir, url, jwt).await {
        Ok(app) => {
            let check = Check::new(
                "app",
                Status::Ok,
                format!("Access application {} of team {}", app.app_hostname, app.auth_domain),
            )
            .data(json!({ "aud": app.aud, "auth_domain": app.auth_domain, "app_hostname": app.app_hostname }));
            found.app = Some(app);
            check
        }
        Err(e) => Check::new("app", Status::Fail, e.to_string())
            .fix("check the hostname and your clock; a server that is not Access must not be logged in to"),
    }
}

async fn reach_auth(auth_domain: &str, found: &Found) -> Check {
    let Some(http) = &found.http else {
        return Check::new(
            "tls-auth",
            Status::Skip,
            "no HTTP client (see edge-profile)",
        );
    };
    let url = format!("https://{auth_domain}/cdn-cgi/access/certs");
    match http.get(&url).timeout(limits::JWKS).send().await {
        Ok(r) if r.status().is_success() => Check::new(
            "tls-auth",
            Status::Ok,
            format!(
                "TLS to {auth_domain} and its key set ({})",
                r.status().as_u16()
            ),
        ),
        Ok(r) => Check::new(
            "tls-auth",
            Status::Fail,
            format!("{url} answered {}", r.status().as_u16()),
        )
        .fix("the team's login domain is failing; try again later"),
        Err(e) => {
            let fix = unreachable_fix(found, &e);
            Check::new(
                "tls-auth",
                Status::Fail,
                format!(
                    "cannot reach {auth_domain}: {}",
                    crate::error::describe_reqwest(&e)
                ),
            )
            .fix(fix)
        }
    }
}

/// The token file's claims, read as they are (the store would delete an
/// expired one).
fn read_token(path: &Path) -> Option<(String, jwt::Claims)> {
    let text = read_capped_string(path, limits::TOKEN).ok()?;
    let token = token_store::compact_jws(&text)?.to_owned();
    let claims = jwt::peek(&token).ok()?;
    Some((token, claims))
}

async fn token(url: &AppUrl, dir: Option<&ConfigDir>, found: &Found) -> Check {
    let login = format!("cfaccess login {}", url.go_string());
    let (Some(dir), Some(app)) = (dir, &found.app) else {
        return Check::new(
            "token",
            Status::Skip,
            "the app is not known, so neither is its token file",
        );
    };
    let path = dir.app_token(app);
    let now = jwt::now();
    let team = match read_token(&dir.org_token(&app.auth_domain)) {
        Some((_, c)) if !c.is_expired(now) => format!(
            "; team token valid for {}",
            remaining(c.exp.unwrap_or(0), now).unwrap_or_default()
        ),
        Some(_) => "; team token expired".into(),
        None => "; no team token".into(),
    };
    let Some((token, claims)) = read_token(&path) else {
        let what = if path.exists() { "not a token" } else { "none" };
        return Check::new("token", Status::Fail, format!("app token: {what}{team}"))
            .fix(login)
            .data(json!({ "path": path.display().to_string(), "expires": null }));
    };
    let exp = claims.exp.unwrap_or(0);
    let email = claims.email.clone().unwrap_or_default();
    let data = json!({ "path": path.display().to_string(), "expires": exp, "email": email });
    let Some(left) = remaining(exp, now).filter(|_| !claims.is_expired(now)) else {
        let ago = remaining(now, exp).unwrap_or_else(|| "0s".into());
        return Check::new(
            "token",
            Status::Fail,
            format!("app token for {email} expired {ago} ago{team}"),
        )
        .fix(login)
        .data(data);
    };
    let summary = format!("app token for {email}, valid for {left}");
    let Some(http) = found.http.as_ref().filter(|_| found.app_reached) else {
        return Check::new(
            "token",
            Status::Ok,
            format!("{summary} (not checked with the edge){team}"),
        )
        .data(data);
    };
    match token_check::accepted(http, url, &token).await {
        Ok(true) => Check::new(
            "token",
            Status::Ok,
            format!("{summary}, accepted by the edge{team}"),
        )
        .data(data),
        Ok(false) => Check::new(
            "token",
            Status::Fail,
            format!("{summary}, but the edge refuses it (revoked, or the app changed){team}"),
        )
        .fix(login)
        .data(data),
        Err(e) => Check::new("token", Status::Warn, format!("{summary}; {e}{team}")).data(data),
    }
}

/// The first word of a `ProxyCommand`, without the quotes a shell removes.
fn program_of(command: &str) -> String {
    let command = command.trim_start();
    for q in ['\'', '"'] {
        if let Some(rest) = command.strip_prefix(q) {
            return rest.split(q).next().unwrap_or("").to_owned();
        }
    }
    command.split_whitespace().next().unwrap_or("").to_owned()
}

fn ssh_config(
    url: &AppUrl,
    dir: Option<&ConfigDir>,
    file: Option<&Path>,
    found: &mut Found,
) -> Check {
    let host = url.hostname();
    let mut install = format!("cfaccess ssh-config --hostname {host} --install");
    if let Some(f) = file {
        install.push_str(&format!(" --config {}", f.display()));
    }
    let mut cmd = Command::new("ssh");
    cmd.arg("-G");
    if let Some(f) = file {
        cmd.arg("-F").arg(f);
    }
    cmd.arg(&host).env(PROBE_ENV, "1");
    let out = match run_probe(cmd) {
        Ok((true, out, _)) => out,
        Ok((false, _, err)) => {
            return Check::new(
                "ssh-config",
                Status::Fail,
                format!(
                    "ssh -G {host} failed: {}",
                    err.lines().next().unwrap_or("").trim()
                ),
            )
            .fix("fix the ssh config file it names");
        }
        Err(e) => {
            return Check::new(
                "ssh-config",
                Status::Fail,
                format!("cannot run ssh -G {host}: {e}"),
            )
            .fix("install the OpenSSH client");
        }
    };
    let values = |key: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_owned())
            .collect()
    };
    let proxy = values("proxycommand").into_iter().next();
    let certs = values("certificatefile");
    let data = json!({ "proxycommand": proxy, "certificatefile": certs });
    let Some(proxy) = proxy.filter(|p| p != "none") else {
        return Check::new(
            "ssh-config",
            Status::Fail,
            format!("ssh {host} connects directly, not through cfaccess (no ProxyCommand)"),
        )
        .fix(install)
        .data(data);
    };
    let program = program_of(&proxy);
    let name = Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let exe = std::env::current_exe().ok();
    let ours = exe.as_deref() == Some(Path::new(&program)) || name.starts_with("cfaccess");
    if !ours {
        let (status, what) = if name.starts_with("cloudflared") {
            (Status::Warn, "the official cloudflared")
        } else {
            (Status::Fail, "another program")
        };
        return Check::new(
            "ssh-config",
            status,
            format!("ssh {host} goes through {what}: ProxyCommand {proxy}"),
        )
        .fix(format!(
            "{install} (it puts the block before what wins now)"
        ))
        .data(data);
    }
    // a binary moved or removed since the config was written (ssh runs a
    // bare name through PATH, so only a path is looked at)
    let has_dir = Path::new(&program)
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty());
    if has_dir && !Path::new(&program).exists() {
        return Check::new(
            "ssh-config",
            Status::Fail,
            format!("ssh {host} runs {program}, which does not exist (moved or removed?)"),
        )
        .fix(install)
        .data(data);
    }
    let in_dir = |c: &String| {
        c.ends_with("-cf_key-cert.pub")
            && dir.is_some_and(|d| Path::new(c).parent() == Some(d.path()))
    };
    found.uses_cert = certs.iter().any(in_dir);
    let mut summary = format!("ssh {host} → ProxyCommand {proxy}");
    match certs.iter().position(in_dir) {
        Some(0) => summary.push_str(&format!("; CertificateFile {}", certs[0])),
        Some(_) => {
            return Check::new(
                "ssh-config",
                Status::Warn,
                format!(
                    "{summary}; but CertificateFile {} comes before cfaccess's",
                    certs[0]
                ),
            )
            .fix(format!("{install} --short-lived-cert"))
            .data(data);
        }
        None => {
            if let Some(other) = certs.iter().find(|c| c.ends_with("-cf_key-cert.pub")) {
                return Check::new(
                    "ssh-config",
                    Status::Warn,
                    format!(
                        "{summary}; CertificateFile {other} is not in this config dir ({})",
                        dir.map_or(String::new(), |d| d.path().display().to_string())
                    ),
                )
                .fix(format!(
                    "{install} --short-lived-cert, or set {} to match",
                    config_dir::ENV
                ))
                .data(data);
            }
            summary.push_str(" (no short-lived certificate)");
        }
    }
    Check::new("ssh-config", Status::Ok, summary).data(data)
}

fn certificate(url: &AppUrl, dir: Option<&ConfigDir>, found: &Found) -> Check {
    let Some(dir) = dir else {
        return Check::new("certificate", Status::Skip, "no config dir");
    };
    let files = KeyFiles::new(dir, &url.key_stem());
    let renew = format!("cfaccess ssh-gen --hostname {} --force", url.go_string());
    let Ok(text) = read_capped_string(&files.cert, limits::SSH_FILE) else {
        let (status, summary) = if found.uses_cert {
            (
                Status::Warn,
                "none yet: ssh gets one (ssh-gen) before it connects",
            )
        } else {
            (
                Status::Skip,
                "none (the ssh config asks for no short-lived certificate)",
            )
        };
        return Check::new("certificate", status, summary);
    };
    let key = read_capped_string(&files.public, limits::SSH_FILE)
        .ok()
        .and_then(|l| ssh_key::PublicKey::from_openssh(l.trim()).ok());
    let Some(key) = key else {
        return Check::new(
            "certificate",
            Status::Fail,
            format!(
                "{} has no readable public key beside it",
                files.cert.display()
            ),
        )
        .fix(renew);
    };
    let now = jwt::now().max(0) as u64;
    let parsed = ssh_key::Certificate::from_openssh(text.trim()).ok();
    let data = parsed.as_ref().map_or(Value::Null, |c| {
        json!({ "path": files.cert.display().to_string(), "expires": c.valid_before(), "principals": c.valid_principals() })
    });
    let principals = parsed
        .as_ref()
        .map_or(String::new(), |c| c.valid_principals().join(", "));
    match check_cert(&text, key.key_data(), now, 0) {
        Ok(cert) => Check::new(
            "certificate",
            Status::Ok,
            format!(
                "valid for {}, principals {principals}",
                remaining(cert.valid_before() as i64, now as i64).unwrap_or_default()
            ),
        )
        .data(data),
        Err(CertProblem::Expired) => Check::new(
            "certificate",
            Status::Warn,
            format!("expired (principals {principals}); ssh-gen renews it before the next ssh"),
        )
        .data(data),
        Err(problem) => Check::new(
            "certificate",
            Status::Fail,
            format!("{}: {problem}", files.cert.display()),
        )
        .fix(renew)
        .data(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_programs_found() {
        assert_eq!(
            hide_password("http://me:secret@proxy:3128"),
            "http://me:***@proxy:3128/"
        );
        assert_eq!(hide_password("proxy:3128"), "proxy:3128");
        assert_eq!(
            program_of("/usr/bin/cfaccess access ssh --hostname %h"),
            "/usr/bin/cfaccess"
        );
        assert_eq!(
            program_of("'/opt/my tools/cfaccess' access ssh"),
            "/opt/my tools/cfaccess"
        );
        assert_eq!(
            program_of("\"C:\\Program Files\\cfaccess.exe\" access ssh"),
            "C:\\Program Files\\cfaccess.exe"
        );
    }
}
