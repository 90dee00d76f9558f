//! `export` through the router and its download link through the web server: only a holder of
//! the usage point's data (consent or owner grant) gets it; pages stay below the stanza limit
//! and reassemble to exactly the stored readings; a large range gets a link that downloads the
//! same readings once; every page and download is audited.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use quoalise_component::model::{Grant, GrantOrigin, ANY};
use quoalise_component::source::demo::{DAILY, LOAD_CURVE as RAW};
use quoalise_component::store::Store;
use quoalise_component::web::listener::Limits;
use quoalise_component::xep::adhoc::Engine;
use quoalise_component::xmpp::router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod support;

use support::commands::{cmd, command, result_value, send};
use support::fixtures::{ten_days, T0};
use support::router::{demo_context, ADMIN, ALICE, BOB, D, UP};
use support::xml::stanza_error;

const JSON: &str = "urn:xmpp:json:0";
/// The holder: an owner grant on UP, as a source's `owners` list gives.
const CAROL: &str = "carol@localhost/desk";

/// A router whose store holds ten days of load curve and daily energy on UP, with carol as
/// the holder; `export_inline_max` as given.
async fn setup(max_stanza_size: usize, inline_max: Option<u64>) -> (Router, Arc<dyn Store>) {
    let (mut ctx, store) = demo_context(2, &[UP], max_stanza_size).await;
    ctx.export_inline_max = inline_max;
    ten_days(store.as_ref(), UP, |i| 100.0 + i as f64 * 0.5).await;
    store
        .add_grant(&Grant {
            id: None,
            subject: "carol@localhost".into(),
            usage_point: UP.into(),
            series: ANY.into(),
            valid_from: None,
            valid_until: None,
            origin: GrantOrigin::Source,
            purpose: Some("owner".into()),
        })
        .await
        .unwrap();
    (
        Router::new(ctx, Engine::new(quoalise_component::commands::all())),
        store,
    )
}

fn export_command(from: &str, attrs: &str, fields: Option<&[(&str, &str)]>) -> Element {
    command(from, &format!("{UP}@{D}"), "export", attrs, fields)
}

/// RFC 8428 §4.6 on a JSON pack: (name, time, unit, value) of every record.
fn resolve(pack: &str) -> Vec<(String, i64, String, f64)> {
    let records: Vec<serde_json::Value> = serde_json::from_str(pack).unwrap();
    let (mut bn, mut bt, mut bu) = (String::new(), 0i64, String::new());
    records
        .iter()
        .map(|r| {
            if let Some(x) = r.get("bn") {
                bn = x.as_str().unwrap().to_owned();
            }
            if let Some(x) = r.get("bt") {
                bt = x.as_i64().unwrap();
            }
            if let Some(x) = r.get("bu") {
                bu = x.as_str().unwrap().to_owned();
            }
            let t = r.get("t").map_or(0, |t| t.as_i64().unwrap());
            (bn.clone(), bt + t, bu.clone(), r["v"].as_f64().unwrap())
        })
        .collect()
}

/// What the store holds of UP in `[start, end)`, as export resolves it: series in path order.
async fn stored(store: &dyn Store, start: i64, end: i64) -> Vec<(String, i64, String, f64)> {
    let mut all = Vec::new();
    let mut series = store.series(UP).await.unwrap();
    series.sort_by(|a, b| a.path.cmp(&b.path));
    for s in series {
        for r in store.readings(UP, &s.path, start, end, None).await.unwrap() {
            all.push((
                format!("urn:dev:prm:{UP}_{}", s.path),
                r.time,
                s.measurement.unit.clone(),
                r.value,
            ));
        }
    }
    all
}

async fn export_entries(store: &dyn Store) -> Vec<quoalise_component::model::AuditEntry> {
    store
        .audit_entries(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.command == "export")
        .collect()
}

