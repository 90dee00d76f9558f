//! The HTTP ingest source: meters and gateways of any make (Shelly and Tasmota plugs, ESPHome
//! boards, Home Assistant automations, inverters, a script reading a Linky's TIC port) post RFC
//! 8428 SenML packs to `POST {public_url}/ingest/{source}/{device}`, and each configured device
//! becomes a usage point with live PubSub feeds and history, under the same grants and audit as
//! the other sources.
//!
//! The source's task only declares the configured devices (and their owners' grants): readings
//! arrive through the web server, on whichever instance the request reached, so the request can
//! be answered only once they are stored and published (`crate::web::ingest`). What does not
//! need HTTP or the store lives here, so that it is tested without either:
//!
//! - [`config`]: the `[[source]] type = "http"` table, checked once into [`HttpSettings`].
//! - [`series`]: what a declared series path means (measurement, unit).
//! - [`decode`]: the three SenML bodies (JSON, CBOR, XML) into one record list, bounded.
//! - [`readings`]: records into per-series readings, refusing the whole pack on the first bad
//!   record, by its index and field.

pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod readings;
pub(crate) mod series;

#[cfg(test)]
mod props;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) use config::{Device, HttpConfig, HttpSettings};

use crate::source::SourceEvent;

/// Runs the source until `shutdown`: declares every configured device, with its owners, then
/// waits. Started anew each time this instance becomes the source's leader; declarations are
/// idempotent.
pub(crate) async fn run(
    settings: HttpSettings,
    events: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) {
    let mut all = vec![SourceEvent::Started {
        source: settings.id.clone(),
        owners: settings.owners.clone(),
    }];
    for device in &settings.devices {
        all.push(SourceEvent::Declare {
            usage_point: device.usage_point(&settings.id),
            series: device.series_models(),
        });
        all.push(SourceEvent::Owners {
            usage_point: device.id.clone(),
            owners: settings.owners.clone(),
        });
    }
    for event in all {
        let sent = tokio::select! {
            sent = events.send(event) => sent.is_ok(),
            _ = shutdown.cancelled() => false,
        };
        if !sent {
            return;
        }
    }
    tracing::info!(source = %settings.id, devices = settings.devices.len(), "HTTP ingest devices declared");
    shutdown.cancelled().await;
}
