//! `POST /ingest/{source}/{device}` through the real component (`app::serve_with_events`, the
//! wiring of `quoalise-component run`) on a real SQLite file, with a real HTTP client: what is
//! stored, published and audited for each body, and every refusal with its status.
//! (Notifications reaching real XMPP subscribers: tests/e2e/test_ingest.py.)

use std::time::Duration;

use quoalise_component::settings::Config;
use quoalise_component::store::{self, Store};
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const POWER: &str = "production/power/active/instant";
const ENERGY: &str = "production/energy/active/index";
const PV_TOKEN: &str = "pv-roof-token-0123456789";
const HEAT_TOKEN: &str = "heat-token-0123456789";
const SLOW_TOKEN: &str = "slow-token-0123456789";

struct Component {
    base: String,
    store: std::sync::Arc<dyn Store>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start() -> Component {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let port = free_port();
    let config = format!(
        r#"
[xmpp]
domain = "quoalise.localhost"
server = "127.0.0.1:{xmpp}"
secret = "secret"
[store]
url = "sqlite://{db}"
[web]
bind = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
max_body = 65536
[log]
level = "warn"
[[source]]
type = "http"
id = "home"
owners = ["alice@example.org"]
requests_per_second = 1000
requests_burst = 1000
[[source.device]]
id = "pv-roof"
name = "Roof solar inverter"
token = "{PV_TOKEN}"
series = ["{POWER}", "{ENERGY}"]
[[source.device]]
id = "heat"
token = "{HEAT_TOKEN}"
device_type = "thermometer"
series = ["temperature/raw"]
[[source]]
type = "http"
id = "garage"
requests_per_second = 1
requests_burst = 2
[[source.device]]
id = "slow"
token = "{SLOW_TOKEN}"
series = ["{POWER}"]
"#,
        xmpp = free_port(),
        db = db.display(),
    );
    let path = dir.path().join("component.toml");
    std::fs::write(&path, config).unwrap();
    let settings = Config::load(&path).unwrap().validate(None).unwrap();
    let shutdown = CancellationToken::new();
    let (events, events_rx) = mpsc::channel(16);
    tokio::spawn(quoalise_component::app::serve_with_events(
        settings,
        shutdown.clone(),
        events,
        events_rx,
    ));
    // The web server listens once the store is open and migrated: only then is it read here.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http.get(format!("{base}/metrics")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    // The sources' tasks declare their devices once they hold their leases.
    for _ in 0..200 {
        let declared = store.usage_points(None).await.unwrap();
        if declared.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.usage_points(None).await.unwrap().len(), 3);
    Component {
        base,
        store,
        http,
        shutdown,
        _dir: dir,
    }
}

impl Component {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            assert_eq!(
                headers["content-type"], "application/problem+json",
                "{text}"
            );
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, json)
    }

    async fn json(&self, token: &str, body: String) -> (StatusCode, serde_json::Value) {
        let (status, _, json) = self
            .post(
                "/ingest/home/pv-roof",
                Some(token),
                "application/senml+json",
                body,
            )
            .await;
        (status, json)
    }

    async fn readings(&self, series: &str) -> Vec<(i64, f64)> {
        self.store
            .readings("pv-roof", series, 0, i64::MAX, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.time, r.value))
            .collect()
    }

    async fn items(&self, series: &str) -> usize {
        self.store
            .items("pv-roof", series, None, None)
            .await
            .unwrap()
            .len()
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn now() -> i64 {
    quoalise_component::time::now()
}

/// A pack of `n` power readings, one a minute from `start`.
fn power_pack(n: usize, start: i64) -> serde_json::Value {
    let mut records = vec![serde_json::json!({
        "bn": "urn:dev:mac:0024befffe804ff1_", "bt": start, "bu": "W",
        "n": POWER, "v": 1000.0
    })];
    for i in 1..n {
        records.push(serde_json::json!({"n": POWER, "t": i * 60, "v": 1000.0 + i as f64}));
    }
    serde_json::Value::Array(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_are_stored_published_audited_and_retries_publish_once() {
    let c = start().await;
    let start = now() - 7200;
    let pack = power_pack(100, start).to_string();
    let (status, _) = c.json(PV_TOKEN, pack.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = c.readings(POWER).await;
    assert_eq!(stored.len(), 100);
    assert_eq!(stored[0], (start, 1000.0));
    assert_eq!(stored[99], (start + 99 * 60, 1099.0));
    assert_eq!(c.items(POWER).await, 1);

    // A gateway retrying after a timeout: stored again unchanged, published nothing new.
    let (status, _) = c.json(PV_TOKEN, pack).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(c.readings(POWER).await.len(), 100);
    assert_eq!(c.items(POWER).await, 1);

    // A changed value replaces the stored one and is published.
    let changed = serde_json::json!([{"n": POWER, "t": start, "v": 5.0, "u": "W"}]).to_string();
    assert_eq!(c.json(PV_TOKEN, changed).await.0, StatusCode::NO_CONTENT);
    assert_eq!(c.readings(POWER).await[0], (start, 5.0));
    assert_eq!(c.items(POWER).await, 2);

    // Every accepted request is audited per series, requester the device's JID.
    let audit = c.store.audit_entries(0, 100).await.unwrap();
    let ingests: Vec<_> = audit
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.command == "ingest")
        .collect();
    assert_eq!(ingests.len(), 3);
    let first = ingests[0];
    assert_eq!(first.requester, "pv-roof@quoalise.localhost");
    assert_eq!(
        (first.usage_point.as_str(), first.series.as_str()),
        ("pv-roof", POWER)
    );
    assert_eq!((first.start, first.end), (start, start + 99 * 60 + 1));
    assert_eq!((first.records, first.grant_id), (100, None));

    // /metrics counts by device and status.
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("quoalise_ingest_requests_total{device=\"home/pv-roof\",status=\"204\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("quoalise_ingest_records_total{device=\"home/pv-roof\"} 201"));
    assert!(!metrics.contains(PV_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_and_xml_packs_are_stored() {
    use ciborium::Value;
    let c = start().await;
    let t = now() - 60;
    // RFC 8428 §6 labels: bn -2, bt -3, bver -1, n 0, u 1, v 2, t 6.
    let cbor = Value::Array(vec![
        Value::Map(vec![
            (
                Value::Integer((-2).into()),
                Value::Text("urn:dev:ow:10e2073a01080063_".into()),
            ),
            (Value::Integer((-3).into()), Value::Integer(t.into())),
            (Value::Integer((-1).into()), Value::Integer(26.into())),
            (Value::Integer(0.into()), Value::Text(ENERGY.into())),
            (Value::Integer(1.into()), Value::Text("Wh".into())),
            (Value::Integer(2.into()), Value::Float(12345.5)),
        ]),
        Value::Map(vec![
            (Value::Integer(0.into()), Value::Text(ENERGY.into())),
            (Value::Integer(6.into()), Value::Integer(30.into())),
            (Value::Integer(2.into()), Value::Integer(12346.into())),
        ]),
    ]);
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&cbor, &mut bytes).unwrap();
    let (status, _, _) = c
        .post(
            "/ingest/home/pv-roof",
            Some(PV_TOKEN),
            "application/senml+cbor",
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.readings(ENERGY).await,
        vec![(t, 12345.5), (t + 30, 12346.0)]
    );

    let xml = format!(
        "<sensml xmlns='urn:ietf:params:xml:ns:senml'>\
         <senml bn='pv-roof_' bt='{t}' n='{POWER}' u='W' v='42'/><senml n='{POWER}' t='1' v='43'/>\
         </sensml>"
    );
    let (status, _, _) = c
        .post(
            "/ingest/home/pv-roof",
            Some(PV_TOKEN),
            "application/senml+xml",
            xml,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(c.readings(POWER).await, vec![(t, 42.0), (t + 1, 43.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_record_among_a_hundred_stores_none() {
    let c = start().await;
    let mut pack = power_pack(100, now() - 7200);
    pack[57]["v"] = serde_json::json!("high");
    let (status, problem) = c.json(PV_TOKEN, pack.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["record"], 57);
    assert_eq!(problem["field"], "v");
    assert!(problem["detail"].as_str().unwrap().contains("record 57"));
    assert!(c.readings(POWER).await.is_empty());
    assert_eq!(c.items(POWER).await, 0);
    let audited = c.store.audit_entries(0, 10).await.unwrap();
    assert!(audited.iter().all(|(_, e)| e.command != "ingest"));

    for (record, field, body) in [
        (
            Some(0),
            "t",
            serde_json::json!([{"n": POWER, "t": now() + 3600, "v": 1}]),
        ),
        (
            Some(0),
            "t",
            serde_json::json!([{"n": POWER, "t": now() - 4 * 365 * 86400, "v": 1}]),
        ),
        (
            Some(1),
            "n",
            serde_json::json!([{"n": POWER, "v": 1}, {"n": "consumption/power/active/instant", "v": 1}]),
        ),
        (
            Some(0),
            "u",
            serde_json::json!([{"n": POWER, "u": "kW", "v": 1}]),
        ),
        (Some(0), "vs", serde_json::json!([{"n": POWER, "vs": "on"}])),
    ] {
        let (status, problem) = c.json(PV_TOKEN, body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(problem["record"], record.unwrap(), "{body}");
        assert_eq!(problem["field"], field, "{body}");
    }
    let (status, problem) = c.json(PV_TOKEN, "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem.get("record").is_none());
    assert!(c.readings(POWER).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_pack_is_read() {
    let c = start().await;
    let body = || power_pack(1, now() - 60).to_string();
    let json = "application/senml+json";
    let cases: Vec<(&str, Option<&str>, &str, StatusCode)> = vec![
        ("/ingest/home/pv-roof", None, json, StatusCode::UNAUTHORIZED),
        (
            "/ingest/home/pv-roof",
            Some("wrong-token-0123456789"),
            json,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/ingest/home/pv-roof",
            Some(HEAT_TOKEN),
            json,
            StatusCode::FORBIDDEN,
        ),
        (
            "/ingest/home/slow",
            Some(SLOW_TOKEN),
            json,
            StatusCode::FORBIDDEN,
        ),
        (
            "/ingest/home/nobody",
            Some(PV_TOKEN),
            json,
            StatusCode::NOT_FOUND,
        ),
        (
            "/ingest/home/pv-roof",
            Some(PV_TOKEN),
            "application/json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (path, token, content_type, wanted) in cases {
        let (status, headers, problem) = c.post(path, token, content_type, body()).await;
        assert_eq!(status, wanted, "{path} {token:?} {content_type}");
        assert_eq!(problem["status"], wanted.as_u16());
        if wanted == StatusCode::UNAUTHORIZED {
            assert!(headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
    }
    // Too large, announced or not.
    let big = format!("[{}]", vec!["{}"; 40_000].join(","));
    let (status, _, problem) = c
        .post("/ingest/home/pv-roof", Some(PV_TOKEN), json, big.clone())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["status"], 413);
    // Chunked, without a length: cut at max_body while it is read.
    let mut tcp = tokio::net::TcpStream::connect(c.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut request = format!(
        "POST /ingest/home/pv-roof HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PV_TOKEN}\r\n\
         Content-Type: {json}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in big.as_bytes().chunks(8192) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        ));
    }
    request.push_str("0\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The server may answer and close before the whole body is sent.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(c.readings(POWER).await.is_empty());

    // The rate: a burst of 2, then 429 with Retry-After.
    let mut answers = Vec::new();
    for _ in 0..4 {
        let (status, headers, _) = c
            .post("/ingest/garage/slow", Some(SLOW_TOKEN), json, body())
            .await;
        answers.push((status, headers.get("retry-after").cloned()));
    }
    assert_eq!(answers[0].0, StatusCode::NO_CONTENT);
    assert_eq!(answers[1].0, StatusCode::NO_CONTENT);
    assert_eq!(answers[3].0, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = answers[3]
        .1
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
}