#[tokio::test]
async fn export_is_listed_on_usage_points_and_refused_to_non_holders() {
    let (r, store) = setup(512 * 1024, None).await;
    let fields = [
        ("series", "*"),
        ("start", "2020-01-01"),
        ("end", "2030-01-01"),
    ];
    // alice reads UP under a config grant, the admin reads everything: neither speaks for the
    // data subject.
    for who in [ALICE, ADMIN] {
        for request in [
            export_command(who, "action='execute'", None),
            export_command(who, "", Some(&fields)),
        ] {
            let reply = send(&r, request).await;
            let error = stanza_error(&reply);
            assert_eq!(error.condition, "forbidden", "{who}");
            assert!(error.text.contains("holder"), "{who}");
        }
    }
    // bob does not even see UP.
    let reply = send(&r, export_command(BOB, "", Some(&fields))).await;
    assert_eq!(stanza_error(&reply).condition, "item-not-found");
    assert!(export_entries(store.as_ref()).await.is_empty());

    // The holder gets the form: all series or one.
    let reply = send(&r, export_command(CAROL, "action='execute'", None)).await;
    let form = cmd(&reply).get_child("x", "jabber:x:data").unwrap();
    let options: Vec<String> = form
        .children()
        .find(|f| f.attr("var") == Some("series"))
        .unwrap()
        .children()
        .filter(|c| c.name() == "option")
        .map(|o| o.get_child("value", "jabber:x:data").unwrap().text())
        .collect();
    assert_eq!(options[0], "*");
    assert!(options.contains(&RAW.to_owned()) && options.contains(&DAILY.to_owned()));
    // An unknown series is named.
    let reply = send(
        &r,
        export_command(
            CAROL,
            "",
            Some(&[("series", "nope/raw"), ("start", "2020-01-01")]),
        ),
    )
    .await;
    let error = stanza_error(&reply);
    assert_eq!(error.condition, "bad-request");
    assert!(error.text.contains("nope/raw"));
}

#[tokio::test]
async fn export_pages_stay_below_the_limit_and_reassemble_to_the_stored_readings() {
    let limit = 16 * 1024;
    let (r, store) = setup(limit, Some(1_000_000)).await;
    // From the 11th half-hour: 470 readings of the load curve and 9 daily ones.
    let start = T0 + 10 * 1800;
    let start_text = chrono::DateTime::from_timestamp(start, 0)
        .unwrap()
        .to_rfc3339();
    let fields = [
        ("series", "*"),
        ("start", start_text.as_str()),
        ("end", "2030-01-01"),
    ];
    let mut reply = send(&r, export_command(CAROL, "", Some(&fields))).await;
    let mut all = Vec::new();
    let mut pages = 0;
    let mut counted = 0;
    loop {
        pages += 1;
        let wire = quoalise_component::xmpp::connection::wire_size(&reply);
        assert!(wire <= limit, "page {pages} is {wire} bytes on the wire");
        let c = cmd(&reply).clone();
        assert_eq!(
            result_value(&reply, "format").as_deref(),
            Some("application/senml+json")
        );
        let page = resolve(&c.get_child("json", JSON).unwrap().text());
        counted += result_value(&reply, "records")
            .unwrap()
            .parse::<usize>()
            .unwrap();
        all.extend(page);
        if c.attr("status") == Some("completed") {
            break;
        }
        assert_eq!(c.attr("status"), Some("executing"));
        let sessionid = c.attr("sessionid").unwrap();
        reply = send(
            &r,
            export_command(
                CAROL,
                &format!("action='next' sessionid='{sessionid}'"),
                None,
            ),
        )
        .await;
        assert!(pages < 100);
    }
    assert!(pages >= 2, "{pages} pages");
    let expected = stored(store.as_ref(), start, i64::MAX).await;
    assert_eq!(expected.len(), 479);
    assert_eq!(all, expected);
    assert_eq!(counted, 479);
    // Audited per page and series: the readings add up, each under carol's owner grant.
    let entries = export_entries(store.as_ref()).await;
    assert!(entries.len() >= pages);
    assert_eq!(entries.iter().map(|e| e.records).sum::<i64>(), 479);
    assert!(entries
        .iter()
        .all(|e| e.requester == "carol@localhost" && e.grant_id.is_some() && e.usage_point == UP));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.series == DAILY)
            .map(|e| e.records)
            .sum::<i64>(),
        9
    );

    // One series, a range with nothing: one page, empty pack, one entry of 0 records.
    let fields = [
        ("series", DAILY),
        ("start", "2021-01-01"),
        ("end", "2021-02-01"),
    ];
    let reply = send(&r, export_command(CAROL, "", Some(&fields))).await;
    assert_eq!(cmd(&reply).attr("status"), Some("completed"));
    assert_eq!(cmd(&reply).get_child("json", JSON).unwrap().text(), "[]");
    let last = export_entries(store.as_ref()).await.pop().unwrap();
    assert_eq!((last.series.as_str(), last.records), (DAILY, 0));
}

