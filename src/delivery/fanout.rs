//! Delivery of publications: claims subscriptions behind their series, checks their access, and
//! queues for each the publications after its cursor, each one a shared template filled with
//! the subscriber's address; the link reports what it wrote, and the cursors follow
//! (see [`reports`](super::reports)).
//!
//! The bound (`[pubsub] max_pending`) is applied here, when a subscription is claimed: if more
//! publications wait for it than the bound, the oldest are skipped and it gets one notice saying
//! how many (the readings stay in the history).
//!
//! Every subscriber's notifications of a claim are one audit entry (`notification`), all of a
//! claim's entries appended in one transaction before any of its stanzas is queued: what leaves
//! is on record first. A claim delivered again after a crash is recorded again.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use super::{Delivery, Limiter, DEPTH, LEASE_SECS};
use crate::model::{audit_command, AuditEntry, SubscriptionKind};
use crate::stanzas::notification::missed_notice_xml;
use crate::stanzas::outgoing::{Outgoing, Payload, Report};
use crate::stanzas::template::Template;
use crate::stanzas::xml::escape;
use crate::store::{Advance, Claimed, Publication, StoreError};
use crate::time::now;

/// Claim ids: a random start per process, then one more per claim, so that an instance never
/// ends another's claim (nor one of its own that expired and was taken again).
pub(super) struct ClaimIds(i64);

impl ClaimIds {
    pub(super) fn new() -> Self {
        let mut bytes = [0u8; 8];
        // Without OS randomness, the time: distinct enough between instances started apart.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = now().to_le_bytes();
        }
        // Positive and far from overflowing.
        ClaimIds(i64::from_le_bytes(bytes) & (i64::MAX >> 2))
    }

    pub(super) fn next(&mut self) -> i64 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

/// The id of a notice of dropped notifications: enough to write it again after a bounce.
pub(crate) fn notice_id(subscription: i64, count: u64, since: i64) -> String {
    format!("m{subscription}.{count}.{since}")
}

/// The (subscription, count, since) of a notice id we gave, if it is one.
pub(crate) fn parse_notice_id(id: &str) -> Option<(i64, u64, i64)> {
    let mut parts = id.strip_prefix('m')?.splitn(3, '.');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// A publication's templates, decoded once per claim and shared by its subscribers.
struct Decoded {
    seq: i64,
    published_at: i64,
    pubsub: Arc<Template>,
    push: Arc<Template>,
}

impl Decoded {
    fn new(p: &Publication) -> Option<Decoded> {
        match (Template::decode(&p.pubsub), Template::decode(&p.push)) {
            (Ok(pubsub), Ok(push)) => Some(Decoded {
                seq: p.seq,
                published_at: p.published_at,
                pubsub: Arc::new(pubsub),
                push: Arc::new(push),
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(seq = p.seq, error = %e, "skipping a publication whose stored templates do not read");
                None
            }
        }
    }
}

/// Claims subscriptions behind and queues what they miss; returns how many subscriptions were
/// served (`None`: shutdown).
pub(super) async fn send(
    delivery: &Delivery,
    limiter: &Limiter,
    claim_size: usize,
    claim: i64,
) -> Option<usize> {
    let store = delivery.ctx.store.as_ref();
    let claimed = match store
        .claim_fanout(now(), claim_size, LEASE_SECS, claim)
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "cannot claim subscriptions to deliver; retrying");
            return Some(0);
        }
    };
    if claimed.is_empty() {
        return Some(0);
    }
    let count = claimed.len();
    match serve(delivery, limiter, claimed, claim).await {
        Ok(true) => Some(count),
        Ok(false) => None,
        Err(e) => {
            // What was claimed and not queued comes back when the lease passes.
            tracing::error!(error = %e, "cannot deliver claimed subscriptions; their lease will");
            Some(count)
        }
    }
}

