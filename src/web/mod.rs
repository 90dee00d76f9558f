//! The consent web pages: what the customer sees before and after giving consent at Enedis.
//!
//! Pure building blocks, no HTTP: [`duration`] parses the requested consent duration,
//! [`sanitize`] makes the application's description safe, [`pages`] renders the HTML.

pub mod duration;
pub mod pages;
pub mod sanitize;
