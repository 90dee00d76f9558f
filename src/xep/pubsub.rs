//! XEP-0060: Publish-Subscribe — the service hosted on each usage-point JID.
//!
//! Nodes are the usage point's series; sources create them, users only subscribe and read. The
//! access model is a whitelist of the grants (docs/architecture.md §4.1): no grant, no
//! subscription and no items. Subscriptions and items live in the store, so they survive
//! restarts; notifications go through the store's outbox (see `crate::delivery`).
//!
//! Each subscription costs a notification per publication, so one requester (a bare JID, all
//! its resources together) holds at most `[limits] subscriptions_per_node` on one node and
//! `subscriptions_per_requester` in all, generation-2 pushes included
//! ([`subscribe_within_limits`], which the `subscribe` command uses too).

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::model::{
    audit_command, AuditEntry, Item, Series, Subscription, SubscriptionKind, UsagePoint,
};
use crate::request::error::RequestError;
use crate::request::{Answer, Context, Request, Target};
use crate::stanzas::notification::notification_xml;
use crate::stanzas::ns;
use crate::stanzas::pubsub::{self as stanza, Request as PubSubRequest, State};
use crate::time::now;
use crate::xep::rsm;

/// Features of the PubSub service, exactly those implemented (XEP-0060 §10).
pub(crate) const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
    "http://jabber.org/protocol/pubsub#subscription-notifications",
];

/// Room kept for the envelope of an items answer.
const ENVELOPE: usize = 8 * 1024;

/// Handles an `<iq><pubsub/></iq>` addressed to a usage point.
pub(crate) async fn handle(
    ctx: &Context,
    req: &Request,
    payload: &Element,
    is_get: bool,
) -> Result<Answer, RequestError> {
    let Target::UsagePoint(up) = &req.target else {
        return Err(RequestError::ServiceUnavailable);
    };
    let request =
        PubSubRequest::try_from(payload).map_err(|e| RequestError::bad_request(e.to_string()))?;
    match (request, is_get) {
        (PubSubRequest::Subscribe { node, jid }, false) => {
            subscribe(ctx, req, up, &node, &jid).await
        }
        (PubSubRequest::Unsubscribe { node, jid, subid }, false) => {
            unsubscribe(ctx, req, up, &node, &jid, subid.as_deref()).await
        }
        (PubSubRequest::Subscriptions { node }, true) => {
            subscriptions(ctx, req, up, node.as_deref()).await
        }
        (
            PubSubRequest::Items {
                node,
                max_items,
                ids,
                rsm,
            },
            true,
        ) => items(ctx, req, up, &node, max_items, &ids, rsm.as_ref()).await,
        (PubSubRequest::Forbidden(feature), _) => Err(RequestError::Forbidden(format!(
            "{feature}: nodes here are created and fed by the component's sources only"
        ))),
        (PubSubRequest::Unsupported(feature), _) => Err(RequestError::Unsupported(feature)),
        // A request in the wrong iq type (e.g. subscribe in a get).
        _ => Err(RequestError::bad_request(
            "pubsub: wrong iq type for this request",
        )),
    }
}

async fn series_of(ctx: &Context, up: &UsagePoint, node: &str) -> Result<Series, RequestError> {
    ctx.store
        .series(&up.id)
        .await?
        .into_iter()
        .find(|s| s.path == node)
        .ok_or(RequestError::ItemNotFound)
}

fn closed(up: &UsagePoint, node: &str) -> RequestError {
    RequestError::ClosedNode(format!(
        "You have no grant for usage point {}, series {node}",
        up.id
    ))
}

/// Checks that `jid` (as given) belongs to the requester; returns it parsed.
fn own_jid(req: &Request, jid: &str) -> Result<Jid, RequestError> {
    let parsed: Jid = jid
        .parse()
        .map_err(|_| RequestError::InvalidJid(format!("jid: {jid:?} is not a JID")))?;
    if parsed.to_bare() != req.requester {
        return Err(RequestError::InvalidJid(format!(
            "jid: {jid} is not your own JID ({})",
            req.requester
        )));
    }
    Ok(parsed)
}

