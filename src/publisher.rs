//! The publisher task: persists what sources send, and publishes live readings.
//!
//! Sources run concurrently and never touch SQL; this single task serialises their writes, so a
//! slow store slows the sources down (bounded channel) instead of losing their events. A live
//! batch is stored together with its PubSub item and its publication (the notifications,
//! serialised once for every subscriber) in one transaction: after a crash either all of it
//! exists or none, and the delivery task sends it to every subscription behind once the link is
//! up. Publishing costs the same whatever the number of subscribers.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, Notify};

use crate::audit;
use crate::model::{
    audit_command, AuditEntry, Batch, Grant, GrantOrigin, Item, Series, SubscriptionKind,
    UsagePoint, ANY,
};
use crate::request::Context;
use crate::source::SourceEvent;
use crate::stanzas::notification::{
    notification_template, push_ended_xml, push_template, subscription_ended,
};
use crate::stanzas::quoalise::{quoalise, Data, Generation, Meta};
use crate::stanzas::senml::Pack;
use crate::store::{NewOutboxEntry, NewPublication, Prepare, Store, StoreError};
use crate::time::now;

/// Records per generation-2 push message: what the reference Python push used, far below any
/// server's stanza limit.
pub(crate) const PUSH_CHUNK: usize = 1000;

/// First pause before an event is tried again after a passing store failure; it doubles.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest pause between two tries of one event.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The events of one source (`Some(id)`), or injected by the caller (`None`).
pub(crate) type Feed = (Option<String>, mpsc::Receiver<SourceEvent>);

/// Stores and publishes source events.
pub struct Publisher {
    pub ctx: Arc<Context>,
    /// Woken after each publication so delivery starts at once.
    pub wake: Arc<Notify>,
    /// Woken when an event revoked a grant, so the subscriptions it covered end at once.
    pub access_changed: Arc<Notify>,
    /// Items kept per node.
    pub max_items: usize,
}

impl Publisher {
    /// Applies events until every sender is gone. A failed event is logged and the next one is
    /// processed: one bad declaration must not stop the others.
    pub async fn run(self, feeds: Vec<Feed>) {
        let streams = feeds.into_iter().map(|(source, events)| {
            futures::stream::unfold(events, move |mut events| {
                let source = source.clone();
                async move { events.recv().await.map(|event| ((source, event), events)) }
            })
            .boxed()
        });
        let mut all = futures::stream::select_all(streams);
        while let Some((source, event)) = all.next().await {
            if let Err(e) = self.handle_until_stored(source.as_deref(), &event).await {
                log_error(e);
            }
        }
    }

