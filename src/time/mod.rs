//! Time, once: the wall clock, the Europe/Paris calendar and ISO 8601 durations.
//!
//! Every part of the component that turns instants into days (the demo's daily energy, Enedis'
//! requests and responses, command forms, consent expiry) goes through [`paris`], so they all
//! agree on where a day starts and on how a wall-clock time that is skipped or repeated by a
//! daylight-saving change is read. Instants are unix seconds (`i64`) everywhere, as in the store.
//!
//! - [`now`]: the current instant.
//! - [`paris`]: local dates and times of instants, local midnights, days of 23, 24 or 25 hours.
//! - [`duration`]: ISO 8601 durations, the clock kind (`PT30M`, `PT1.5S`) and the calendar kind
//!   of consents (`P1Y6M`).
//!
//! This module depends on nothing else of the crate, so every layer may use it.

pub(crate) mod duration;
pub(crate) mod paris;

/// The current instant, unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
