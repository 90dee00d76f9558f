//! Ad-hoc commands through the router: stages, sessions, results, errors, paging, audit.

use std::sync::Arc;

use minidom::Element;
use quoalise_component::source::demo::{DAILY, LOAD_CURVE as RAW};
use quoalise_component::stanzas::quoalise::parse_quoalise;
use quoalise_component::store::{self, Store};
use quoalise_component::xep::adhoc::Engine;
use quoalise_component::xmpp::router::Router;
use quoalise_testkit::PgCluster;

mod support;

use support::commands::{cmd, command, command_nodes, result_values, send, COMMANDS};
use support::fixtures::{bob_consents, ten_days, T0};
use support::router::{demo_context_in, demo_router, ALICE, BOB, D, UP};
use support::xml::stanza_error;

async fn setup(max_stanza_size: usize) -> (Router, Arc<dyn Store>) {
    let (router, store) = demo_router(2, &[UP], max_stanza_size).await;
    ten_days(store.as_ref(), UP, |i| 100.0 + i as f64).await;
    (router, store)
}

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
        ["history", "export", "access_report"]
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
    ten_days(store.as_ref(), UP, |i| 100.0 + i as f64).await;
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
            "admin-subscription-end",
            "admin-usage-points",
            "admin-audit"
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
    use quoalise_component::source::ConsentPages;
    use support::router::{demo_context, ADMIN};
    let (mut ctx, store) = demo_context(2, &[], 512 * 1024).await;
    ctx.consent_sources
        .insert("demo".into(), ConsentPages::new(10));
    let r = Router::new(ctx, Engine::new(quoalise_component::commands::all()));
    bob_consents(store.as_ref(), UP).await;
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

/// The rows of a result form's `<reported>`/`<item>` table, as (var → value) maps in order,
/// checking that every item field is a reported column.
fn table_rows(reply: &Element) -> Vec<std::collections::BTreeMap<String, String>> {
    let form = cmd(reply).get_child("x", "jabber:x:data").unwrap();
    let columns: Vec<&str> = form
        .get_child("reported", "jabber:x:data")
        .unwrap()
        .children()
        .map(|f| f.attr("var").unwrap())
        .collect();
    form.children()
        .filter(|c| c.name() == "item")
        .map(|item| {
            item.children()
                .map(|f| {
                    let var = f.attr("var").unwrap();
                    assert!(columns.contains(&var), "{var} is not a reported column");
                    let value = f
                        .children()
                        .map(|v| v.text())
                        .collect::<Vec<_>>()
                        .join("\n");
                    (var.to_owned(), value)
                })
                .collect()
        })
        .collect()
}

/// The XEP-0335 JSON payload of a command answer.
fn json_payload(reply: &Element) -> serde_json::Value {
    let json = cmd(reply).get_child("json", "urn:xmpp:json:0").unwrap();
    serde_json::from_str(&json.text()).unwrap()
}

/// One history page on UP's JID, for `from`.
async fn read_history(r: &Router, from: &str, series: &str) {
    let fields = [
        ("series", series),
        ("start", "2026-09-29"),
        ("end", "2026-09-30"),
    ];
    let reply = send(
        r,
        command(from, &format!("{UP}@{D}"), "history", "", Some(&fields)),
    )
    .await;
    assert_eq!(cmd(&reply).attr("status"), Some("completed"));
}