async fn subscribe(
    ctx: &Context,
    req: &Request,
    up: &UsagePoint,
    node: &str,
    jid: &str,
) -> Result<Answer, RequestError> {
    let series = series_of(ctx, up, node).await?;
    own_jid(req, jid)?;
    if !req.view.may_read(&up.id, node) {
        return Err(closed(up, node));
    }
    let subscription = subscribe_within_limits(
        ctx,
        &req.requester,
        SubscriptionKind::PubSub,
        &up.id,
        node,
        jid,
    )
    .await?;
    tracing::info!(usage_point = %up.id, node, jid, "pubsub subscription");
    let reply = stanza::pubsub([stanza::subscription(
        ns::PUBSUB,
        node,
        jid,
        Some(&subscription.subid),
        State::Subscribed,
    )]);
    // XEP-0060 §6.1.7: the last published item, right after the subscription result.
    let mut followups = Vec::new();
    if let Some(item) = ctx.store.last_item(&up.id, &series.path).await? {
        let from = ctx.usage_point_jid(&up.id).to_string();
        let xml = notification_xml(
            &from,
            jid,
            &item.series,
            &item.item_id,
            &item.payload,
            Some(item.published_at),
        );
        let mut message: Element = xml.parse().map_err(|e| {
            RequestError::Internal(format!("stored item {} does not parse: {e}", item.item_id))
        })?;
        message.set_attr(
            minidom::rxml::Namespace::NONE,
            xml_ncname!("id").to_ncname(),
            crate::model::id::random_id(),
        );
        record_read(
            ctx,
            req,
            up,
            node,
            std::slice::from_ref(&item),
            audit_command::NOTIFICATION,
        )
        .await?;
        followups.push(message);
    }
    Ok(Answer {
        payload: Some(reply),
        followups,
    })
}

/// Subscribes `jid` (the requester's own, already checked) to a series within the requester's
/// `[limits]`: at most `subscriptions_per_node` on this series and `subscriptions_per_requester`
/// in all, both kinds, all its resources together. Re-subscribing is no new subscription and is
/// always allowed (the existing one is returned). Admins are limited like everyone: the limits
/// bound what one account costs per publication, whoever it is.
///
/// The counts are read before the insert, so a refusal writes nothing; and read again after a
/// new insert, because requests of one requester run concurrently and could all pass the first
/// check: a subscription that went over is removed again and refused.
pub(crate) async fn subscribe_within_limits(
    ctx: &Context,
    requester: &BareJid,
    kind: SubscriptionKind,
    usage_point: &str,
    series: &str,
    jid: &str,
) -> Result<Subscription, RequestError> {
    let store = &ctx.store;
    let counts = store
        .subscription_counts(requester.as_str(), kind, usage_point, series, jid)
        .await?;
    if !counts.exists {
        check_limits(ctx, requester, kind, usage_point, series, counts, 1)?;
    }
    let subid = crate::model::id::random_id();
    let subscription = store
        .subscribe(kind, usage_point, series, jid, &subid)
        .await?;
    if subscription.subid != subid {
        // It existed already (created concurrently, perhaps): nothing new to count.
        return Ok(subscription);
    }
    let counts = store
        .subscription_counts(requester.as_str(), kind, usage_point, series, jid)
        .await?;
    if let Err(refused) = check_limits(ctx, requester, kind, usage_point, series, counts, 0) {
        store.remove_subscription(subscription.id).await?;
        store.discard_pending(subscription.id).await?;
        return Err(refused);
    }
    Ok(subscription)
}

/// Refuses when the requester, with `adding` more subscriptions on this series, would hold more
/// than its limits allow.
fn check_limits(
    ctx: &Context,
    requester: &BareJid,
    kind: SubscriptionKind,
    usage_point: &str,
    series: &str,
    counts: crate::store::SubscriptionCounts,
    adding: u64,
) -> Result<(), RequestError> {
    let limits = &ctx.limits;
    let over = |held: u64, limit: usize| held.saturating_add(adding) > limit as u64;
    let text = if over(counts.on_series, limits.subscriptions_per_node) {
        format!(
            "Too many subscriptions: {requester} holds the most allowed on node {series} of \
             usage point {usage_point} ({} per node, subscriptions_per_node); unsubscribe one first",
            limits.subscriptions_per_node
        )
    } else if over(counts.total, limits.subscriptions_per_requester) {
        format!(
            "Too many subscriptions: {requester} holds the most allowed in all ({}, \
             subscriptions_per_requester); unsubscribe some first",
            limits.subscriptions_per_requester
        )
    } else {
        return Ok(());
    };
    tracing::info!(%requester, usage_point, series, "subscription refused: {text}");
    Err(RequestError::TooManySubscriptions {
        text,
        pubsub: kind == SubscriptionKind::PubSub,
    })
}

