//! The `enedis` source's daily poll and per-day cache, against the fake Data Connect server of
//! the end-to-end tests (testkit/python/quoalise_testkit/fake_dataconnect.py, run here as a
//! process) serving the fixtures of tests/fixtures/enedis/ (days 2026-09-29 and 2026-09-30).
//! "Today" is given to the poll, so the fixture's days can be D-1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chrono::NaiveDate;
use quoalise_component::config::Secret;
use quoalise_component::metrics::Metrics;
use quoalise_component::model::{Consent, Grant, GrantOrigin, UpstreamCall, ANY};
use quoalise_component::source::enedis::service::ConsentedMeter;
use quoalise_component::source::enedis::{Enedis, EnedisConfig};
use quoalise_component::source::SourceEvent;
use quoalise_component::store::{self, Store};
use quoalise_component::time::now;
use tokio::sync::{mpsc, Notify};

/// The consumer meter of tests/fixtures/enedis/, the fake's default.
const PRM: &str = "09876543210987";
const LOAD_CURVE: &str = "consumption/power/active/raw";
const DAILY: &str = "consumption/energy/active/daily";
const MAX_POWER: &str = "consumption/power/apparent/max";

/// The fake server, killed on drop.
struct Fake {
    child: Child,
    url: String,
    /// Kept open: the fake prints more lines, and a closed pipe would make it exit.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Fake {
    fn start() -> Fake {
        Fake::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Fake {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testkit/python/quoalise_testkit/fake_dataconnect.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake Data Connect server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the fake prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Fake {
            child,
            url,
            _stdout: stdout,
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(api_url: &str) -> EnedisConfig {
    toml::from_str(&format!(
        r#"
id = "enedis"
api_url = "{api_url}"
authorize_url = "{api_url}/dataconnect/v2/oauth2/authorize"
client_id = "test-client"
client_secret = "test-secret"
"#
    ))
    .unwrap()
}

async fn setup(fake: &Fake) -> (Arc<Enedis>, Arc<dyn Store>, mpsc::Receiver<SourceEvent>) {
    let store = store::open("sqlite::memory:").await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    let enedis = Arc::new(
        Enedis::new(
            config(&fake.url),
            Secret::new("test-secret"),
            store.clone(),
            Metrics::default(),
            tx,
            Arc::new(Notify::new()),
        )
        .unwrap(),
    );
    let t = now();
    let consent = Consent {
        id: None,
        source: "enedis".into(),
        usage_point: PRM.into(),
        app_jid: "app@example.org".into(),
        purpose: "tests".into(),
        request_id: "r".into(),
        reference: "1".into(),
        begins_at: t - 10,
        expires_at: t + 3600,
        grant_id: None,
    };
    let meter = ConsentedMeter {
        prm: PRM.into(),
        consumption: true,
        production: false,
        service_end: None,
    };
    enedis.record_consent(&meter, consent).await.unwrap();
    (enedis, store, rx)
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn drain(rx: &mut mpsc::Receiver<SourceEvent>) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            SourceEvent::Live(batch) => out.push((batch.series, batch.readings.len())),
            other => panic!("unexpected event {other:?}"),
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn daily_poll_publishes_yesterday_once() {
    let fake = Fake::start();
    let (enedis, store, mut rx) = setup(&fake).await;

    // Today 2026-10-01: D-1 is the fixture's second day; the poll looks back three days.
    let lacking = enedis.poll_once(day("2026-10-01")).await;
    assert_eq!(
        lacking,
        0,
        "yesterday was there for every series: {:?}",
        store.upstream_calls("enedis", 0).await
    );
    let published = drain(&mut rx);
    assert_eq!(
        published,
        [
            (LOAD_CURVE.to_owned(), 96),
            (MAX_POWER.to_owned(), 2),
            (DAILY.to_owned(), 2),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // Stored before being published: the history is there.
    let stored = store
        .count_readings(PRM, LOAD_CURVE, i64::MIN, i64::MAX)
        .await
        .unwrap();
    assert_eq!(stored, 96);

    // Every measure call was logged with its range and the consent, and completed.
    let calls = store.upstream_calls("enedis", 0).await.unwrap();
    let measures: Vec<_> = calls.iter().filter(|c| c.api != "token").collect();
    assert_eq!(measures.len(), 3, "{calls:?}");
    for call in &measures {
        assert_eq!(call.usage_point.as_deref(), Some(PRM));
        assert!(call.consent_id.is_some());
        assert_eq!(call.status.as_deref(), Some("200"));
        assert_eq!(
            (call.range_start.as_deref(), call.range_end.as_deref()),
            (Some("2026-09-28"), Some("2026-10-01"))
        );
    }

    // Polling again publishes nothing and pays for no day that had data: only 2026-09-28,
    // empty in the fixture and recent enough for Enedis to fill it later, is asked again.
    assert_eq!(enedis.poll_once(day("2026-10-01")).await, 0);
    assert!(drain(&mut rx).is_empty());
    let calls = new_calls(store.as_ref(), &calls).await;
    assert_eq!(calls.0.len(), 3);
    for call in &calls.0 {
        assert_eq!(
            (call.range_start.as_deref(), call.range_end.as_deref()),
            (Some("2026-09-28"), Some("2026-09-29"))
        );
        assert_eq!(call.status.as_deref(), Some("404"));
    }
    let calls = calls.1;

    // The next day, Enedis has nothing yet for 2026-10-01: the poll says so (it will retry),
    // and asks only for the day it lacks.
    let lacking = enedis.poll_once(day("2026-10-02")).await;
    assert_eq!(lacking, 3);
    assert!(drain(&mut rx).is_empty());
    let (later, _) = new_calls(store.as_ref(), &calls).await;
    assert_eq!(later.len(), 3);
    for call in &later {
        assert_eq!(
            (call.range_start.as_deref(), call.range_end.as_deref()),
            (Some("2026-10-01"), Some("2026-10-02")),
            "only the missing day is asked for"
        );
        assert_eq!(call.status.as_deref(), Some("404"));
    }
}

/// The measure calls logged since `before` (the whole log then), and the whole log.
async fn new_calls(
    store: &dyn Store,
    before: &[UpstreamCall],
) -> (Vec<UpstreamCall>, Vec<UpstreamCall>) {
    let all = store.upstream_calls("enedis", 0).await.unwrap();
    let new = all
        .iter()
        .skip(before.len())
        .filter(|c| c.api != "token")
        .cloned()
        .collect();
    (new, all)
}

#[tokio::test]
async fn nothing_is_fetched_without_consent() {
    let fake = Fake::start();
    let (enedis, store, mut rx) = setup(&fake).await;
    store.revoke_consents(PRM).await.unwrap();
    assert_eq!(enedis.poll_once(day("2026-10-01")).await, 0);
    assert!(drain(&mut rx).is_empty());
    assert!(store.upstream_calls("enedis", 0).await.unwrap().is_empty());
    // The grant went with the consent.
    let grants: Vec<Grant> = store.grants_for("app@example.org").await.unwrap();
    assert!(grants
        .iter()
        .all(|g| g.origin != GrantOrigin::Consent || g.usage_point == ANY));
}

/// A meter whose load curve comes every 10 minutes: the series says so once data arrived.
#[tokio::test]
async fn load_curve_series_follow_the_meters_step() {
    // The fixtures, with the 10-minute load curve served as the consumption load curve.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/enedis");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        dir.path().join("courbe_de_charge_pt10m.json"),
        dir.path().join("mesure_courbe_de_charge_consommation.json"),
    )
    .unwrap();
    let fake = Fake::start_with(&["--fixtures", dir.path().to_str().unwrap()]);
    let (enedis, store, _rx) = setup(&fake).await;
    let step = |store: Arc<dyn Store>| async move {
        store
            .series(PRM)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.path == LOAD_CURVE)
            .map(|s| s.measurement.sampling_interval)
    };
    assert_eq!(step(store.clone()).await.as_deref(), Some("PT30M"));
    enedis.poll_once(day("2026-10-01")).await;
    assert_eq!(step(store.clone()).await.as_deref(), Some("PT10M"));
    // Two days of 144 ten-minute intervals, all stored.
    let stored = store
        .count_readings(PRM, LOAD_CURVE, i64::MIN, i64::MAX)
        .await
        .unwrap();
    assert_eq!(stored, 288);
}
