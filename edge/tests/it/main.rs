//! access-edge end to end: real HTTPS on 127.0.0.1 through the edge profile,
//! the way clients reach it. One test binary, so that the signing keys are
//! made once for all of them (see `common`).

mod api;
mod ca;
mod carrier;
mod cert_sign;
mod common;
mod discovery;
mod faults;
mod hardening;
mod login;
mod org_exchange;
mod process;
mod ssh_logs;
mod terminal;
mod tokens;
mod ws;
