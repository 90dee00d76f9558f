//! The history benchmark (docs/architecture.md §9), in-process part: SenML encode and decode, store ingest and one-year range
//! queries (SQLite file and PostgreSQL), and a one-year PT30M `get_history` answered through the
//! router, pages followed until completed (the component-side cost, without network).
//!
//! Run with `cargo bench --bench history` (release; the binary run by hand needs `--bench`). The
//! end-to-end latency through a real Prosody and a slixmpp client is measured by
//! `scripts/bench_history_e2e.py`; `scripts/bench.sh` runs both.
//!
//! Each figure is timed over a few repetitions after a warm-up; the median is reported (with min
//! and max). MB = 10^6 bytes. PostgreSQL is a throwaway cluster started by the `quoalise-testkit`
//! crate (testkit/), with `fsync=off` and `synchronous_commit=off`: its ingest figures are upper
//! bounds for a durable server.

use std::future::Future;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use quoalise_component::access::{grants_from_config, Access};
use quoalise_component::config::{GrantConfig, HumanDuration};
use quoalise_component::model::{Batch, Reading};
use quoalise_component::request::Context;
use quoalise_component::source::demo::{DemoConfig, LOAD_CURVE as RAW};
use quoalise_component::source::SourceEvent;
use quoalise_component::stanzas::quoalise::parse_quoalise;
use quoalise_component::stanzas::senml::Pack;
use quoalise_component::store::{self, Store};
use quoalise_component::xep::adhoc::Engine;
use quoalise_component::xmpp::router::Router;
use quoalise_component::{commands, publisher};
use quoalise_testkit::PgCluster;
use xmpp_parsers::jid::BareJid;

const DOMAIN: &str = "quoalise.localhost";
const REQUESTER: &str = "alice@localhost/bench";
/// First meter of the demo fleet.
const UP: &str = "99999000000001";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// 2025-01-01T00:00:00Z. 2025 has 365 days: one year of PT30M is exactly 17,520 readings.
const YEAR_START: i64 = 1_735_689_600;
const YEAR_START_ISO: &str = "2025-01-01T00:00:00Z";
const YEAR_END_ISO: &str = "2026-01-01T00:00:00Z";
const STEP: i64 = 1800;
const YEAR: usize = 17_520;
const YEAR_SECONDS: i64 = YEAR as i64 * STEP;
const MAX_STANZA_SIZE: usize = 512 * 1024;

/// Readings per `insert_readings` call in the batched ingest.
const INGEST_BATCH: usize = 2_000;
/// The one-reading-per-transaction ingest stops at this many readings or this long, whichever
/// comes first (a durable SQLite commit costs a disk flush).
const SINGLE_MAX: usize = 2_000;
const SINGLE_BUDGET: Duration = Duration::from_secs(5);

