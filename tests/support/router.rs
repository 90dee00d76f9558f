//! A router over an in-memory store holding a demo fleet: the fixture of the golden-XML tests.

use std::str::FromStr;
use std::sync::Arc;

use quoalise_component::access::{grants_from_config, Access};
use quoalise_component::commands;
use quoalise_component::config::{GrantConfig, HumanDuration};
use quoalise_component::publisher;
use quoalise_component::request::Context;
use quoalise_component::source::demo::DemoConfig;
use quoalise_component::source::SourceEvent;
use quoalise_component::store::{self, Store};
use quoalise_component::xep::adhoc::Engine;
use quoalise_component::xmpp::router::Router;
use xmpp_parsers::jid::BareJid;

pub const D: &str = "quoalise.localhost";
pub const ALICE: &str = "alice@localhost/phone";
pub const BOB: &str = "bob@localhost/laptop";
pub const ADMIN: &str = "admin@localhost/x";
/// The first demo meter.
pub const UP: &str = "99999000000001";

/// A router for `meters` demo meters; alice may read `alice_usage_points` (all series),
/// admin@localhost is an admin, bob has nothing.
pub async fn demo_router(
    meters: u32,
    alice_usage_points: &[&str],
    max_stanza_size: usize,
) -> (Router, Arc<dyn Store>) {
    let (ctx, store) = demo_context(meters, alice_usage_points, max_stanza_size).await;
    (Router::new(ctx, Engine::new(commands::all())), store)
}

/// The context of [`demo_router`], for tests that change a part (limits, command engine) first.
pub async fn demo_context(
    meters: u32,
    alice_usage_points: &[&str],
    max_stanza_size: usize,
) -> (Context, Arc<dyn Store>) {
    let store = store::open("sqlite::memory:").await.unwrap();
    let ctx = demo_context_in(store.clone(), meters, alice_usage_points, max_stanza_size).await;
    (ctx, store)
}

/// The context of [`demo_context`] over `store` (say one instance's of a shared PostgreSQL):
/// declares the demo fleet and alice's grants there, as each instance does at its start.
pub async fn demo_context_in(
    store: Arc<dyn Store>,
    meters: u32,
    alice_usage_points: &[&str],
    max_stanza_size: usize,
) -> Context {
    let demo = DemoConfig {
        id: "demo".into(),
        meters,
        first_meter: 1,
        live_interval: HumanDuration(std::time::Duration::from_secs(2)),
        history_days: 1,
        title: "Demo meters".into(),
        description: "Simulated".into(),
    };
    for (usage_point, series) in demo.fleet() {
        let declare = SourceEvent::Declare {
            usage_point,
            series,
        };
        publisher::apply(store.as_ref(), &declare).await.unwrap();
    }
    let grants = grants_from_config(&[GrantConfig {
        jid: "alice@localhost".into(),
        usage_points: alice_usage_points.iter().map(|s| (*s).to_owned()).collect(),
        series: vec!["*".into()],
        purpose: None,
        valid_until: None,
    }]);
    store.replace_config_grants(&grants).await.unwrap();
    Context {
        domain: BareJid::from_str(D).unwrap(),
        sources: vec![demo.info()],
        store: store.clone(),
        access: Access::new(
            [BareJid::from_str("admin@localhost").unwrap()],
            store.clone(),
        ),
        max_stanza_size,
        upstreams: Default::default(),
        consent_sources: Default::default(),
        public_url: "http://127.0.0.1:8080".into(),
        limits: Default::default(),
        export_inline_max: None,
    }
}
