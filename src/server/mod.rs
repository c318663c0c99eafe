pub mod ca_file;
pub mod sshd_config;
