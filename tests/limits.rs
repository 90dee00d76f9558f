//! `[limits]` through the router: how many subscriptions one requester (a bare JID, all its
//! resources together) may hold per node and in all, and how many ad-hoc command sessions it may
//! keep open, without one account being able to deny the others.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use quoalise_component::config::LimitsConfig;
use quoalise_component::model::SubscriptionKind;
use quoalise_component::source::demo::{DAILY, LIVE, LOAD_CURVE as RAW};
use quoalise_component::store::{self, Store, SubscriptionCounts};
use quoalise_component::xep::adhoc::{Clock, Engine};
use quoalise_component::xmpp::router::Router;

use quoalise_testkit::PgCluster;
use support::router::{demo_context, ADMIN, ALICE, BOB, D, UP};
use support::xml::{clark, stanza_error, StanzaError};

const UP2: &str = "99999000000002";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A router over two demo meters, both granted to alice, with these limits and this command
/// engine.
async fn router_with(limits: LimitsConfig, engine: Engine) -> (Router, Arc<dyn Store>) {
    let (mut ctx, store) = demo_context(2, &[UP, UP2], 512 * 1024).await;
    ctx.limits = limits;
    (Router::new(ctx, engine), store)
}

async fn router(limits: LimitsConfig) -> (Router, Arc<dyn Store>) {
    router_with(limits, Engine::new(quoalise_component::commands::all())).await
}

/// The first stanza of the answer; the others are follow-ups (the last item).
async fn send(router: &Router, el: Element) -> Element {
    let out = router.handle(el).await;
    out.into_iter().next().unwrap()
}

/// `from` subscribes `jid` to `node` of usage point `up`.
fn subscribe(from: &str, up: &str, node: &str, jid: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='s1' from='{from}' to='{up}@{D}'>\
         <pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    )
    .parse()
    .unwrap()
}

fn unsubscribe(from: &str, up: &str, node: &str, jid: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='u1' from='{from}' to='{up}@{D}'>\
         <pubsub xmlns='{PUBSUB}'><unsubscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    )
    .parse()
    .unwrap()
}

/// The subid of a successful subscription answer.
fn subid(reply: &Element) -> String {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    let sub = reply
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .unwrap();
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    sub.attr("subid").unwrap().to_owned()
}

fn alice_resource(n: usize) -> String {
    format!("alice@localhost/r{n}")
}

/// How many subscriptions of any kind `bare` holds.
async fn held(store: &Arc<dyn Store>, bare: &str) -> usize {
    store.subscriptions_of(bare, None).await.unwrap().len()
}

#[tokio::test]
async fn the_seventeenth_subscription_on_one_node_is_refused() {
    let (r, store) = router(LimitsConfig::default()).await;
    let mut subids = Vec::new();
    for n in 0..16 {
        let reply = send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(n))).await;
        subids.push(subid(&reply));
    }

    let reply = send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(16))).await;
    let expected: Element = format!(
        "<iq xmlns='jabber:component:accept' type='error' id='s1' from='{UP}@{D}' to='{ALICE}'>\
         <error type='wait'>\
         <policy-violation xmlns='{STANZAS}'/>\
         <text xmlns='{STANZAS}' xml:lang='en'>Too many subscriptions: alice@localhost holds the \
         most allowed on node {LIVE} of usage point {UP} (16 per node, subscriptions_per_node); \
         unsubscribe one first</text>\
         <too-many-subscriptions xmlns='{PUBSUB_ERRORS}'/>\
         </error></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(reply, expected, "{}", String::from(&reply));
    assert_eq!(held(&store, "alice@localhost").await, 16);

    // Re-subscribing a JID already subscribed is no new subscription: allowed, same subid.
    for (n, first) in subids.iter().enumerate() {
        let reply = send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(n))).await;
        assert_eq!(&subid(&reply), first);
    }
    assert_eq!(held(&store, "alice@localhost").await, 16);

    // The limit is per node: another node of the same usage point, and another usage point.
    subid(&send(&r, subscribe(ALICE, UP, RAW, &alice_resource(16))).await);
    subid(&send(&r, subscribe(ALICE, UP2, LIVE, &alice_resource(16))).await);

    // Another requester on the same node is unaffected.
    subid(&send(&r, subscribe(ADMIN, UP, LIVE, ADMIN)).await);

    // Unsubscribing one makes room for one.
    let reply = send(&r, unsubscribe(ALICE, UP, LIVE, &alice_resource(3))).await;
    assert_eq!(reply.attr("type"), Some("result"));
    subid(&send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(16))).await);
    let reply = send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(17))).await;
    let error = stanza_error(&reply);
    assert_eq!(error.condition, "policy-violation");
    assert_eq!(
        error.app,
        Some(clark(PUBSUB_ERRORS, "too-many-subscriptions"))
    );
}

