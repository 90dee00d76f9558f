//! The typed model of one xAAL message, independent of its wire form.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A datagram timestamp; together, `(sec, usec)` is the ChaCha20-Poly1305 nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (UTC).
    pub(crate) sec: u64,
    /// Microseconds within the second, below 1 000 000.
    pub(crate) usec: u32,
}

impl Timestamp {
    pub(crate) const fn new(sec: u64, usec: u32) -> Timestamp {
        Timestamp { sec, usec }
    }

    /// The system clock now (the epoch if the clock is before it).
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub(crate) fn from_system_time(t: SystemTime) -> Timestamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp {
            sec: d.as_secs(),
            usec: d.subsec_micros(),
        }
    }

    /// The next microsecond.
    pub(crate) fn next(self) -> Timestamp {
        if self.usec >= 999_999 {
            Timestamp {
                sec: self.sec.saturating_add(1),
                usec: 0,
            }
        } else {
            Timestamp {
                sec: self.sec,
                usec: self.usec + 1,
            }
        }
    }

    /// The 12-byte nonce: `u64_be(sec) || u32_be(usec)`.
    pub(crate) fn nonce(self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&self.sec.to_be_bytes());
        n[8..].copy_from_slice(&self.usec.to_be_bytes());
        n
    }
}

/// Field 2 of the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    Notify,
    Request,
    Reply,
}

impl MsgType {
    pub(crate) fn code(self) -> u8 {
        match self {
            MsgType::Notify => 0,
            MsgType::Request => 1,
            MsgType::Reply => 2,
        }
    }

    pub(crate) fn from_code(code: u64) -> Option<MsgType> {
        match code {
            0 => Some(MsgType::Notify),
            1 => Some(MsgType::Request),
            2 => Some(MsgType::Reply),
            _ => None,
        }
    }
}

/// A value in a message body: the CBOR data model as xAAL uses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// Any CBOR integer (−2^64 … 2^64 − 1).
    Int(i128),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// CBOR tag 37 around a 16-byte string.
    Uuid(Uuid),
    /// CBOR tag 32 around a text string.
    Url(String),
    Array(Vec<Value>),
    /// Maps with text keys (the only kind xAAL bodies carry).
    Map(BTreeMap<String, Value>),
    /// Any other tag, kept as is.
    Tagged(u64, Box<Value>),
}

impl Value {
    /// The value as a number, whether it arrived as a CBOR integer or float.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (or a float with no fractional part that fits).
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Uuid> for Value {
    fn from(v: Uuid) -> Value {
        Value::Uuid(v)
    }
}

/// One xAAL message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stack version; always [`super::VERSION`] for a decoded message. Encoding always writes
    /// [`super::VERSION`].
    pub(crate) version: u64,
    /// When it was sent. Set by the decoder; ignored by the encoder, which picks a unique one.
    pub(crate) timestamp: Timestamp,
    /// Addressees; empty means broadcast.
    pub(crate) targets: Vec<Uuid>,
    pub(crate) source: Uuid,
    /// `class.subclass`, e.g. `powermeter.basic`.
    pub(crate) dev_type: String,
    pub(crate) msg_type: MsgType,
    pub(crate) action: String,
    /// Empty when the datagram carried no body.
    pub(crate) body: BTreeMap<String, Value>,
}

impl Message {
    /// A message with no targets (broadcast), no body and a zero timestamp.
    pub fn new(source: Uuid, dev_type: &str, msg_type: MsgType, action: &str) -> Message {
        Message {
            version: super::VERSION,
            timestamp: Timestamp::new(0, 0),
            targets: Vec::new(),
            source,
            dev_type: dev_type.to_owned(),
            msg_type,
            action: action.to_owned(),
            body: BTreeMap::new(),
        }
    }

    /// Builder-style: adds a body entry.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Message {
        self.body.insert(key.to_owned(), value.into());
        self
    }

    /// Builder-style: sets the targets.
    pub(crate) fn to(mut self, targets: Vec<Uuid>) -> Message {
        self.targets = targets;
        self
    }
}
