//! `cfaccess ssh-gen --hostname h`: a short-lived ssh certificate for the
//! host, signed by the app's CA (PROTOCOL.md 7).
//!
//! ssh runs this before every connection (`Match exec`), so when the
//! certificate on disk is for our key and stays valid for the margin, it
//! exits at once: no runtime, no HTTP client, no request.

use std::process::ExitCode;

use anyhow::Context;

use crate::access::config_dir::ConfigDir;
use crate::access::host::AppUrl;
use crate::access::lock::{self, Acquired};
use crate::access::login_service::Redirect;
use crate::access::{LoginOptions, show_other_login};
use crate::cli::SshGenArgs;
use crate::error::WithHint;
use crate::ssh::cert_sign::{self, CertSignError};
use crate::ssh::keys::{KeyFiles, check_cert};

pub fn run(args: SshGenArgs, fedramp: bool) -> anyhow::Result<ExitCode> {
    let url = super::hostname_url(args.hostname.as_deref(), "ssh-gen")?;
    let dir = ConfigDir::locate()?;
    let files = KeyFiles::new(&dir, &url.key_stem());
    if !args.force && usable(&files, &args) {
        tracing::debug!(
            "the certificate on disk is good for {} s more at least",
            args.margin
        );
        return Ok(ExitCode::SUCCESS);
    }
    super::block_on(fetch(url, files, args, fedramp))
}

/// Whether the certificate on disk will do, without asking anyone.
fn usable(files: &KeyFiles, args: &SshGenArgs) -> bool {
    match files.usable_cert(crate::access::jwt::now().max(0) as u64, args.margin) {
        Ok(cert) => args.key_type.is_none_or(|t| t.matches(cert.public_key())),
        Err(why) => {
            tracing::debug!("a new certificate is needed: {why}");
            false
        }
    }
}

async fn fetch(
    url: AppUrl,
    files: KeyFiles,
    args: SshGenArgs,
    fedramp: bool,
) -> anyhow::Result<ExitCode> {
    let access = super::access(LoginOptions {
        fedramp,
        qr: args.qr.choice(),
        ..LoginOptions::default()
    })?;
    access.store().dir().ensure()?;
    // Many ssh started at once: one asks cert_sign, the others wait for it.
    let check = || usable(&files, &args).then(String::new);
    let _lock = match lock::acquire(&files.cert, check, show_other_login).await? {
        Acquired::Token(_) => return Ok(ExitCode::SUCCESS),
        Acquired::Lock(lock) => lock,
    };
    if !args.force && usable(&files, &args) {
        return Ok(ExitCode::SUCCESS);
    }

    let (app, token) = access.app_and_token(&url, Redirect::FullUrl).await?;
    let (public_line, key) = files.ensure_pair(args.key_type)?;
    let http = access.http()?;
    let signed = match cert_sign::sign(http, &token, &public_line).await {
        Err(CertSignError::TokenRefused { .. }) => {
            tracing::info!("cert_sign refused the token; finding the app again and logging in");
            let (_, token) = access.after_refusal(&url, &app, Redirect::FullUrl).await?;
            cert_sign::sign(http, &token, &public_line).await
        }
        other => other,
    }
    .with_context(|| format!("cannot get an ssh certificate for {}", url.authority()))?;

    let now = crate::access::jwt::now().max(0) as u64;
    let cert = check_cert(&signed.certificate, &key, now, 0)
        .map_err(|why| {
            anyhow::anyhow!("cert_sign returned a certificate that cannot be used: {why}")
        })
        .hint("try again; if it persists, the app's SSH CA is misconfigured")?;
    files.write_cert(&signed.certificate)?;
    // One line when a certificate is new (every few minutes at most): when
    // sshd refuses it, the principal is the first thing to check.
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(cert.valid_before());
    eprintln!(
        "cfaccess: new ssh certificate for {}: principal {}, valid until {}",
        url.authority(),
        cert.valid_principals()
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(", "),
        httpdate::fmt_http_date(until),
    );
    tracing::debug!(key_id = %cert.key_id(), "wrote {}", files.cert.display());
    Ok(ExitCode::SUCCESS)
}
