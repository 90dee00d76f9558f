//! Sealing and opening stack-7 datagrams, with the replay cache and rejection accounting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ciborium::value::{Integer, Value as Cbor};
use uuid::Uuid;

use super::key::Key;
use super::message::{Message, MsgType, Timestamp, Value};
use super::{MAX_DATAGRAM, VERSION, WINDOW_SECS};

/// CBOR tag of a UUID (16-byte string) inside bodies.
pub(crate) const TAG_UUID: u64 = 37;
/// CBOR tag of a URL (text string) inside bodies.
pub(crate) const TAG_URL: u64 = 32;

/// Most `(sec, usec)` remembered per sender (about 8 messages a second over the window); past
/// that, anything not newer than the oldest forgotten one counts as a replay.
pub(crate) const MAX_NONCES_PER_SENDER: usize = 2048;
/// Most senders remembered by the replay cache.
pub(crate) const MAX_SENDERS: usize = 4096;

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    #[error("malformed datagram: {0}")]
    Malformed(&'static str),
    #[error("unsupported stack version {0} (we speak {VERSION})")]
    BadVersion(u64),
    #[error("timestamp {sec} is more than {WINDOW_SECS} s away from our clock ({now})")]
    OutOfWindow { sec: u64, now: u64 },
    #[error("authentication tag mismatch (wrong key or tampered datagram)")]
    BadTag,
    #[error("malformed payload: {0}")]
    MalformedPayload(&'static str),
    #[error("replayed timestamp {sec}.{usec:06} from {sender}")]
    Replay { sender: Uuid, sec: u64, usec: u32 },
}

/// Why one of our messages could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("an integer in the body is outside the CBOR range")]
    IntOutOfRange,
    #[error("CBOR encoding failed: {0}")]
    Cbor(String),
    #[error("encryption failed")]
    Seal,
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
}

/// How many datagrams were accepted, and refused for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub(crate) accepted: u64,
    pub(crate) too_large: u64,
    pub(crate) malformed: u64,
    pub(crate) bad_version: u64,
    pub(crate) out_of_window: u64,
    pub(crate) bad_tag: u64,
    pub(crate) malformed_payload: u64,
    pub(crate) replay: u64,
}

impl Counters {
    fn record(&mut self, err: &DecodeError) {
        let c = match err {
            DecodeError::TooLarge(_) => &mut self.too_large,
            DecodeError::Malformed(_) => &mut self.malformed,
            DecodeError::BadVersion(_) => &mut self.bad_version,
            DecodeError::OutOfWindow { .. } => &mut self.out_of_window,
            DecodeError::BadTag => &mut self.bad_tag,
            DecodeError::MalformedPayload(_) => &mut self.malformed_payload,
            DecodeError::Replay { .. } => &mut self.replay,
        };
        *c = c.saturating_add(1);
    }

