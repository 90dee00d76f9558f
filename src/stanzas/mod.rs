//! Our own XML models (what xmpp-parsers does not cover), the namespaces we use, and the
//! stanzas written as text (notifications).

pub mod command;
pub mod consent;
pub mod form;
pub mod notification;
pub mod ns;
pub mod outgoing;
pub mod pubsub;
pub mod quoalise;
pub mod senml;
pub mod xml;