async fn unsubscribe(
    ctx: &Context,
    req: &Request,
    up: &UsagePoint,
    node: &str,
    jid: &str,
    subid: Option<&str>,
) -> Result<Answer, RequestError> {
    series_of(ctx, up, node).await?;
    if own_jid(req, jid).is_err() {
        return Err(RequestError::Forbidden(format!(
            "jid: you may only unsubscribe your own JID ({})",
            req.requester
        )));
    }
    let existing: Vec<Subscription> = ctx
        .store
        .subscriptions_of(req.requester.as_str(), Some(&up.id))
        .await?
        .into_iter()
        .filter(|s| s.kind == SubscriptionKind::PubSub && s.series == node && s.jid == jid)
        .collect();
    if existing.is_empty() {
        return Err(RequestError::NotSubscribed);
    }
    if subid.is_some_and(|id| existing.iter().all(|s| s.subid != id)) {
        return Err(RequestError::InvalidSubid);
    }
    ctx.store
        .unsubscribe(SubscriptionKind::PubSub, &up.id, Some(node), jid, subid)
        .await?;
    tracing::info!(usage_point = %up.id, node, jid, "pubsub unsubscription");
    Ok(Answer::default())
}

async fn subscriptions(
    ctx: &Context,
    req: &Request,
    up: &UsagePoint,
    node: Option<&str>,
) -> Result<Answer, RequestError> {
    let list = ctx
        .store
        .subscriptions_of(req.requester.as_str(), Some(&up.id))
        .await?
        .into_iter()
        .filter(|s| s.kind == SubscriptionKind::PubSub && node.is_none_or(|n| n == s.series))
        .map(|s| {
            stanza::subscription(
                ns::PUBSUB,
                &s.series,
                &s.jid,
                Some(&s.subid),
                State::Subscribed,
            )
        })
        .collect();
    Ok(Answer {
        payload: Some(stanza::pubsub([stanza::subscriptions(node, list)])),
        followups: vec![],
    })
}

async fn items(
    ctx: &Context,
    req: &Request,
    up: &UsagePoint,
    node: &str,
    max_items: Option<usize>,
    ids: &[String],
    set: Option<&xmpp_parsers::rsm::SetQuery>,
) -> Result<Answer, RequestError> {
    series_of(ctx, up, node).await?;
    if !req.view.may_read(&up.id, node) {
        return Err(closed(up, node));
    }
    let wanted = (!ids.is_empty()).then_some(ids);
    let all = ctx.store.items(&up.id, node, wanted, max_items).await?;
    let (page, mut result) = rsm::page(&all, |i: &Item| i.item_id.clone(), set)?;
    // Never answer beyond the stanza limit: cut the page and let the client continue with RSM.
    let budget = ctx.max_stanza_size.saturating_sub(ENVELOPE);
    let mut size = 0;
    let mut elements = Vec::with_capacity(page.len());
    for item in &page {
        // Stored text uses `<a/>`; the stream writes `<a></a>`, at most twice the length.
        size += 2 * item.payload.len() + item.item_id.len() + 32;
        if size > budget && !elements.is_empty() {
            let last = elements.len() - 1;
            result = Some(xmpp_parsers::rsm::SetResult {
                first: page.first().map(|i| xmpp_parsers::rsm::First {
                    index: None,
                    item: i.item_id.clone(),
                }),
                last: Some(page[last].item_id.clone()),
                count: Some(all.len()),
            });
            break;
        }
        elements.push(stanza::item(
            ns::PUBSUB,
            &item.item_id,
            Some(parse_payload(item)?),
        ));
    }
    record_read(
        ctx,
        req,
        up,
        node,
        &page[..elements.len()],
        audit_command::PUBSUB_ITEMS,
    )
    .await?;
    let mut children = vec![stanza::items(ns::PUBSUB, node, elements)];
    children.extend(result.map(Element::from));
    Ok(Answer {
        payload: Some(stanza::pubsub(children)),
        followups: vec![],
    })
}

/// Puts items given to the requester on record before they leave (nothing when none); their
/// publication times stand for the range read.
async fn record_read(
    ctx: &Context,
    req: &Request,
    up: &UsagePoint,
    node: &str,
    items: &[Item],
    command: &str,
) -> Result<(), RequestError> {
    let times = items.iter().map(|i| i.published_at);
    let (Some(start), Some(end)) = (times.clone().min(), times.max()) else {
        return Ok(());
    };
    ctx.store
        .append_audit(&AuditEntry {
            requester: req.requester.to_string(),
            usage_point: up.id.clone(),
            series: node.to_owned(),
            start,
            end: end + 1,
            grant_id: req.view.grant_for(&up.id, node).and_then(|g| g.id),
            command: command.to_owned(),
            records: items.len() as i64,
            at: now(),
        })
        .await?;
    Ok(())
}

fn parse_payload(item: &Item) -> Result<Element, RequestError> {
    item.payload.parse::<Element>().map_err(|e| {
        RequestError::Internal(format!(
            "stored item {} of {} {} does not parse: {e}",
            item.item_id, item.usage_point, item.series
        ))
    })
}