/// Requests of one requester are handled concurrently: all of them passing the first count
/// together must not take it over its limit.
#[tokio::test]
async fn concurrent_subscriptions_stay_within_the_node_limit() {
    let (r, store) = router(LimitsConfig::default()).await;
    let requests: Vec<_> = (0..24)
        .map(|n| {
            let r = r.clone();
            async move { send(&r, subscribe(ALICE, UP, LIVE, &alice_resource(n))).await }
        })
        .collect();
    let replies = futures::future::join_all(requests).await;
    let accepted = replies
        .iter()
        .filter(|r| r.attr("type") == Some("result"))
        .count();
    for reply in replies.iter().filter(|r| r.attr("type") == Some("error")) {
        let error = stanza_error(reply);
        assert_eq!(
            (error.type_.as_str(), error.condition.as_str()),
            ("wait", "policy-violation")
        );
        assert!(error.app.is_some());
    }
    let stored = held(&store, "alice@localhost").await;
    assert!(stored <= 16, "{stored} subscriptions stored");
    assert_eq!(accepted, stored);
}

#[tokio::test]
async fn the_total_limit_counts_every_node_and_push_subscriptions() {
    let limits = LimitsConfig {
        subscriptions_per_requester: 3,
        ..LimitsConfig::default()
    };
    let (r, store) = router(limits).await;
    subid(&send(&r, subscribe(ALICE, UP, LIVE, ALICE)).await);
    subid(&send(&r, subscribe(ALICE, UP, RAW, "alice@localhost")).await);
    // A generation-2 push subscription is the third.
    let reply = send(&r, push_subscribe(ALICE, UP2, LIVE)).await;
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(&reply)
    );
    assert_eq!(held(&store, "alice@localhost").await, 3);

    let expected_text = "Too many subscriptions: alice@localhost holds the most allowed in all \
                         (3, subscriptions_per_requester); unsubscribe some first";
    let reply = send(&r, subscribe(ALICE, UP, DAILY, ALICE)).await;
    assert_eq!(
        stanza_error(&reply),
        StanzaError {
            type_: "wait".to_owned(),
            condition: "policy-violation".to_owned(),
            app: Some(clark(PUBSUB_ERRORS, "too-many-subscriptions")),
            text: expected_text.to_owned()
        }
    );
    // The push command: the same condition, without the XEP-0060 one.
    let reply = send(&r, push_subscribe(ALICE, UP2, RAW)).await;
    assert_eq!(
        stanza_error(&reply),
        StanzaError {
            type_: "wait".to_owned(),
            condition: "policy-violation".to_owned(),
            app: None,
            text: expected_text.to_owned()
        }
    );
    assert_eq!(held(&store, "alice@localhost").await, 3);

    // At the limit, re-subscribing stays allowed, both kinds.
    subid(&send(&r, subscribe(ALICE, UP, LIVE, ALICE)).await);
    let reply = send(&r, push_subscribe(ALICE, UP2, LIVE)).await;
    assert_eq!(reply.attr("type"), Some("result"));

    // Admins are limited like everyone, and separately from alice.
    for (up, node) in [(UP, LIVE), (UP, RAW), (UP2, DAILY)] {
        subid(&send(&r, subscribe(ADMIN, up, node, ADMIN)).await);
    }
    let reply = send(&r, subscribe(ADMIN, UP2, LIVE, ADMIN)).await;
    assert_eq!(stanza_error(&reply).condition, "policy-violation");
    assert_eq!(held(&store, "alice@localhost").await, 3);
}

/// The `subscribe` command (generation-2 push) on `series` of usage point `up`, one-shot.
fn push_subscribe(from: &str, up: &str, series: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='c1' from='{from}' to='{D}'>\
         <command xmlns='{COMMANDS}' node='subscribe' action='execute'>\
         <x xmlns='jabber:x:data' type='submit'><field var='identifier'>\
         <value>urn:dev:prm:{up}_{series}</value></field></x></command></iq>"
    )
    .parse()
    .unwrap()
}

/// The count query on both backends: a requester's subscriptions across its resources, on one
/// series, and whether one exact subscription exists; nobody else's.
#[tokio::test]
async fn subscription_counts_on_both_backends() {
    let sqlite = store::open("sqlite::memory:").await.unwrap();
    counts_story(sqlite).await;
    let cluster = PgCluster::start();
    let url = cluster.create_database("limits_counts").await;
    counts_story(store::open(&url).await.unwrap()).await;
}

