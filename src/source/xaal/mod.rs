//! The xAAL source: the home-automation bus that `xaal-lib` 0.9 devices speak (stack 7).
//!
//! A datagram is a CBOR array `[7, ts_sec, ts_usec, targets, ciphertext]`; the ciphertext is a
//! ChaCha20-Poly1305 seal of the CBOR array `[source, dev_type, msg_type, action, body?]`, with the
//! timestamp as nonce and the raw `targets` bytes as associated data. The whole bus shares one key,
//! derived from a passphrase with scrypt (docs/architecture.md §5.3).
//!
//! - [`key`]: the shared key ([`Key::from_passphrase`], [`Key::from_hex`]).
//! - [`message`]: the typed [`Message`] model and its body [`Value`]s.
//! - [`codec`]: [`Codec`] seals our messages with unique timestamps and opens theirs, rejecting
//!   wrong versions, forged or tampered datagrams, stale or future timestamps and replays; every
//!   rejection is counted ([`Counters`]) and logged at most once per sender per minute
//!   ([`RejectLog`]).
//!
//! - [`config`]: the `[[source]] type = "xaal"` table ([`XaalConfig`]), checked once at config
//!   load into [`XaalSettings`] (typed values, derived key).
//! - [`bus`]: the multicast socket ([`bus::BusSocket`]).
//! - [`devices`]: the table of devices heard, their alive timeouts and pending requests.
//! - [`mapping`]: which attribute of which device class feeds which series, in which unit.
//! - [`gateway`]: the source task, a `gateway.basic` device on the bus.

pub(crate) mod bus;
pub(crate) mod codec;
pub(crate) mod config;
pub(crate) mod devices;
pub(crate) mod gateway;
pub(crate) mod key;
pub(crate) mod mapping;
pub(crate) mod message;

#[cfg(test)]
mod tests;

pub use codec::{Codec, Counters, DecodeError, EncodeError, RejectLog};
pub(crate) use config::XaalConfig;
pub use key::{Key, KeyError};
pub use message::{Message, MsgType, Timestamp, Value};

/// The stack version this codec speaks (field 0 of every datagram).
pub(crate) const VERSION: u64 = 7;

/// Largest UDP payload over IPv4; anything bigger is rejected unread.
pub(crate) const MAX_DATAGRAM: usize = 65_507;

/// How far (in seconds) a datagram's timestamp may be from our clock, either way.
pub(crate) const WINDOW_SECS: u64 = 120;
