//! Ad-hoc commands through the router: stages, sessions, results, errors, paging, audit.

use std::sync::Arc;

use minidom::Element;
use quoalise_component::model::{Batch, Reading};
use quoalise_component::source::demo::{DAILY, LOAD_CURVE as RAW};
use quoalise_component::stanzas::quoalise::parse_quoalise;
use quoalise_component::store::{self, Store};
use quoalise_component::xep::adhoc::Engine;
use quoalise_component::xmpp::router::Router;
use quoalise_testkit::PgCluster;

mod support;

use support::router::{demo_context_in, demo_router, ALICE, BOB, D, UP};
use support::xml::stanza_error;

/// 2026-09-28T22:00:00Z = 2026-09-29 00:00 in Paris.
const T0: i64 = 1_790_632_800;
const COMMANDS: &str = "http://jabber.org/protocol/commands";

async fn setup(max_stanza_size: usize) -> (Router, Arc<dyn Store>) {
    let (router, store) = demo_router(2, &[UP], max_stanza_size).await;
    insert_readings(store.as_ref()).await;
    (router, store)
}

async fn insert_readings(store: &dyn Store) {
    // Ten days of load curve and daily energy from T0, with known values.
    let raw: Vec<Reading> = (0..480)
        .map(|i| Reading {
            time: T0 + i * 1800,
            value: 100.0 + i as f64,
        })
        .collect();
    let daily: Vec<Reading> = (0..10)
        .map(|i| Reading {
            time: T0 + i * 86_400,
            value: 5000.5 + i as f64,
        })
        .collect();
    for (series, readings) in [(RAW, raw), (DAILY, daily)] {
        store
            .insert_readings(&Batch {
                usage_point: UP.into(),
                series: series.into(),
                readings,
            })
            .await
            .unwrap();
    }
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

fn command(
    from: &str,
    to: &str,
    node: &str,
    attrs: &str,
    fields: Option<&[(&str, &str)]>,
) -> Element {
    let form = fields
        .map(|f| {
            let inner: String = f.iter().map(|(k, v)| field(k, v)).collect();
            format!("<x xmlns='jabber:x:data' type='submit'>{inner}</x>")
        })
        .unwrap_or_default();
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='c1' from='{from}' to='{to}'>\
         <command xmlns='{COMMANDS}' node='{node}' {attrs}>{form}</command></iq>"
    )
    .parse()
    .unwrap()
}

