//! The Grafana dashboard in `deploy/grafana/` draws only metrics the component exports: a
//! renamed metric would leave an empty panel that nobody notices until it is needed.

use std::collections::BTreeSet;

use quoalise_component::metrics::Metrics;

const DASHBOARD: &str = include_str!("../deploy/grafana/quoalise-component.json");

/// Every `quoalise_…` name in the panels' queries.
fn queried(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("quoalise_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_panel_queries_an_exported_metric() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let exported: BTreeSet<String> = Metrics::default()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    let names = queried(&dashboard);
    assert!(names.len() >= 15, "{names:?}");
    let missing: Vec<_> = names.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "panels query metrics nobody exports: {missing:?}"
    );
    // What the operators asked to see is there.
    for wanted in [
        "quoalise_xmpp_connected",
        "quoalise_notifications_sent_total",
        "quoalise_outbox_pending",
        "quoalise_outbox_oldest_age_seconds",
        "quoalise_upstream_calls_total",
        "quoalise_quota_waits_total",
        "quoalise_consents_active",
        "quoalise_audit_anchor",
    ] {
        assert!(names.contains(wanted), "{wanted}");
    }
}
