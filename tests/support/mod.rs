//! Helpers of the integration tests, one job per file. Include with `mod support;`.
//!
//! What benches need too (the throwaway PostgreSQL cluster) lives in the `quoalise-testkit`
//! crate (testkit/) instead, so that benches never include test source files.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod commands;
pub mod delivery;
pub mod fixtures;
pub mod router;
pub mod web;
pub mod xml;
