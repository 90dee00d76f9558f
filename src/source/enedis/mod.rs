//! Enedis Data Connect 2026: the `enedis` source.
//!
//! - [`config`]: the `[[source]] type = "enedis"` table.
//! - [`client`]: HTTP calls (token, quotas, throttling back-off, the upstream call log).
//! - [`service`]: history on demand with the store as a per-day cache, the daily poll, consents.
//! - [`meter`]: the usage point and series of a consented meter.
//! - The pure layer, no I/O: [`parse`] (response bodies to readings), [`errors`] (error bodies to
//!   codes and messages), [`windows`] (which `dateDebut`/`dateFin` ranges to request).
//!
//! The consent pages and the OAuth callback are served by `crate::web`. What the component
//! relies on about the APIs (endpoints, response shapes, time rules, quotas, error bodies) is
//! written down in docs/architecture.md §5.2; the tests run against a local fake Data Connect
//! (testkit/python/quoalise_testkit/fake_dataconnect.py) serving the fixtures of tests/fixtures/enedis/, written by
//! this project for synthetic meters.

/// A file of tests/fixtures/enedis/ (written by its make_fixtures.py), for the tests of the
/// modules below (defined before them, so they see it).
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/enedis/",
            $name
        ))
    };
}

pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod errors;
pub(crate) mod meter;
pub(crate) mod parse;
pub mod service;
pub(crate) mod windows;

pub use config::EnedisConfig;
pub use service::Enedis;
