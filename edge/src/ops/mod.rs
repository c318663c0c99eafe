//! What the operator and the tests drive: the config and the state dir, the
//! control socket, faults and counters, the edge profile, and the headless
//! browser.

pub mod browse;
pub mod config;
pub mod control;
pub(crate) mod counters;
pub(crate) mod faults;
pub(crate) mod profile;
pub(crate) mod state;