async fn send(router: &Router, el: Element) -> Element {
    let mut out = router.handle(el).await;
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn cmd(reply: &Element) -> &Element {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    reply.get_child("command", COMMANDS).unwrap()
}

/// (name, time, value) of every record, resolved.
fn records(command: &Element) -> Vec<(String, f64, f64)> {
    let q = command.get_child("quoalise", "urn:quoalise:0").unwrap();
    parse_quoalise(q)
        .unwrap()
        .iter()
        .flat_map(|d| d.sensml.resolve().unwrap())
        .map(|r| match r.value {
            quoalise_component::stanzas::senml::Value::Number(v) => (r.name, r.time, v),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// The command nodes `from` sees listed on `to`.
async fn command_nodes(router: &Router, from: &str, to: &str) -> Vec<String> {
    let list = format!("<iq xmlns='jabber:component:accept' type='get' id='d' from='{from}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>")
        .parse::<Element>()
        .unwrap();
    send(router, list)
        .await
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| i.attr("node").unwrap().to_owned())
        .collect()
}

fn identifier(series: &str) -> String {
    format!("urn:dev:prm:{UP}_{series}")
}

#[tokio::test]
async fn commands_are_listed_per_jid() {
    let (r, _) = setup(512 * 1024).await;
    assert_eq!(
        command_nodes(&r, ALICE, D).await,
        ["get_history", "subscribe", "unsubscribe"]
    );
    assert_eq!(
        command_nodes(&r, ALICE, &format!("demo@{D}")).await,
        [
            "get_history",
            "get_load_curve",
            "get_daily",
            "subscribe",
            "unsubscribe"
        ]
    );
    assert_eq!(
        command_nodes(&r, ALICE, &format!("{UP}@{D}")).await,
        ["history"]
    );
    let info = format!("<iq xmlns='jabber:component:accept' type='get' id='d' from='{ALICE}' to='demo@{D}'><query xmlns='http://jabber.org/protocol/disco#info' node='get_history'/></iq>").parse().unwrap();
    let reply = send(&r, info).await;
    let identity = reply
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap()
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(identity.attr("type"), Some("command-node"));
}

#[tokio::test]
async fn multi_stage_get_history() {
    let (r, store) = setup(512 * 1024).await;
    let to = format!("demo@{D}/proxy");
    let first = send(
        &r,
        command(ALICE, &to, "get_history", "action='execute'", None),
    )
    .await;
    let c = cmd(&first);
    assert_eq!(c.attr("status"), Some("executing"));
    let sessionid = c.attr("sessionid").unwrap().to_owned();
    let form = c.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(form.attr("type"), Some("form"));
    let vars: Vec<_> = form.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(vars, ["identifier", "start_time", "end_time"]);

    let id = identifier(RAW);
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", "2026-09-29T00:00:00+02:00"),
        ("end_time", "2026-10-01"),
    ];
    let attrs = format!("action='complete' sessionid='{sessionid}'");
    let done = send(
        &r,
        command(ALICE, &to, "get_history", &attrs, Some(&fields)),
    )
    .await;
    let c = cmd(&done);
    assert_eq!(c.attr("status"), Some("completed"));
    assert_eq!(c.attr("sessionid"), Some(sessionid.as_str()));
    // Form first, with result = Success, then <quoalise/>.
    let payloads: Vec<_> = c.children().map(|p| p.name().to_owned()).collect();
    assert_eq!(payloads, ["x", "quoalise"]);
    let result = c.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(result.attr("type"), Some("result"));
    let value = result
        .children()
        .find(|f| f.attr("var") == Some("result"))
        .unwrap();
    assert_eq!(
        value.get_child("value", "jabber:x:data").unwrap().text(),
        "Success"
    );
    let recs = records(c);
    assert_eq!(recs.len(), 96);
    assert!(recs.iter().all(|(name, _, _)| name == &id));
    assert_eq!(recs[0].1, T0 as f64);
    assert_eq!(recs[95].1, (T0 + 95 * 1800) as f64);
    assert!(recs
        .iter()
        .all(|(_, t, _)| *t >= T0 as f64 && *t < (T0 + 2 * 86_400) as f64));
    assert_eq!(recs[1].2, 101.0);
    let meta = c
        .get_child("quoalise", "urn:quoalise:0")
        .unwrap()
        .get_child("data", "urn:quoalise:0")
        .unwrap()
        .get_child("meta", "urn:quoalise:0")
        .unwrap();
    let m = meta.get_child("measurement", "urn:quoalise:0").unwrap();
    assert_eq!(m.attr("sampling-interval"), Some("PT30M"));
    assert_eq!(r.commands().open_sessions().await, 0);

    let audit = store.audit_entries(0, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    let entry = &audit[0].1;
    assert_eq!(
        (
            entry.requester.as_str(),
            entry.usage_point.as_str(),
            entry.series.as_str(),
            entry.records
        ),
        ("alice@localhost", UP, RAW, 96)
    );
    assert!(entry.grant_id.is_some());

    // The session is gone once completed.
    let again = send(
        &r,
        command(ALICE, &to, "get_history", &attrs, Some(&fields)),
    )
    .await;
    assert_eq!(stanza_error(&again).condition, "bad-request");
}

#[tokio::test]
async fn one_shot_and_cancel() {
    let (r, _) = setup(512 * 1024).await;
    let to = format!("demo@{D}");
    let id = identifier(DAILY);
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", "2026-09-29"),
        ("end_time", "2026-10-09"),
    ];
    let done = send(
        &r,
        command(ALICE, &to, "get_history", "action='execute'", Some(&fields)),
    )
    .await;
    let c = cmd(&done);
    assert_eq!(c.attr("status"), Some("completed"));
    assert!(c.attr("sessionid").is_some());
    let recs = records(c);
    assert_eq!(recs.len(), 10);
    assert_eq!(recs[0].2, 5000.5);
    let sensml = c
        .get_child("quoalise", "urn:quoalise:0")
        .unwrap()
        .get_child("data", "urn:quoalise:0")
        .unwrap()
        .get_child("sensml", "urn:ietf:params:xml:ns:senml")
        .unwrap();
    let first = sensml.children().next().unwrap();
    assert_eq!(
        (first.attr("bu"), first.attr("bver")),
        (Some("Wh"), Some("26"))
    );

    let open = send(&r, command(ALICE, &to, "get_history", "", None)).await;
    let sessionid = cmd(&open).attr("sessionid").unwrap().to_owned();
    let cancel = send(
        &r,
        command(
            ALICE,
            &to,
            "get_history",
            &format!("action='cancel' sessionid='{sessionid}'"),
            None,
        ),
    )
    .await;
    assert_eq!(cmd(&cancel).attr("status"), Some("canceled"));
    assert_eq!(r.commands().open_sessions().await, 0);
}

#[tokio::test]
async fn sessions_belong_to_their_requester() {
    let (r, _) = setup(512 * 1024).await;
    let to = format!("demo@{D}");
    let open = send(&r, command(ALICE, &to, "get_history", "", None)).await;
    let sessionid = cmd(&open).attr("sessionid").unwrap().to_owned();
    let id = identifier(RAW);
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", "2026-09-29"),
        ("end_time", "2026-09-30"),
    ];
    let attrs = format!("action='complete' sessionid='{sessionid}'");
    let stolen = send(
        &r,
        command(
            "mallory@localhost/x",
            &to,
            "get_history",
            &attrs,
            Some(&fields),
        ),
    )
    .await;
    let error = stolen
        .get_child("error", "jabber:component:accept")
        .unwrap();
    assert!(error.get_child("bad-sessionid", COMMANDS).is_some());
    // Alice's session still works.
    let done = send(
        &r,
        command(ALICE, &to, "get_history", &attrs, Some(&fields)),
    )
    .await;
    assert_eq!(cmd(&done).attr("status"), Some("completed"));
}

#[tokio::test]
async fn errors_name_the_field() {
    let (r, _) = setup(512 * 1024).await;
    let to = format!("demo@{D}");
    let raw = identifier(RAW);
    // (requester, submitted fields, condition, field named first in the text)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            ALICE,
            vec![("identifier", "nonsense".into())],
            "bad-request",
            "identifier",
        ),
        (
            ALICE,
            vec![(
                "identifier",
                "urn:dev:prm:99999000000001_no/such/series".into(),
            )],
            "bad-request",
            "identifier",
        ),
        (
            ALICE,
            vec![
                ("identifier", raw.clone()),
                ("start_time", "yesterday".into()),
            ],
            "bad-request",
            "start_time",
        ),
        (
            ALICE,
            vec![
                ("identifier", raw.clone()),
                ("start_time", "2026-10-02".into()),
                ("end_time", "2026-10-01".into()),
            ],
            "bad-request",
            "end_time",
        ),
        (
            BOB,
            vec![
                ("identifier", raw.clone()),
                ("start_time", "2026-09-29".into()),
                ("end_time", "2026-09-30".into()),
            ],
            "not-authorized",
            "identifier",
        ),
        // Bob cannot learn whether a usage point exists.
        (
            BOB,
            vec![(
                "identifier",
                "urn:dev:prm:12345678901234_consumption/power/active/raw".into(),
            )],
            "not-authorized",
            "identifier",
        ),
    ];
    for (who, fields, cond, field) in cases {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = send(&r, command(who, &to, "get_history", "", Some(&fields))).await;
        let error = stanza_error(&reply);
        assert_eq!(error.condition, cond, "{fields:?}");
        assert!(error.text.starts_with(field), "{}", error.text);
    }
    let unknown = send(&r, command(ALICE, &to, "no_such_command", "", None)).await;
    assert_eq!(stanza_error(&unknown).condition, "item-not-found");
    let bad_action = send(
        &r,
        command(ALICE, &to, "get_history", "action='jump'", None),
    )
    .await;
    assert_eq!(stanza_error(&bad_action).condition, "bad-request");
    let bad_form: Element = format!("<iq xmlns='jabber:component:accept' type='set' id='c1' from='{ALICE}' to='{to}'><command xmlns='{COMMANDS}' node='get_history'><x xmlns='jabber:x:data' type='bogus'/></command></iq>").parse().unwrap();
    assert_eq!(
        stanza_error(&send(&r, bad_form).await).condition,
        "bad-request"
    );
}

