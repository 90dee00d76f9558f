//! XMPP extensions we serve, one module per spec.

pub mod adhoc;
pub mod disco;
pub mod ping;
pub mod pubsub;
pub mod rsm;
pub mod version;