    /// Handles one event, again and again while the store fails in a way that passes (busy,
    /// locked, restarting, unreachable): nothing a source produced is dropped for a store
    /// stall. Meanwhile no other event is read, so each source's bounded channel fills and
    /// its next send waits: the sources slow down instead of losing readings.
    async fn handle_until_stored(
        &self,
        source: Option<&str>,
        event: &SourceEvent,
    ) -> Result<(), StoreError> {
        let mut delay = RETRY_FIRST;
        let mut retries = 0u32;
        loop {
            match self.handle(source, event).await {
                Err(e) if e.is_transient() => {
                    if retries == 0 {
                        tracing::warn!(error = %e, "store unavailable; retrying the event until it is stored (sources wait meanwhile)");
                    }
                    retries += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                result => {
                    if retries > 0 && result.is_ok() {
                        tracing::info!(retries, "store back; the waiting event is stored");
                    }
                    return result;
                }
            }
        }
    }

    async fn handle(&self, source: Option<&str>, event: &SourceEvent) -> Result<(), StoreError> {
        match self.owned_by(source, event).await? {
            true => match event {
                SourceEvent::Live(batch) => self.publish(batch).await,
                other => apply_event(self.ctx.store.as_ref(), other)
                    .await
                    .map(|revoked| {
                        if revoked > 0 {
                            self.access_changed.notify_one();
                        }
                    }),
            },
            false => {
                tracing::error!(
                    source = source.unwrap_or("?"),
                    "event about a usage point of another source; dropped"
                );
                Ok(())
            }
        }
    }

    async fn owned_by(
        &self,
        source: Option<&str>,
        event: &SourceEvent,
    ) -> Result<bool, StoreError> {
        let Some(source) = source else {
            return Ok(true);
        };
        let usage_point = match event {
            SourceEvent::Declare { usage_point, .. } => return Ok(usage_point.source == source),
            SourceEvent::Online { usage_point, .. } => usage_point,
            SourceEvent::Readings(batch) | SourceEvent::Live(batch) => &batch.usage_point,
            SourceEvent::Owners { usage_point, .. } => usage_point,
            SourceEvent::Started { source: s, .. } => return Ok(s == source),
        };
        // An unknown usage point is reported precisely by the store when the event is applied.
        Ok(self
            .ctx
            .store
            .usage_point(usage_point)
            .await?
            .is_none_or(|up| up.source == source))
    }

    /// Stores a live batch, its item and its notifications in one transaction, then ends the
    /// subscriptions whose grant is gone.
    pub async fn publish(&self, batch: &Batch) -> Result<(), StoreError> {
        let store = self.ctx.store.as_ref();
        let up = store.usage_point(&batch.usage_point).await?;
        let series = store
            .series(&batch.usage_point)
            .await?
            .into_iter()
            .find(|s| s.path == batch.series);
        let (Some(up), Some(series), false) = (up, series, batch.readings.is_empty()) else {
            // Unknown usage point or series: store_readings reports it precisely.
            return store.insert_readings(batch).await.map(|_| ());
        };
        let (item, publication) = self.item_and_notifications(&up, &series, batch);
        // Subscribers are not read here: delivery finds who is behind, checks their access
        // and sends, however many they are.
        store
            .publish(batch, Some(&item), Some(&publication), self.max_items)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Publishes what is new in several live batches, with their audit entries, in one store
    /// transaction (see [`FanoutStore::publish_new`](crate::store::FanoutStore::publish_new)):
    /// the HTTP ingest's group commit. `prepare` builds a batch's item and notifications
    /// ([`Publisher::item_and_notifications`]; the ingest builds them ahead in each request's
    /// own task). Returns how many readings of each batch were new.
    pub(crate) async fn publish_new(
        &self,
        batches: &[Batch],
        prepare: &Prepare<'_>,
        audit: &[AuditEntry],
    ) -> Result<Vec<usize>, StoreError> {
        let counts = self
            .ctx
            .store
            .publish_new(batches, prepare, self.max_items, audit)
            .await?;
        if counts.iter().any(|&n| n > 0) {
            self.wake.notify_one();
        }
        Ok(counts)
    }

    /// The PubSub item of a live batch and its notifications (serialised once for every
    /// subscriber): the XEP-0060 one carrying the item, the generation-2 pushes carrying the
    /// readings in chunks.
    pub(crate) fn item_and_notifications(
        &self,
        up: &UsagePoint,
        series: &Series,
        batch: &Batch,
    ) -> (Item, NewPublication) {
        let identifier = series.identifier(up);
        let meta = Meta {
            device_type: up.device_type.clone(),
            identifier: up.identifier.clone(),
            measurement: series.measurement.clone(),
        };
        let data = |readings: &[crate::model::Reading]| Data {
            meta: meta.clone(),
            sensml: Pack::from_readings(
                &identifier,
                &series.measurement.unit,
                &readings
                    .iter()
                    .map(|r| (r.time, r.value))
                    .collect::<Vec<_>>(),
            ),
        };
        let payload = String::from(&quoalise(&[data(&batch.readings)], Generation::Two));
        let item = Item {
            usage_point: up.id.clone(),
            series: series.path.clone(),
            item_id: crate::model::id::random_id(),
            published_at: now(),
            payload,
        };
        let from = self.ctx.usage_point_jid(&up.id).to_string();
        let pushes: Vec<String> = batch
            .readings
            .chunks(PUSH_CHUNK)
            .map(|chunk| String::from(&quoalise(&[data(chunk)], Generation::Two)))
            .collect();
        let publication = NewPublication {
            pubsub: notification_template(&from, &item.series, &item.item_id, &item.payload, None)
                .encode(),
            push: push_template(&from, pushes.iter().map(String::as_str)).encode(),
        };
        (item, publication)
    }
}

/// The bare part of a JID string (`alice@x/phone` → `alice@x`).
pub(crate) fn bare_of(jid: &str) -> Option<String> {
    let parsed: xmpp_parsers::jid::Jid = jid.parse().ok()?;
    Some(parsed.to_bare().to_string())
}

/// Ends a subscription: removes it, discards what was still queued for it (it may no longer be
/// read), and tells the subscriber (`subscription="none"` for PubSub, a note for pushes).
pub(crate) async fn end_subscription(
    ctx: &Context,
    id: i64,
    reason: &str,
) -> Result<(), StoreError> {
    let Some(sub) = ctx.store.remove_subscription(id).await? else {
        return Ok(()); // ended concurrently
    };
    ctx.store.discard_pending(sub.id).await?;
    let from = match ctx.store.usage_point(&sub.usage_point).await? {
        Some(up) => ctx.usage_point_jid(&up.id),
        None => ctx.domain.clone().into(),
    };
    let notice = match sub.kind {
        SubscriptionKind::PubSub => String::from(&subscription_ended(&from, &sub)),
        SubscriptionKind::Push => push_ended_xml(
            &from.to_string(),
            &sub.jid,
            &format!(
                "Your subscription to {} {} ended: {reason}",
                sub.usage_point, sub.series
            ),
        ),
    };
    ctx.store
        .enqueue(&[NewOutboxEntry::unattached(notice)])
        .await?;
    tracing::info!(usage_point = %sub.usage_point, series = %sub.series, jid = %sub.jid, reason, "subscription ended");
    Ok(())
}

/// Ends every subscription whose subscriber has lost its grant (expiry, revocation).
pub async fn expire_subscriptions(ctx: &Context) -> Result<usize, StoreError> {
    let subscriptions = ctx.store.all_subscriptions().await?;
    let bares: Vec<Option<String>> = subscriptions.iter().map(|s| bare_of(&s.jid)).collect();
    let views = ctx
        .access
        .views(bares.iter().flatten().map(String::as_str))
        .await?;
    let mut ended = 0;
    for (sub, bare) in subscriptions.iter().zip(&bares) {
        let allowed = bare
            .as_ref()
            .and_then(|b| views.get(b))
            .is_some_and(|v| v.may_read(&sub.usage_point, &sub.series));
        if !allowed {
            end_subscription(ctx, sub.id, "the grant expired or was revoked").await?;
            ended += 1;
        }
    }
    Ok(ended)
}

fn log_error(e: StoreError) {
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

/// Stores an event without publishing (declarations, history, and live batches in tests that
/// have no subscribers).
pub async fn apply(store: &dyn Store, event: &SourceEvent) -> Result<(), StoreError> {
    apply_event(store, event).await.map(|_| ())
}

/// [`apply`]; returns how many grants the event revoked.
async fn apply_event(store: &dyn Store, event: &SourceEvent) -> Result<usize, StoreError> {
    match event {
        SourceEvent::Declare {
            usage_point,
            series,
        } => store.declare_usage_point(usage_point, series).await?,
        SourceEvent::Online {
            usage_point,
            online,
        } => {
            store.set_online(usage_point, *online).await?;
        }
        SourceEvent::Readings(batch) | SourceEvent::Live(batch) => {
            store.insert_readings(batch).await?;
        }
        SourceEvent::Owners {
            usage_point,
            owners,
        } => {
            let Some(up) = store.usage_point(usage_point).await? else {
                tracing::error!(%usage_point, "owners of an undeclared usage point; dropped");
                return Ok(0);
            };
            return reconcile_owners(store, &up, owners, &store.grants().await?).await;
        }
        SourceEvent::Started { source, owners } => {
            // Reconciling one usage point touches only its own grants: one read serves all.
            let grants = store.grants().await?;
            let mut revoked = 0;
            for up in store.usage_points(Some(source)).await? {
                store.set_online(&up.id, false).await?;
                revoked += reconcile_owners(store, &up, owners, &grants).await?;
            }
            return Ok(revoked);
        }
    }
    Ok(0)
}

/// Makes the unrevoked grants of origin `source` on `usage_point` match `owners`: one grant on
/// every series per owner, added when missing, revoked when its owner is no longer listed.
/// Idempotent, so a source may send its owners again at every start. `grants` are the unrevoked
/// grants as stored (those of other usage points are ignored). Returns how many were revoked.
async fn reconcile_owners(
    store: &dyn Store,
    up: &UsagePoint,
    owners: &[String],
    grants: &[Grant],
) -> Result<usize, StoreError> {
    let mut revoked = 0;
    let wanted = |g: &Grant| g.series == ANY && g.valid_from.is_none() && g.valid_until.is_none();
    let mut kept: HashSet<&str> = HashSet::new();
    for grant in grants {
        if grant.origin != GrantOrigin::Source || grant.usage_point != up.id {
            continue;
        }
        let owner = owners.iter().find(|o| **o == grant.subject);
        match (owner, grant.id) {
            (Some(owner), _) if wanted(grant) && kept.insert(owner.as_str()) => {}
            (_, Some(id)) => {
                if let Some(grant) = store.revoke_grant(id).await? {
                    revoked += 1;
                    let actor = format!("source:{}", up.source);
                    audit::record(
                        store,
                        audit::grant_event(&actor, audit_command::GRANT_REVOKED, &grant),
                    )
                    .await;
                }
                tracing::info!(usage_point = %up.id, subject = %grant.subject, "owner grant revoked");
            }
            (_, None) => {}
        }
    }
    for owner in owners {
        if kept.insert(owner.as_str()) {
            let mut grant = Grant {
                id: None,
                subject: owner.clone(),
                usage_point: up.id.clone(),
                series: ANY.into(),
                valid_from: None,
                valid_until: None,
                origin: GrantOrigin::Source,
                purpose: Some(format!("owner of the devices of source {}", up.source)),
            };
            grant.id = Some(store.add_grant(&grant).await?);
            let actor = format!("source:{}", up.source);
            audit::record(
                store,
                audit::grant_event(&actor, audit_command::GRANT_ADDED, &grant),
            )
            .await;
            tracing::info!(usage_point = %up.id, subject = %owner, "owner grant added");
        }
    }
    Ok(revoked)
}