#[tokio::test]
async fn generation_1_load_curve_matches_the_reference() {
    let (r, _) = setup(512 * 1024).await;
    let to = format!("demo@{D}/proxy");
    let fields = [
        ("usage_point_id", UP),
        ("direction", "consumption"),
        ("start_date", "2026-09-29"),
        ("end_date", "2026-09-30"),
    ];
    let reply = send(
        &r,
        command(
            ALICE,
            &to,
            "get_load_curve",
            "action='execute'",
            Some(&fields),
        ),
    )
    .await;
    let c = cmd(&reply);
    assert_eq!(c.attr("status"), Some("completed"));
    let form = c.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(
        form.get_child("title", "jabber:x:data").unwrap().text(),
        "Get consumption load curve data"
    );
    let result = form.get_child("field", "jabber:x:data").unwrap();
    assert_eq!(result.attr("type"), Some("fixed"));
    assert_eq!(
        result.attr("label"),
        Some(format!("consumption load curve for {UP}").as_str())
    );
    let data = c
        .get_child("quoalise", "urn:quoalise:0")
        .unwrap()
        .get_child("data", "urn:quoalise:0")
        .unwrap();
    let m = data
        .get_child("meta", "urn:quoalise:0")
        .unwrap()
        .get_child("measurement", "urn:quoalise:0")
        .unwrap();
    let children: Vec<_> = m.children().map(|c| c.name().to_owned()).collect();
    assert_eq!(children, ["physical", "business", "aggregate", "sampling"]);
    assert_eq!(
        m.get_child("business", "urn:quoalise:0")
            .unwrap()
            .attr("graph"),
        Some("load-profile")
    );
    assert_eq!(
        m.get_child("aggregate", "urn:quoalise:0")
            .unwrap()
            .attr("type"),
        Some("average")
    );
    assert_eq!(
        m.get_child("sampling", "urn:quoalise:0")
            .unwrap()
            .attr("interval"),
        Some("1800")
    );
    let first = data
        .get_child("sensml", "urn:ietf:params:xml:ns:senml")
        .unwrap()
        .children()
        .next()
        .unwrap();
    assert_eq!(
        first.attr("bn"),
        Some(format!("urn:dev:prm:{UP}_consumption_load").as_str())
    );
    assert_eq!(first.attr("t"), Some("0"));
    assert_eq!(records(c).len(), 48);

    let fields = [
        ("usage_point_id", UP),
        ("direction", "consumption"),
        ("start_date", "2026-09-29"),
        ("end_date", "2026-10-06"),
    ];
    let reply = send(&r, command(ALICE, &to, "get_daily", "", Some(&fields))).await;
    let c = cmd(&reply);
    assert_eq!(records(c).len(), 7);
    let form = c.get_child("x", "jabber:x:data").unwrap();
    assert_eq!(
        form.get_child("title", "jabber:x:data").unwrap().text(),
        "Get consumption daily energy data"
    );

    for (fields, expected) in [
        (
            vec![
                ("usage_point_id", UP),
                ("direction", "sideways"),
                ("start_date", "2026-09-29"),
                ("end_date", "2026-09-30"),
            ],
            "direction",
        ),
        (
            vec![
                ("usage_point_id", "a@b"),
                ("start_date", "2026-09-29"),
                ("end_date", "2026-09-30"),
            ],
            "usage_point_id",
        ),
        (
            vec![
                ("usage_point_id", UP),
                ("start_date", "29/09/2026"),
                ("end_date", "2026-09-30"),
            ],
            "start_date",
        ),
        (
            vec![
                ("usage_point_id", UP),
                ("direction", "production"),
                ("start_date", "2026-09-29"),
                ("end_date", "2026-09-30"),
            ],
            "usage_point_id",
        ),
    ] {
        let reply = send(&r, command(ALICE, &to, "get_load_curve", "", Some(&fields))).await;
        let error = stanza_error(&reply);
        assert_eq!(error.condition, "bad-request");
        assert!(error.text.starts_with(expected), "{}", error.text);
    }
}

