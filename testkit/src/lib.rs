//! Test tooling shared by the component's integration tests and its benchmarks: servers they
//! start for themselves, in temp dirs, on free loopback ports.
//!
//! A crate of its own so that benches use it as a dependency rather than by including test
//! source files. Nothing is skipped when a server is missing: the caller panics and says what to
//! install.

pub mod pg;

pub use pg::PgCluster;
