//! XEP-0060 through the router, the publisher and the delivery task: subscriptions, items,
//! notifications, bounces, refusals, and subscriptions ending with their grant.

use std::sync::Arc;

use minidom::Element;
use quoalise_component::model::{Batch, Grant, GrantOrigin, Reading};
use quoalise_component::publisher::{self, Publisher};
use quoalise_component::source::demo::LIVE;
use quoalise_component::source::SourceEvent;
use quoalise_component::store::Store;
use quoalise_component::xmpp::router::Router;
use tokio::sync::Notify;

mod support;

use support::delivery::{deliver, deliver_with};
use support::router::{demo_router, ALICE, BOB, D, UP};
use support::xml::{clark, stanza_error};

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

async fn setup() -> (Router, Publisher, Arc<dyn Store>) {
    let (router, store) = demo_router(1, &[UP], 512 * 1024).await;
    let publisher = Publisher {
        ctx: router.shared_context(),
        wake: Arc::new(Notify::new()),
        access_changed: Arc::new(Notify::new()),
        max_items: 10,
    };
    (router, publisher, store)
}

fn iq(type_: &str, from: &str, payload: &str) -> Element {
    format!("<iq xmlns='jabber:component:accept' type='{type_}' id='p1' from='{from}' to='{UP}@{D}'><pubsub xmlns='{PUBSUB}'>{payload}</pubsub></iq>")
        .parse()
        .unwrap()
}

async fn publish(publisher: &Publisher, time: i64, value: f64) {
    publisher
        .publish(&Batch {
            usage_point: UP.into(),
            series: LIVE.into(),
            readings: vec![Reading { time, value }],
        })
        .await
        .unwrap();
}

/// An event that revokes a grant (an owner dropped) wakes the grant check at once; one that
/// only adds grants does not.
#[tokio::test]
async fn a_revoking_event_wakes_the_grant_check() {
    use futures::FutureExt;

    let (_router, publisher, store) = setup().await;
    let ctx = publisher.ctx.clone();
    let owners = |list: &[&str]| SourceEvent::Owners {
        usage_point: UP.into(),
        owners: list.iter().map(|s| (*s).to_owned()).collect(),
    };
    // Runs a publisher over `events` until they are all applied; true if it woke the check.
    let run = |events: Vec<SourceEvent>| {
        let access_changed = Arc::new(Notify::new());
        let publisher = Publisher {
            ctx: ctx.clone(),
            wake: Arc::new(Notify::new()),
            access_changed: access_changed.clone(),
            max_items: 10,
        };
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            for event in events {
                tx.send(event).await.unwrap();
            }
            drop(tx);
            publisher.run(vec![(None, rx)]).await;
            access_changed.notified().now_or_never().is_some()
        }
    };
    drop(publisher);

    assert!(!run(vec![owners(&[ALICE, BOB])]).await, "nothing revoked");
    let subjects = |grants: Vec<Grant>| -> Vec<String> {
        let mut s: Vec<String> = grants
            .into_iter()
            .filter(|g| g.origin == GrantOrigin::Source)
            .map(|g| g.subject)
            .collect();
        s.sort();
        s
    };
    assert_eq!(subjects(store.grants().await.unwrap()), [ALICE, BOB]);
    assert!(run(vec![owners(&[ALICE])]).await, "Bob's grant revoked");
    assert_eq!(subjects(store.grants().await.unwrap()), [ALICE]);
}

