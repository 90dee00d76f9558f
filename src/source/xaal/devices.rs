//! The table of devices heard on the bus: what they are, whether they are alive, and what we
//! still need to ask them.
//!
//! Pure state: it is fed decoded messages and the clock, and answers with [`Effect`]s that the
//! gateway (`super::gateway`) turns into source events and requests on the bus.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::message::{Message, MsgType, Value};

/// Most devices followed on one bus: a home has tens; the cap bounds what a key holder flooding
/// the bus with made-up addresses can make us store.
pub(crate) const MAX_DEVICES: usize = 1024;

/// The alive timeout assumed until a device announces its own (xaal-lib's default).
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 200;

/// Longest alive timeout we honour.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Seconds between two `get_description` requests that got no reply.
pub(crate) const ASK_RETRY_SECS: u64 = 10;

/// `get_description` requests sent to one device before giving up on its metadata.
pub(crate) const ASK_ATTEMPTS: u32 = 3;

/// Longest usage-point name built from a description.
const MAX_NAME_CHARS: usize = 200;

/// Longest dev_type accepted.
const MAX_DEV_TYPE: usize = 64;

/// `class.subclass`, each a letter then letters, digits, `_` or `-`: what xaal-lib accepts. The
/// dev_type is stored and shown, so anything else from the network is refused.
pub(crate) fn is_valid_dev_type(dev_type: &str) -> bool {
    let part = |p: &str| {
        p.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    dev_type.len() <= MAX_DEV_TYPE
        && dev_type
            .split_once('.')
            .is_some_and(|(class, sub)| part(class) && part(sub))
}

/// What `get_description` told us (xaal-lib sends only the non-empty keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Description {
    pub(crate) vendor: Option<String>,
    pub(crate) product: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) info: Option<String>,
    pub(crate) hw_id: Option<String>,
}

impl Description {
    pub(crate) fn from_body(body: &BTreeMap<String, Value>) -> Description {
        let text = |key: &str| -> Option<String> {
            let v = match body.get(key)? {
                Value::Text(s) | Value::Url(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                _ => return None,
            };
            let clean: String = v.chars().filter(|c| !c.is_control()).collect();
            let clean = clean.trim();
            (!clean.is_empty()).then(|| clean.chars().take(MAX_NAME_CHARS).collect())
        };
        Description {
            vendor: text("vendor_id"),
            product: text("product_id"),
            version: text("version"),
            url: text("url"),
            info: text("info"),
            hw_id: text("hw_id"),
        }
    }

    /// The usage point's human-readable name: `vendor product — info (url)`, or the dev_type
    /// alone while the description is unknown.
    pub(crate) fn name(&self, dev_type: &str) -> String {
        let mut name = [&self.vendor, &self.product]
            .iter()
            .filter_map(|p| p.as_deref())
            .collect::<Vec<_>>()
            .join(" ");
        if name.is_empty() {
            name = dev_type.to_owned();
        }
        if let Some(info) = &self.info {
            name = format!("{name} — {info}");
        }
        if let Some(url) = &self.url {
            name = format!("{name} ({url})");
        }
        name.chars().take(MAX_NAME_CHARS).collect()
    }
}

/// One device of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Device {
    /// `class.subclass`, as the device last said.
    pub(crate) dev_type: String,
    pub(crate) description: Description,
    pub(crate) online: bool,
    /// The timeout of its last `alive`.
    pub(crate) timeout: u64,
    /// Unix seconds after which, without news, it is offline.
    pub(crate) alive_until: u64,
    /// `(attempts so far, next attempt)` while its description is awaited.
    asking: Option<(u32, u64)>,
}

/// What the gateway must do after an update of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// (Re)declare the device's usage point, with its current dev_type and description.
    Declare(Uuid),
    /// The device stopped (false) or resumed (true) announcing itself.
    Online(Uuid, bool),
    /// Send it a `get_description` request.
    AskDescription(Uuid),
    /// Send it a `get_attributes` request.
    AskAttributes(Uuid),
    /// Attribute values it reported, at `time` (unix seconds, the datagram's timestamp).
    Values {
        device: Uuid,
        time: i64,
        body: BTreeMap<String, Value>,
    },
}

/// Every device heard on the bus, except us.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    devices: HashMap<Uuid, Device>,
    /// Messages of new devices ignored because the table was full.
    pub(crate) refused: u64,
}

