//! Our own XML models (what xmpp-parsers does not cover), the namespaces we use, and the
//! stanzas written as text (notifications).

pub mod command;
pub(crate) mod consent;
pub mod form;
pub(crate) mod notification;
pub(crate) mod ns;
pub mod outgoing;
pub mod pubsub;
pub mod quoalise;
pub mod senml;
pub mod senml_json;
pub mod template;
pub(crate) mod xml;
