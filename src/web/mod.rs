//! The web side of the component: the consent pages the customer sees before and after giving
//! consent at Enedis, Enedis' OAuth callback, the one-time export downloads, and the operator's
//! `/healthz` and `/metrics`.
//!
//! - [`server`]: the axum router and its routes.
//! - [`state`]: what the handlers share; [`answer`]: what they answer, with its HTTP headers.
//! - [`listener`]: the accept loop and what one connection may cost (count, timeouts).
//! - [`consent`]: `/authorize` and `/enedis/callback`, the consent chain itself.
//! - [`export`]: `/export/{token}`, the one-time download links of the `export` command.
//! - [`ingest`]: `POST /ingest/{source}/{device}`, readings posted by the `http` sources' devices.
//! - Pure building blocks, no HTTP: [`sanitize`] makes the application's description safe,
//!   [`pages`] renders the HTML (the requested consent duration is `crate::time::duration`).

pub(crate) mod answer;
pub(crate) mod consent;
pub(crate) mod export;
pub mod ingest;
pub mod listener;
pub(crate) mod pages;
pub(crate) mod sanitize;
pub mod server;
pub mod state;