async fn web(store: Arc<dyn Store>) -> (std::net::SocketAddr, CancellationToken) {
    let limits = Limits {
        max_connections: 16,
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(30),
    };
    support::web::serve(store, limits).await
}

/// GET `path`: (status, content type, body), the body de-chunked.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix(&format!("{name}: "))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let body = if header("transfer-encoding") == "chunked" {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, header("content-type"), body)
}

#[tokio::test]
async fn large_exports_get_a_link_that_downloads_once() {
    let (r, store) = setup(512 * 1024, Some(100)).await;
    let fields = [
        ("series", "*"),
        ("start", "2020-01-01"),
        ("end", "2030-01-01"),
    ];
    let reply = send(&r, export_command(CAROL, "", Some(&fields))).await;
    assert_eq!(cmd(&reply).attr("status"), Some("completed"));
    assert!(
        cmd(&reply).get_child("json", JSON).is_none(),
        "a link, no pages"
    );
    assert_eq!(result_value(&reply, "records").as_deref(), Some("490"));
    let url = result_value(&reply, "url").unwrap();
    let token = url
        .strip_prefix("http://127.0.0.1:8080/export/")
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        export_entries(store.as_ref()).await.is_empty(),
        "audited when downloaded"
    );

    let (addr, shutdown) = web(store.clone()).await;
    let (status, content_type, body) = get(addr, &format!("/export/{token}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/senml+json");
    assert_eq!(
        resolve(&body),
        stored(store.as_ref(), i64::MIN, i64::MAX).await
    );
    let entries = export_entries(store.as_ref()).await;
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.series.as_str(), e.records))
            .collect::<Vec<_>>(),
        [(DAILY, 10), (RAW, 480)]
    );

    // Once.
    let (status, content_type, body) = get(addr, &format!("/export/{token}")).await;
    assert_eq!(status, 410);
    assert!(content_type.starts_with("text/plain"));
    assert!(body.contains("already used"), "{body}");
    assert_eq!(export_entries(store.as_ref()).await.len(), 2);
    // Unknown tokens, however shaped.
    for path in [
        format!("/export/{}", "0".repeat(64)),
        "/export/x".to_owned(),
        format!("/export/{}", "a".repeat(500)),
    ] {
        let (status, _, body) = get(addr, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("Unknown export link"), "{body}");
    }
    // An expired link says so.
    store
        .add_export(&quoalise_component::store::Export {
            token_hash: quoalise_component::model::id::token_hash("old"),
            requester: "carol@localhost".into(),
            usage_point: UP.into(),
            series: ANY.into(),
            start: T0,
            end: T0 + 1,
            grant_id: None,
            created_at: quoalise_component::time::now() - 7200,
            expires_at: quoalise_component::time::now() - 3600,
        })
        .await
        .unwrap();
    let (status, _, body) = get(addr, "/export/old").await;
    assert_eq!(status, 410);
    assert!(body.contains("expired"), "{body}");
    shutdown.cancel();
}