/// Serves claimed subscriptions, ordered by series; false at shutdown.
async fn serve(
    delivery: &Delivery,
    limiter: &Limiter,
    claimed: Vec<Claimed>,
    claim: i64,
) -> Result<bool, StoreError> {
    let ctx = &delivery.ctx;
    let bares: Vec<Option<String>> = claimed
        .iter()
        .map(|c| crate::publisher::bare_of(&c.subscription.jid))
        .collect();
    let views = ctx
        .access
        .views(bares.iter().flatten().map(String::as_str))
        .await?;
    // Publications read per (series, cursor): subscriptions of one series usually stand at the
    // same place, so one read serves them all.
    let mut read: HashMap<(i64, i64), Vec<Decoded>> = HashMap::new();
    // Claims with nothing to queue end at once.
    let mut finished: Vec<Advance> = Vec::new();
    // What to queue (with its stanza count) once `audits` are on record.
    let mut queued: Vec<(usize, Outgoing)> = Vec::new();
    let mut audits: Vec<AuditEntry> = Vec::new();
    let at = now();
    for (c, bare) in claimed.into_iter().zip(bares) {
        let sub = &c.subscription;
        let allowed = bare
            .as_ref()
            .and_then(|b| views.get(b))
            .is_some_and(|v| v.may_read(&sub.usage_point, &sub.series));
        let (true, Some(bare)) = (allowed, bare) else {
            crate::publisher::end_subscription(ctx, sub.id, "access to this data ended").await?;
            continue;
        };
        // As subscribed for PubSub, the bare JID for pushes.
        let address = match sub.kind {
            SubscriptionKind::PubSub => sub.jid.as_str(),
            SubscriptionKind::Push => bare.as_str(),
        };
        let to: Arc<str> = escape(address).into();
        // Beyond the bound, the oldest are skipped.
        let behind = c.head.saturating_sub(c.delivered);
        let bound = i64::try_from(delivery.max_pending).unwrap_or(i64::MAX);
        let start = if behind > bound {
            c.head - bound
        } else {
            c.delivered
        };
        let publications: &[Decoded] = match read.entry((c.series_id, start)) {
            Entry::Occupied(read) => read.into_mut(),
            Entry::Vacant(slot) => {
                let publications = ctx.store.publications(c.series_id, start, DEPTH).await?;
                slot.insert(publications.iter().filter_map(Decoded::new).collect())
            }
        };
        if start > c.delivered {
            let skipped = u64::try_from(start - c.delivered).unwrap_or(0);
            let since = oldest_skipped(delivery, &c).await?;
            let from = ctx.usage_point_jid(&sub.usage_point).to_string();
            let id = notice_id(sub.id, skipped, since);
            let text =
                missed_notice_xml(&from, address, &id, &sub.series, sub.kind, since, skipped);
            delivery.metrics.outbox_dropped(skipped);
            tracing::info!(
                usage_point = %sub.usage_point, series = %sub.series, jid = %sub.jid, skipped,
                "publications waiting beyond [pubsub] max_pending skipped"
            );
            queued.push((
                1,
                Outgoing {
                    payload: Payload::Wire(text.into_bytes()),
                    report: Some(Report::Fanout {
                        subscription: sub.id,
                        seq: start,
                        claim,
                        last: publications.is_empty(),
                    }),
                },
            ));
        } else if publications.is_empty() {
            // Behind, yet nothing after the cursor: the publications are gone (a corrupt row
            // skipped, or pruned by hand). Catch up, or the claim would come back forever.
            tracing::error!(
                subscription = sub.id,
                from = c.delivered,
                to = c.head,
                "publications missing; skipping them"
            );
            finished.push(Advance {
                subscription: sub.id,
                seq: c.head,
                claim,
                done: true,
            });
            continue;
        }
        if let (Some(first), Some(last)) = (publications.first(), publications.last()) {
            audits.push(AuditEntry {
                requester: bare.clone(),
                usage_point: sub.usage_point.clone(),
                series: sub.series.clone(),
                start: first.published_at,
                end: last.published_at + 1,
                grant_id: views
                    .get(&bare)
                    .and_then(|v| v.grant_for(&sub.usage_point, &sub.series))
                    .and_then(|g| g.id),
                command: audit_command::NOTIFICATION.to_owned(),
                records: publications.len() as i64,
                at,
            });
        }
        for (i, p) in publications.iter().enumerate() {
            let template = match sub.kind {
                SubscriptionKind::PubSub => &p.pubsub,
                SubscriptionKind::Push => &p.push,
            };
            queued.push((
                template.stanzas(),
                Outgoing {
                    payload: Payload::Fanout {
                        template: template.clone(),
                        to: to.clone(),
                        subscription: sub.id,
                        seq: p.seq,
                    },
                    report: Some(Report::Fanout {
                        subscription: sub.id,
                        seq: p.seq,
                        claim,
                        last: i + 1 == publications.len(),
                    }),
                },
            ));
        }
    }
    // On record before anything leaves; if the log cannot be written, nothing leaves and the
    // claim comes back after its lease.
    ctx.store.append_audits(&audits).await?;
    for (stanzas, out) in queued {
        if !delivery.queue(limiter, stanzas, out).await {
            return Ok(false);
        }
    }
    ctx.store.advance(&finished).await?;
    Ok(true)
}

/// When the oldest publication a subscription skips was published (now, if it is gone).
async fn oldest_skipped(delivery: &Delivery, c: &Claimed) -> Result<i64, StoreError> {
    Ok(delivery
        .ctx
        .store
        .publications(c.series_id, c.delivered, 1)
        .await?
        .first()
        .map_or_else(now, |p| p.published_at))
}

/// Forgets the series nobody is behind on any more, between rounds of work.
pub(super) async fn settle(delivery: &Delivery) {
    if let Err(e) = delivery.ctx.store.settle_fanout().await {
        tracing::error!(error = %e, "cannot settle delivered series");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_ids_read_back() {
        let id = notice_id(7, 12, 1_790_000_000);
        assert_eq!(parse_notice_id(&id), Some((7, 12, 1_790_000_000)));
        for bad in ["p7.12.1", "m7.12", "m.1.2", "m1.x.2", "q3"] {
            assert_eq!(parse_notice_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn claim_ids_increase_and_stay_positive() {
        let mut ids = ClaimIds::new();
        let a = ids.next();
        let b = ids.next();
        assert!(a > 0 && b == a + 1);
    }
}
