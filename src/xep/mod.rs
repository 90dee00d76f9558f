//! XMPP extensions we serve, one module per spec.

pub mod adhoc;
pub(crate) mod disco;
pub(crate) mod ping;
pub(crate) mod pubsub;
pub(crate) mod rsm;
pub(crate) mod version;