async fn counts_story(store: Arc<dyn Store>) {
    // The demo fleet, declared on this store.
    let demo = quoalise_component::source::demo::DemoConfig {
        id: "demo".into(),
        meters: 2,
        first_meter: 1,
        live_interval: quoalise_component::config::HumanDuration(Duration::from_secs(2)),
        history_days: 1,
        title: "Demo".into(),
        description: "Simulated".into(),
    };
    for (usage_point, series) in demo.fleet() {
        let declare = quoalise_component::source::SourceEvent::Declare {
            usage_point,
            series,
        };
        quoalise_component::publisher::apply(store.as_ref(), &declare)
            .await
            .unwrap();
    }
    let pubsub = SubscriptionKind::PubSub;
    let push = SubscriptionKind::Push;
    for (kind, up, series, jid) in [
        (pubsub, UP, LIVE, "alice@localhost/a"),
        (pubsub, UP, LIVE, "alice@localhost/b"),
        (pubsub, UP, LIVE, "alice@localhost"),
        (push, UP, LIVE, "alice@localhost"),
        (pubsub, UP, RAW, "alice@localhost/a"),
        (push, UP2, LIVE, "alice@localhost"),
        // Not alice: a longer name, a name that sorts between her full JIDs, another domain.
        (pubsub, UP, LIVE, "alice@localhostx/a"),
        (pubsub, UP, LIVE, "alice@localhost0"),
        (pubsub, UP, LIVE, "bob@localhost/a"),
    ] {
        store.subscribe(kind, up, series, jid, jid).await.unwrap();
    }
    let counts = |kind, up: &'static str, series: &'static str, jid: &'static str| {
        let store = store.clone();
        async move {
            store
                .subscription_counts("alice@localhost", kind, up, series, jid)
                .await
                .unwrap()
        }
    };
    let expect = |total, on_series, exists| SubscriptionCounts {
        total,
        on_series,
        exists,
    };
    assert_eq!(
        counts(pubsub, UP, LIVE, "alice@localhost/b").await,
        expect(6, 4, true)
    );
    assert_eq!(
        counts(pubsub, UP, LIVE, "alice@localhost/c").await,
        expect(6, 4, false)
    );
    assert_eq!(
        counts(push, UP, RAW, "alice@localhost").await,
        expect(6, 1, false)
    );
    assert_eq!(
        counts(pubsub, UP2, DAILY, "alice@localhost").await,
        expect(6, 0, false)
    );
    assert_eq!(
        store
            .subscription_counts("carol@localhost", pubsub, UP, LIVE, "carol@localhost")
            .await
            .unwrap(),
        expect(0, 0, false)
    );
}

// ---- Ad-hoc command sessions ----

/// Opens a multi-stage `get_history` session (the form, no data yet) from `from`.
fn open_session(from: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='c1' from='{from}' to='demo@{D}'>\
         <command xmlns='{COMMANDS}' node='get_history' action='execute'/></iq>"
    )
    .parse()
    .unwrap()
}

fn cancel_session(from: &str, sessionid: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='c1' from='{from}' to='demo@{D}'>\
         <command xmlns='{COMMANDS}' node='get_history' action='cancel' \
         sessionid='{sessionid}'/></iq>"
    )
    .parse()
    .unwrap()
}

/// The sessionid of an answer that opened (or continued) a session.
fn sessionid(reply: &Element) -> String {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    let command = reply.get_child("command", COMMANDS).unwrap();
    assert_eq!(command.attr("status"), Some("executing"));
    command.attr("sessionid").unwrap().to_owned()
}

/// A clock the test moves forward (unix seconds, from now).
fn test_clock() -> (Clock, Arc<AtomicU64>) {
    let start = quoalise_component::time::now();
    let offset = Arc::new(AtomicU64::new(0));
    let read = offset.clone();
    let clock: Clock = Arc::new(move || start + read.load(Ordering::SeqCst) as i64);
    (clock, offset)
}

#[tokio::test]
async fn one_account_with_many_resources_cannot_deny_the_others() {
    let (r, _) = router(LimitsConfig::default()).await;
    let mut opened = 0;
    let mut refused = 0;
    for resource in 0..320 {
        let from = format!("bob@localhost/r{resource}");
        for _ in 0..32 {
            let reply = send(&r, open_session(&from)).await;
            match reply.attr("type") {
                Some("result") => opened += 1,
                _ => {
                    let error = stanza_error(&reply);
                    assert_eq!(
                        (error.type_.as_str(), error.condition.as_str()),
                        ("wait", "resource-constraint")
                    );
                    refused += 1;
                }
            }
        }
    }
    assert_eq!((opened, refused), (32, 320 * 32 - 32));
    assert_eq!(r.commands().open_sessions().await, 32);
    // Another account still opens sessions, from any resource.
    for _ in 0..3 {
        sessionid(&send(&r, open_session(ALICE)).await);
    }
    sessionid(&send(&r, open_session("alice@localhost/tablet")).await);
    assert_eq!(r.commands().open_sessions().await, 36);
}