    /// All refusals.
    pub(crate) fn rejected(&self) -> u64 {
        [
            self.too_large,
            self.malformed,
            self.bad_version,
            self.out_of_window,
            self.bad_tag,
            self.malformed_payload,
            self.replay,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Logs rejections at most once per sender per minute (with the number suppressed since), so
/// a noisy or hostile peer cannot flood the log.
#[derive(Debug, Default)]
pub struct RejectLog {
    senders: HashMap<IpAddr, LogSlot>,
    /// Rejections not logged because the table of senders was full.
    pub(crate) unlogged: u64,
}

#[derive(Debug, Clone, Copy)]
struct LogSlot {
    since: u64,
    suppressed: u64,
}

impl RejectLog {
    /// Most senders tracked at once.
    pub(crate) const MAX_SENDERS: usize = 1024;
    /// Seconds between two log lines for one sender.
    pub(crate) const PERIOD_SECS: u64 = 60;

    pub(crate) fn new() -> RejectLog {
        RejectLog::default()
    }

    /// Records a rejection from `peer`; logs it (and returns `true`) unless this sender was
    /// already logged in the last minute.
    pub(crate) fn record(&mut self, peer: IpAddr, err: &DecodeError, now: Timestamp) -> bool {
        let period = Self::PERIOD_SECS;
        if !self.senders.contains_key(&peer) && self.senders.len() >= Self::MAX_SENDERS {
            self.senders
                .retain(|_, s| now.sec < s.since.saturating_add(period));
            if self.senders.len() >= Self::MAX_SENDERS {
                self.unlogged = self.unlogged.saturating_add(1);
                return false;
            }
        }
        match self.senders.get_mut(&peer) {
            Some(slot) if now.sec < slot.since.saturating_add(period) => {
                slot.suppressed = slot.suppressed.saturating_add(1);
                false
            }
            slot => {
                let suppressed = slot.map(|s| s.suppressed).unwrap_or(0);
                tracing::warn!(%peer, error = %err, suppressed, "xAAL datagram rejected");
                self.senders.insert(
                    peer,
                    LogSlot {
                        since: now.sec,
                        suppressed: 0,
                    },
                );
                true
            }
        }
    }
}

/// The recent `(sec, usec)` of one sender.
#[derive(Debug, Default)]
struct SenderNonces {
    seen: BTreeSet<Timestamp>,
    /// Everything at or below this was forgotten for lack of room: refuse it.
    floor: Option<Timestamp>,
}

impl SenderNonces {
    fn prune(&mut self, oldest_sec: u64) {
        while self.seen.first().is_some_and(|t| t.sec < oldest_sec) {
            self.seen.pop_first();
        }
        if self.floor.is_some_and(|f| f.sec < oldest_sec) {
            self.floor = None;
        }
    }

    fn newest(&self) -> Option<Timestamp> {
        self.seen.last().copied().or(self.floor)
    }
}

/// Encodes our messages and decodes the bus's, for one key.
pub struct Codec {
    cipher: ChaCha20Poly1305,
    nonces: HashMap<Uuid, SenderNonces>,
    last_sent: Option<Timestamp>,
    counters: Counters,
    reject_log: RejectLog,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("senders", &self.nonces.len())
            .field("last_sent", &self.last_sent)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Codec {
    pub fn new(key: &Key) -> Codec {
        Codec {
            cipher: ChaCha20Poly1305::new(key.as_bytes().into()),
            nonces: HashMap::new(),
            last_sent: None,
            counters: Counters::default(),
            reject_log: RejectLog::new(),
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    /// The timestamp of the last message we sealed (the tests check it only grows).
    #[cfg(test)]
    pub(crate) fn last_sent(&self) -> Option<Timestamp> {
        self.last_sent
    }

    /// [`Codec::decode`], logging a rejection at most once per `peer` per minute.
    pub(crate) fn decode_from(
        &mut self,
        datagram: &[u8],
        peer: IpAddr,
        now: Timestamp,
    ) -> Result<Message, DecodeError> {
        let result = self.decode(datagram, now);
        if let Err(err) = &result {
            self.reject_log.record(peer, err, now);
        }
        result
    }

    /// Opens a datagram received at `now`, counting the outcome.
    pub fn decode(&mut self, datagram: &[u8], now: Timestamp) -> Result<Message, DecodeError> {
        let result = self.decode_inner(datagram, now);
        match &result {
            Ok(_) => self.counters.accepted = self.counters.accepted.saturating_add(1),
            Err(err) => self.counters.record(err),
        }
        result
    }

    fn decode_inner(&mut self, datagram: &[u8], now: Timestamp) -> Result<Message, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLarge(datagram.len()));
        }
        let outer = parse_cbor(datagram).ok_or(DecodeError::Malformed("not one CBOR item"))?;
        let Cbor::Array(fields) = outer else {
            return Err(DecodeError::Malformed("not an array"));
        };
        let version = match fields.first() {
            Some(Cbor::Integer(v)) => {
                u64::try_from(*v).map_err(|_| DecodeError::Malformed("negative version"))?
            }
            _ => return Err(DecodeError::Malformed("no version")),
        };
        if version != VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let [_, sec, usec, targets, ciphertext] = fields.as_slice() else {
            return Err(DecodeError::Malformed("not an array of 5"));
        };
        let sec = as_u64(sec).ok_or(DecodeError::Malformed("bad ts_sec"))?;
        let usec = as_u64(usec)
            .filter(|u| *u < 1_000_000)
            .ok_or(DecodeError::Malformed("bad ts_usec"))? as u32;
        let (Cbor::Bytes(targets_raw), Cbor::Bytes(ciphertext)) = (targets, ciphertext) else {
            return Err(DecodeError::Malformed(
                "targets or ciphertext not a byte string",
            ));
        };
        if sec.abs_diff(now.sec) > WINDOW_SECS {
            return Err(DecodeError::OutOfWindow { sec, now: now.sec });
        }
        let targets = parse_targets(targets_raw)?;
        let ts = Timestamp::new(sec, usec);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&ts.nonce()),
                Payload {
                    msg: ciphertext,
                    aad: targets_raw,
                },
            )
            .map_err(|_| DecodeError::BadTag)?;
        let mut message = parse_plaintext(&plain)?;
        message.timestamp = ts;
        message.targets = targets;
        self.check_replay(message.source, ts, now)?;
        Ok(message)
    }

    /// Refuses a `(sec, usec)` already seen from `source`, then remembers it.
    fn check_replay(
        &mut self,
        source: Uuid,
        ts: Timestamp,
        now: Timestamp,
    ) -> Result<(), DecodeError> {
        let oldest_sec = now.sec.saturating_sub(WINDOW_SECS);
        if !self.nonces.contains_key(&source) && self.nonces.len() >= MAX_SENDERS {
            self.nonces.retain(|_, s| {
                s.prune(oldest_sec);
                s.newest().is_some()
            });
            if self.nonces.len() >= MAX_SENDERS {
                // Forget the quietest sender: only holders of the key get here.
                let quietest = self
                    .nonces
                    .iter()
                    .min_by_key(|(_, s)| s.newest())
                    .map(|(id, _)| *id);
                if let Some(id) = quietest {
                    self.nonces.remove(&id);
                }
            }
        }
        let sender = self.nonces.entry(source).or_default();
        sender.prune(oldest_sec);
        if sender.floor.is_some_and(|f| ts <= f) || !sender.seen.insert(ts) {
            return Err(DecodeError::Replay {
                sender: source,
                sec: ts.sec,
                usec: ts.usec,
            });
        }
        if sender.seen.len() > MAX_NONCES_PER_SENDER {
            if let Some(oldest) = sender.seen.pop_first() {
                sender.floor = Some(sender.floor.map_or(oldest, |f| f.max(oldest)));
            }
        }
        Ok(())
    }

    /// Seals `message` at `now` (or just after our previous message, so that no two of our
    /// messages ever share a nonce). `message.timestamp` and `message.version` are ignored.
    pub fn encode(&mut self, message: &Message, now: Timestamp) -> Result<Vec<u8>, EncodeError> {
        let ts = match self.last_sent {
            Some(last) if now <= last => last.next(),
            _ => now,
        };
        let targets = Cbor::Array(
            message
                .targets
                .iter()
                .map(|t| Cbor::Bytes(t.as_bytes().to_vec()))
                .collect(),
        );
        let targets_raw = to_cbor(&targets)?;
        let mut plain = vec![
            Cbor::Bytes(message.source.as_bytes().to_vec()),
            Cbor::Text(message.dev_type.clone()),
            Cbor::Integer(message.msg_type.code().into()),
            Cbor::Text(message.action.clone()),
        ];
        if !message.body.is_empty() {
            plain.push(map_to_cbor(&message.body)?);
        }
        let plain = to_cbor(&Cbor::Array(plain))?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&ts.nonce()),
                Payload {
                    msg: &plain,
                    aad: &targets_raw,
                },
            )
            .map_err(|_| EncodeError::Seal)?;
        let datagram = to_cbor(&Cbor::Array(vec![
            Cbor::Integer(VERSION.into()),
            Cbor::Integer(ts.sec.into()),
            Cbor::Integer(ts.usec.into()),
            Cbor::Bytes(targets_raw),
            Cbor::Bytes(ciphertext),
        ]))?;
        if datagram.len() > MAX_DATAGRAM {
            return Err(EncodeError::TooLarge(datagram.len()));
        }
        // Burn the timestamp only once the datagram exists.
        self.last_sent = Some(ts);
        Ok(datagram)
    }
}