#[tokio::test]
async fn usage_point_history_command() {
    let (r, _) = setup(512 * 1024).await;
    let to = format!("{UP}@{D}");
    let open = send(&r, command(ALICE, &to, "history", "", None)).await;
    let c = cmd(&open);
    let form = c.get_child("x", "jabber:x:data").unwrap();
    let series = form
        .children()
        .find(|f| f.attr("var") == Some("series"))
        .unwrap();
    assert_eq!(series.attr("type"), Some("list-single"));
    assert_eq!(
        series.children().filter(|o| o.name() == "option").count(),
        3
    );
    let sessionid = c.attr("sessionid").unwrap().to_owned();
    let fields = [
        ("series", RAW),
        ("start", "2026-09-29T00:00:00+02:00"),
        ("end", "2026-09-29T06:00:00+02:00"),
    ];
    let done = send(
        &r,
        command(
            ALICE,
            &to,
            "history",
            &format!("action='complete' sessionid='{sessionid}'"),
            Some(&fields),
        ),
    )
    .await;
    assert_eq!(records(cmd(&done)).len(), 12);
    // Bob does not even see the usage point.
    let reply = send(&r, command(BOB, &to, "history", "", None)).await;
    assert_eq!(stanza_error(&reply).condition, "item-not-found");
}

