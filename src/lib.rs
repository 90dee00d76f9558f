//! quoalise-component: an XEP-0114 external component publishing energy data in the Quoalise
//! protocol.
//!
//! # Layout
//!
//! - [`config`]: the values of `component.toml` every layer reads (sections, durations, secrets).
//! - [`settings`]: the file as a whole, every key documented, checked before anything starts.
//! - [`model`]: domain types (usage points, series, grants); no XML, no SQL.
//! - [`store`]: the [`store::Store`] trait and its SQLite and PostgreSQL backends.
//! - [`source`]: data sources; they send [`source::SourceEvent`]s, never touch XMPP or SQL.
//! - [`publisher`]: persists what sources send; publishes live batches with their
//!   notifications in one transaction (the outbox).
//! - [`delivery`]: sends the outbox while the link is up, rate-limited; handles bounces.
//! - [`access`]: who may see what (admins, grants).
//! - [`audit`]: verifying the audit trail's hash chain.
//! - [`privacy`]: erasure of readings at consent end.
//! - [`lease`]: which instance runs each source's task, when several share one database.
//! - [`time`]: the clock, the Europe/Paris calendar, ISO 8601 durations.
//! - [`xmpp`]: the XEP-0114 link (login, keepalive, reconnect, writer) and the stanza router.
//! - [`xep`]: one module per XMPP extension we serve (disco, ping, version).
//! - [`stanzas`]: our own XML models and namespaces.
//! - [`app`]: wiring, supervision and graceful shutdown.
//! - [`admin`]: `quoalise-component admin …`, the store administered from the command line.
//! - [`web`]: the consent pages (description sanitising, HTML rendering).
//! - [`metrics`]: counters and gauges in the Prometheus text format.
//! - [`health`]: what healthy means (progress of the link, a store that answers), for
//!   `/healthz` and the systemd watchdog.

/// mimalloc instead of the system allocator, for every binary built on this crate: cheaper small
/// allocations and frees across the runtime's threads (measured in `scripts/bench_fanout_sink.py`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access;
pub mod admin;
pub mod app;
pub mod audit;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod health;
pub mod lease;
pub mod metrics;
pub mod model;
pub mod privacy;
pub mod publisher;
pub mod request;
pub mod settings;
pub mod source;
pub mod stanzas;
pub mod store;
pub mod time;
pub mod web;
pub mod xep;
pub mod xmpp;