#[tokio::test]
async fn the_per_requester_session_limit() {
    let (r, _) = router(LimitsConfig::default()).await;
    let mut ids = Vec::new();
    for i in 0..32 {
        // Resources of one account share the limit.
        let from = if i % 2 == 0 {
            BOB
        } else {
            "bob@localhost/phone"
        };
        ids.push((from, sessionid(&send(&r, open_session(from)).await)));
    }
    let reply = send(&r, open_session("bob@localhost/third")).await;
    let expected: Element = format!(
        "<iq xmlns='jabber:component:accept' type='error' id='c1' from='demo@{D}' \
         to='bob@localhost/third'><error type='wait'>\
         <resource-constraint xmlns='{STANZAS}'/>\
         <text xmlns='{STANZAS}' xml:lang='en'>Too many open command sessions for \
         bob@localhost: 32 at most (sessions_per_requester); complete or cancel some first</text>\
         </error></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(reply, expected, "{}", String::from(&reply));

    // Cancelling one makes room for one.
    let (from, id) = &ids[0];
    let reply = send(&r, cancel_session(from, id)).await;
    assert_eq!(reply.attr("type"), Some("result"));
    sessionid(&send(&r, open_session("bob@localhost/third")).await);
    assert_eq!(
        stanza_error(&send(&r, open_session(BOB)).await).condition,
        "resource-constraint"
    );
}

#[tokio::test]
async fn the_total_session_limit() {
    let limits = LimitsConfig {
        sessions_per_requester: 4,
        sessions_total: 10,
        ..LimitsConfig::default()
    };
    let (r, _) = router(limits).await;
    let mut replies = Vec::new();
    for user in 0..3 {
        for _ in 0..4 {
            replies.push(send(&r, open_session(&format!("user{user}@localhost/x"))).await);
        }
    }
    for reply in &replies[..10] {
        sessionid(reply);
    }
    for reply in &replies[10..] {
        assert_eq!(
            stanza_error(reply),
            StanzaError {
                type_: "wait".to_owned(),
                condition: "resource-constraint".to_owned(),
                app: None,
                text: "The service has too many open command sessions (10 at most, \
                       sessions_total); try again later"
                    .to_owned()
            }
        );
    }
    assert_eq!(r.commands().open_sessions().await, 10);
    // Anyone else is refused too, until sessions end.
    assert_eq!(
        stanza_error(&send(&r, open_session(ALICE)).await).condition,
        "resource-constraint"
    );
}

/// Above 3/4 of `sessions_total`, sessions idle for more than a minute expire (ten minutes
/// otherwise), so abandoned sessions cannot keep the table full.
#[tokio::test]
async fn idle_sessions_expire_faster_under_pressure() {
    let limits = LimitsConfig {
        sessions_per_requester: 32,
        sessions_total: 8,
        ..LimitsConfig::default()
    };
    let (clock, now) = test_clock();
    let engine = Engine::new(quoalise_component::commands::all()).with_clock(clock);
    let (r, _) = router_with(limits, engine).await;
    let commands = &r.commands();

    // A flood of sessions left open fills the table: everyone else is refused for now.
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(sessionid(&send(&r, open_session(BOB)).await));
    }
    assert_eq!(
        stanza_error(&send(&r, open_session(ADMIN)).await).condition,
        "resource-constraint"
    );
    now.fetch_add(30, Ordering::SeqCst);
    assert_eq!(
        stanza_error(&send(&r, open_session(ADMIN)).await).condition,
        "resource-constraint"
    );

    // Under pressure, a session idle for more than a minute has expired...
    now.fetch_add(31, Ordering::SeqCst);
    let reply = send(&r, cancel_session(BOB, &ids[0])).await;
    let error = reply.get_child("error", "jabber:component:accept").unwrap();
    assert!(
        error.get_child("session-expired", COMMANDS).is_some(),
        "{}",
        String::from(&reply)
    );
    // ...and the places of all of them are free for others.
    let admin = sessionid(&send(&r, open_session(ADMIN)).await);
    assert_eq!(commands.open_sessions().await, 1);

    // Without pressure, an idle session lasts its ten minutes.
    now.fetch_add(300, Ordering::SeqCst);
    let reply = send(&r, cancel_session(ADMIN, &admin)).await;
    let command = reply.get_child("command", COMMANDS).unwrap();
    assert_eq!(command.attr("status"), Some("canceled"));
}