/// Exactly one CBOR item, nothing after it.
fn parse_cbor(bytes: &[u8]) -> Option<Cbor> {
    let mut rest = bytes;
    let value: Cbor = ciborium::de::from_reader(&mut rest).ok()?;
    rest.is_empty().then_some(value)
}

fn to_cbor(value: &Cbor) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| EncodeError::Cbor(e.to_string()))?;
    Ok(out)
}

fn as_u64(v: &Cbor) -> Option<u64> {
    match v {
        Cbor::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn as_uuid(v: &Cbor) -> Option<Uuid> {
    match v {
        Cbor::Bytes(b) => Uuid::from_slice(b).ok(),
        _ => None,
    }
}

/// Field 3: a CBOR array of 16-byte strings.
fn parse_targets(raw: &[u8]) -> Result<Vec<Uuid>, DecodeError> {
    let Some(Cbor::Array(items)) = parse_cbor(raw) else {
        return Err(DecodeError::Malformed("targets not a CBOR array"));
    };
    items
        .iter()
        .map(|t| as_uuid(t).ok_or(DecodeError::Malformed("target not a 16-byte string")))
        .collect()
}

/// `[source, dev_type, msg_type, action, body?]`.
fn parse_plaintext(plain: &[u8]) -> Result<Message, DecodeError> {
    let Some(Cbor::Array(fields)) = parse_cbor(plain) else {
        return Err(DecodeError::MalformedPayload("not a CBOR array"));
    };
    let (head, body) = match fields.as_slice() {
        [a, b, c, d] => ([a, b, c, d], None),
        [a, b, c, d, body] => ([a, b, c, d], Some(body)),
        _ => return Err(DecodeError::MalformedPayload("not an array of 4 or 5")),
    };
    let source = as_uuid(head[0]).ok_or(DecodeError::MalformedPayload("bad source"))?;
    let Cbor::Text(dev_type) = head[1] else {
        return Err(DecodeError::MalformedPayload("bad dev_type"));
    };
    let msg_type = as_u64(head[2])
        .and_then(MsgType::from_code)
        .ok_or(DecodeError::MalformedPayload("bad msg_type"))?;
    let Cbor::Text(action) = head[3] else {
        return Err(DecodeError::MalformedPayload("bad action"));
    };
    let body = match body {
        None => BTreeMap::new(),
        Some(Cbor::Map(entries)) => map_from_cbor(entries)?,
        Some(_) => return Err(DecodeError::MalformedPayload("body not a map")),
    };
    let mut message = Message::new(source, dev_type, msg_type, action);
    message.body = body;
    Ok(message)
}

fn map_from_cbor(entries: &[(Cbor, Cbor)]) -> Result<BTreeMap<String, Value>, DecodeError> {
    entries
        .iter()
        .map(|(k, v)| match k {
            Cbor::Text(k) => Ok((k.clone(), value_from_cbor(v)?)),
            _ => Err(DecodeError::MalformedPayload("map key not a text string")),
        })
        .collect()
}

fn value_from_cbor(v: &Cbor) -> Result<Value, DecodeError> {
    Ok(match v {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(*b),
        Cbor::Integer(i) => Value::Int(i128::from(*i)),
        Cbor::Float(f) => Value::Float(*f),
        Cbor::Text(s) => Value::Text(s.clone()),
        Cbor::Bytes(b) => Value::Bytes(b.clone()),
        Cbor::Tag(TAG_UUID, inner) => Value::Uuid(
            as_uuid(inner).ok_or(DecodeError::MalformedPayload("tag 37 not a 16-byte string"))?,
        ),
        Cbor::Tag(TAG_URL, inner) => match inner.as_ref() {
            Cbor::Text(s) => Value::Url(s.clone()),
            _ => return Err(DecodeError::MalformedPayload("tag 32 not a text string")),
        },
        Cbor::Tag(tag, inner) => Value::Tagged(*tag, Box::new(value_from_cbor(inner)?)),
        Cbor::Array(items) => Value::Array(
            items
                .iter()
                .map(value_from_cbor)
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => Value::Map(map_from_cbor(entries)?),
        _ => return Err(DecodeError::MalformedPayload("unsupported CBOR value")),
    })
}

fn map_to_cbor(map: &BTreeMap<String, Value>) -> Result<Cbor, EncodeError> {
    Ok(Cbor::Map(
        map.iter()
            .map(|(k, v)| Ok((Cbor::Text(k.clone()), value_to_cbor(v)?)))
            .collect::<Result<_, EncodeError>>()?,
    ))
}

fn value_to_cbor(v: &Value) -> Result<Cbor, EncodeError> {
    Ok(match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Int(i) => {
            Cbor::Integer(Integer::try_from(*i).map_err(|_| EncodeError::IntOutOfRange)?)
        }
        Value::Float(f) => Cbor::Float(*f),
        Value::Text(s) => Cbor::Text(s.clone()),
        Value::Bytes(b) => Cbor::Bytes(b.clone()),
        Value::Uuid(u) => Cbor::Tag(TAG_UUID, Box::new(Cbor::Bytes(u.as_bytes().to_vec()))),
        Value::Url(s) => Cbor::Tag(TAG_URL, Box::new(Cbor::Text(s.clone()))),
        Value::Array(items) => {
            Cbor::Array(items.iter().map(value_to_cbor).collect::<Result<_, _>>()?)
        }
        Value::Map(map) => map_to_cbor(map)?,
        Value::Tagged(tag, inner) => Cbor::Tag(*tag, Box::new(value_to_cbor(inner)?)),
    })
}
