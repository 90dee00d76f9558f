//! The demo source: a deterministic fleet of simulated Linky-like meters.
//!
//! Meter ids are PRM-shaped (14 digits) and start with `99999`, a prefix Enedis does not hand out,
//! so demo data can never be mistaken for a real customer's.

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{SourceEvent, SourceInfo};
use crate::config::{ConfigError, HumanDuration};
use crate::model::{Identifier, Measurement, Series, UsagePoint};

/// Prefix of every demo usage-point id.
pub const ID_PREFIX: &str = "99999";

/// Largest fleet we accept: enough for load tests, small enough to stay a demo.
pub const MAX_METERS: u32 = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub id: String,
    /// Number of simulated meters.
    #[serde(default = "default_meters")]
    pub meters: u32,
    /// Number of the first meter; lets two demo sources hold distinct fleets.
    #[serde(default = "default_first_meter")]
    pub first_meter: u32,
    /// Period of the live series.
    #[serde(default = "default_live_interval")]
    pub live_interval: HumanDuration,
    #[serde(default = "default_title")]
    pub title: String,
    #[serde(default = "default_description")]
    pub description: String,
}

fn default_meters() -> u32 {
    3
}

fn default_first_meter() -> u32 {
    1
}

fn default_live_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}

fn default_title() -> String {
    "Demo meters".into()
}

fn default_description() -> String {
    "Simulated Linky-like electricity meters".into()
}

impl DemoConfig {
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            id: self.id.clone(),
            kind: "demo".into(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let last = u64::from(self.first_meter) + u64::from(self.meters);
        if self.meters == 0 || self.meters > MAX_METERS || last > 1_000_000_000 {
            return Err(ConfigError::Invalid {
                key: format!("{key}.meters"),
                message: format!("must be between 1 and {MAX_METERS}, ids within 9 digits"),
            });
        }
        if self.live_interval.0 < std::time::Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.live_interval"),
                message: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }

    /// The 14-digit id of meter `n` (0-based within this fleet).
    pub fn meter_id(&self, n: u32) -> String {
        format!(
            "{ID_PREFIX}{:09}",
            u64::from(self.first_meter) + u64::from(n)
        )
    }

    /// The usage points and series this source declares.
    pub fn fleet(&self) -> Vec<(UsagePoint, Vec<Series>)> {
        (0..self.meters)
            .map(|n| {
                let id = self.meter_id(n);
                let up = UsagePoint {
                    id: id.clone(),
                    source: self.id.clone(),
                    device_type: "electricity-meter".into(),
                    identifier: Identifier {
                        authority: "demo".into(),
                        kind: "prm".into(),
                        value: id.clone(),
                    },
                    name: format!("Demo meter {}", n + 1),
                    online: true,
                };
                let series = demo_series(&id, self.live_interval.0);
                (up, series)
            })
            .collect()
    }
}

fn demo_series(usage_point: &str, live_interval: std::time::Duration) -> Vec<Series> {
    let series = |path: &str, title: &str, m: Measurement| Series {
        usage_point: usage_point.to_owned(),
        path: path.to_owned(),
        title: title.to_owned(),
        measurement: m,
    };
    let electrical =
        |name: &str, quantity: &str, unit: &str, aggregation: &str, step: &str| Measurement {
            name: name.into(),
            direction: "consumption".into(),
            quantity: quantity.into(),
            kind: "electrical".into(),
            unit: unit.into(),
            aggregation: aggregation.into(),
            sampling_interval: step.into(),
        };
    vec![
        series(
            "consumption/power/active/raw",
            "Load curve (mean active power over 30 min)",
            electrical("active-power", "power", "W", "mean", "PT30M"),
        ),
        series(
            "consumption/energy/active/daily",
            "Daily consumed energy",
            electrical("active-energy", "energy", "Wh", "sum", "P1D"),
        ),
        series(
            "consumption/power/active/instant",
            "Live active power",
            electrical(
                "active-power",
                "power",
                "W",
                "instant",
                &iso8601_duration(live_interval),
            ),
        ),
    ]
}

/// `2s` → `PT2S`, `1500ms` → `PT1.5S`, `90s` → `PT1M30S`.
fn iso8601_duration(d: std::time::Duration) -> String {
    let total_ms = d.as_millis();
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::from("PT");
    if h > 0 {
        out += &format!("{h}H");
    }
    if m > 0 {
        out += &format!("{m}M");
    }
    if s > 0 || ms > 0 || out == "PT" {
        if ms > 0 {
            let frac = format!("{ms:03}");
            out += &format!("{s}.{}S", frac.trim_end_matches('0'));
        } else {
            out += &format!("{s}S");
        }
    }
    out
}

pub async fn run(
    config: DemoConfig,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    for (usage_point, series) in config.fleet() {
        let event = SourceEvent::Declare {
            usage_point,
            series,
        };
        tokio::select! {
            sent = events.send(event) => if sent.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
    tracing::info!(source = %config.id, meters = config.meters, "demo fleet declared");
    shutdown.cancelled().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(meters: u32) -> DemoConfig {
        DemoConfig {
            id: "demo".into(),
            meters,
            first_meter: 1,
            live_interval: HumanDuration(std::time::Duration::from_secs(2)),
            title: default_title(),
            description: default_description(),
        }
    }

    #[test]
    fn fleet_ids_are_prm_shaped_and_deterministic() {
        let fleet = config(3).fleet();
        let ids: Vec<_> = fleet.iter().map(|(u, _)| u.id.as_str()).collect();
        assert_eq!(ids, ["99999000000001", "99999000000002", "99999000000003"]);
        assert!(ids.iter().all(|i| i.len() == 14));
        assert_eq!(config(3).fleet(), fleet);
    }

    #[test]
    fn each_meter_declares_the_required_series() {
        for (up, series) in config(2).fleet() {
            let paths: Vec<_> = series.iter().map(|s| s.path.as_str()).collect();
            assert!(paths.contains(&"consumption/power/active/raw"));
            assert!(paths.contains(&"consumption/energy/active/daily"));
            assert!(series.iter().all(|s| s.usage_point == up.id));
            let live = series
                .iter()
                .find(|s| s.measurement.aggregation == "instant");
            assert_eq!(live.unwrap().measurement.sampling_interval, "PT2S");
        }
    }

    #[test]
    fn iso_durations() {
        use std::time::Duration;
        assert_eq!(iso8601_duration(Duration::from_secs(2)), "PT2S");
        assert_eq!(iso8601_duration(Duration::from_millis(1500)), "PT1.5S");
        assert_eq!(iso8601_duration(Duration::from_secs(90)), "PT1M30S");
        assert_eq!(iso8601_duration(Duration::from_secs(3600)), "PT1H");
    }

    #[test]
    fn validation_bounds() {
        assert!(config(0).validate("source[0]").is_err());
        assert!(config(3).validate("source[0]").is_ok());
        let mut c = config(3);
        c.live_interval = HumanDuration(std::time::Duration::from_millis(10));
        let err = c.validate("source[0]").unwrap_err().to_string();
        assert!(err.starts_with("source[0].live_interval"), "{err}");
    }

    #[tokio::test]
    async fn run_declares_then_waits_for_shutdown() {
        let (tx, mut rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config(3), tx, shutdown.clone()));
        for _ in 0..3 {
            assert!(matches!(rx.recv().await, Some(SourceEvent::Declare { .. })));
        }
        shutdown.cancel();
        task.await.unwrap();
    }
}
