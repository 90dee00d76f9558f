//! Data the command tests start from: known readings on a usage point, a customer's consent.

use quoalise_component::model::{Batch, Consent, Grant, GrantOrigin, Reading};
use quoalise_component::source::demo::{DAILY, LOAD_CURVE as RAW};
use quoalise_component::store::Store;

/// 2026-09-28T22:00:00Z = 2026-09-29 00:00 in Paris.
pub const T0: i64 = 1_790_632_800;

/// Ten days from [`T0`] on `usage_point`: the load curve (PT30M, reading `i` worth `raw(i)`)
/// and the daily energy (day `i` worth `5000.5 + i`).
pub async fn ten_days(store: &dyn Store, usage_point: &str, raw: impl Fn(i64) -> f64) {
    let load_curve: Vec<Reading> = (0..480)
        .map(|i| Reading {
            time: T0 + i * 1800,
            value: raw(i),
        })
        .collect();
    let daily: Vec<Reading> = (0..10)
        .map(|i| Reading {
            time: T0 + i * 86_400,
            value: 5000.5 + i as f64,
        })
        .collect();
    for (series, readings) in [(RAW, load_curve), (DAILY, daily)] {
        store
            .insert_readings(&Batch {
                usage_point: usage_point.into(),
                series: series.into(),
                readings,
            })
            .await
            .unwrap();
    }
}

/// Bob's consent on `usage_point`, running for a day (a grant of origin `consent` on every
/// series, purpose "Energy advice"); returns its grant id.
pub async fn bob_consents(store: &dyn Store, usage_point: &str) -> i64 {
    let now = quoalise_component::time::now();
    let consent = Consent {
        id: None,
        source: "demo".into(),
        usage_point: usage_point.into(),
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
        usage_point: usage_point.into(),
        series: "*".into(),
        valid_from: Some(now - 60),
        valid_until: Some(now + 86_400),
        origin: GrantOrigin::Consent,
        purpose: Some("Energy advice".into()),
    };
    store.record_consent(&consent, &grant).await.unwrap().1
}
