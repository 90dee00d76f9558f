//! Enedis Data Connect 2026: the `enedis` source.
//!
//! - [`config`]: the `[[source]] type = "enedis"` table.
//! - [`client`]: HTTP calls (token, quotas, throttling back-off, the upstream call log).
//! - [`service`]: history on demand with the store as a per-day cache, the daily poll, consents.
//! - [`meter`]: the usage point and series of a consented meter.
//! - The pure layer, no I/O: [`parse`] (response bodies to readings), [`errors`] (error bodies to
//!   codes and messages), [`windows`] (which `dateDebut`/`dateFin` ranges to request).
//!
//! The consent pages and the OAuth callback are served by `crate::web`. Facts about the APIs come from
//! `reference/enedis-data-connect-2026/` (NOTES.md, the Swagger files and the recorded fixtures,
//! which the tests read from the shared folder beside the repository: they come from a
//! third-party repository and are not copied into this one).

pub mod client;
pub mod config;
pub mod errors;
pub mod meter;
pub mod parse;
pub mod service;
pub mod windows;

pub use config::EnedisConfig;
pub use service::Enedis;

/// The zone of Enedis' naive local timestamps and of its days.
pub const TZ: chrono_tz::Tz = chrono_tz::Europe::Paris;