/// The access report answers the holder of a consent with every read of its usage point (who,
/// which series, what, how many records, under which grant, its origin and purpose), as a table
/// and as the same rows in JSON; an application reading under a config grant, an admin and a
/// stranger are refused.
#[tokio::test]
async fn access_report_answers_the_holder_only() {
    use support::router::ADMIN;
    let (r, store) = setup(512 * 1024).await;
    let up_jid = format!("{UP}@{D}");
    let bob_grant = bob_consents(store.as_ref(), UP).await;
    read_history(&r, ALICE, RAW).await;
    read_history(&r, BOB, DAILY).await;
    read_history(&r, ADMIN, RAW).await;
    let alice_grant = store.grants_for("alice@localhost").await.unwrap()[0]
        .id
        .unwrap();
    let ids: Vec<i64> = store
        .audit_entries(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids.len(), 3);

    // The form, then the report over the last 30 days (the default) and over a range without
    // reads.
    let form = send(&r, command(BOB, &up_jid, "access_report", "", None)).await;
    assert_eq!(cmd(&form).attr("status"), Some("executing"));
    let report = send(&r, command(BOB, &up_jid, "access_report", "", Some(&[]))).await;
    assert_eq!(cmd(&report).attr("status"), Some("completed"));
    let rows = table_rows(&report);
    let column = |var: &str| -> Vec<&str> { rows.iter().map(|r| r[var].as_str()).collect() };
    assert_eq!(
        column("requester"),
        ["alice@localhost", "bob@localhost", "admin@localhost"]
    );
    assert_eq!(column("series"), [RAW, DAILY, RAW]);
    assert_eq!(column("command"), ["history"; 3]);
    assert_eq!(column("records"), ["48", "1", "48"]);
    let (a, b) = (alice_grant.to_string(), bob_grant.to_string());
    assert_eq!(column("grant"), [a.as_str(), b.as_str(), ""]);
    assert_eq!(column("origin"), ["config", "consent", ""]);
    assert_eq!(column("purpose"), ["", "Energy advice", ""]);
    assert_eq!(column("start"), ["2026-09-29T00:00:00+02:00"; 3]);
    assert_eq!(column("end"), ["2026-09-30T00:00:00+02:00"; 3]);
    let id_column: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(column("id"), id_column);
    assert_eq!(result_values(&report, "result"), ["3 entries"]);

    let json = json_payload(&report);
    assert_eq!(json["usage_point"], UP);
    assert_eq!(json["requester"], serde_json::Value::Null);
    assert_eq!(json["more"], false);
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[1],
        serde_json::json!({
            "id": ids[1],
            "at": rows[1]["at"],
            "requester": "bob@localhost",
            "usage_point": UP,
            "series": DAILY,
            "start": "2026-09-29T00:00:00+02:00",
            "end": "2026-09-30T00:00:00+02:00",
            "command": "history",
            "records": 1,
            "grant": {"id": bob_grant, "origin": "consent", "purpose": "Energy advice"},
        })
    );
    assert_eq!(entries[0]["grant"]["origin"], "config");
    assert_eq!(entries[0]["grant"]["purpose"], serde_json::Value::Null);
    assert_eq!(entries[2]["grant"], serde_json::Value::Null);

    let past = [("start", "2020-01-01"), ("end", "2020-02-01")];
    let empty = send(&r, command(BOB, &up_jid, "access_report", "", Some(&past))).await;
    assert!(table_rows(&empty).is_empty());
    assert_eq!(json_payload(&empty)["entries"], serde_json::json!([]));
    let reversed = [("start", "2020-02-01"), ("end", "2020-01-01")];
    let bad = send(
        &r,
        command(BOB, &up_jid, "access_report", "", Some(&reversed)),
    )
    .await;
    assert_eq!(stanza_error(&bad).condition, "bad-request");

    // Alice reads under a config grant: she does not speak for the data subject. Nor does an
    // admin. Both are refused at the form already; carol does not even see the usage point.
    let sessions = store.session_count().await.unwrap();
    for who in [ALICE, ADMIN] {
        for fields in [None, Some(&[][..])] {
            let refused = send(&r, command(who, &up_jid, "access_report", "", fields)).await;
            assert_eq!(stanza_error(&refused).condition, "forbidden", "{who}");
        }
    }
    // A refused form leaves no session behind (it would count against alice's limit).
    assert_eq!(store.session_count().await.unwrap(), sessions);
    let carol = send(
        &r,
        command("carol@localhost/x", &up_jid, "access_report", "", Some(&[])),
    )
    .await;
    assert_eq!(stanza_error(&carol).condition, "item-not-found");

    // The consent revoked, bob holds nothing any more.
    store.revoke_consents(UP).await.unwrap();
    let after = send(&r, command(BOB, &up_jid, "access_report", "", Some(&[]))).await;
    assert_eq!(stanza_error(&after).condition, "item-not-found");
}

/// Follows `next` from `reply` to the last page; returns the JSON entries of every page and how
/// many pages there were, checking each page fits in `limit` bytes.
async fn all_pages(
    r: &Router,
    from: &str,
    to: &str,
    node: &str,
    mut reply: Element,
    limit: usize,
) -> (Vec<serde_json::Value>, usize) {
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let wire = quoalise_component::xmpp::connection::wire_size(&reply);
        assert!(wire <= limit, "page {pages} is {wire} bytes on the wire");
        let json = json_payload(&reply);
        let page = json["entries"].as_array().unwrap().clone();
        assert_eq!(table_rows(&reply).len(), page.len());
        entries.extend(page);
        let c = cmd(&reply).clone();
        if c.attr("status") == Some("completed") {
            assert_eq!(json["more"], false);
            return (entries, pages);
        }
        assert_eq!(json["more"], true);
        let sessionid = c.attr("sessionid").unwrap();
        reply = send(
            r,
            command(
                from,
                to,
                node,
                &format!("action='next' sessionid='{sessionid}'"),
                None,
            ),
        )
        .await;
        assert!(pages < 100);
    }
}