#[tokio::test]
async fn large_answers_are_paged_below_the_stanza_limit() {
    // A tiny limit forces several pages for ten days of load curve.
    let limit = 16 * 1024;
    let (r, store) = setup(limit).await;
    let to = format!("demo@{D}");
    let id = identifier(RAW);
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", "2020-01-01"),
        ("end_time", "2030-01-01"),
    ];
    let mut reply = send(&r, command(ALICE, &to, "get_history", "", Some(&fields))).await;
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let wire = quoalise_component::xmpp::connection::wire_size(&reply);
        assert!(wire <= limit, "page {pages} is {wire} bytes on the wire");
        let c = cmd(&reply).clone();
        all.extend(records(&c));
        if c.attr("status") == Some("completed") {
            break;
        }
        assert_eq!(c.attr("status"), Some("executing"));
        let actions = c.get_child("actions", COMMANDS).unwrap();
        assert_eq!(actions.attr("execute"), Some("next"));
        let sessionid = c.attr("sessionid").unwrap();
        reply = send(
            &r,
            command(
                ALICE,
                &to,
                "get_history",
                &format!("action='next' sessionid='{sessionid}'"),
                None,
            ),
        )
        .await;
        assert!(pages < 100);
    }
    assert!(pages > 1);
    assert_eq!(all.len(), 480);
    let times: Vec<f64> = all.iter().map(|r| r.1).collect();
    let expected: Vec<f64> = (0..480).map(|i| (T0 + i * 1800) as f64).collect();
    assert_eq!(times, expected);
    assert_eq!(store.audit_entries(0, 1000).await.unwrap().len(), pages);
}

