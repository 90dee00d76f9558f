//! Our own XML models (what xmpp-parsers does not cover) and the namespaces we use.

pub mod command;
pub mod form;
pub mod ns;
pub mod pubsub;
pub mod quoalise;
pub mod senml;
