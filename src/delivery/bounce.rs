//! Bounces: a `<message type="error"/>` answering one of our notifications. A `cancel` error
//! ends the subscription (the subscriber is gone for good); `wait` and `auth` are retried later,
//! with an exponential backoff, up to [`MAX_ATTEMPTS`]. A publication's stanza or a notice that
//! bounces is retried through the outbox, as a stanza of its own. A bounce counts only when it
//! comes from the subscriber's own address (its bare JID): stanza ids are guessable, and another
//! account must not end someone else's subscription by forging one.

use minidom::Element;

use super::fanout::{notice_id, parse_notice_id};
use super::outbox::outbox_id;
use crate::model::{Subscription, SubscriptionKind};
use crate::request::Context;
use crate::stanzas::notification::missed_notice_xml;
use crate::stanzas::outgoing::parse_fanout_id;
use crate::stanzas::template::Template;
use crate::stanzas::xml::escape;
use crate::store::{NewOutboxEntry, StoreError};
use crate::time::now;

/// Attempts after which a subscriber that keeps answering `wait`/`auth` loses the notification.
pub const MAX_ATTEMPTS: i32 = 5;

/// What a bounce is about.
enum Bounced {
    /// An outbox entry.
    Outbox { id: i64 },
    /// The `k`-th stanza of publication `seq` to `subscription`.
    Publication {
        subscription: i64,
        seq: i64,
        k: usize,
    },
    /// A notice of `count` dropped notifications since `since` to `subscription`.
    Notice {
        subscription: i64,
        count: u64,
        since: i64,
    },
}

fn bounced(id: &str) -> Option<Bounced> {
    if let Some(id) = outbox_id(id) {
        return Some(Bounced::Outbox { id });
    }
    if let Some((subscription, seq, k)) = parse_fanout_id(id) {
        return Some(Bounced::Publication {
            subscription,
            seq,
            k,
        });
    }
    let (subscription, count, since) = parse_notice_id(id)?;
    Some(Bounced::Notice {
        subscription,
        count,
        since,
    })
}

/// Handles a bounce of one of our stanzas; others are ignored.
pub(crate) async fn bounce(ctx: &Context, message: &Element) {
    let Some(id) = message.attr("id") else {
        return;
    };
    let Some(what) = bounced(id) else {
        return;
    };
    let error_type = message
        .get_child("error", crate::stanzas::ns::COMPONENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or("cancel");
    let retryable = matches!(error_type, "wait" | "auth");
    let from = message.attr("from").unwrap_or_default();
    if let Err(e) = handle(ctx, what, from, retryable).await {
        tracing::error!(error = %e, id, "cannot handle a bounce");
    } else {
        tracing::info!(id, error_type, "notification bounced");
    }
}

async fn handle(
    ctx: &Context,
    what: Bounced,
    from: &str,
    retryable: bool,
) -> Result<(), StoreError> {
    let (subscription, attempts) = match &what {
        Bounced::Outbox { id } => {
            let Some(entry) = ctx.store.outbox_entry(*id).await? else {
                return Ok(());
            };
            let Some(subscription) = entry.subscription else {
                return Ok(());
            };
            (subscription, entry.attempts)
        }
        Bounced::Publication { subscription, .. } | Bounced::Notice { subscription, .. } => {
            (*subscription, 0)
        }
    };
    // Ids are guessable: only the subscriber's own server, answering for the subscriber, may
    // end or delay its subscription.
    let Some(sub) = ctx.store.subscription(subscription).await? else {
        return Ok(());
    };
    let bare = crate::publisher::bare_of;
    if bare(from).is_none() || bare(from) != bare(&sub.jid) {
        tracing::warn!(
            subscription,
            from,
            "a bounce from another address than the subscriber's; ignored"
        );
        return Ok(());
    }
    if !(retryable && attempts + 1 < MAX_ATTEMPTS) {
        tracing::info!(
            subscription,
            "bounced notification: ending the subscription"
        );
        return crate::publisher::end_subscription(
            ctx,
            subscription,
            "notifications to this address bounce",
        )
        .await;
    }
    let delay = 10i64 << attempts.clamp(0, 10);
    let id = match what {
        Bounced::Outbox { id } => id,
        other => {
            let Some(text) = stanza_again(ctx, &sub, &other).await? else {
                return Ok(()); // the subscription or the publication is gone meanwhile
            };
            let ids = ctx
                .store
                .enqueue(&[NewOutboxEntry::for_subscription(subscription, text)])
                .await?;
            let Some(&id) = ids.first() else {
                return Ok(());
            };
            id
        }
    };
    ctx.store.retry_later(id, now() + delay).await?;
    tracing::info!(subscription, attempt = attempts + 1, delay, "will retry");
    Ok(())
}

/// The text of a bounced publication stanza or notice, written again for its subscriber `sub`
/// (the outbox gives it a new id), if its publication still exists.
async fn stanza_again(
    ctx: &Context,
    sub: &Subscription,
    what: &Bounced,
) -> Result<Option<String>, StoreError> {
    let to = match sub.kind {
        SubscriptionKind::PubSub => sub.jid.clone(),
        SubscriptionKind::Push => crate::publisher::bare_of(&sub.jid).unwrap_or(sub.jid.clone()),
    };
    match *what {
        Bounced::Publication { seq, k, .. } => {
            let Some(publication) = ctx.store.publication_for(sub.id, seq).await? else {
                return Ok(None);
            };
            let stored = match sub.kind {
                SubscriptionKind::PubSub => &publication.pubsub,
                SubscriptionKind::Push => &publication.push,
            };
            let template = match Template::decode(stored) {
                Ok(template) => template,
                Err(e) => {
                    tracing::error!(error = %e, seq, "cannot retry a publication whose stored templates do not read");
                    return Ok(None);
                }
            };
            Ok(template.stanza(k, &escape(&to), "retry"))
        }
        Bounced::Notice { count, since, .. } => {
            let from = ctx.usage_point_jid(&sub.usage_point).to_string();
            let id = notice_id(sub.id, count, since);
            Ok(Some(missed_notice_xml(
                &from,
                &to,
                &id,
                &sub.series,
                sub.kind,
                since,
                count,
            )))
        }
        Bounced::Outbox { .. } => Ok(None),
    }
}
