//! The carrier: the websocket upgrade on an app host, the choice of origin
//! (or bastion destination), and the relay that pumps the bytes.

pub(crate) mod destination;
pub(crate) mod relay;
pub(crate) mod upgrade;
