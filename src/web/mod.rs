//! The web side of the component: the consent pages the customer sees before and after giving
//! consent at Enedis, Enedis' OAuth callback, and the operator's `/healthz` and `/metrics`.
//!
//! - [`server`]: the axum router, shared state and HTTP headers.
//! - [`consent`]: `/authorize` and `/enedis/callback`, the consent chain itself.
//! - Pure building blocks, no HTTP: [`duration`] parses the requested consent duration,
//!   [`sanitize`] makes the application's description safe, [`pages`] renders the HTML.

pub mod consent;
pub mod duration;
pub mod pages;
pub mod sanitize;
pub mod server;