/// A long report is cut below the stanza limit and paged with `next`, whole and in order.
#[tokio::test]
async fn long_access_reports_are_paged_below_the_stanza_limit() {
    use quoalise_component::model::AuditEntry;
    let limit = 16 * 1024;
    let (r, store) = setup(limit).await;
    let bob_grant = bob_consents(store.as_ref(), UP).await;
    let now = quoalise_component::time::now();
    let mut ids = Vec::new();
    for i in 0..300 {
        let entry = AuditEntry {
            requester: "bob@localhost".into(),
            usage_point: UP.into(),
            series: RAW.into(),
            start: T0,
            end: T0 + 86_400,
            grant_id: Some(bob_grant),
            command: "get_history".into(),
            records: i,
            at: now - 1000 + i,
        };
        ids.push(store.append_audit(&entry).await.unwrap());
    }
    let to = format!("{UP}@{D}");
    let reply = send(&r, command(BOB, &to, "access_report", "", Some(&[]))).await;
    let (entries, pages) = all_pages(&r, BOB, &to, "access_report", reply, limit).await;
    assert!(pages > 2, "{pages} pages");
    let seen: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(seen, ids);
}

/// `admin-audit`: the log of a usage point or of a requester, for admins only, paged.
#[tokio::test]
async fn admins_read_the_audit_log() {
    use support::router::ADMIN;
    let limit = 16 * 1024;
    let (r, store) = setup(limit).await;
    read_history(&r, ALICE, RAW).await;
    read_history(&r, ADMIN, DAILY).await;
    let alice = [("requester", "alice@localhost")];
    let reply = send(&r, command(ADMIN, D, "admin-audit", "", Some(&alice))).await;
    let rows = table_rows(&reply);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0]["requester"].as_str(),
            rows[0]["usage_point"].as_str(),
            rows[0]["series"].as_str()
        ),
        ("alice@localhost", UP, RAW)
    );
    assert_eq!(rows[0]["origin"], "config");
    let by_up = [("usage_point", UP)];
    let reply = send(&r, command(ADMIN, D, "admin-audit", "", Some(&by_up))).await;
    assert_eq!(table_rows(&reply).len(), 2);
    let both = [
        ("usage_point", "99999000000002"),
        ("requester", "alice@localhost"),
    ];
    let reply = send(&r, command(ADMIN, D, "admin-audit", "", Some(&both))).await;
    assert!(table_rows(&reply).is_empty());

    // Many entries: paged like history.
    for _ in 0..150 {
        read_history(&r, ALICE, DAILY).await;
    }
    let reply = send(&r, command(ADMIN, D, "admin-audit", "", Some(&alice))).await;
    let (entries, pages) = all_pages(&r, ADMIN, D, "admin-audit", reply, limit).await;
    assert!(pages > 1);
    let expected: Vec<i64> = store
        .audit_entries(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|(_, e)| e.requester == "alice@localhost")
        .map(|(id, _)| *id)
        .collect();
    let seen: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(seen, expected);

    // Refusals: neither filter, a bad one; non-admins.
    for fields in [
        &[][..],
        &[("usage_point", "not an id!")][..],
        &[("requester", "@@")][..],
    ] {
        let bad = send(&r, command(ADMIN, D, "admin-audit", "", Some(fields))).await;
        assert_eq!(stanza_error(&bad).condition, "bad-request", "{fields:?}");
    }
    let refused = send(&r, command(ALICE, D, "admin-audit", "", Some(&alice))).await;
    assert_eq!(stanza_error(&refused).condition, "forbidden");
}

/// `admin-usage-points`: every usage point of a source with its state, for admins only.
#[tokio::test]
async fn admins_list_usage_points() {
    use support::router::ADMIN;
    let (r, store) = setup(512 * 1024).await;
    bob_consents(store.as_ref(), UP).await;
    let reply = send(&r, command(ADMIN, D, "admin-usage-points", "", Some(&[]))).await;
    let lines = result_values(&reply, "usage_points");
    // Alice's config grant and bob's consent grant cover UP; nothing covers the other meter,
    // which has no readings yet (setup fills UP only).
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{UP} demo online \"Demo meter 1\" series "))
            && lines[0].contains(" grants 2 consents 0 last "),
        "{lines:?}"
    );
    assert!(!lines[0].ends_with("last never"), "{lines:?}");
    assert!(
        lines[1].starts_with("99999000000002 demo ")
            && lines[1].ends_with(" grants 0 consents 0 last never"),
        "{lines:?}"
    );
    let demo = [("source", "demo")];
    let reply = send(&r, command(ADMIN, D, "admin-usage-points", "", Some(&demo))).await;
    assert_eq!(result_values(&reply, "usage_points"), lines);
    let unknown = [("source", "nope")];
    let bad = send(
        &r,
        command(ADMIN, D, "admin-usage-points", "", Some(&unknown)),
    )
    .await;
    assert_eq!(stanza_error(&bad).condition, "bad-request");
    let refused = send(&r, command(BOB, D, "admin-usage-points", "", Some(&[]))).await;
    assert_eq!(stanza_error(&refused).condition, "forbidden");
}