/// Two instances (two routers, each with its own engine and connection pool) share one
/// PostgreSQL database, and the XMPP server balances the stages of one session between them:
/// the form opened on one is submitted on the other, and each page of the answer is served by
/// the other instance than the page before. The answer arrives whole, in order, once.
#[tokio::test]
async fn any_instance_serves_the_next_stage() {
    let cluster = PgCluster::start();
    let url = cluster.create_database("sessions").await;
    let limit = 16 * 1024;
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = store::open(&url).await.unwrap();
        let ctx = demo_context_in(store.clone(), 2, &[UP], limit).await;
        instances.push(Router::new(
            ctx,
            Engine::new(quoalise_component::commands::all()),
        ));
    }
    let store = store::open(&url).await.unwrap();
    insert_readings(store.as_ref()).await;
    let to = format!("demo@{D}");

    // The form, from instance 0.
    let open = send(&instances[0], command(ALICE, &to, "get_history", "", None)).await;
    let sessionid = cmd(&open).attr("sessionid").unwrap().to_owned();
    assert_eq!(instances[1].commands().open_sessions().await, 1);

    // Someone else cannot continue it on either instance; it is left as it was.
    let id = identifier(RAW);
    let fields = [
        ("identifier", id.as_str()),
        ("start_time", "2020-01-01"),
        ("end_time", "2030-01-01"),
    ];
    let attrs = format!("action='complete' sessionid='{sessionid}'");
    for instance in &instances {
        let stolen = send(
            instance,
            command(
                "alice@localhost/other",
                &to,
                "get_history",
                &attrs,
                Some(&fields),
            ),
        )
        .await;
        let error = stolen
            .get_child("error", "jabber:component:accept")
            .unwrap();
        assert!(error.get_child("bad-sessionid", COMMANDS).is_some());
    }

    // The submit, on instance 1; then each page from the other instance.
    let mut reply = send(
        &instances[1],
        command(ALICE, &to, "get_history", &attrs, Some(&fields)),
    )
    .await;
    let mut served_by = Vec::new();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let c = cmd(&reply).clone();
        assert_eq!(c.attr("sessionid"), Some(sessionid.as_str()));
        all.extend(records(&c));
        if c.attr("status") == Some("completed") {
            break;
        }
        assert_eq!(c.attr("status"), Some("executing"));
        // Between pages, both instances see the one session.
        for instance in &instances {
            assert_eq!(instance.commands().open_sessions().await, 1);
        }
        let next = pages % 2;
        served_by.push(next);
        reply = send(
            &instances[next],
            command(
                ALICE,
                &to,
                "get_history",
                &format!("action='next' sessionid='{sessionid}'"),
                None,
            ),
        )
        .await;
        assert!(pages < 100);
    }
    assert!(pages > 2, "{pages} pages");
    assert!(served_by.contains(&0) && served_by.contains(&1));
    let times: Vec<f64> = all.iter().map(|r| r.1).collect();
    let expected: Vec<f64> = (0..480).map(|i| (T0 + i * 1800) as f64).collect();
    assert_eq!(times, expected);
    for instance in &instances {
        assert_eq!(instance.commands().open_sessions().await, 0);
    }
    assert_eq!(store.audit_entries(0, 1000).await.unwrap().len(), pages);

    // Once completed, the session is gone on both.
    let again = send(
        &instances[0],
        command(
            ALICE,
            &to,
            "get_history",
            &format!("action='next' sessionid='{sessionid}'"),
            None,
        ),
    )
    .await;
    let error = again.get_child("error", "jabber:component:accept").unwrap();
    assert!(error.get_child("bad-sessionid", COMMANDS).is_some());
}

/// The values of the result form's field `var`.
fn result_values(reply: &Element, var: &str) -> Vec<String> {
    let form = cmd(reply).get_child("x", "jabber:x:data").unwrap();
    form.children()
        .filter(|f| f.attr("var") == Some(var))
        .flat_map(|f| f.children().map(|v| v.text()))
        .collect()
}