const WARMUP: usize = 1;
const REPS_FAST: usize = 15;
const REPS_SLOW: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it (in a
    // debug build): then there is nothing to check, the figures would be meaningless.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("history benchmark: skipped (run it with `cargo bench --bench history`)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let started = Instant::now();
    let mut summary = Summary::default();
    println!("quoalise-component history benchmark, in-process part");
    println!(
        "one year of PT30M = {} readings; {WARMUP} warm-up run(s), then median (min, max) of n runs\n",
        thousands(YEAR)
    );

    senml(&mut summary);

    // SQLite, a file in a temp dir (WAL, as in production).
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = open_declared(&url).await;
    store_figures("SQLite file", sqlite.as_ref(), &mut summary).await;

    // PostgreSQL, a throwaway cluster.
    let cluster = PgCluster::start();
    let pg_url = cluster.create_database("bench_store").await;
    let pg = open_declared(&pg_url).await;
    store_figures("PostgreSQL", pg.as_ref(), &mut summary).await;

    // The history command through the router: sqlite::memory: as in the tests, and PostgreSQL.
    let memory = open_declared("sqlite::memory:").await;
    router_figures("SQLite memory", memory, &mut summary).await;
    let pg_url = cluster.create_database("bench_router").await;
    router_figures("PostgreSQL", open_declared(&pg_url).await, &mut summary).await;

    drop(cluster);
    summary.print();
    println!(
        "\ntotal benchmark time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// SenML

fn senml(summary: &mut Summary) {
    let readings = year_of_readings(YEAR_START);
    let pairs: Vec<(i64, f64)> = readings.iter().map(|r| (r.time, r.value)).collect();
    let base_name = format!("urn:dev:prm:{UP}_{RAW}");

    let xml = String::from(&Element::from(&Pack::from_readings(
        &base_name, "W", &pairs,
    )));
    let bytes = xml.len();
    let what = format!("{} records, {:.0} kB", thousands(YEAR), bytes as f64 / 1e3);

    let encode = time_sync(WARMUP, REPS_FAST, |_| {
        let pack = Pack::from_readings(&base_name, "W", black_box(&pairs));
        String::from(&Element::from(&pack))
    });
    let line = format!(
        "{} records/s, {:.1} MB/s",
        rate(YEAR as f64 / encode.secs()),
        bytes as f64 / 1e6 / encode.secs()
    );
    report(&format!("SenML encode ({what})"), &encode, &line);
    summary.row("SenML encode (Pack+Element+String)", &line, "");

    let parse = time_sync(WARMUP, REPS_FAST, |_| {
        black_box(&xml).parse::<Element>().expect("SenML XML")
    });
    let line = format!("{:.1} MB/s", bytes as f64 / 1e6 / parse.secs());
    report(&format!("minidom parse only ({what})"), &parse, &line);
    summary.row("minidom parse of a SenML pack", &line, "minidom ~27 MB/s");

    let decode = time_sync(WARMUP, REPS_FAST, |_| {
        let el: Element = black_box(&xml).parse().expect("SenML XML");
        let pack = Pack::try_from(&el).expect("SenML pack");
        pack.resolve().expect("resolvable pack")
    });
    let decoded = {
        let el: Element = xml.parse().expect("SenML XML");
        Pack::try_from(&el)
            .expect("SenML pack")
            .resolve()
            .expect("resolvable pack")
    };
    assert_eq!(decoded.len(), YEAR);
    assert_eq!(
        decoded[YEAR - 1].time,
        (YEAR_START + YEAR_SECONDS - STEP) as f64
    );
    let line = format!(
        "{} records/s, {:.1} MB/s",
        rate(YEAR as f64 / decode.secs()),
        bytes as f64 / 1e6 / decode.secs()
    );
    report(
        &format!("SenML decode, parse+try_from+resolve ({what})"),
        &decode,
        &line,
    );
    summary.row("SenML decode (parse+try_from+resolve)", &line, "");

    // One live notification's worth of SenML (one record): only the pack, not the whole
    // PubSub stanza the reference figure covers.
    let one = [pairs[0]];
    let single = time_sync(100, 2_000, |_| {
        let pack = Pack::from_readings(&base_name, "W", black_box(&one));
        String::from(&Element::from(&pack))
    });
    let line = format!("{:.1} µs/pack", single.secs() * 1e6);
    report("SenML encode, 1-record pack", &single, &line);
    summary.row(
        "SenML encode, 1-record pack only",
        &line,
        "~40 µs CPU per whole notification",
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// Store

async fn store_figures(backend: &str, store: &dyn Store, summary: &mut Summary) {
    // Batched ingest: each run writes a new year of readings (fresh rows, not no-op upserts),
    // run r at year offset r, so that year 0 is there for the range query below.
    let batched = time_async(WARMUP, REPS_SLOW, |run| async move {
        let readings = year_of_readings(YEAR_START + run as i64 * YEAR_SECONDS);
        for chunk in readings.chunks(INGEST_BATCH) {
            let written = store
                .insert_readings(&batch(chunk.to_vec()))
                .await
                .expect("insert_readings");
            assert_eq!(written, chunk.len());
        }
    })
    .await;
    let line = format!("{} readings/s", rate(YEAR as f64 / batched.secs()));
    report(
        &format!(
            "{backend}: ingest {} readings in batches of {}",
            thousands(YEAR),
            thousands(INGEST_BATCH)
        ),
        &batched,
        &line,
    );
    summary.row(
        &format!("{backend} ingest, batches of {INGEST_BATCH}"),
        &line,
        "",
    );

    // One reading per call (one transaction each), after the years written above.
    let first = YEAR_START + (WARMUP + REPS_SLOW + 1) as i64 * YEAR_SECONDS;
    let mut each = Vec::new();
    let begun = Instant::now();
    for i in 0..SINGLE_MAX {
        if begun.elapsed() > SINGLE_BUDGET {
            break;
        }
        let reading = Reading {
            time: first + i as i64 * STEP,
            value: load_w(i),
        };
        let t = Instant::now();
        let written = store
            .insert_readings(&batch(vec![reading]))
            .await
            .expect("insert_readings");
        each.push(t.elapsed());
        assert_eq!(written, 1);
    }
    let total: Duration = each.iter().sum();
    let n = each.len();
    let per_call = Stats::new(each);
    let line = format!("{} readings/s", rate(n as f64 / total.as_secs_f64()));
    println!(
        "{:<64} {} readings in {:.2} s, per call {}  → {line}",
        format!("{backend}: ingest one reading per call"),
        thousands(n),
        total.as_secs_f64(),
        per_call.show()
    );
    summary.row(&format!("{backend} ingest, 1 per call"), &line, "");

    // One year (17,520 rows) out of the several years now stored.
    let end = YEAR_START + YEAR_SECONDS;
    let rows = store
        .readings(UP, RAW, YEAR_START, end, None)
        .await
        .expect("readings");
    assert_eq!(rows.len(), YEAR);
    let query = time_async(WARMUP, REPS_FAST, |_| async move {
        store
            .readings(UP, RAW, YEAR_START, end, None)
            .await
            .expect("readings")
    })
    .await;
    let line = format!(
        "{:.1} ms ({} rows/s)",
        query.secs() * 1e3,
        rate(YEAR as f64 / query.secs())
    );
    report(
        &format!("{backend}: one-year range query ({} rows)", thousands(YEAR)),
        &query,
        &line,
    );
    summary.row(&format!("{backend} one-year range query"), &line, "");
    println!();
}

// ---------------------------------------------------------------------------------------------
// History through the router

async fn router_figures(backend: &str, store: Arc<dyn Store>, summary: &mut Summary) {
    store
        .insert_readings(&batch(year_of_readings(YEAR_START)))
        .await
        .expect("insert_readings");
    store
        .replace_config_grants(&grants_from_config(&[GrantConfig {
            jid: "alice@localhost".into(),
            usage_points: vec![UP.into()],
            series: vec!["*".into()],
            purpose: None,
            valid_until: None,
        }]))
        .await
        .expect("grants");
    let router = Router::new(
        Context {
            domain: BareJid::from_str(DOMAIN).expect("domain"),
            sources: vec![demo().info()],
            store: store.clone(),
            access: Access::new(
                [BareJid::from_str("admin@localhost").expect("admin JID")],
                store.clone(),
            ),
            max_stanza_size: MAX_STANZA_SIZE,
            upstreams: Default::default(),
            consent_sources: Default::default(),
            public_url: "http://127.0.0.1:8080".into(),
            limits: Default::default(),
            export_inline_max: None,
        },
        Engine::new(commands::all()),
    );

    let first = full_year(&router).await;
    check_answer(&first.pages);
    let pages = first.pages.len();
    let bytes: usize = first.pages.iter().map(String::len).sum();
    for _ in 0..WARMUP {
        black_box(full_year(&router).await);
    }
    let (mut totals, mut serialising) = (Vec::new(), Vec::new());
    for _ in 0..REPS_FAST {
        let t = Instant::now();
        let answer = black_box(full_year(&router).await);
        totals.push(t.elapsed());
        serialising.push(answer.serialising);
    }
    let latency = Stats::new(totals);
    let serialising = Stats::new(serialising);
    let line = format!("{:.1} ms per year, {pages} pages", latency.secs() * 1e3);
    report(
        &format!(
            "Router get_history, 1 year, {backend} ({pages} pages, {:.0} kB)",
            bytes as f64 / 1e3
        ),
        &latency,
        &format!("{line} → {} records/s", rate(YEAR as f64 / latency.secs())),
    );
    println!(
        "{:<64} {}",
        "  of which serialising the replies (String::from)",
        serialising.show()
    );
    summary.row(&format!("get_history 1 year, Router, {backend}"), &line, "");
}

/// Every reply of one full-year answer, serialised, and the time spent serialising them.
struct Answer {
    pages: Vec<String>,
    serialising: Duration,
}

/// Sends a one-shot `get_history` for the year and follows `next` until completed; every reply is
/// serialised (as the link writes it), so serialisation is part of the measured cost.
async fn full_year(router: &Router) -> Answer {
    let identifier = format!("urn:dev:prm:{UP}_{RAW}");
    let form = format!(
        "<x xmlns='jabber:x:data' type='submit'>\
         <field var='identifier'><value>{identifier}</value></field>\
         <field var='start_time'><value>{YEAR_START_ISO}</value></field>\
         <field var='end_time'><value>{YEAR_END_ISO}</value></field></x>"
    );
    let mut request = command("action='execute'", &form);
    let mut pages = Vec::new();
    let mut serialising = Duration::ZERO;
    loop {
        let mut replies = router.handle(request).await;
        assert_eq!(replies.len(), 1, "one reply per command");
        let reply = replies.remove(0);
        let t = Instant::now();
        let serialised = String::from(&reply);
        serialising += t.elapsed();
        assert_eq!(reply.attr("type"), Some("result"), "{serialised}");
        let command_el = reply
            .get_child("command", COMMANDS)
            .unwrap_or_else(|| panic!("no <command/> in {serialised}"));
        let status = command_el.attr("status").map(str::to_owned);
        let sessionid = command_el.attr("sessionid").map(str::to_owned);
        pages.push(serialised);
        match status.as_deref() {
            Some("completed") => return Answer { pages, serialising },
            Some("executing") => {}
            other => panic!("unexpected command status {other:?}"),
        }
        let sessionid = sessionid.expect("sessionid while executing");
        request = command(&format!("action='next' sessionid='{sessionid}'"), "");
        assert!(pages.len() < 1000, "paging does not end");
    }
}

fn command(attrs: &str, inner: &str) -> Element {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='bench' from='{REQUESTER}' \
         to='demo@{DOMAIN}'><command xmlns='{COMMANDS}' node='get_history' {attrs}>{inner}\
         </command></iq>"
    )
    .parse()
    .expect("command XML")
}

/// Every page fits the stanza limit and together they hold the year, in order.
fn check_answer(pages: &[String]) {
    let mut times = Vec::with_capacity(YEAR);
    for page in pages {
        assert!(
            page.len() <= MAX_STANZA_SIZE,
            "page of {} bytes",
            page.len()
        );
        let el: Element = page.parse().expect("reply XML");
        let quoalise = el
            .get_child("command", COMMANDS)
            .and_then(|c| c.get_child("quoalise", "urn:quoalise:0"))
            .expect("quoalise payload");
        for data in parse_quoalise(quoalise).expect("quoalise") {
            times.extend(data.sensml.resolve().expect("SenML").iter().map(|r| r.time));
        }
    }
    let expected: Vec<f64> = (0..YEAR as i64)
        .map(|i| (YEAR_START + i * STEP) as f64)
        .collect();
    assert!(times == expected, "the pages do not hold the year in order");
}

// ---------------------------------------------------------------------------------------------
// Data

fn demo() -> DemoConfig {
    DemoConfig {
        id: "demo".into(),
        meters: 2,
        first_meter: 1,
        live_interval: HumanDuration(Duration::from_secs(2)),
        history_days: 1,
        title: "Demo meters".into(),
        description: "Simulated".into(),
    }
}

/// Opens a store and declares the demo fleet in it (no readings).
async fn open_declared(url: &str) -> Arc<dyn Store> {
    let store = store::open(url)
        .await
        .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    for (usage_point, series) in demo().fleet() {
        publisher::apply(
            store.as_ref(),
            &SourceEvent::Declare {
                usage_point,
                series,
            },
        )
        .await
        .expect("declare");
    }
    store
}

fn batch(readings: Vec<Reading>) -> Batch {
    Batch {
        usage_point: UP.into(),
        series: RAW.into(),
        readings,
    }
}

fn year_of_readings(start: i64) -> Vec<Reading> {
    (0..YEAR)
        .map(|i| Reading {
            time: start + i as i64 * STEP,
            value: load_w(i),
        })
        .collect()
}

/// A household load curve in whole watts (as Enedis sends): night base, morning and evening
/// bumps, deterministic jitter. Only the size of the numbers matters here.
fn load_w(i: usize) -> f64 {
    let hour = (i % 48) as f64 / 2.0;
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let jitter = 0.85 + 0.3 * (x % 1000) as f64 / 1000.0;
    ((300.0 + 1200.0 * bump(7.5, 1.0) + 2500.0 * bump(19.5, 1.5)) * jitter).round()
}

// ---------------------------------------------------------------------------------------------
// Timing and printing

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
    n: usize,
}

impl Stats {
    fn new(mut times: Vec<Duration>) -> Stats {
        assert!(!times.is_empty());
        times.sort();
        Stats {
            median: times[times.len() / 2],
            min: times[0],
            max: times[times.len() - 1],
            n: times.len(),
        }
    }

    fn secs(&self) -> f64 {
        self.median.as_secs_f64()
    }

    fn show(&self) -> String {
        format!(
            "median {} (min {}, max {}, n={})",
            duration(self.median),
            duration(self.min),
            duration(self.max),
            self.n
        )
    }
}

/// Runs `f(run)` `warmup` times untimed, then `reps` times timed; `run` counts all calls from 0.
fn time_sync<T>(warmup: usize, reps: usize, mut f: impl FnMut(usize) -> T) -> Stats {
    for run in 0..warmup {
        black_box(f(run));
    }
    let times = (warmup..warmup + reps)
        .map(|run| {
            let t = Instant::now();
            black_box(f(run));
            t.elapsed()
        })
        .collect();
    Stats::new(times)
}

/// [`time_sync`] for async work.
async fn time_async<T, F, Fut>(warmup: usize, reps: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = T>,
{
    for run in 0..warmup {
        black_box(f(run).await);
    }
    let mut times = Vec::with_capacity(reps);
    for run in warmup..warmup + reps {
        let t = Instant::now();
        black_box(f(run).await);
        times.push(t.elapsed());
    }
    Stats::new(times)
}

fn report(what: &str, stats: &Stats, result: &str) {
    println!("{what:<64} {}  → {result}", stats.show());
}

fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// 1234567.0 → "1.23 M", 45678.0 → "45.7 k".
fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Default)]
struct Summary {
    rows: Vec<(String, String, String)>,
}

impl Summary {
    fn row(&mut self, figure: &str, ours: &str, reference: &str) {
        self.rows
            .push((figure.to_owned(), ours.to_owned(), reference.to_owned()));
    }

    fn print(&self) {
        // Reference figures (docs/architecture.md §9) that the end-to-end script measures, listed
        // for completeness.
        let e2e = [
            (
                "Prosody routing component → 1 client",
                "~5.5–7.4 k msgs/s (~154 µs/stanza)",
            ),
            (
                "ejabberd routing component → 1 client",
                "~19–28 k msgs/s (~51 µs/stanza)",
            ),
            (
                "reference Python push",
                "1000 records/message, ~100 records/s",
            ),
        ];
        let width =
            |f: fn(&(String, String, String)) -> usize| self.rows.iter().map(f).max().unwrap_or(0);
        let w0 = width(|r| r.0.chars().count()).max(40);
        let w1 = width(|r| r.1.chars().count()).max(24);
        println!("\n==================== summary ====================");
        println!(
            "{:<w0$}  {:<w1$}  reference (docs/architecture.md §9)",
            "figure", "ours"
        );
        println!("{:-<w0$}  {:-<w1$}  {:-<36}", "", "", "");
        for (figure, ours, reference) in &self.rows {
            let reference = if reference.is_empty() {
                "—"
            } else {
                reference
            };
            println!("{figure:<w0$}  {ours:<w1$}  {reference}");
        }
        for (figure, reference) in e2e {
            println!(
                "{figure:<w0$}  {:<w1$}  {reference}",
                "(e2e script / context)"
            );
        }
    }
}
