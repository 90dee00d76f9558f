//! Enedis Data Connect 2026: the pure layer of the `enedis` source (response models, conversion
//! to readings, request windows, error bodies).
//!
//! Nothing here does I/O: the HTTP client feeds response bodies to [`parse`] and [`errors`], and
//! asks [`windows`] which `dateDebut`/`dateFin` ranges to request. Facts about the APIs come from
//! `reference/enedis-data-connect-2026/` (NOTES.md, the Swagger files and the recorded fixtures,
//! which the tests read from the shared folder beside the repository: they come from a
//! third-party repository and are not copied into this one).

pub mod errors;
pub mod parse;
pub mod windows;

/// The zone of Enedis' naive local timestamps and of its days.
pub const TZ: chrono_tz::Tz = chrono_tz::Europe::Paris;