/// Run-time administration: only admins see and run the admin commands; a grant added at run
/// time is listed, lets its grantee read, and its revocation ends the grantee's subscription;
/// subscriptions are listed and ended one by one.
#[tokio::test]
async fn admins_manage_grants_and_subscriptions_at_run_time() {
    use support::router::ADMIN;
    let (r, store) = setup(512 * 1024).await;
    let admin_nodes = |nodes: Vec<String>| -> Vec<String> {
        nodes
            .into_iter()
            .filter(|n| n.starts_with("admin-"))
            .collect()
    };
    assert!(admin_nodes(command_nodes(&r, ALICE, D).await).is_empty());
    assert_eq!(
        admin_nodes(command_nodes(&r, ADMIN, D).await),
        [
            "admin-grants-list",
            "admin-grant-add",
            "admin-grant-revoke",
            "admin-consents-list",
            "admin-consent-revoke",
            "admin-subscriptions-list",
            "admin-subscription-end"
        ]
    );
    // Others are refused, with `forbidden`.
    let refused = send(
        &r,
        command(BOB, D, "admin-grants-list", "action='execute'", Some(&[])),
    )
    .await;
    assert_eq!(stanza_error(&refused).condition, "forbidden");

    // Bob gets a grant at run time, and reads.
    let added = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-grant-add",
            "action='execute'",
            Some(&[
                ("jid", "bob@localhost"),
                ("usage_point", UP),
                ("series", "*"),
                ("purpose", "support"),
            ]),
        ),
    )
    .await;
    let grant = result_values(&added, "grant").remove(0);
    let listed = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-grants-list",
            "action='execute'",
            Some(&[("jid", "bob@localhost")]),
        ),
    )
    .await;
    let lines = result_values(&listed, "grants");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("#{grant} bob@localhost {UP} * admin")),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("purpose: support"), "{lines:?}");
    let bad = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-grant-add",
            "action='execute'",
            Some(&[("jid", "not a jid"), ("usage_point", UP), ("series", "*")]),
        ),
    )
    .await;
    assert_eq!(stanza_error(&bad).condition, "bad-request");

    // Bob subscribes; the subscription is listed, then the grant revoked ends it.
    let subscribe = format!("<iq xmlns='jabber:component:accept' type='set' id='s' from='{BOB}' to='{UP}@{D}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='{RAW}' jid='{BOB}'/></pubsub></iq>").parse().unwrap();
    assert_eq!(r.handle(subscribe).await[0].attr("type"), Some("result"));
    let subs = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-subscriptions-list",
            "action='execute'",
            Some(&[("filter", "bob@localhost")]),
        ),
    )
    .await;
    let lines = result_values(&subs, "subscriptions");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("{UP} {RAW} {BOB} pubsub")),
        "{lines:?}"
    );
    let revoked = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-grant-revoke",
            "action='execute'",
            Some(&[("grant", &grant)]),
        ),
    )
    .await;
    assert_eq!(
        result_values(&revoked, "result"),
        [format!("Grant #{grant} revoked; 1 subscription(s) ended")]
    );
    assert!(store.subscribers(UP, RAW).await.unwrap().is_empty());
    let again = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-grant-revoke",
            "action='execute'",
            Some(&[("grant", &grant)]),
        ),
    )
    .await;
    assert_eq!(stanza_error(&again).condition, "bad-request");

    // Alice's subscription, ended by the admin.
    let subscribe = format!("<iq xmlns='jabber:component:accept' type='set' id='s' from='{ALICE}' to='{UP}@{D}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='{RAW}' jid='{ALICE}'/></pubsub></iq>").parse().unwrap();
    assert_eq!(r.handle(subscribe).await[0].attr("type"), Some("result"));
    let id = store.subscribers(UP, RAW).await.unwrap()[0].id.to_string();
    let ended = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-subscription-end",
            "action='execute'",
            Some(&[("subscription", &id)]),
        ),
    )
    .await;
    assert_eq!(
        result_values(&ended, "result"),
        [format!("Subscription #{id} ended; its subscriber was told")]
    );
    assert!(store.subscribers(UP, RAW).await.unwrap().is_empty());

    // Each admin action is on record, by whom, on what, in order.
    let admin = ADMIN.split('/').next().unwrap();
    let actions: Vec<(String, String, String, String, Option<i64>, i64)> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.command != "notification")
        .map(|e| {
            (
                e.command,
                e.requester,
                e.usage_point,
                e.series,
                e.grant_id,
                e.records,
            )
        })
        .collect();
    let grant_id: i64 = grant.parse().unwrap();
    let sub_id: i64 = id.parse().unwrap();
    let row = |c: &str, up: &str, series: &str, g: Option<i64>, n: i64| {
        (
            c.to_owned(),
            admin.to_owned(),
            up.to_owned(),
            series.to_owned(),
            g,
            n,
        )
    };
    assert_eq!(
        actions,
        [
            row("grant-added", UP, "*", Some(grant_id), 0),
            row("grant-revoked", UP, "*", Some(grant_id), 0),
            row("subscription-ended", UP, RAW, None, sub_id),
        ]
    );
}

