//! The publisher task: persists what sources send.
//!
//! Sources run concurrently and never touch SQL; this single task serialises their writes, so a
//! slow store slows the sources down (bounded channel) instead of losing their events.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::source::SourceEvent;
use crate::store::{Store, StoreError};

/// Applies events until every sender is gone. A failed write is logged and the next event is
/// processed: one bad declaration must not stop the others.
pub async fn run(store: Arc<dyn Store>, mut events: mpsc::Receiver<SourceEvent>) {
    while let Some(event) = events.recv().await {
        if let Err(e) = apply(store.as_ref(), &event).await {
            match e {
                StoreError::Conflict { id, owner } => tracing::error!(
                    usage_point = %id, %owner,
                    "usage point declared by two sources; keeping the first"
                ),
                StoreError::UnknownSeries {
                    usage_point,
                    series,
                } => tracing::error!(
                    %usage_point, %series,
                    "readings for a series that was never declared; dropped"
                ),
                other => tracing::error!(error = %other, "cannot store source event"),
            }
        }
    }
}

pub async fn apply(store: &dyn Store, event: &SourceEvent) -> Result<(), StoreError> {
    match event {
        SourceEvent::Declare {
            usage_point,
            series,
        } => store.declare_usage_point(usage_point, series).await,
        SourceEvent::Online {
            usage_point,
            online,
        } => store.set_online(usage_point, *online).await.map(|_| ()),
        SourceEvent::Readings(batch) => store.insert_readings(batch).await.map(|_| ()),
    }
}