#[tokio::test]
async fn subscribe_publish_notify_unsubscribe() {
    let (r, p, store) = setup().await;
    publish(&p, 1_790_632_800, 500.0).await;
    assert!(deliver(p.ctx.clone()).await.is_empty(), "no subscriber yet");

    let out = r
        .handle(iq(
            "set",
            ALICE,
            &format!("<subscribe node='{LIVE}' jid='{ALICE}'/>"),
        ))
        .await;
    assert_eq!(out.len(), 2, "result, then the last item");
    let sub = out[0]
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("subscription", PUBSUB)
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("jid"), Some(ALICE), "full JID kept as given");
    let last = &out[1];
    assert_eq!(
        (last.name(), last.attr("type"), last.attr("to")),
        ("message", Some("headline"), Some(ALICE))
    );
    assert!(last.get_child("delay", "urn:xmpp:delay").is_some());

    publish(&p, 1_790_632_802, 510.0).await;
    publish(&p, 1_790_632_804, 520.0).await;
    let delivered = deliver(p.ctx.clone()).await;
    assert_eq!(delivered.len(), 2);
    let note = &delivered[0];
    assert_eq!(
        (note.attr("to"), note.attr("type")),
        (Some(ALICE), Some("headline"))
    );
    let item = note
        .get_child("event", EVENT)
        .unwrap()
        .get_child("items", EVENT)
        .unwrap()
        .get_child("item", EVENT)
        .unwrap();
    let senml = item
        .get_child("quoalise", "urn:quoalise:0")
        .unwrap()
        .get_child("data", "urn:quoalise:0")
        .unwrap()
        .get_child("sensml", "urn:ietf:params:xml:ns:senml")
        .unwrap()
        .children()
        .next()
        .unwrap();
    assert_eq!(senml.attr("v"), Some("510"));

    // Items: the two newest with max_items.
    let reply = &r
        .handle(iq(
            "get",
            ALICE,
            &format!("<items node='{LIVE}' max_items='2'/>"),
        ))
        .await[0];
    let items = reply
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("items", PUBSUB)
        .unwrap();
    assert_eq!(items.children().count(), 2);

    // Every read is on record, under alice's grant: the last item sent on subscribing, the two
    // notifications of the claim as one entry, then the two items retrieved.
    let audit: Vec<_> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let alice_bare = ALICE.split('/').next().unwrap();
    let reads: Vec<(&str, &str, &str, i64)> = audit
        .iter()
        .map(|e| {
            (
                e.command.as_str(),
                e.requester.as_str(),
                e.series.as_str(),
                e.records,
            )
        })
        .collect();
    assert_eq!(
        reads,
        [
            ("notification", alice_bare, LIVE, 1),
            ("notification", alice_bare, LIVE, 2),
            ("pubsub-items", alice_bare, LIVE, 2)
        ]
    );
    assert!(audit
        .iter()
        .all(|e| e.usage_point == UP && e.grant_id.is_some()));
    assert!(audit[0].start < audit[0].end);

    // Subscriptions listed.
    let reply = &r.handle(iq("get", ALICE, "<subscriptions/>")).await[0];
    let subs = reply
        .get_child("pubsub", PUBSUB)
        .unwrap()
        .get_child("subscriptions", PUBSUB)
        .unwrap();
    assert_eq!(subs.children().count(), 1);

    // Unsubscribe without subid stops notifications.
    let reply = &r
        .handle(iq(
            "set",
            ALICE,
            &format!("<unsubscribe node='{LIVE}' jid='{ALICE}'/>"),
        ))
        .await[0];
    assert_eq!(reply.attr("type"), Some("result"));
    publish(&p, 1_790_632_806, 530.0).await;
    assert!(deliver(p.ctx.clone()).await.is_empty());
    let reply = &r
        .handle(iq(
            "set",
            ALICE,
            &format!("<unsubscribe node='{LIVE}' jid='{ALICE}'/>"),
        ))
        .await[0];
    let error = stanza_error(reply);
    assert_eq!(error.condition, "unexpected-request");
    assert_eq!(error.app, Some(clark(PUBSUB_ERRORS, "not-subscribed")));
}