/// Consents at run time: listed per source that takes them, revoked per usage point with their
/// grants, and the subscriptions they allowed end.
#[tokio::test]
async fn admins_list_and_revoke_consents() {
    use quoalise_component::model::{Consent, Grant, GrantOrigin};
    use quoalise_component::source::ConsentPages;
    use support::router::{demo_context, ADMIN};
    let (mut ctx, store) = demo_context(2, &[], 512 * 1024).await;
    ctx.consent_sources
        .insert("demo".into(), ConsentPages::new(10));
    let r = Router::new(ctx, Engine::new(quoalise_component::commands::all()));
    let now = quoalise_component::time::now();
    let consent = Consent {
        id: None,
        source: "demo".into(),
        usage_point: UP.into(),
        app_jid: "bob@localhost".into(),
        purpose: "Energy advice".into(),
        request_id: "req-1".into(),
        reference: "auth-1".into(),
        begins_at: now - 60,
        expires_at: now + 86_400,
        grant_id: None,
    };
    let grant = Grant {
        id: None,
        subject: "bob@localhost".into(),
        usage_point: UP.into(),
        series: "*".into(),
        valid_from: Some(now - 60),
        valid_until: Some(now + 86_400),
        origin: GrantOrigin::Consent,
        purpose: Some("Energy advice".into()),
    };
    store.record_consent(&consent, &grant).await.unwrap();
    let subscribe = format!("<iq xmlns='jabber:component:accept' type='set' id='s' from='{BOB}' to='{UP}@{D}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='{RAW}' jid='{BOB}'/></pubsub></iq>").parse().unwrap();
    assert_eq!(r.handle(subscribe).await[0].attr("type"), Some("result"));

    let listed = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-consents-list",
            "action='execute'",
            Some(&[("filter", UP)]),
        ),
    )
    .await;
    let lines = result_values(&listed, "consents");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("demo {UP} for bob@localhost until")),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("purpose: Energy advice"), "{lines:?}");
    let other = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-consents-list",
            "action='execute'",
            Some(&[("filter", "carol@localhost")]),
        ),
    )
    .await;
    assert!(result_values(&other, "consents").is_empty());

    let revoked = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-consent-revoke",
            "action='execute'",
            Some(&[("usage_point", UP)]),
        ),
    )
    .await;
    assert_eq!(
        result_values(&revoked, "result"),
        [format!(
            "1 consent(s) on {UP} revoked; 1 subscription(s) ended"
        )]
    );
    assert!(store.subscribers(UP, RAW).await.unwrap().is_empty());
    let listed = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-consents-list",
            "action='execute'",
            Some(&[]),
        ),
    )
    .await;
    assert!(result_values(&listed, "consents").is_empty());
    let again = send(
        &r,
        command(
            ADMIN,
            D,
            "admin-consent-revoke",
            "action='execute'",
            Some(&[("usage_point", UP)]),
        ),
    )
    .await;
    assert_eq!(stanza_error(&again).condition, "bad-request");
}
