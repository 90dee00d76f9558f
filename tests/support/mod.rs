//! Servers that integration tests start for themselves, in temp dirs, on free loopback ports.
//!
//! Include with `mod support;`. Nothing is skipped when a server is missing: the test fails and
//! says what to install.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod pg;

pub use pg::PgCluster;