#[tokio::test]
async fn refusals() {
    let (r, _, _) = setup().await;
    let cases = [
        (
            BOB,
            format!("<subscribe node='{LIVE}' jid='{BOB}'/>"),
            "set",
            ("not-allowed", Some("closed-node")),
        ),
        (
            BOB,
            format!("<items node='{LIVE}'/>"),
            "get",
            ("not-allowed", Some("closed-node")),
        ),
        (
            ALICE,
            format!("<subscribe node='{LIVE}' jid='mallory@localhost'/>"),
            "set",
            ("bad-request", Some("invalid-jid")),
        ),
        (
            ALICE,
            "<subscribe node='no/such' jid='alice@localhost'/>".to_owned(),
            "set",
            ("item-not-found", None),
        ),
        (
            ALICE,
            format!("<publish node='{LIVE}'><item/></publish>"),
            "set",
            ("forbidden", None),
        ),
        (
            ALICE,
            "<create node='mine'/>".to_owned(),
            "set",
            ("forbidden", None),
        ),
        (
            ALICE,
            format!("<retract node='{LIVE}'><item id='x'/></retract>"),
            "set",
            ("forbidden", None),
        ),
        (
            ALICE,
            "<affiliations/>".to_owned(),
            "get",
            ("feature-not-implemented", Some("unsupported")),
        ),
        (
            ALICE,
            format!("<unsubscribe node='{LIVE}' jid='alice@localhost' subid='nope'/>"),
            "set",
            ("unexpected-request", Some("not-subscribed")),
        ),
    ];
    for (who, payload, type_, (defined, app)) in cases {
        let reply = &r.handle(iq(type_, who, &payload)).await[0];
        let error = stanza_error(reply);
        assert_eq!(error.condition, defined, "{payload}");
        assert_eq!(error.app, app.map(|a| clark(PUBSUB_ERRORS, a)), "{payload}");
    }
    let owner: Element = format!("<iq xmlns='jabber:component:accept' type='set' id='p1' from='{ALICE}' to='{UP}@{D}'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{LIVE}'/></pubsub></iq>").parse().unwrap();
    assert_eq!(
        stanza_error(&r.handle(owner).await[0]).condition,
        "forbidden"
    );

    // A wrong subid on an existing subscription.
    r.handle(iq(
        "set",
        ALICE,
        &format!("<subscribe node='{LIVE}' jid='alice@localhost'/>"),
    ))
    .await;
    let reply = &r
        .handle(iq(
            "set",
            ALICE,
            &format!("<unsubscribe node='{LIVE}' jid='alice@localhost' subid='nope'/>"),
        ))
        .await[0];
    let error = stanza_error(reply);
    assert_eq!(error.condition, "not-acceptable");
    assert_eq!(error.app, Some(clark(PUBSUB_ERRORS, "invalid-subid")));
}

#[tokio::test]
async fn revoked_grant_ends_subscriptions_with_a_notice() {
    let (r, p, store) = setup().await;
    let grant_id = store
        .add_grant(&Grant {
            id: None,
            subject: "bob@localhost".into(),
            usage_point: UP.into(),
            series: "*".into(),
            valid_from: None,
            valid_until: None,
            origin: GrantOrigin::Admin,
            purpose: None,
        })
        .await
        .unwrap();
    let reply = &r
        .handle(iq(
            "set",
            BOB,
            &format!("<subscribe node='{LIVE}' jid='bob@localhost'/>"),
        ))
        .await[0];
    assert_eq!(reply.attr("type"), Some("result"));
    store.revoke_grant(grant_id).await.unwrap();
    publish(&p, 1_790_632_800, 1.0).await;
    let delivered = deliver(p.ctx.clone()).await;
    assert_eq!(delivered.len(), 1, "only the end notice, no data");
    let notice = &delivered[0];
    let sub = notice
        .get_child("event", EVENT)
        .unwrap()
        .get_child("subscription", EVENT)
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("none"));
    assert!(store.subscribers(UP, LIVE).await.unwrap().is_empty());
}

