//! Golden-XML tests of the router: stanzas in, stanzas out, with an in-memory SQLite store.

use minidom::Element;
use quoalise_component::source::demo::{DAILY, LIVE, LOAD_CURVE};
use quoalise_component::xmpp::router::Router;

mod support;

use support::router::{demo_router, ADMIN, ALICE, BOB, D, UP as UP1};
use support::xml::stanza_error;

async fn router(meters: u32) -> Router {
    demo_router(meters, &["*"], 512 * 1024).await.0
}

fn iq(type_: &str, from: &str, to: &str, payload: &str) -> Element {
    format!("<iq xmlns='jabber:component:accept' type='{type_}' id='q1' from='{from}' to='{to}'>{payload}</iq>")
        .parse()
        .unwrap()
}

async fn one(router: &Router, el: Element) -> Element {
    let mut out = router.handle(el).await;
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn query(reply: &Element, ns: &str) -> Element {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    reply.get_child("query", ns).unwrap().clone()
}

fn item_jids(query: &Element) -> Vec<String> {
    query
        .children()
        .filter(|c| c.name() == "item")
        .map(|c| c.attr("jid").unwrap().to_owned())
        .collect()
}

fn form_value(query: &Element, form_type: &str, var: &str) -> Vec<String> {
    let form = query
        .children()
        .find(|x| {
            x.name() == "x"
                && x.children().any(|f| {
                    f.attr("var") == Some("FORM_TYPE")
                        && f.children().any(|v| v.text() == form_type)
                })
        })
        .unwrap_or_else(|| panic!("no form {form_type}"));
    form.children()
        .find(|f| f.attr("var") == Some(var))
        .unwrap_or_else(|| panic!("no field {var}"))
        .children()
        .filter(|v| v.name() == "value")
        .map(|v| v.text())
        .collect()
}

const INFO: &str = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
const ITEMS: &str = "<query xmlns='http://jabber.org/protocol/disco#items'/>";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

#[tokio::test]
async fn service_info_golden() {
    let r = router(3).await;
    let reply = one(&r, iq("get", ALICE, D, INFO)).await;
    let expected: Element = format!(
        "<iq xmlns='jabber:component:accept' type='result' id='q1' from='{D}' to='{ALICE}'>\
         <query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='component' type='generic' name='Quoalise'/>\
         <feature var='http://jabber.org/protocol/commands'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>\
         <feature var='http://jabber.org/protocol/disco#items'/>\
         <feature var='jabber:iq:version'/>\
         <feature var='urn:quoalise:0'/>\
         <feature var='urn:xmpp:ping'/>\
         </query></iq>"
    )
    .parse()
    .unwrap();
    assert_eq!(reply, expected, "{}", String::from(&reply));
}

#[tokio::test]
async fn service_items_list_sources() {
    let r = router(3).await;
    let q = query(&one(&r, iq("get", BOB, D, ITEMS)).await, DISCO_ITEMS);
    assert_eq!(item_jids(&q), [format!("demo@{D}")]);
}

#[tokio::test]
async fn source_info_counts_visible_usage_points() {
    let r = router(3).await;
    let to = format!("demo@{D}");
    for (who, count) in [(ALICE, "3"), (BOB, "0"), (ADMIN, "3")] {
        let q = query(&one(&r, iq("get", who, &to, INFO)).await, DISCO_INFO);
        assert_eq!(
            form_value(&q, "urn:quoalise:0#source", "usage-points"),
            [count]
        );
        assert_eq!(form_value(&q, "urn:quoalise:0#source", "kind"), ["demo"]);
        let identity = q.get_child("identity", DISCO_INFO).unwrap();
        assert_eq!(identity.attr("category"), Some("automation"));
        assert_eq!(identity.attr("type"), Some("command-list"));
    }
}

#[tokio::test]
async fn source_items_are_private() {
    let r = router(3).await;
    let to = format!("demo@{D}");
    let expected: Vec<String> = (1..=3).map(|i| format!("9999900000000{i}@{D}")).collect();
    for who in [ALICE, ADMIN] {
        let q = query(&one(&r, iq("get", who, &to, ITEMS)).await, DISCO_ITEMS);
        assert_eq!(item_jids(&q), expected);
    }
    let q = query(&one(&r, iq("get", BOB, &to, ITEMS)).await, DISCO_ITEMS);
    assert!(item_jids(&q).is_empty());
}

#[tokio::test]
async fn source_items_page_with_rsm() {
    let r = router(5).await;
    let to = format!("demo@{D}");
    let rsm = |inner: &str| {
        format!("<query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'>{inner}</set></query>")
    };
    let q = query(
        &one(&r, iq("get", ALICE, &to, &rsm("<max>2</max>"))).await,
        DISCO_ITEMS,
    );
    assert_eq!(item_jids(&q).len(), 2);
    let set = q
        .get_child("set", "http://jabber.org/protocol/rsm")
        .unwrap();
    assert_eq!(
        set.get_child("count", "http://jabber.org/protocol/rsm")
            .unwrap()
            .text(),
        "5"
    );
    let last = set
        .get_child("last", "http://jabber.org/protocol/rsm")
        .unwrap()
        .text();
    assert_eq!(last, format!("99999000000002@{D}"));
    let q = query(
        &one(
            &r,
            iq(
                "get",
                ALICE,
                &to,
                &rsm(&format!("<max>2</max><after>{last}</after>")),
            ),
        )
        .await,
        DISCO_ITEMS,
    );
    assert_eq!(
        item_jids(&q),
        [format!("99999000000003@{D}"), format!("99999000000004@{D}")]
    );
    let reply = one(
        &r,
        iq("get", ALICE, &to, &rsm("<after>nobody@nowhere</after>")),
    )
    .await;
    assert_eq!(stanza_error(&reply).condition, "item-not-found");
}

#[tokio::test]
async fn usage_point_info_and_items() {
    let r = router(3).await;
    let to = format!("{UP1}@{D}/proxy");
    let q = query(&one(&r, iq("get", ALICE, &to, INFO)).await, DISCO_INFO);
    let identities: Vec<_> = q
        .children()
        .filter(|c| c.name() == "identity")
        .map(|c| {
            format!(
                "{}/{}",
                c.attr("category").unwrap(),
                c.attr("type").unwrap()
            )
        })
        .collect();
    assert_eq!(identities, ["pubsub/service", "automation/command-list"]);
    assert!(q
        .children()
        .any(|c| c.attr("var") == Some("http://jabber.org/protocol/pubsub")));
    let form = "urn:quoalise:0#usage-point";
    assert_eq!(form_value(&q, form, "source"), ["demo"]);
    assert_eq!(form_value(&q, form, "device-type"), ["electricity-meter"]);
    assert_eq!(form_value(&q, form, "identifier-value"), [UP1]);
    assert_eq!(form_value(&q, form, "series"), [DAILY, LIVE, LOAD_CURVE]);
    let q = query(&one(&r, iq("get", ALICE, &to, ITEMS)).await, DISCO_ITEMS);
    let nodes: Vec<_> = q
        .children()
        .map(|c| {
            (
                c.attr("jid").unwrap().to_owned(),
                c.attr("node").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|(jid, _)| jid == &format!("{UP1}@{D}")));
    assert_eq!(nodes[2].1, LOAD_CURVE);
}

#[tokio::test]
async fn node_meta_data() {
    let r = router(1).await;
    let to = format!("{UP1}@{D}");
    let payload =
        format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{LOAD_CURVE}'/>");
    let q = query(&one(&r, iq("get", ALICE, &to, &payload)).await, DISCO_INFO);
    assert_eq!(q.attr("node"), Some(LOAD_CURVE));
    let identity = q.get_child("identity", DISCO_INFO).unwrap();
    assert_eq!(identity.attr("type"), Some("leaf"));
    let form = "http://jabber.org/protocol/pubsub#meta-data";
    assert_eq!(form_value(&q, form, "pubsub#type"), ["urn:quoalise:0"]);
    assert_eq!(form_value(&q, form, "quoalise#unit"), ["W"]);
    assert_eq!(
        form_value(&q, form, "quoalise#sampling-interval"),
        ["PT30M"]
    );
    let payload = "<query xmlns='http://jabber.org/protocol/disco#info' node='no/such/node'/>";
    let reply = one(&r, iq("get", ALICE, &to, payload)).await;
    assert_eq!(stanza_error(&reply).condition, "item-not-found");
}

#[tokio::test]
async fn ungranted_usage_point_does_not_exist() {
    let r = router(1).await;
    for to in [format!("{UP1}@{D}"), format!("12345678901234@{D}")] {
        for payload in [INFO, ITEMS, "<ping xmlns='urn:xmpp:ping'/>"] {
            let reply = one(&r, iq("get", BOB, &to, payload)).await;
            assert_eq!(
                stanza_error(&reply).condition,
                "item-not-found",
                "{to} {payload}"
            );
        }
    }
    let reply = one(&r, iq("get", ADMIN, &format!("{UP1}@{D}"), INFO)).await;
    assert_eq!(reply.attr("type"), Some("result"));
}

#[tokio::test]
async fn ping_version_and_unknown_payloads() {
    let r = router(1).await;
    let reply = one(&r, iq("get", BOB, D, "<ping xmlns='urn:xmpp:ping'/>")).await;
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.children().count(), 0);
    let reply = one(&r, iq("get", BOB, D, "<query xmlns='jabber:iq:version'/>")).await;
    let q = query(&reply, "jabber:iq:version");
    assert_eq!(
        q.get_child("name", "jabber:iq:version").unwrap().text(),
        "quoalise-component"
    );
    for (type_, payload) in [
        ("get", "<query xmlns='jabber:iq:last'/>"),
        ("set", "<query xmlns='jabber:iq:roster'/>"),
        (
            "set",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    ] {
        let reply = one(&r, iq(type_, BOB, D, payload)).await;
        assert_eq!(
            stanza_error(&reply).condition,
            "service-unavailable",
            "{payload}"
        );
    }
}

#[tokio::test]
async fn malformed_input_is_answered_or_dropped() {
    let r = router(1).await;
    let no_child: Element =
        format!("<iq xmlns='jabber:component:accept' type='get' id='x1' from='{BOB}' to='{D}'/>")
            .parse()
            .unwrap();
    let reply = one(&r, no_child).await;
    assert_eq!(reply.attr("id"), Some("x1"));
    assert_eq!(reply.attr("to"), Some(BOB));
    assert_eq!(stanza_error(&reply).condition, "bad-request");

    let bad_type: Element = format!("<iq xmlns='jabber:component:accept' type='bogus' id='x2' from='{BOB}' to='{D}'><ping xmlns='urn:xmpp:ping'/></iq>")
        .parse()
        .unwrap();
    assert!(r.handle(bad_type).await.is_empty());

    let result: Element = format!("<iq xmlns='jabber:component:accept' type='result' id='keepalive-1' from='localhost' to='{D}'/>")
        .parse()
        .unwrap();
    assert!(r.handle(result).await.is_empty());

    let message: Element = format!("<message xmlns='jabber:component:accept' type='bogus' from='{BOB}' to='{D}'><body>x</body></message>")
        .parse()
        .unwrap();
    assert!(r.handle(message).await.is_empty());

    let command = iq(
        "set",
        BOB,
        D,
        "<command xmlns='http://jabber.org/protocol/commands'/>",
    );
    assert_eq!(
        stanza_error(&one(&r, command).await).condition,
        "bad-request"
    );

    let other_domain = iq("get", BOB, "elsewhere.localhost", INFO);
    assert_eq!(
        stanza_error(&one(&r, other_domain).await).condition,
        "item-not-found"
    );
}
