//! `cfaccess tcp` (`ssh`, `rdp`, `smb`): an ssh ProxyCommand on stdin/stdout,
//! or a local listener with `--url`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::UsageError;
use crate::access::LoginOptions;
use crate::carrier::{self, Target, listener, pump};
use crate::cli::TcpArgs;
use crate::platform::stdio;

/// Headers a user may not set: they belong to the websocket handshake.
const RESERVED: &[&str] = &["host", "upgrade", "connection"];

pub async fn run(args: TcpArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    let target = Arc::new(target(&args)?);
    let listen = args.url.as_deref().or(args.listen.as_deref());
    let listen = listen.map(listen_addr).transpose()?;
    let access = Arc::new(super::access(LoginOptions {
        fedramp,
        qr: args.qr.choice(),
        ..LoginOptions::default()
    })?);

    if let Some(addr) = listen {
        let socket = listener::bind(&addr).await?;
        let local = socket.local_addr().map_or(addr, |a| a.to_string());
        eprintln!(
            "Listening on {local} for {}; press Ctrl-C to stop.",
            target.url.authority()
        );
        listener::serve(socket, access, target, stop_signal()).await;
        return Ok(ExitCode::SUCCESS);
    }

    let ws = carrier::open(&access, &target).await?;
    let host = target.url.authority();
    let stdin = stdio::stdin().context("cannot read standard input")?;
    let stdout = stdio::stdout().context("cannot write standard output")?;
    pump::run(ws, stdin, stdout)
        .await
        .with_context(|| format!("the session with {host} ended abnormally"))?;
    Ok(ExitCode::SUCCESS)
}

/// The application and the headers to send it, from the flags.
fn target(args: &TcpArgs) -> anyhow::Result<Target> {
    let url = super::hostname_url(args.hostname.as_deref(), "access ssh")?;
    let mut headers = HeaderMap::new();
    for raw in &args.header {
        let (name, value) = parse_header(raw)?;
        headers.append(name, value);
    }
    let service_token = match (&args.service_token_id, &args.service_token_secret) {
        (Some(id), Some(secret)) => {
            headers.insert(
                "cf-access-client-id",
                header_value("--service-token-id", id)?,
            );
            headers.insert(
                "cf-access-client-secret",
                header_value("--service-token-secret", secret)?,
            );
            true
        }
        (None, None) => false,
        _ => {
            return Err(UsageError(
                "a service token needs both --service-token-id and --service-token-secret".into(),
            )
            .into());
        }
    };
    if let Some(destination) = &args.destination {
        headers.insert(
            "cf-access-jump-destination",
            header_value("--destination", destination)?,
        );
    }
    Ok(Target {
        url,
        headers,
        service_token,
    })
}

/// `Name: value`, split at the first `:` with both sides trimmed.
fn parse_header(raw: &str) -> Result<(HeaderName, HeaderValue), UsageError> {
    let bad = |why: &str| UsageError(format!("-H '{raw}': {why}"));
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| bad("give it as 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| bad("not a valid header name"))?;
    if RESERVED.contains(&name.as_str()) || name.as_str().starts_with("sec-websocket-") {
        return Err(bad("this header belongs to the websocket handshake"));
    }
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("not a valid header value"))?;
    Ok((name, value))
}

fn header_value(flag: &str, value: &str) -> Result<HeaderValue, UsageError> {
    HeaderValue::from_str(value.trim())
        .map_err(|_| UsageError(format!("{flag}: not a value a header can carry")))
}

/// `host:port` from `127.0.0.1:2222`, `localhost:2222` or `tcp://localhost:2222`.
fn listen_addr(raw: &str) -> Result<String, UsageError> {
    let without_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let addr = without_scheme.split('/').next().unwrap_or_default();
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if port_ok {
        Ok(addr.to_owned())
    } else {
        Err(UsageError(format!(
            "--url '{raw}': give a local address with a port, like 127.0.0.1:2222"
        )))
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    crate::platform::signals::stop_signal().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_colon_and_trim() {
        let (n, v) = parse_header(" X-Thing :  a: b ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-thing", "a: b"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Host: evil").is_err());
        assert!(parse_header("Sec-WebSocket-Key: x").is_err());
        assert!(parse_header("Connection: close").is_err());
        assert!(parse_header("bad name: x").is_err());
        let (n, _) = parse_header("cf-access-token: t").unwrap();
        assert_eq!(n.as_str(), "cf-access-token");
    }

    #[test]
    fn listen_addresses_need_a_port() {
        assert_eq!(listen_addr("127.0.0.1:2222").unwrap(), "127.0.0.1:2222");
        assert_eq!(
            listen_addr("tcp://localhost:2222/x").unwrap(),
            "localhost:2222"
        );
        assert_eq!(listen_addr("[::1]:22").unwrap(), "[::1]:22");
        assert!(listen_addr("localhost").is_err());
        assert!(listen_addr(":22").is_err());
        assert!(listen_addr("h:99999").is_err());
    }
}
