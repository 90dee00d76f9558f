//! The xAAL source task: a `gateway.basic` device on the bus that turns what the other devices
//! say into source events.
//!
//! At start it tells the publisher it has heard no device yet (usage points stored before are
//! offline until heard again, and their owners follow the config's list), announces itself
//! (`alive`) and asks every device to do the same (`is_alive` for `any.any`); both are repeated
//! periodically. A device heard for the first time is declared as a
//! usage point (id = its UUID) and asked for its description and attributes; its
//! `attributes_change` notifications become live readings at once. A device silent past its
//! alive timeout is reported offline; its usage point and history stay.
//!
//! It runs with [`XaalSettings`], checked (and the key derived) when the config was loaded, so a
//! bad table never gets this far: the component refuses to start instead.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bus::BusSocket;
use super::config::XaalSettings;
use super::devices::{Devices, Effect};
use super::mapping;
use super::message::{Message, MsgType, Timestamp, Value};
use super::{Codec, MAX_DATAGRAM};
use crate::model::{Batch, Identifier, Reading, UsagePoint};
use crate::source::SourceEvent;

/// The dev_type we announce.
pub(crate) const DEV_TYPE: &str = "gateway.basic";

/// Delay before trying again to join the group after a failure (no interface yet, …).
const JOIN_RETRY: Duration = Duration::from_secs(10);

/// Period of the alive-timeout and retry check.
const TICK: Duration = Duration::from_secs(1);

/// Usage-point id of a device: its UUID, hyphenated lowercase (a valid JID localpart).
pub(crate) fn usage_point_id(device: &Uuid) -> String {
    device.hyphenated().to_string()
}

/// Runs the source until `shutdown` is cancelled or the events receiver is gone.
///
/// `settings` were checked, and the key derived, when the config was loaded: nothing here can
/// be a configuration error. Only joining the group may fail, and is retried.
pub(crate) async fn run(
    settings: XaalSettings,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    let bus = &settings.bus;
    let own = settings.own_uuid.unwrap_or_else(random_uuid);
    // Nothing heard yet, from any device: said before joining, which may take a while.
    let started = SourceEvent::Started {
        source: settings.id.clone(),
        owners: settings.owners.clone(),
    };
    let sent = tokio::select! {
        sent = events.send(started) => sent.is_ok(),
        _ = shutdown.cancelled() => false,
    };
    if !sent {
        return;
    }
    let socket = loop {
        match BusSocket::join(bus.group, bus.interface, settings.hops) {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(
                    source = %settings.id, group = %bus.group, interface = %bus.interface,
                    error = %e, "cannot join the xAAL group; retrying"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(JOIN_RETRY) => {}
                }
            }
        }
    };
    tracing::info!(
        source = %settings.id, group = %socket.group(), uuid = %own,
        "xAAL bus joined"
    );
    let mut gateway = Gateway {
        codec: Codec::new(&settings.key),
        socket,
        devices: Devices::new(),
        own,
        source: settings.id.clone(),
        owners: settings.owners.clone(),
        alive_timeout: settings.alive_interval.as_secs().saturating_mul(2),
        events,
    };
    gateway.run(&settings, shutdown).await;
}

