//! What a person at a terminal sees while cfaccess waits on them: the live
//! line of a browser login's wait, and a QR code of the login URL for a
//! phone. Nothing here knows a protocol type; what is drawn goes to stderr,
//! since stdout may be an ssh session or a token a script reads.

pub mod checklist;
pub mod qr;
pub mod wait;