impl Devices {
    pub(crate) fn new() -> Devices {
        Devices::default()
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<&Device> {
        self.devices.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.devices.len()
    }

    /// Takes in a message from another device, received at `now` (unix seconds).
    pub(crate) fn on_message(&mut self, msg: &Message, now: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if msg.source.is_nil() || !is_valid_dev_type(&msg.dev_type) {
            return effects;
        }
        let id = msg.source;
        match self.devices.get_mut(&id) {
            Some(dev) => {
                if dev.dev_type != msg.dev_type {
                    dev.dev_type = msg.dev_type.clone();
                    effects.push(Effect::Declare(id));
                }
                if !dev.online {
                    dev.online = true;
                    effects.push(Effect::Online(id, true));
                }
            }
            None => {
                if self.devices.len() >= MAX_DEVICES {
                    if self.refused == 0 {
                        tracing::warn!(
                            max = MAX_DEVICES,
                            "xAAL device table full; new devices are ignored"
                        );
                    }
                    self.refused = self.refused.saturating_add(1);
                    return effects;
                }
                self.devices.insert(
                    id,
                    Device {
                        dev_type: msg.dev_type.clone(),
                        description: Description::default(),
                        online: true,
                        timeout: DEFAULT_TIMEOUT_SECS,
                        alive_until: now.saturating_add(DEFAULT_TIMEOUT_SECS),
                        asking: Some((1, now.saturating_add(ASK_RETRY_SECS))),
                    },
                );
                effects.extend([
                    Effect::Declare(id),
                    Effect::AskDescription(id),
                    Effect::AskAttributes(id),
                ]);
            }
        }
        let Some(dev) = self.devices.get_mut(&id) else {
            return effects;
        };
        match (msg.msg_type, msg.action.as_str()) {
            (MsgType::Notify, "alive") => {
                dev.timeout = msg
                    .body
                    .get("timeout")
                    .and_then(Value::as_i64)
                    .and_then(|t| u64::try_from(t).ok())
                    .map_or(DEFAULT_TIMEOUT_SECS, |t| t.clamp(1, MAX_TIMEOUT_SECS));
                dev.alive_until = now.saturating_add(dev.timeout);
            }
            _ => dev.alive_until = dev.alive_until.max(now.saturating_add(dev.timeout)),
        }
        match (msg.msg_type, msg.action.as_str()) {
            (MsgType::Reply, "get_description") => {
                dev.asking = None;
                let description = Description::from_body(&msg.body);
                if description != dev.description {
                    dev.description = description;
                    if !effects.contains(&Effect::Declare(id)) {
                        effects.push(Effect::Declare(id));
                    }
                }
            }
            (MsgType::Reply, "get_attributes") | (MsgType::Notify, "attributes_change")
                if !msg.body.is_empty() =>
            {
                effects.push(Effect::Values {
                    device: id,
                    time: i64::try_from(msg.timestamp.sec).unwrap_or(i64::MAX),
                    body: msg.body.clone(),
                });
            }
            _ => {}
        }
        effects
    }

    /// Devices whose alive timeout passed go offline; unanswered descriptions are asked again.
    pub(crate) fn tick(&mut self, now: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (id, dev) in &mut self.devices {
            if dev.online && now >= dev.alive_until {
                dev.online = false;
                effects.push(Effect::Online(*id, false));
            }
            if let Some((attempts, next)) = dev.asking {
                if dev.online && now >= next {
                    if attempts >= ASK_ATTEMPTS {
                        dev.asking = None;
                    } else {
                        dev.asking = Some((attempts + 1, now.saturating_add(ASK_RETRY_SECS)));
                        effects.push(Effect::AskDescription(*id));
                    }
                }
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PM: Uuid = Uuid::from_u128(0x3a4b5c6d_1111_11ef_8000_0242ac120002);

    fn msg(msg_type: MsgType, action: &str) -> Message {
        Message::new(PM, "powermeter.basic", msg_type, action)
    }

    #[test]
    fn a_new_device_is_declared_and_asked() {
        let mut d = Devices::new();
        let e = d.on_message(&msg(MsgType::Notify, "alive").with("timeout", 4i64), 1000);
        assert_eq!(
            e,
            [
                Effect::Declare(PM),
                Effect::AskDescription(PM),
                Effect::AskAttributes(PM)
            ]
        );
        assert_eq!(d.get(&PM).unwrap().alive_until, 1004);
        // Known now: an alive changes nothing visible.
        assert!(d
            .on_message(&msg(MsgType::Notify, "alive").with("timeout", 4i64), 1001)
            .is_empty());
    }

    #[test]
    fn description_renames_once() {
        let mut d = Devices::new();
        d.on_message(&msg(MsgType::Notify, "alive"), 0);
        assert_eq!(
            d.get(&PM).unwrap().description.name("powermeter.basic"),
            "powermeter.basic"
        );
        let reply = msg(MsgType::Reply, "get_description")
            .with("vendor_id", "ACME")
            .with("product_id", "PM 1")
            .with("info", "kitchen\n")
            .with("hw_id", Value::Int(42));
        let mut reply_url = reply.clone();
        reply_url
            .body
            .insert("url".into(), Value::Url("http://acme.example/pm".into()));
        assert_eq!(d.on_message(&reply_url, 1), [Effect::Declare(PM)]);
        let dev = d.get(&PM).unwrap();
        assert_eq!(
            dev.description.name(&dev.dev_type),
            "ACME PM 1 — kitchen (http://acme.example/pm)"
        );
        assert_eq!(dev.description.hw_id.as_deref(), Some("42"));
        assert!(d.on_message(&reply_url, 2).is_empty());
        // Answered: no more asking.
        assert!(d
            .tick(100)
            .iter()
            .all(|e| !matches!(e, Effect::AskDescription(_))));
    }

    #[test]
    fn attributes_become_values_at_the_datagram_time() {
        let mut d = Devices::new();
        d.on_message(&msg(MsgType::Notify, "alive"), 0);
        let mut change = msg(MsgType::Notify, "attributes_change").with("power", 987i64);
        change.timestamp = super::super::Timestamp::new(1_795_290_420, 468_258);
        let e = d.on_message(&change, 5);
        let [Effect::Values { device, time, body }] = e.as_slice() else {
            panic!("{e:?}");
        };
        assert_eq!((*device, *time), (PM, 1_795_290_420));
        assert_eq!(body.get("power"), Some(&Value::Int(987)));
        let reply = msg(MsgType::Reply, "get_attributes").with("power", 1i64);
        assert!(matches!(
            d.on_message(&reply, 6).as_slice(),
            [Effect::Values { .. }]
        ));
        // Requests from the device, or empty changes, are not readings.
        assert!(d
            .on_message(&msg(MsgType::Notify, "attributes_change"), 7)
            .is_empty());
        assert!(d
            .on_message(
                &msg(MsgType::Request, "get_attributes").with("power", 1i64),
                7
            )
            .is_empty());
    }

    #[test]
    fn silence_past_the_timeout_means_offline_until_heard_again() {
        let mut d = Devices::new();
        d.on_message(&msg(MsgType::Notify, "alive").with("timeout", 2i64), 100);
        assert!(!d.tick(101).contains(&Effect::Online(PM, false)));
        assert_eq!(d.tick(102), [Effect::Online(PM, false)]);
        assert!(d.tick(103).is_empty());
        assert!(!d.get(&PM).unwrap().online);
        let e = d.on_message(
            &msg(MsgType::Notify, "attributes_change").with("power", 3i64),
            200,
        );
        assert_eq!(e[0], Effect::Online(PM, true));
        // Any message extends life by the last timeout.
        let online = |e: Vec<Effect>| -> Vec<Effect> {
            e.into_iter()
                .filter(|e| matches!(e, Effect::Online(..)))
                .collect()
        };
        assert!(online(d.tick(201)).is_empty());
        assert_eq!(online(d.tick(202)), [Effect::Online(PM, false)]);
    }

    #[test]
    fn odd_timeouts_are_bounded() {
        let mut d = Devices::new();
        for (t, expect) in [
            (Value::Int(-5), DEFAULT_TIMEOUT_SECS),
            (Value::Int(0), 1),
            (Value::Int(i128::MAX), DEFAULT_TIMEOUT_SECS),
            (Value::Int(10_000_000), MAX_TIMEOUT_SECS),
            (Value::Float(3.0), 3),
            (Value::Text("x".into()), DEFAULT_TIMEOUT_SECS),
        ] {
            d.on_message(&msg(MsgType::Notify, "alive").with("timeout", t.clone()), 0);
            assert_eq!(d.get(&PM).unwrap().timeout, expect, "{t:?}");
        }
    }

    #[test]
    fn descriptions_are_asked_again_then_given_up() {
        let mut d = Devices::new();
        d.on_message(&msg(MsgType::Notify, "alive").with("timeout", 1000i64), 0);
        let asks = |e: Vec<Effect>| {
            e.iter()
                .filter(|e| matches!(e, Effect::AskDescription(_)))
                .count()
        };
        assert_eq!(asks(d.tick(5)), 0);
        assert_eq!(asks(d.tick(ASK_RETRY_SECS)), 1);
        assert_eq!(asks(d.tick(2 * ASK_RETRY_SECS)), 1);
        assert_eq!(asks(d.tick(3 * ASK_RETRY_SECS)), 0);
        assert_eq!(asks(d.tick(10 * ASK_RETRY_SECS)), 0);
    }

    #[test]
    fn the_table_is_bounded_and_nil_is_ignored() {
        let mut d = Devices::new();
        for i in 0..MAX_DEVICES as u128 + 5 {
            let m = Message::new(
                Uuid::from_u128(i + 1),
                "thermometer.basic",
                MsgType::Notify,
                "alive",
            );
            d.on_message(&m, 0);
        }
        assert_eq!(d.len(), MAX_DEVICES);
        assert_eq!(d.refused, 5);
        let nil = Message::new(Uuid::nil(), "x.y", MsgType::Notify, "alive");
        assert!(d.on_message(&nil, 0).is_empty());
    }

    #[test]
    fn odd_dev_types_are_refused() {
        for ok in ["powermeter.basic", "any.any", "lamp.dimmer", "a_b-c.d9"] {
            assert!(is_valid_dev_type(ok), "{ok}");
        }
        let long = format!("a.{}", "b".repeat(63));
        for bad in [
            "",
            "powermeter",
            ".basic",
            "a.",
            "a.b.c",
            "1a.b",
            "a b.c",
            "é.b",
            &long,
        ] {
            assert!(!is_valid_dev_type(bad), "{bad}");
        }
        let mut d = Devices::new();
        let m = Message::new(PM, "not a type", MsgType::Notify, "alive");
        assert!(d.on_message(&m, 0).is_empty() && d.devices.is_empty());
    }
}