#[tokio::test]
async fn periodic_check_ends_expired_grants() {
    let (r, p, store) = setup().await;
    store
        .add_grant(&Grant {
            id: None,
            subject: "bob@localhost".into(),
            usage_point: UP.into(),
            series: "*".into(),
            valid_from: None,
            valid_until: Some(quoalise_component::time::now() + 1),
            origin: GrantOrigin::Admin,
            purpose: None,
        })
        .await
        .unwrap();
    r.handle(iq(
        "set",
        BOB,
        &format!("<subscribe node='{LIVE}' jid='{BOB}'/>"),
    ))
    .await;
    assert_eq!(store.subscribers(UP, LIVE).await.unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(publisher::expire_subscriptions(&p.ctx).await.unwrap(), 1);
    assert!(store.subscribers(UP, LIVE).await.unwrap().is_empty());
}

#[tokio::test]
async fn generation_2_push() {
    let (r, p, store) = setup().await;
    let cmd = |node: &str, identifier: &str| -> Element {
        format!("<iq xmlns='jabber:component:accept' type='set' id='c1' from='{ALICE}' to='demo@{D}'><command xmlns='http://jabber.org/protocol/commands' node='{node}' action='execute'><x xmlns='jabber:x:data' type='submit'><field var='identifier'><value>{identifier}</value></field></x></command></iq>").parse().unwrap()
    };
    let reply = &r
        .handle(cmd("subscribe", &format!("urn:dev:prm:{UP}_{LIVE}")))
        .await[0];
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    publish(&p, 1_790_632_800, 42.0).await;
    let delivered = deliver(p.ctx.clone()).await;
    assert_eq!(delivered.len(), 1);
    let message = &delivered[0];
    assert_eq!(message.attr("to"), Some("alice@localhost"), "bare JID");
    assert!(message
        .get_child("quoalise", "urn:quoalise:0")
        .unwrap()
        .get_child("data", "urn:quoalise:0")
        .is_some());
    // A bare usage-point URN unsubscribes all its series.
    let reply = &r
        .handle(cmd("unsubscribe", &format!("urn:dev:prm:{UP}")))
        .await[0];
    assert_eq!(reply.attr("type"), Some("result"));
    assert!(store.subscribers(UP, LIVE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_cancel_bounce_ends_the_subscription() {
    let (r, p, store) = setup().await;
    r.handle(iq(
        "set",
        ALICE,
        &format!("<subscribe node='{LIVE}' jid='{ALICE}'/>"),
    ))
    .await;
    publish(&p, 1_790_632_800, 1.0).await;
    let delivered = deliver(p.ctx.clone()).await;
    let id = delivered[0].attr("id").unwrap();
    assert!(id.starts_with('p'), "{id}");
    let bounce = |from: &str| -> Element {
        format!("<message xmlns='jabber:component:accept' type='error' id='{id}' from='{from}' to='{UP}@{D}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>").parse().unwrap()
    };
    // Another account forging the id ends nothing: only the subscriber's own bounce counts.
    assert!(r.handle(bounce(BOB)).await.is_empty());
    assert_eq!(store.subscribers(UP, LIVE).await.unwrap().len(), 1);
    assert!(r.handle(bounce(ALICE)).await.is_empty());
    assert!(store.subscribers(UP, LIVE).await.unwrap().is_empty());
}

#[tokio::test]
async fn wait_bounces_are_retried_later_then_given_up() {
    let (r, p, store) = setup().await;
    r.handle(iq(
        "set",
        ALICE,
        &format!("<subscribe node='{LIVE}' jid='{ALICE}'/>"),
    ))
    .await;
    publish(&p, 1_790_632_800, 1.0).await;
    let now = quoalise_component::time::now();
    let delivered = deliver(p.ctx.clone()).await;
    let bounce = |id: &str| -> Element {
        format!("<message xmlns='jabber:component:accept' type='error' id='{id}' from='{ALICE}' to='{UP}@{D}'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>").parse().unwrap()
    };
    // The notification's first bounce queues it again, on its own, for later.
    assert!(r
        .handle(bounce(delivered[0].attr("id").unwrap()))
        .await
        .is_empty());
    let id = store.claim_outbox(i64::MAX / 2, 10, 60).await.unwrap()[0].id;
    let retry: Element = store
        .outbox_entry(id)
        .await
        .unwrap()
        .unwrap()
        .stanza
        .parse()
        .unwrap();
    assert_eq!(
        (retry.attr("to"), retry.get_child("event", EVENT).is_some()),
        (Some(ALICE), true),
        "the same notification"
    );
    let bounce = bounce(&format!("q{id}"));
    for attempt in 1..quoalise_component::delivery::MAX_ATTEMPTS {
        if attempt > 1 {
            assert!(r.handle(bounce.clone()).await.is_empty());
        }
        let entry = store.outbox_entry(id).await.unwrap().unwrap();
        assert_eq!(entry.attempts, attempt);
        assert!(entry.not_before > now, "retried later, not at once");
        assert_eq!(store.subscribers(UP, LIVE).await.unwrap().len(), 1);
    }
    // The last attempt gives up on the subscriber.
    assert!(r.handle(bounce).await.is_empty());
    assert!(store.subscribers(UP, LIVE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_source_cannot_feed_another_sources_usage_point() {
    let (_r, p, store) = setup().await;
    let (demo_tx, demo_rx) = tokio::sync::mpsc::channel(8);
    let (other_tx, other_rx) = tokio::sync::mpsc::channel(8);
    let batch = |time: i64, value: f64| Batch {
        usage_point: UP.into(),
        series: LIVE.into(),
        readings: vec![Reading { time, value }],
    };
    other_tx
        .send(SourceEvent::Readings(batch(1_790_632_801, 666.0)))
        .await
        .unwrap();
    demo_tx
        .send(SourceEvent::Readings(batch(1_790_632_800, 1.0)))
        .await
        .unwrap();
    drop((demo_tx, other_tx));
    p.run(vec![
        (Some("demo".into()), demo_rx),
        (Some("other".into()), other_rx),
    ])
    .await;
    let stored = store.readings(UP, LIVE, 0, i64::MAX, None).await.unwrap();
    assert_eq!(
        stored,
        [Reading {
            time: 1_790_632_800,
            value: 1.0
        }]
    );
}

/// While nothing is delivered, a subscriber of either kind keeps the `max_pending` newest
/// notifications and gets one headline saying how many were dropped, readable by people and
/// programs; the history keeps every reading, and the metric counts the drops.
#[tokio::test]
async fn a_subscriber_out_of_reach_gets_the_newest_and_one_notice() {
    let (r, p, store) = setup().await;
    let metrics = quoalise_component::metrics::Metrics::default();
    let out = r
        .handle(iq(
            "set",
            ALICE,
            &format!("<subscribe node='{LIVE}' jid='{ALICE}'/>"),
        ))
        .await;
    assert_eq!(out[0].attr("type"), Some("result"));
    let command: Element = format!("<iq xmlns='jabber:component:accept' type='set' id='c1' from='{ALICE}' to='demo@{D}'><command xmlns='http://jabber.org/protocol/commands' node='subscribe' action='execute'><x xmlns='jabber:x:data' type='submit'><field var='identifier'><value>urn:dev:prm:{UP}_{LIVE}</value></field></x></command></iq>").parse().unwrap();
    assert_eq!(r.handle(command).await[0].attr("type"), Some("result"));

    let t0 = 1_790_632_800;
    let before = quoalise_component::time::now();
    for n in 0..6 {
        publish(&p, t0 + 2 * n, n as f64).await;
    }
    let messages = deliver_with(p.ctx.clone(), 2, metrics.clone()).await;
    let notices: Vec<&Element> = messages
        .iter()
        .filter(|m| m.get_child("missed", "urn:quoalise:0").is_some())
        .collect();
    assert_eq!(messages.len(), 2 * 2 + 2, "{messages:#?}");
    assert_eq!(notices.len(), 2);
    for (notice, to) in notices.iter().zip([ALICE, "alice@localhost"]) {
        assert_eq!(
            (notice.attr("type"), notice.attr("from"), notice.attr("to")),
            (Some("headline"), Some(&*format!("{UP}@{D}")), Some(to))
        );
        let missed = notice.get_child("missed", "urn:quoalise:0").unwrap();
        assert_eq!(
            (missed.attr("node"), missed.attr("count")),
            (Some(LIVE), Some("4"))
        );
        let since = chrono::DateTime::parse_from_rfc3339(missed.attr("since").unwrap())
            .unwrap()
            .timestamp();
        assert!(
            (before..=quoalise_component::time::now()).contains(&since),
            "{since}"
        );
        let body = notice.get_child("body", "jabber:component:accept").unwrap();
        assert!(
            body.text().contains(&format!("node {LIVE}")),
            "{}",
            body.text()
        );
        assert!(body.text().contains(": 4, "), "{}", body.text());
    }
    // The survivors are the newest: readings 4 and 5, for each subscriber.
    let mut values: Vec<String> = messages
        .iter()
        .filter(|m| m.get_child("missed", "urn:quoalise:0").is_none())
        .map(|m| {
            let quoalise = m
                .get_child("event", EVENT)
                .and_then(|e| e.get_child("items", EVENT))
                .and_then(|i| i.get_child("item", EVENT))
                .unwrap_or(m)
                .get_child("quoalise", "urn:quoalise:0")
                .unwrap();
            let senml = quoalise
                .get_child("data", "urn:quoalise:0")
                .unwrap()
                .get_child("sensml", "urn:ietf:params:xml:ns:senml")
                .unwrap();
            senml
                .children()
                .next()
                .unwrap()
                .attr("v")
                .unwrap()
                .to_owned()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["4", "4", "5", "5"]);
    assert!(metrics
        .render()
        .contains("\nquoalise_outbox_dropped_total 8\n"));
    assert_eq!(
        store
            .count_readings(UP, LIVE, i64::MIN, i64::MAX)
            .await
            .unwrap(),
        6
    );
}