/// A fresh random (version 4) UUID.
fn random_uuid() -> Uuid {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the clock is unique enough for one process on one bus.
        let t = Timestamp::now();
        bytes[..8].copy_from_slice(&t.sec.to_be_bytes());
        bytes[8..12].copy_from_slice(&t.usec.to_be_bytes());
        bytes[12..].copy_from_slice(&std::process::id().to_be_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The events receiver is gone: the component is stopping.
struct Closed;

struct Gateway {
    codec: Codec,
    socket: BusSocket,
    devices: Devices,
    /// Our own device address.
    own: Uuid,
    source: String,
    owners: Vec<String>,
    /// What our `alive` announces.
    alive_timeout: u64,
    events: mpsc::Sender<SourceEvent>,
}

impl Gateway {
    async fn run(&mut self, settings: &XaalSettings, shutdown: CancellationToken) {
        let mut alive = interval(settings.alive_interval);
        let mut is_alive = interval(settings.is_alive_interval);
        let mut tick = interval(TICK);
        for t in [&mut alive, &mut is_alive, &mut tick] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = self.socket.recv(&mut buf) => match received {
                    Ok((datagram, peer)) => {
                        let datagram = datagram.to_vec();
                        self.on_datagram(&datagram, peer.ip()).await
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.source, error = %e, "xAAL receive failed");
                        Ok(())
                    }
                },
                // Both fire at once at start: we announce ourselves, then ask everyone.
                _ = alive.tick() => {
                    self.send(self.alive()).await;
                    Ok(())
                }
                _ = is_alive.tick() => {
                    self.send(self.is_alive()).await;
                    let c = self.codec.counters();
                    tracing::debug!(
                        source = %self.source, devices = self.devices.len(),
                        accepted = c.accepted, rejected = c.rejected(), "xAAL bus"
                    );
                    Ok(())
                }
                _ = tick.tick() => {
                    let effects = self.devices.tick(Timestamp::now().sec);
                    self.apply(effects).await
                }
            };
            if result.is_err() {
                break;
            }
        }
    }

    async fn on_datagram(&mut self, datagram: &[u8], peer: std::net::IpAddr) -> Result<(), Closed> {
        let now = Timestamp::now();
        // Rejections are counted and logged (rate-limited) by the codec.
        let Ok(msg) = self.codec.decode_from(datagram, peer, now) else {
            return Ok(());
        };
        if msg.source == self.own {
            return Ok(()); // our own datagram, looped back
        }
        if msg.msg_type == MsgType::Request {
            self.answer(&msg).await;
        }
        let effects = self.devices.on_message(&msg, now.sec);
        self.apply(effects).await
    }

    /// Answers the requests addressed to us, as a `gateway.basic` with nothing embedded.
    async fn answer(&mut self, msg: &Message) {
        let to_us = msg.targets.contains(&self.own);
        let reply = match msg.action.as_str() {
            "is_alive" if to_us || (msg.targets.iter().any(Uuid::is_nil) && self.wanted(msg)) => {
                self.alive()
            }
            "get_description" if to_us => self
                .message(MsgType::Reply, "get_description")
                .to(vec![msg.source])
                .with("vendor_id", "Quoalise")
                .with("product_id", env!("CARGO_PKG_NAME"))
                .with("version", env!("CARGO_PKG_VERSION"))
                .with("info", format!("source {}", self.source)),
            "get_attributes" if to_us => {
                let mut reply = self.message(MsgType::Reply, "get_attributes");
                reply.targets = vec![msg.source];
                reply
                    .body
                    .insert("embedded".into(), Value::Array(Vec::new()));
                reply
                    .body
                    .insert("inactive".into(), Value::Array(Vec::new()));
                reply
            }
            _ => return,
        };
        self.send(reply).await;
    }

    /// True when a broadcast `is_alive` asks for our dev_type.
    fn wanted(&self, msg: &Message) -> bool {
        let Some(Value::Array(types)) = msg.body.get("dev_types") else {
            return false;
        };
        types
            .iter()
            .filter_map(Value::as_str)
            .any(|t| matches!(t, "any.any" | "gateway.any") || t == DEV_TYPE)
    }

    fn message(&self, msg_type: MsgType, action: &str) -> Message {
        Message::new(self.own, DEV_TYPE, msg_type, action)
    }

    fn alive(&self) -> Message {
        self.message(MsgType::Notify, "alive").with(
            "timeout",
            i64::try_from(self.alive_timeout).unwrap_or(i64::MAX),
        )
    }

    fn is_alive(&self) -> Message {
        self.message(MsgType::Request, "is_alive")
            .to(vec![Uuid::nil()])
            .with("dev_types", Value::Array(vec!["any.any".into()]))
    }

    async fn send(&mut self, msg: Message) {
        let datagram = match self.codec.encode(&msg, Timestamp::now()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(source = %self.source, action = %msg.action, error = %e, "cannot encode xAAL message");
                return;
            }
        };
        if let Err(e) = self.socket.send(&datagram).await {
            tracing::warn!(source = %self.source, action = %msg.action, error = %e, "xAAL send failed");
        }
    }

    async fn emit(&self, event: SourceEvent) -> Result<(), Closed> {
        self.events.send(event).await.map_err(|_| Closed)
    }

    async fn apply(&mut self, effects: Vec<Effect>) -> Result<(), Closed> {
        for effect in effects {
            match effect {
                Effect::Declare(id) => {
                    let Some(dev) = self.devices.get(&id) else {
                        continue;
                    };
                    let up = usage_point_id(&id);
                    let usage_point = UsagePoint {
                        id: up.clone(),
                        source: self.source.clone(),
                        device_type: dev.dev_type.clone(),
                        identifier: Identifier {
                            authority: "xaal".into(),
                            kind: "uuid".into(),
                            value: up.clone(),
                        },
                        name: dev.description.name(&dev.dev_type),
                        online: dev.online,
                    };
                    let series = mapping::series(&up, &dev.dev_type);
                    tracing::info!(
                        source = %self.source, usage_point = %up, dev_type = %dev.dev_type,
                        name = %usage_point.name, series = series.len(), "xAAL device declared"
                    );
                    self.emit(SourceEvent::Declare {
                        usage_point,
                        series,
                    })
                    .await?;
                    self.emit(SourceEvent::Owners {
                        usage_point: up,
                        owners: self.owners.clone(),
                    })
                    .await?;
                }
                Effect::Online(id, online) => {
                    tracing::info!(source = %self.source, usage_point = %id, online, "xAAL device");
                    self.emit(SourceEvent::Online {
                        usage_point: usage_point_id(&id),
                        online,
                    })
                    .await?;
                }
                Effect::AskDescription(id) => {
                    let msg = self
                        .message(MsgType::Request, "get_description")
                        .to(vec![id]);
                    self.send(msg).await;
                }
                Effect::AskAttributes(id) => {
                    let msg = self
                        .message(MsgType::Request, "get_attributes")
                        .to(vec![id]);
                    self.send(msg).await;
                }
                Effect::Values { device, time, body } => {
                    let Some(dev) = self.devices.get(&device) else {
                        continue;
                    };
                    let up = usage_point_id(&device);
                    for (series, value) in mapping::readings(&dev.dev_type, &body) {
                        self.emit(SourceEvent::Live(Batch {
                            usage_point: up.clone(),
                            series: series.to_owned(),
                            readings: vec![Reading { time, value }],
                        }))
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_point_ids_are_valid() {
        let id = Uuid::from_u128(0x3a4b5c6d_1111_11ef_8000_0242ac120002);
        assert_eq!(usage_point_id(&id), "3a4b5c6d-1111-11ef-8000-0242ac120002");
        assert!(crate::model::is_valid_usage_point_id(&usage_point_id(&id)));
        let r = random_uuid();
        assert_eq!(r.get_version_num(), 4);
        assert_ne!(r, random_uuid());
    }

    /// The publisher's side of [`SourceEvent::Owners`]: grants follow the list, idempotently.
    #[tokio::test]
    async fn owners_become_source_grants() {
        use crate::model::GrantOrigin;
        use crate::publisher::apply;

        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let up = "3a4b5c6d-1111-11ef-8000-0242ac120002";
        let owners = |list: &[&str]| SourceEvent::Owners {
            usage_point: up.into(),
            owners: list.iter().map(|s| (*s).to_owned()).collect(),
        };
        // Unknown usage point: nothing granted.
        apply(store.as_ref(), &owners(&["alice@example.org"]))
            .await
            .unwrap();
        assert!(store.grants().await.unwrap().is_empty());

        let declare = SourceEvent::Declare {
            usage_point: UsagePoint {
                id: up.into(),
                source: "xaal".into(),
                device_type: "powermeter.basic".into(),
                identifier: Identifier {
                    authority: "xaal".into(),
                    kind: "uuid".into(),
                    value: up.into(),
                },
                name: "pm".into(),
                online: true,
            },
            series: mapping::series(up, "powermeter.basic"),
        };
        apply(store.as_ref(), &declare).await.unwrap();
        let subjects = |grants: Vec<crate::model::Grant>| -> Vec<String> {
            let mut s: Vec<String> = grants
                .into_iter()
                .inspect(|g| {
                    assert_eq!(
                        (g.origin, g.usage_point.as_str(), g.series.as_str()),
                        (GrantOrigin::Source, up, "*")
                    )
                })
                .map(|g| g.subject)
                .collect();
            s.sort();
            s
        };
        for _ in 0..2 {
            apply(
                store.as_ref(),
                &owners(&["alice@example.org", "bob@example.org"]),
            )
            .await
            .unwrap();
        }
        let first = store.grants().await.unwrap();
        assert_eq!(
            subjects(first.clone()),
            ["alice@example.org", "bob@example.org"]
        );
        apply(
            store.as_ref(),
            &owners(&["bob@example.org", "carol@example.org"]),
        )
        .await
        .unwrap();
        let second = store.grants().await.unwrap();
        assert_eq!(
            subjects(second.clone()),
            ["bob@example.org", "carol@example.org"]
        );
        // Bob's grant was kept, not replaced: its id is stable.
        let bob = |g: &Vec<crate::model::Grant>| {
            g.iter()
                .find(|g| g.subject == "bob@example.org")
                .and_then(|g| g.id)
        };
        assert_eq!(bob(&first), bob(&second));
        apply(store.as_ref(), &owners(&[])).await.unwrap();
        assert!(store.grants().await.unwrap().is_empty());
    }

    /// A restart: devices stored before are offline until heard, and owners removed from the
    /// config lose even the devices that never come back. Other sources are left alone.
    #[tokio::test]
    async fn a_restart_sets_devices_offline_and_applies_the_owner_list() {
        use crate::publisher::apply;

        let store = crate::store::open("sqlite::memory:").await.unwrap();
        let device = |id: &str, source: &str| SourceEvent::Declare {
            usage_point: UsagePoint {
                id: id.into(),
                source: source.into(),
                device_type: "thermometer.basic".into(),
                identifier: Identifier {
                    authority: "xaal".into(),
                    kind: "uuid".into(),
                    value: id.into(),
                },
                name: id.into(),
                online: true,
            },
            series: mapping::series(id, "thermometer.basic"),
        };
        let owners = |up: &str, list: &[&str]| SourceEvent::Owners {
            usage_point: up.into(),
            owners: list.iter().map(|s| (*s).to_owned()).collect(),
        };
        let (ours, theirs) = (
            "aaaaaaaa-0000-4000-8000-000000000001",
            "bbbbbbbb-0000-4000-8000-000000000002",
        );
        apply(store.as_ref(), &device(ours, "xaal")).await.unwrap();
        apply(store.as_ref(), &device(theirs, "other-bus"))
            .await
            .unwrap();
        for up in [ours, theirs] {
            apply(
                store.as_ref(),
                &owners(up, &["alice@example.org", "bob@example.org"]),
            )
            .await
            .unwrap();
        }

        let started = SourceEvent::Started {
            source: "xaal".into(),
            owners: vec!["alice@example.org".into()],
        };
        apply(store.as_ref(), &started).await.unwrap();

        let online = |up: &'static str| {
            let store = store.clone();
            async move { store.usage_point(up).await.unwrap().unwrap().online }
        };
        assert!(!online(ours).await, "not heard since the restart");
        assert!(online(theirs).await, "another source's device");
        let subjects = |up: &str, grants: &[crate::model::Grant]| -> Vec<String> {
            let mut s: Vec<String> = grants
                .iter()
                .filter(|g| g.usage_point == up)
                .map(|g| g.subject.clone())
                .collect();
            s.sort();
            s
        };
        let grants = store.grants().await.unwrap();
        assert_eq!(subjects(ours, &grants), ["alice@example.org"]);
        assert_eq!(
            subjects(theirs, &grants),
            ["alice@example.org", "bob@example.org"]
        );

        // Heard again: declared online.
        apply(store.as_ref(), &device(ours, "xaal")).await.unwrap();
        assert!(online(ours).await);
    }
}
