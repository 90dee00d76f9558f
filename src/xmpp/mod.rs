//! The XEP-0114 link and the stanza router.

pub mod connection;
pub mod framing;
pub mod limits;
pub mod parse;
pub mod router;
