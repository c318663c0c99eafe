//! Everything that differs from one OS to another, one file per concern,
//! each with its `cfg` branches inside. Nothing here knows a protocol type.

pub mod agent_socket;
pub mod atomic_file;
pub mod browser;
pub mod desktop;
pub mod dir_watch;
pub mod exec;
pub mod home;
pub mod private_dir;
pub mod process;
pub mod read;
pub mod service;
pub mod short_path;
pub mod signals;
pub mod stdio;
pub mod terminal;
pub mod users;
