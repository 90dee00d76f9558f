//! The `Store` contract, told as one story per area and run on SQLite (file and memory) and on a
//! PostgreSQL cluster each test starts itself.
//!
//! Each area is a test module of its own (`usage_points`, `readings`, `grants`, `audit`,
//! `subscriptions`, `publish`, `outbox`, `fanout`, `consents`, `upstream`, `sessions`, `opening`) with one test
//! per backend, on a database of its own: a failure in one area does not hide the others. A
//! story that needs another area's rows starts from a setup that writes them without checking
//! them (that is the other area's story). After its story, each area checks that a restart finds
//! what it left; stories of several instances sharing a database run on a new database of the
//! same backend, except in memory, where no second instance can reach the database.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use quoalise_component::audit::Verdict;
use quoalise_component::model::audit_chain::{Break, Checkpoint};
use quoalise_component::model::{
    AuditEntry, Batch, Consent, ConsentRequest, Grant, GrantOrigin, Identifier, Item, Measurement,
    OAuthState, OutboxEntry, Reading, Series, Subscription, SubscriptionKind, UpstreamCall,
    UsagePoint, ANY,
};
use quoalise_component::privacy::{self as erasure};
use quoalise_component::store::{
    self, Advance, AuditFilter, AuditRecord, Claimed, Erasure, Export, ExportClaim, NewOutboxEntry,
    NewPublication, NewSession, Opened, PostgresStore, Publication, SessionKey, SessionLimits,
    SqliteStore, Store, StoreError, Taken,
};
use quoalise_testkit::PgCluster;
use sqlx::{Connection, PgConnection, SqliteConnection};

const PRM: &str = "30001610071843";
const LOAD_CURVE: &str = "consumption/power/active/raw";
const DAILY: &str = "consumption/energy/active/daily";
const PRODUCTION: &str = "production/power/active/raw";

/// Ids chosen so that byte order (what the store promises) differs from an English collation:
/// upper case before lower case, `-` before `_`.
const DEMO_A3: &str = "A-3";
const XAAL_B2: &str = "B-2";
const DEMO_A1: &str = "a_1";

/// What a hand edit or a newer version could leave behind.
const BOGUS_GRANT: &str = "INSERT INTO grants (subject, usage_point, series, origin, created_at) \
     VALUES ('mallory@example.org', '*', '*', 'bogus', 0)";

fn usage_point(id: &str, source: &str, name: &str) -> UsagePoint {
    UsagePoint {
        id: id.into(),
        source: source.into(),
        device_type: "electricity-meter".into(),
        identifier: Identifier {
            authority: source.into(),
            kind: "prm".into(),
            value: id.into(),
        },
        name: name.into(),
        online: true,
    }
}

fn series(usage_point: &str, path: &str, title: &str) -> Series {
    Series {
        usage_point: usage_point.into(),
        path: path.into(),
        title: title.into(),
        measurement: Measurement {
            name: "active-power".into(),
            direction: "consumption".into(),
            quantity: "power".into(),
            kind: "electrical".into(),
            unit: "W".into(),
            aggregation: "mean".into(),
            sampling_interval: "PT30M".into(),
        },
    }
}

/// Declares `up` with a load curve and a daily energy series.
async fn declare_curve_and_daily(store: &dyn Store, up: &UsagePoint) {
    store
        .declare_usage_point(
            up,
            &[
                series(&up.id, LOAD_CURVE, "Load curve"),
                series(&up.id, DAILY, "Daily"),
            ],
        )
        .await
        .unwrap();
}

fn grant(subject: &str, usage_point: &str, series: &str, origin: GrantOrigin) -> Grant {
    Grant {
        id: None,
        subject: subject.into(),
        usage_point: usage_point.into(),
        series: series.into(),
        valid_from: None,
        valid_until: None,
        origin,
        purpose: None,
    }
}

fn ids(ups: &[UsagePoint]) -> Vec<&str> {
    ups.iter().map(|up| up.id.as_str()).collect()
}

/// Grants as the caller wrote them, to compare with what the store returns.
fn without_ids(grants: &[Grant]) -> Vec<Grant> {
    grants
        .iter()
        .cloned()
        .map(|g| Grant { id: None, ..g })
        .collect()
}

/// Declaring, re-declaring, ownership, ordering and online state. Leaves the state that
/// [`check_usage_points_kept`] expects.
async fn usage_point_story(store: Arc<dyn Store>) {
    assert_eq!(store.usage_point(PRM).await.unwrap(), None);
    assert!(store.usage_points(None).await.unwrap().is_empty());
    assert!(store.series(PRM).await.unwrap().is_empty());

    // Declared out of path order, read back in path order.
    let linky = usage_point(PRM, "enedis", "Linky");
    let load_curve = series(PRM, LOAD_CURVE, "Load curve");
    let daily = Series {
        measurement: Measurement {
            name: "active-energy".into(),
            quantity: "energy".into(),
            unit: "Wh".into(),
            aggregation: "sum".into(),
            sampling_interval: "P1D".into(),
            ..load_curve.measurement.clone()
        },
        ..series(PRM, DAILY, "Daily consumption")
    };
    let declared = [load_curve.clone(), daily.clone()];
    store.declare_usage_point(&linky, &declared).await.unwrap();
    assert_eq!(store.usage_point(PRM).await.unwrap(), Some(linky.clone()));
    assert_eq!(
        store.series(PRM).await.unwrap(),
        vec![daily.clone(), load_curve.clone()]
    );

    // A source re-declares at every start: nothing doubles.
    store.declare_usage_point(&linky, &declared).await.unwrap();
    assert_eq!(store.usage_points(None).await.unwrap(), vec![linky.clone()]);
    assert_eq!(
        store.series(PRM).await.unwrap(),
        vec![daily.clone(), load_curve.clone()]
    );

    // Updates land; a series left out of the declaration stays.
    let renamed = UsagePoint {
        name: "Linky (garage)".into(),
        device_type: "smart-meter".into(),
        ..linky.clone()
    };
    let load_curve_10 = Series {
        title: "Load curve (10 min)".into(),
        measurement: Measurement {
            sampling_interval: "PT10M".into(),
            ..load_curve.measurement.clone()
        },
        ..load_curve.clone()
    };
    let production = series(PRM, PRODUCTION, "Production");
    store
        .declare_usage_point(&renamed, &[production.clone(), load_curve_10.clone()])
        .await
        .unwrap();
    assert_eq!(store.usage_point(PRM).await.unwrap(), Some(renamed.clone()));
    let expected_series = vec![daily.clone(), load_curve_10.clone(), production.clone()];
    assert_eq!(store.series(PRM).await.unwrap(), expected_series);

    // Another source may not take the id over, and its attempt leaves no trace.
    let intruder = usage_point(PRM, "xaal", "Intruder");
    let err = store
        .declare_usage_point(&intruder, &[series(PRM, "temperature/raw", "Intruder")])
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict { id, owner } => {
            assert_eq!(id, PRM);
            assert_eq!(owner, "enedis");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.usage_point(PRM).await.unwrap(), Some(renamed.clone()));
    assert_eq!(store.series(PRM).await.unwrap(), expected_series);

    // Ordered by id (bytes), filtered by source.
    for (id, source) in [(XAAL_B2, "xaal"), (DEMO_A1, "demo"), (DEMO_A3, "demo")] {
        store
            .declare_usage_point(&usage_point(id, source, id), &[])
            .await
            .unwrap();
    }
    assert_eq!(
        ids(&store.usage_points(None).await.unwrap()),
        [PRM, DEMO_A3, XAAL_B2, DEMO_A1]
    );
    assert_eq!(
        ids(&store.usage_points(Some("demo")).await.unwrap()),
        [DEMO_A3, DEMO_A1]
    );
    assert!(store.usage_points(Some("nobody")).await.unwrap().is_empty());
    assert!(store.series(DEMO_A1).await.unwrap().is_empty());

    // Paths sort by bytes too.
    let paths = [
        "temperature/raw",
        "Temperature/raw",
        "humidity/raw",
        "temperature-2/raw",
    ];
    let sensor_series: Vec<Series> = paths.iter().map(|p| series(XAAL_B2, p, p)).collect();
    store
        .declare_usage_point(&usage_point(XAAL_B2, "xaal", XAAL_B2), &sensor_series)
        .await
        .unwrap();
    let read: Vec<String> = store
        .series(XAAL_B2)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert_eq!(
        read,
        [
            "Temperature/raw",
            "humidity/raw",
            "temperature-2/raw",
            "temperature/raw"
        ]
    );

    // Online state.
    assert!(store.set_online(DEMO_A1, false).await.unwrap());
    assert!(!store.usage_point(DEMO_A1).await.unwrap().unwrap().online);
    assert!(store.set_online(DEMO_A1, false).await.unwrap());
    assert!(store.set_online(DEMO_A1, true).await.unwrap());
    assert!(store.usage_point(DEMO_A1).await.unwrap().unwrap().online);
    assert!(store.set_online(DEMO_A3, false).await.unwrap());
    assert!(!store.set_online("ghost", true).await.unwrap());
    assert_eq!(store.usage_point("ghost").await.unwrap(), None);
}

/// Ids of grants that later stories refer to.
struct GrantIds {
    /// Carol's config grant, in force at the end.
    carol: i64,
    /// A config grant that a later start dropped: revoked, still referable.
    revoked: i64,
}

/// Ids of `grants`, in order.
fn grant_ids(grants: &[Grant]) -> Vec<i64> {
    grants.iter().map(|g| g.id.unwrap()).collect()
}

/// Config reconciliation, admin and consent grants, revocation. Leaves the state that
/// [`check_grants_kept`] expects.
async fn grant_story(store: Arc<dyn Store>) -> GrantIds {
    assert!(store.grants().await.unwrap().is_empty());

    // Expired long ago, and still returned: validity is the caller's business.
    let admin = Grant {
        valid_from: Some(100),
        valid_until: Some(200),
        purpose: Some("billing".into()),
        ..grant("billing@example.org", PRM, ANY, GrantOrigin::Admin)
    };
    let admin_id = store.add_grant(&admin).await.unwrap();
    let admin = Grant {
        id: Some(admin_id),
        ..admin
    };

    let alice = grant("alice@example.org", ANY, ANY, GrantOrigin::Config);
    let bob = Grant {
        valid_until: Some(4_000_000_000),
        ..grant("bob@example.org", PRM, LOAD_CURVE, GrantOrigin::Config)
    };
    let first_config = [alice.clone(), bob.clone()];
    store.replace_config_grants(&first_config).await.unwrap();
    let all = store.grants().await.unwrap();
    assert_eq!(all[0], admin);
    assert_eq!(without_ids(&all[1..]), first_config);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{all:?}");
    let first_ids = grant_ids(&all[1..]);

    // Restarting with the same config, in any order, keeps the grants and their ids: the audit
    // log refers to them.
    for config in [first_config.clone(), [bob.clone(), alice.clone()]] {
        let changes = store.replace_config_grants(&config).await.unwrap();
        assert_eq!(changes, Default::default());
        let all = store.grants().await.unwrap();
        assert_eq!(all[0], admin);
        assert_eq!(without_ids(&all[1..]), first_config);
        assert_eq!(grant_ids(&all[1..]), first_ids);
    }

    // The next start brings another config: alice's grant stays, bob's changed (a new grant
    // replaces it), carol's is new; the admin grant is untouched. Replacing again changes
    // nothing.
    let bob_later = Grant {
        valid_until: Some(4_100_000_000),
        ..bob.clone()
    };
    let carol = grant("carol@example.org", DEMO_A1, ANY, GrantOrigin::Config);
    let all_before_second = store.grants().await.unwrap();
    let second_config = [carol.clone(), alice.clone(), bob_later.clone()];
    let changes = store.replace_config_grants(&second_config).await.unwrap();
    let all = store.grants().await.unwrap();
    // What changed is reported for the audit log: bob's old grant out, carol's and bob's new in.
    assert_eq!(changes.revoked, [all_before_second[2].clone()]);
    assert_eq!(
        without_ids(&changes.added),
        [carol.clone(), bob_later.clone()]
    );
    assert!(changes.added.iter().all(|g| all.contains(g)), "{changes:?}");
    assert_eq!(
        without_ids(&all),
        without_ids(&[
            admin.clone(),
            alice.clone(),
            carol.clone(),
            bob_later.clone()
        ])
    );
    assert_eq!(all[1].id, Some(first_ids[0]));
    assert!(all[2].id.unwrap() > first_ids[1]);
    let second_ids = grant_ids(&all);
    store.replace_config_grants(&second_config).await.unwrap();
    assert_eq!(grant_ids(&store.grants().await.unwrap()), second_ids);

    // A config without alice and bob revokes their grants.
    let carol_id = second_ids[2];
    let changes = store
        .replace_config_grants(std::slice::from_ref(&carol))
        .await
        .unwrap();
    assert!(changes.added.is_empty(), "{changes:?}");
    assert_eq!(changes.revoked.len(), 2, "{changes:?}");
    let all = store.grants().await.unwrap();
    assert_eq!(all[0], admin);
    assert_eq!(grant_ids(&all[1..]), [carol_id]);
    for gone in ["alice@example.org", "bob@example.org"] {
        assert!(store.grants_for(gone).await.unwrap().is_empty(), "{gone}");
    }
    assert_eq!(store.revoke_grant(first_ids[0]).await.unwrap(), None);
    assert_eq!(
        store.grants_for("billing@example.org").await.unwrap(),
        std::slice::from_ref(&admin)
    );

    // A grant handed to the config replacement is a config grant, whatever it says, so that the
    // next replacement revokes it.
    store
        .replace_config_grants(&[
            carol.clone(),
            grant("dave@example.org", ANY, ANY, GrantOrigin::Admin),
        ])
        .await
        .unwrap();
    assert_eq!(
        without_ids(&store.grants_for("dave@example.org").await.unwrap()),
        [grant("dave@example.org", ANY, ANY, GrantOrigin::Config)]
    );
    store
        .replace_config_grants(std::slice::from_ref(&carol))
        .await
        .unwrap();
    assert!(store
        .grants_for("dave@example.org")
        .await
        .unwrap()
        .is_empty());

    // Add, then revoke: gone from both listings, and revoking twice reports nothing to do.
    let consent = grant("carol@example.org", PRM, DAILY, GrantOrigin::Consent);
    let consent_id = store.add_grant(&consent).await.unwrap();
    let carols = store.grants_for("carol@example.org").await.unwrap();
    assert_eq!(without_ids(&carols), [carol.clone(), consent.clone()]);
    assert_eq!(grant_ids(&carols), [carol_id, consent_id]);
    // Several subjects in one query: exactly their grants, in id order, whatever the list holds
    // (unknown subjects, a quote, a subject twice).
    let subjects = [
        "dave@example.org",
        "carol@example.org",
        "nobody@example.org",
        "o\"hara@example.org",
        "carol@example.org",
    ]
    .map(String::from);
    let expected: Vec<Grant> = store
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.subject == "dave@example.org" || g.subject == "carol@example.org")
        .collect();
    assert!(expected.len() >= 2, "{expected:?}");
    assert_eq!(store.grants_of(&subjects).await.unwrap(), expected);
    assert!(store.grants_of(&[]).await.unwrap().is_empty());
    let revoked = store.revoke_grant(consent_id).await.unwrap();
    assert_eq!(revoked.and_then(|g| g.id), Some(consent_id));
    assert_eq!(store.revoke_grant(consent_id).await.unwrap(), None);
    assert_eq!(store.revoke_grant(consent_id + 1000).await.unwrap(), None);
    assert_eq!(
        without_ids(&store.grants_for("carol@example.org").await.unwrap()),
        std::slice::from_ref(&carol)
    );
    assert!(store
        .grants()
        .await
        .unwrap()
        .iter()
        .all(|g| g.id != Some(consent_id)));

    // Subjects are matched exactly.
    assert!(store
        .grants_for("nobody@example.org")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .grants_for("carol@example.org/phone")
        .await
        .unwrap()
        .is_empty());

    GrantIds {
        carol: carol_id,
        revoked: first_ids[1],
    }
}

fn batch(usage_point: &str, series: &str, readings: &[(i64, f64)]) -> Batch {
    Batch {
        usage_point: usage_point.into(),
        series: series.into(),
        readings: readings
            .iter()
            .map(|&(time, value)| Reading { time, value })
            .collect(),
    }
}

fn pairs(readings: &[Reading]) -> Vec<(i64, f64)> {
    readings.iter().map(|r| (r.time, r.value)).collect()
}

/// 2026-01-01T00:00:00+01:00.
const T0: i64 = 1_767_222_000;
const HALF_HOUR: i64 = 1800;

/// Readings in a year of [`PRODUCTION`]: irregular steps spread over 365 days.
const YEAR_READINGS: i64 = 20_000;
const YEAR_STEP: i64 = 1577;

fn year_batch() -> Batch {
    let readings: Vec<(i64, f64)> = (0..YEAR_READINGS)
        .map(|i| (T0 + i * YEAR_STEP, i as f64 * 0.5 + 0.25))
        .collect();
    batch(PRM, PRODUCTION, &readings)
}

/// Writing and reading readings. Runs after [`declare_usage_points`], on PRM's series; leaves
/// the state that [`check_readings_kept`] expects.
async fn readings_story(store: Arc<dyn Store>) {
    let all_time = (i64::MIN, i64::MAX);
    assert!(store
        .readings(PRM, LOAD_CURVE, all_time.0, all_time.1, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .count_readings(PRM, LOAD_CURVE, all_time.0, all_time.1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.last_reading(PRM, LOAD_CURVE).await.unwrap(), None);

    // Sent out of order, read back in order.
    let sent = [
        (T0 + HALF_HOUR, 2.0),
        (T0, 1.0),
        (T0 + 3 * HALF_HOUR, 0.0),
        (T0 + 2 * HALF_HOUR, 3.5),
        (T0 + 4 * HALF_HOUR, -1.25),
    ];
    let written = store
        .insert_readings(&batch(PRM, LOAD_CURVE, &sent))
        .await
        .unwrap();
    assert_eq!(written, 5);
    let read = |start, end, limit| {
        let store = store.clone();
        async move {
            pairs(
                &store
                    .readings(PRM, LOAD_CURVE, start, end, limit)
                    .await
                    .unwrap(),
            )
        }
    };
    let ordered = vec![
        (T0, 1.0),
        (T0 + HALF_HOUR, 2.0),
        (T0 + 2 * HALF_HOUR, 3.5),
        (T0 + 3 * HALF_HOUR, 0.0),
        (T0 + 4 * HALF_HOUR, -1.25),
    ];
    assert_eq!(read(all_time.0, all_time.1, None).await, ordered);

    // Half-open ranges: start included, end excluded.
    assert_eq!(read(T0, T0 + 2 * HALF_HOUR, None).await, ordered[..2]);
    assert_eq!(
        read(T0 + 1, T0 + 2 * HALF_HOUR + 1, None).await,
        ordered[1..3]
    );
    assert!(read(T0, T0, None).await.is_empty());
    assert!(read(T0 + HALF_HOUR, T0, None).await.is_empty());
    // Limits keep the oldest.
    assert_eq!(read(T0, T0 + 10 * HALF_HOUR, Some(2)).await, ordered[..2]);
    assert_eq!(
        read(T0 + 1, T0 + 10 * HALF_HOUR, Some(3)).await,
        ordered[1..4]
    );
    assert!(read(T0, T0 + 10 * HALF_HOUR, Some(0)).await.is_empty());
    assert_eq!(
        read(T0, T0 + 10 * HALF_HOUR, Some(usize::MAX)).await,
        ordered
    );
    let count = |start, end| {
        let store = store.clone();
        async move {
            store
                .count_readings(PRM, LOAD_CURVE, start, end)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(T0, T0 + 2 * HALF_HOUR).await, 2);
    assert_eq!(count(T0 + 1, T0 + 2 * HALF_HOUR + 1).await, 2);
    assert_eq!(count(T0, T0).await, 0);
    assert_eq!(count(all_time.0, all_time.1).await, 5);
    assert_eq!(
        store.last_reading(PRM, LOAD_CURVE).await.unwrap(),
        Some(Reading {
            time: T0 + 4 * HALF_HOUR,
            value: -1.25
        })
    );

    // Idempotent: the same readings again write nothing; a new value for a stored time replaces
    // it; within a batch, the last reading of a time wins.
    assert_eq!(
        store
            .insert_readings(&batch(PRM, LOAD_CURVE, &sent))
            .await
            .unwrap(),
        0
    );
    let corrected = [(T0 + HALF_HOUR, 20.0), (T0, 1.0)];
    assert_eq!(
        store
            .insert_readings(&batch(PRM, LOAD_CURVE, &corrected))
            .await
            .unwrap(),
        1
    );
    let twice = [(T0 + 2 * HALF_HOUR, 30.0), (T0 + 2 * HALF_HOUR, 35.0)];
    assert_eq!(
        store
            .insert_readings(&batch(PRM, LOAD_CURVE, &twice))
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(all_time.0, all_time.1).await, 5);
    assert_eq!(
        read(T0, T0 + 3 * HALF_HOUR, None).await,
        [
            (T0, 1.0),
            (T0 + HALF_HOUR, 20.0),
            (T0 + 2 * HALF_HOUR, 35.0)
        ]
    );

    // Series are separate.
    assert!(store
        .readings(PRM, DAILY, all_time.0, all_time.1, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_reading(XAAL_B2, LOAD_CURVE).await.unwrap(), None);

    // Values and times come back exactly, whatever they are; -0.0 comes back as 0.0 on both.
    let exact = [
        (-86_400, 0.1 + 0.2),
        (0, 0.0),
        (1, f64::MAX),
        (2, f64::MIN_POSITIVE),
        (3, 1e-300),
        (4_102_444_800, 123_456_789.123_456_79),
    ];
    store
        .insert_readings(&batch(PRM, DAILY, &exact))
        .await
        .unwrap();
    store
        .insert_readings(&batch(PRM, DAILY, &[(0, -0.0)]))
        .await
        .unwrap();
    let back = store
        .readings(PRM, DAILY, all_time.0, all_time.1, None)
        .await
        .unwrap();
    assert_eq!(
        back.iter()
            .map(|r| (r.time, r.value.to_bits()))
            .collect::<Vec<_>>(),
        exact
            .iter()
            .map(|&(t, v)| (t, v.to_bits()))
            .collect::<Vec<_>>()
    );

    // Unknown series are refused and leave no trace; reading them finds nothing.
    for (up, path) in [
        (PRM, "nope/raw"),
        ("ghost", LOAD_CURVE),
        (DEMO_A1, LOAD_CURVE),
    ] {
        match store
            .insert_readings(&batch(up, path, &[(T0 + 99, 1.0)]))
            .await
        {
            Err(StoreError::UnknownSeries {
                usage_point,
                series,
            }) => assert_eq!((usage_point.as_str(), series.as_str()), (up, path)),
            other => panic!("expected an unknown-series error, got {other:?}"),
        }
        assert!(store
            .readings(up, path, all_time.0, all_time.1, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .count_readings(up, path, all_time.0, all_time.1)
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.last_reading(up, path).await.unwrap(), None);
    }

    // A batch holding NaN is refused whole.
    match store
        .insert_readings(&batch(
            PRM,
            LOAD_CURVE,
            &[(T0 + 99, 1.0), (T0 + 98, f64::NAN)],
        ))
        .await
    {
        Err(StoreError::NonFiniteValue { time, .. }) => assert_eq!(time, T0 + 98),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
    assert_eq!(count(all_time.0, all_time.1).await, 5);

    // A year of readings in one batch, then queried by range.
    let year = year_batch();
    let year_end = T0 + YEAR_READINGS * YEAR_STEP;
    assert!(year_end - T0 > 364 * 86_400 && year_end - T0 < 366 * 86_400);
    assert_eq!(
        store.insert_readings(&year).await.unwrap(),
        YEAR_READINGS as usize
    );
    let back = store
        .readings(PRM, PRODUCTION, T0, year_end, None)
        .await
        .unwrap();
    assert_eq!(back, year.readings);
    assert_eq!(
        store
            .count_readings(PRM, PRODUCTION, T0, year_end)
            .await
            .unwrap(),
        YEAR_READINGS as u64
    );
    // A page from the middle.
    let from = T0 + 1000 * YEAR_STEP;
    let page = store
        .readings(PRM, PRODUCTION, from, year_end, Some(500))
        .await
        .unwrap();
    assert_eq!(page, year.readings[1000..1500]);
    assert_eq!(
        store
            .count_readings(PRM, PRODUCTION, from, from + 1000 * YEAR_STEP)
            .await
            .unwrap(),
        1000
    );
    assert_eq!(
        store.last_reading(PRM, PRODUCTION).await.unwrap(),
        year.readings.last().copied()
    );
    assert_eq!(store.insert_readings(&year).await.unwrap(), 0);
}

fn audit_entry(requester: &str, grant_id: Option<i64>, at: i64) -> AuditEntry {
    AuditEntry {
        requester: requester.into(),
        usage_point: PRM.into(),
        series: LOAD_CURVE.into(),
        start: T0,
        end: T0 + 86_400,
        grant_id,
        command: "get_history".into(),
        records: 48,
        at,
    }
}

/// Appending to the audit log and reading it back in pages. Runs after [`add_audited_grants`];
/// leaves the state that [`check_audit_kept`] expects.
async fn audit_story(store: Arc<dyn Store>, grants: GrantIds) {
    assert!(store.audit_entries(0, 10).await.unwrap().is_empty());
    let entries = [
        audit_entry("carol@example.org", Some(grants.carol), 1_800_000_000),
        audit_entry("admin@example.org", None, 1_800_000_001),
        // A grant revoked since: its id stays valid for the log.
        AuditEntry {
            series: DAILY.into(),
            start: -10,
            end: i64::MAX,
            command: "get_daily".into(),
            records: 0,
            ..audit_entry("bob@example.org", Some(grants.revoked), 1_799_999_999)
        },
    ];
    let mut ids = Vec::new();
    for entry in &entries {
        ids.push(store.append_audit(entry).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all: Vec<(i64, AuditEntry)> = ids.iter().copied().zip(entries.iter().cloned()).collect();

    // Oldest first, whatever `at` says; paged by id.
    assert_eq!(store.audit_entries(0, 10).await.unwrap(), all);
    assert_eq!(store.audit_entries(0, 2).await.unwrap(), all[..2]);
    assert_eq!(store.audit_entries(ids[1], 2).await.unwrap(), all[2..]);
    assert_eq!(store.audit_entries(ids[0] - 1, 1).await.unwrap(), all[..1]);
    assert!(store.audit_entries(ids[2], 10).await.unwrap().is_empty());
    assert!(store.audit_entries(0, 0).await.unwrap().is_empty());
    assert_eq!(
        store.audit_entries(i64::MIN, usize::MAX).await.unwrap(),
        all
    );

    // An entry cannot name a grant that never existed.
    assert!(store
        .append_audit(&audit_entry(
            "x@example.org",
            Some(grants.carol + 10_000),
            0
        ))
        .await
        .is_err());
    assert_eq!(store.audit_entries(0, 10).await.unwrap(), all);
}

/// Instances starting together reconcile the same config once, not once each.
async fn concurrent_config_reconciliation(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let config = [
        grant("erin@example.org", ANY, ANY, GrantOrigin::Config),
        grant("frank@example.org", PRM, ANY, GrantOrigin::Config),
    ];
    for _ in 0..3 {
        let (x, y) = tokio::join!(
            a.replace_config_grants(&config),
            b.replace_config_grants(&config)
        );
        x.unwrap();
        y.unwrap();
    }
    let subjects: Vec<String> = a
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.subject == "erin@example.org" || g.subject == "frank@example.org")
        .map(|g| g.subject)
        .collect();
    assert_eq!(subjects, ["erin@example.org", "frank@example.org"]);
}

// ---- Subscriptions, publishing, the outbox, the fan-out ----

const ALICE: &str = "alice@example.org";
const ALICE_PHONE: &str = "alice@example.org/phone";
/// Series of [`XAAL_B2`] (declared by [`declare_usage_points`]) that the publish story uses, so
/// that the readings of PRM stay as the readings story leaves them.
const TEMPERATURE: &str = "temperature/raw";
const HUMIDITY: &str = "humidity/raw";
/// The delivery task's clock in these stories: entries queued for "at once" are due at any time.
const NOW: i64 = 1_900_000_000;
const LEASE: i64 = 60;
/// Items kept per node in the publish story.
const MAX_ITEMS: usize = 3;

/// Publications delivery reads per subscription and claim (as `delivery::DEPTH`).
const DEPTH: usize = 32;

/// A publication's templates as the publisher would store them; quotes and non-ASCII text must
/// come back byte for byte.
fn publication(n: i64) -> NewPublication {
    NewPublication {
        pubsub: format!(
            "<message type='headline' id='p{n}'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
             <items node=\"température\"><item id='i{n}'/></items></event></message>"
        ),
        push: format!("<message type='normal'><push n=\"{n}\">O&apos;Hara ¤</push></message>"),
    }
}

use SubscriptionKind::{PubSub, Push};

fn sub_ids(subs: &[Subscription]) -> Vec<i64> {
    subs.iter().map(|s| s.id).collect()
}

fn entry_ids(entries: &[OutboxEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.id).collect()
}

/// A notification as the XMPP side would serialise it; quotes and non-ASCII text must come back
/// byte for byte.
fn stanza(to: &str, n: usize) -> String {
    format!(
        "<message xmlns='jabber:component:accept' type='headline' to='{to}' id='n{n}'>\
         <event xmlns='http://jabber.org/protocol/pubsub#event'><items node=\"température\">\
         <item id='i{n}'/></items></event></message>"
    )
}

/// A stanza to queue, for a subscription or none.
fn entry(subscription: Option<i64>, stanza: impl Into<String>) -> NewOutboxEntry {
    NewOutboxEntry {
        subscription,
        stanza: stanza.into(),
    }
}

fn item(series: &str, item_id: &str, published_at: i64) -> Item {
    Item {
        usage_point: XAAL_B2.into(),
        series: series.into(),
        item_id: item_id.into(),
        published_at,
        payload: format!(
            "<quoalise xmlns=\"urn:quoalise:0\"><data><!-- {item_id} ¤ --></data></quoalise>"
        ),
    }
}

fn item_ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.item_id.as_str()).collect()
}

/// Subscribing (idempotent, exact JIDs), listing and unsubscribing. Runs after
/// [`declare_usage_points`]; returns the subscriptions it leaves, which
/// [`check_subscriptions_kept`] expects to find after a restart.
async fn subscription_story(store: Arc<dyn Store>) -> Vec<Subscription> {
    assert!(store.all_subscriptions().await.unwrap().is_empty());
    assert_eq!(store.count_subscriptions().await.unwrap(), 0);
    assert!(store.subscribers(PRM, LOAD_CURVE).await.unwrap().is_empty());

    let sub = |kind, up: &'static str, series: &'static str, jid: &'static str, subid| {
        let store = store.clone();
        async move {
            let s = store.subscribe(kind, up, series, jid, subid).await.unwrap();
            assert_eq!(
                (
                    s.kind,
                    s.usage_point.as_str(),
                    s.series.as_str(),
                    s.jid.as_str()
                ),
                (kind, up, series, jid)
            );
            assert!(s.created_at > 1_700_000_000, "{s:?}");
            s
        }
    };
    let bare = sub(PubSub, PRM, LOAD_CURVE, ALICE, "s-bare").await;
    assert_eq!(bare.subid, "s-bare");
    // Idempotent: the same subscription again, its first subid kept.
    assert_eq!(sub(PubSub, PRM, LOAD_CURVE, ALICE, "s-other").await, bare);
    // A full JID, the push kind, another series: each a subscription of its own.
    let phone = sub(PubSub, PRM, LOAD_CURVE, ALICE_PHONE, "s-phone").await;
    let push = sub(Push, PRM, LOAD_CURVE, ALICE, "p-1").await;
    let daily = sub(PubSub, PRM, DAILY, ALICE, "s-daily").await;
    // Not alice's, whatever their prefix.
    let evil = sub(PubSub, PRM, LOAD_CURVE, "alice@example.org.evil", "s-evil").await;
    let orgx = sub(PubSub, PRM, LOAD_CURVE, "alice@example.orgx/res", "s-x").await;
    let bob = sub(PubSub, PRM, LOAD_CURVE, "bob@example.org", "s-bob").await;
    let sensor = sub(PubSub, XAAL_B2, TEMPERATURE, ALICE_PHONE, "s-t").await;
    let created = [&bare, &phone, &push, &daily, &evil, &orgx, &bob, &sensor];
    assert!(created.windows(2).all(|w| w[0].id < w[1].id), "{created:?}");

    // Nodes that do not exist cannot be subscribed to, and the attempt leaves nothing.
    for (up, series) in [
        (PRM, "nope/raw"),
        ("ghost", LOAD_CURVE),
        (DEMO_A1, LOAD_CURVE),
    ] {
        match store.subscribe(PubSub, up, series, ALICE, "s").await {
            Err(StoreError::UnknownSeries {
                usage_point,
                series: path,
            }) => assert_eq!((usage_point.as_str(), path.as_str()), (up, series)),
            other => panic!("expected an unknown-series error, got {other:?}"),
        }
    }
    assert_eq!(
        store.all_subscriptions().await.unwrap().len(),
        created.len()
    );
    assert_eq!(
        store.count_subscriptions().await.unwrap(),
        created.len() as u64
    );

    // Both kinds, ordered by id.
    assert_eq!(
        store.subscribers(PRM, LOAD_CURVE).await.unwrap(),
        [&bare, &phone, &push, &evil, &orgx, &bob].map(Clone::clone)
    );
    assert_eq!(
        store.subscribers(PRM, DAILY).await.unwrap(),
        std::slice::from_ref(&daily)
    );
    assert!(store.subscribers(PRM, PRODUCTION).await.unwrap().is_empty());

    // A bare JID finds itself and its full JIDs, nothing that merely starts like it.
    assert_eq!(
        store.subscriptions_of(ALICE, None).await.unwrap(),
        [&bare, &phone, &push, &daily, &sensor].map(Clone::clone)
    );
    assert_eq!(
        store.subscriptions_of(ALICE, Some(PRM)).await.unwrap(),
        [&bare, &phone, &push, &daily].map(Clone::clone)
    );
    assert_eq!(
        store.subscriptions_of(ALICE, Some(XAAL_B2)).await.unwrap(),
        std::slice::from_ref(&sensor)
    );
    assert!(store
        .subscriptions_of(ALICE, Some(DEMO_A1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        sub_ids(
            &store
                .subscriptions_of("alice@example.org.evil", None)
                .await
                .unwrap()
        ),
        [evil.id]
    );
    for nobody in ["alice@example.or", "alice@example", "lice@example.org", ""] {
        assert!(
            store
                .subscriptions_of(nobody, None)
                .await
                .unwrap()
                .is_empty(),
            "{nobody}"
        );
    }

    // Unsubscribing with a subid removes only that subscription, if the subid matches.
    assert!(store
        .unsubscribe(PubSub, PRM, Some(LOAD_CURVE), ALICE, Some("s-other"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .unsubscribe(PubSub, PRM, Some(LOAD_CURVE), ALICE, Some("s-bare"))
            .await
            .unwrap(),
        std::slice::from_ref(&bare)
    );
    // Without a subid; the JID is matched exactly, the kind too.
    assert_eq!(
        store
            .unsubscribe(PubSub, PRM, Some(LOAD_CURVE), ALICE_PHONE, None)
            .await
            .unwrap(),
        std::slice::from_ref(&phone)
    );
    assert!(store
        .unsubscribe(PubSub, PRM, Some(LOAD_CURVE), ALICE, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        sub_ids(&store.subscribers(PRM, LOAD_CURVE).await.unwrap()),
        [push.id, evil.id, orgx.id, bob.id]
    );

    // A new subscription gets a new id, never a removed one's.
    let again = sub(PubSub, PRM, LOAD_CURVE, ALICE, "s-again").await;
    assert!(again.id > sensor.id);
    // All series of the usage point at once; other kinds and usage points stay.
    assert_eq!(
        store
            .unsubscribe(PubSub, PRM, None, ALICE, None)
            .await
            .unwrap(),
        [daily.clone(), again.clone()]
    );
    assert!(store
        .unsubscribe(PubSub, PRM, None, ALICE, None)
        .await
        .unwrap()
        .is_empty());

    // By id (bounce, revoked grant).
    assert_eq!(
        store.remove_subscription(bob.id).await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.remove_subscription(bob.id).await.unwrap(), None);

    let left = vec![push, evil, orgx, sensor];
    assert_eq!(store.all_subscriptions().await.unwrap(), left);
    assert_eq!(
        store.count_subscriptions().await.unwrap(),
        left.len() as u64
    );
    left
}

/// The readings of [`TEMPERATURE`] in the publish story.
async fn temperature_readings(store: &dyn Store) -> u64 {
    store
        .count_readings(XAAL_B2, TEMPERATURE, i64::MIN, i64::MAX)
        .await
        .unwrap()
}

/// The publish transaction: readings, item and publication together or not at all; a
/// publication stored once, numbered in its series; items kept, replaced, trimmed and listed.
/// Runs after [`add_subscriptions`]; leaves the items and the waiting publications that
/// [`check_publish_kept`] expects.
async fn publish_story(store: Arc<dyn Store>, subs: &[Subscription]) {
    assert!(store
        .items(XAAL_B2, TEMPERATURE, None, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_item(XAAL_B2, TEMPERATURE).await.unwrap(), None);
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));

    // One batch: its readings, its item, and its publication, the first of the series, stored
    // once for the one subscriber; nothing goes through the outbox.
    let subscribers = store.subscribers(XAAL_B2, TEMPERATURE).await.unwrap();
    assert_eq!(subscribers, subs[3..]);
    let sensor = &subscribers[0];
    let first = item(TEMPERATURE, "i1", T0);
    let seq = store
        .publish(
            &batch(XAAL_B2, TEMPERATURE, &[(T0, 20.5), (T0 + 60, 20.75)]),
            Some(&first),
            Some(&publication(1)),
            MAX_ITEMS,
        )
        .await
        .unwrap();
    assert_eq!(seq, Some(1));
    let stored = store.publication_for(sensor.id, 1).await.unwrap().unwrap();
    assert_eq!(
        stored,
        Publication {
            seq: 1,
            published_at: stored.published_at,
            pubsub: publication(1).pubsub,
            push: publication(1).push,
        }
    );
    assert!(
        (stored.published_at - chrono::Utc::now().timestamp()).abs() < 60,
        "{stored:?}"
    );
    let waiting = (1, Some(stored.published_at));
    assert_eq!(store.fanout_pending().await.unwrap(), waiting);
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(temperature_readings(store.as_ref()).await, 2);
    assert_eq!(
        store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(
        store.last_item(XAAL_B2, TEMPERATURE).await.unwrap(),
        Some(first.clone())
    );

    // All or nothing: an unknown series, an item on an unknown node, a NaN reading each fail
    // the whole publish, the readings written before the failure included; no publication is
    // stored and the series' numbering does not move.
    let failures = [
        (
            batch(XAAL_B2, "nope/raw", &[(T0 + 120, 1.0)]),
            item(TEMPERATURE, "x", T0),
        ),
        (
            batch(XAAL_B2, TEMPERATURE, &[(T0 + 120, 1.0)]),
            item("nope/raw", "x", T0),
        ),
        (
            batch(
                XAAL_B2,
                TEMPERATURE,
                &[(T0 + 120, 1.0), (T0 + 180, f64::NAN)],
            ),
            item(TEMPERATURE, "x", T0),
        ),
    ];
    for (bad_batch, bad_item) in &failures {
        let err = store
            .publish(bad_batch, Some(bad_item), Some(&publication(99)), MAX_ITEMS)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnknownSeries { .. } | StoreError::NonFiniteValue { .. }
            ),
            "{err:?}"
        );
        assert_eq!(store.fanout_pending().await.unwrap(), waiting);
        assert_eq!(store.publication_for(sensor.id, 2).await.unwrap(), None);
        assert_eq!(temperature_readings(store.as_ref()).await, 2);
        assert_eq!(
            item_ids(&store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap()),
            ["i1"]
        );
    }
    assert!(store
        .items(XAAL_B2, "nope/raw", None, None)
        .await
        .unwrap()
        .is_empty());

    // Newest first, at most MAX_ITEMS kept per node.
    // The first of these is publication 2 (the failures took no number); a publish without
    // a publication (a batch the publisher does not announce) takes none either.
    for (n, id) in ["i2", "i3", "i4", "i5"].iter().enumerate() {
        let at = T0 + 60 * (n as i64 + 2);
        let announced = (n == 0).then(|| publication(2));
        let seq = store
            .publish(
                &batch(XAAL_B2, TEMPERATURE, &[(at, 21.0)]),
                Some(&item(TEMPERATURE, id, at)),
                announced.as_ref(),
                MAX_ITEMS,
            )
            .await
            .unwrap();
        assert_eq!(seq, (n == 0).then_some(2));
    }
    assert_eq!(
        store
            .publication_for(sensor.id, 2)
            .await
            .unwrap()
            .unwrap()
            .pubsub,
        publication(2).pubsub
    );
    assert_eq!(store.publication_for(sensor.id, 3).await.unwrap(), None);
    assert_eq!(store.fanout_pending().await.unwrap(), (2, waiting.1));
    assert_eq!(temperature_readings(store.as_ref()).await, 6);
    let items = store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap();
    assert_eq!(item_ids(&items), ["i5", "i4", "i3"]);
    assert_eq!(items[0], item(TEMPERATURE, "i5", T0 + 300));

    // Republishing an item id replaces the item, which becomes the newest; nothing is trimmed
    // that should not be.
    let replaced = Item {
        payload: "<quoalise xmlns=\"urn:quoalise:0\"><data>corrected</data></quoalise>".into(),
        ..item(TEMPERATURE, "i3", T0 + 400)
    };
    store
        .publish(
            &batch(XAAL_B2, TEMPERATURE, &[]),
            Some(&replaced),
            None,
            MAX_ITEMS,
        )
        .await
        .unwrap();
    let items = store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap();
    assert_eq!(item_ids(&items), ["i3", "i5", "i4"]);
    assert_eq!(items[0], replaced);
    assert_eq!(
        store.last_item(XAAL_B2, TEMPERATURE).await.unwrap(),
        Some(replaced.clone())
    );

    // Limits and ids.
    let some = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let listed = |ids: Option<Vec<String>>, limit: Option<usize>| {
        let store = store.clone();
        async move {
            let items = store
                .items(XAAL_B2, TEMPERATURE, ids.as_deref(), limit)
                .await
                .unwrap();
            item_ids(&items)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(None, Some(2)).await, ["i3", "i5"]);
    assert!(listed(None, Some(0)).await.is_empty());
    assert_eq!(listed(None, Some(usize::MAX)).await, ["i3", "i5", "i4"]);
    assert_eq!(
        listed(Some(some(&["i4", "i1", "i3", "missing"])), None).await,
        ["i3", "i4"]
    );
    assert_eq!(
        listed(Some(some(&["i4", "i5", "i3"])), Some(1)).await,
        ["i3"]
    );
    assert!(listed(Some(Vec::new()), None).await.is_empty());

    // Another node, and item ids that a naive encoding of the id list would break.
    let odd_ids = ["a\"b", "c\\d", "e'f", "g,h", "[]", "é\u{1}\n", "%_"];
    for (n, id) in odd_ids.iter().enumerate() {
        store
            .publish(
                &batch(XAAL_B2, TEMPERATURE, &[]),
                Some(&item(HUMIDITY, id, T0 + n as i64)),
                None,
                odd_ids.len(),
            )
            .await
            .unwrap();
    }
    for id in odd_ids {
        let found = store
            .items(XAAL_B2, HUMIDITY, Some(&some(&[id])), None)
            .await
            .unwrap();
        assert_eq!(item_ids(&found), [id]);
    }
    assert_eq!(
        store
            .items(XAAL_B2, HUMIDITY, None, None)
            .await
            .unwrap()
            .len(),
        odd_ids.len()
    );
    assert_eq!(
        item_ids(&store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap()),
        ["i3", "i5", "i4"]
    );
    // Publishing queued nothing in the outbox; the sensor waits for publications 1 and 2.
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.fanout_pending().await.unwrap(), (2, waiting.1));
}

/// Claiming, sending, leases, retries, discarding and purging. Runs after
/// [`queue_two_entries`], whose two entries are pending.
async fn outbox_story(store: Arc<dyn Store>, subs: &[Subscription]) {
    // What was queued before: claimed once, then not again while the claim lasts.
    let published = store.claim_outbox(NOW, usize::MAX, LEASE).await.unwrap();
    assert_eq!(published.len(), 2);
    assert!(store.claim_outbox(NOW, 10, LEASE).await.unwrap().is_empty());
    store.mark_sent(&entry_ids(&published), NOW).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.oldest_pending().await.unwrap(), None);
    assert!(store
        .claim_outbox(NOW + 10 * LEASE, 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    assert!(store.enqueue(&[]).await.unwrap().is_empty());
    let queued: Vec<NewOutboxEntry> = (0..5)
        .map(|n| entry((n % 2 == 0).then_some(subs[0].id), stanza(ALICE, 100 + n)))
        .collect();
    let ids = store.enqueue(&queued).await.unwrap();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > published[1].id);
    let expected: Vec<OutboxEntry> = ids
        .iter()
        .zip(&queued)
        .map(
            |(
                id,
                NewOutboxEntry {
                    subscription,
                    stanza,
                },
            )| OutboxEntry {
                id: *id,
                subscription: *subscription,
                stanza: stanza.clone(),
                attempts: 0,
                not_before: 0,
            },
        )
        .collect();
    assert_eq!(store.pending_count().await.unwrap(), 5);

    // Oldest first, `limit` at a time; claimed entries are not handed out twice.
    assert_eq!(
        store.claim_outbox(NOW, 2, LEASE).await.unwrap(),
        expected[..2]
    );
    assert_eq!(
        store.claim_outbox(NOW, 10, LEASE).await.unwrap(),
        expected[2..]
    );
    assert!(store.claim_outbox(NOW, 10, LEASE).await.unwrap().is_empty());
    assert!(store
        .claim_outbox(NOW + LEASE - 1, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.pending_count().await.unwrap(), 5);

    // Sent entries are done; the others' claims expire and they are claimed again (a crashed
    // or stuck sender).
    store.mark_sent(&ids[..2], NOW + 1).await.unwrap();
    store.mark_sent(&[], NOW + 1).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 3);
    assert_eq!(
        store.claim_outbox(NOW + LEASE, 10, LEASE).await.unwrap(),
        expected[2..]
    );
    assert!(store
        .claim_outbox(NOW + LEASE, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    // Marking sent again keeps the first time (see the purge below).
    store.mark_sent(&ids[..1], NOW + 500).await.unwrap();
    // Sent entries stay readable, for bounce handling.
    assert_eq!(
        store.outbox_entry(ids[1]).await.unwrap(),
        Some(expected[1].clone())
    );
    assert_eq!(store.outbox_entry(ids[4] + 1000).await.unwrap(), None);

    // The link dropped before writing 2 and 3: released, they are claimable again at once, with
    // no attempt counted. Sent (0, 1) and unknown ids are ignored; 4 keeps its claim.
    assert_eq!(store.release(&[]).await.unwrap(), 0);
    assert_eq!(
        store
            .release(&[ids[0], ids[1], ids[2], ids[3], ids[3], ids[4] + 1000])
            .await
            .unwrap(),
        2
    );
    // Already released (unclaimed): nothing more to release.
    assert_eq!(store.release(&ids[2..4]).await.unwrap(), 0);
    assert_eq!(store.pending_count().await.unwrap(), 3);
    assert_eq!(
        store.outbox_entry(ids[1]).await.unwrap(),
        Some(expected[1].clone())
    );
    assert_eq!(
        store.claim_outbox(NOW + LEASE, 10, LEASE).await.unwrap(),
        expected[2..4]
    );
    assert!(store
        .claim_outbox(NOW + LEASE, 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    // A bounce asking to wait: pending again, one attempt more, not before the given time.
    // Works on claimed and on sent entries.
    let later = NOW + 1000;
    assert!(store.retry_later(ids[2], later).await.unwrap());
    assert!(store.retry_later(ids[1], later).await.unwrap());
    assert!(!store.retry_later(ids[4] + 1000, later).await.unwrap());
    let retried = |i: usize, attempts| OutboxEntry {
        attempts,
        not_before: later,
        ..expected[i].clone()
    };
    assert_eq!(
        store.outbox_entry(ids[2]).await.unwrap(),
        Some(retried(2, 1))
    );
    assert_eq!(store.pending_count().await.unwrap(), 4);
    // Due ones only: 3 and 4 (their claim expired), not the retried ones yet.
    assert_eq!(
        store.claim_outbox(later - 1, 10, LEASE).await.unwrap(),
        expected[3..]
    );
    assert_eq!(
        store.claim_outbox(later, 10, LEASE).await.unwrap(),
        [retried(1, 1), retried(2, 1)]
    );
    assert!(store.retry_later(ids[2], later + 5).await.unwrap());
    assert_eq!(
        store.claim_outbox(later + 5, 10, LEASE).await.unwrap(),
        [OutboxEntry {
            not_before: later + 5,
            ..retried(2, 2)
        }]
    );
    store.mark_sent(&ids[1..], later + 6).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);

    // Dropping what a subscription still has pending, claimed or not; sent entries and other
    // subscriptions' stay.
    let (gone, kept) = (subs[1].id, subs[2].id);
    let more = store
        .enqueue(&[
            entry(Some(gone), stanza("x", 1)),
            entry(Some(kept), stanza("x", 2)),
            entry(Some(gone), stanza("x", 3)),
            entry(Some(gone), stanza("x", 4)),
            entry(None, stanza("x", 5)),
        ])
        .await
        .unwrap();
    let claimed = store.claim_outbox(later + 10, 1, LEASE).await.unwrap();
    assert_eq!(entry_ids(&claimed), [more[0]]);
    store.mark_sent(&more[3..4], later + 10).await.unwrap();
    assert_eq!(store.discard_pending(gone).await.unwrap(), 2);
    assert_eq!(store.discard_pending(gone).await.unwrap(), 0);
    assert_eq!(store.outbox_entry(more[0]).await.unwrap(), None);
    assert!(store.outbox_entry(more[3]).await.unwrap().is_some());
    assert_eq!(
        entry_ids(&store.claim_outbox(later + 10, 10, LEASE).await.unwrap()),
        [more[1], more[4]]
    );
    store
        .mark_sent(&[more[1], more[4]], later + 20)
        .await
        .unwrap();

    // Purging sent entries by age: `sent_at < before`.
    assert_eq!(store.purge_sent(NOW).await.unwrap(), 0);
    // The first two (NOW) and ids[0] (NOW + 1, not NOW + 500).
    assert_eq!(store.purge_sent(NOW + 2).await.unwrap(), 3);
    assert_eq!(store.outbox_entry(ids[0]).await.unwrap(), None);
    assert!(store.outbox_entry(ids[1]).await.unwrap().is_some());
    // ids[1..5] at later + 6, more[3] at later + 10, more[1] and more[4] at later + 20.
    assert_eq!(store.purge_sent(later + 20).await.unwrap(), 5);
    assert_eq!(store.purge_sent(i64::MAX).await.unwrap(), 2);
    assert_eq!(store.purge_sent(i64::MAX).await.unwrap(), 0);
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

/// What a delivery task had in hand when its process died.
struct Crash {
    /// Outbox entries queued, the first two of them claimed.
    queued: Vec<OutboxEntry>,
    /// Subscriptions claimed to be sent a publication, the third one left unclaimed.
    claimed: Vec<Claimed>,
}

/// The claim id of the delivery task that dies.
const DEAD_CLAIM: i64 = 666;

/// Entries queued and a publication made, some of each claimed by a sender that then dies:
/// the state a crash leaves. Runs after [`add_subscriptions`]. See [`check_after_crash`].
async fn crash_with_claims(store: Arc<dyn Store>) -> Crash {
    let ids = store
        .enqueue(&[
            entry(None, stanza("crash@example.org", 1)),
            entry(None, stanza("crash@example.org", 2)),
            entry(None, stanza("crash@example.org", 3)),
        ])
        .await
        .unwrap();
    let claimed = store.claim_outbox(NOW, 2, LEASE).await.unwrap();
    assert_eq!(entry_ids(&claimed), ids[..2]);
    let mut queued = claimed;
    queued.extend(store.outbox_entry(ids[2]).await.unwrap());

    // Three subscribers of the load curve (push, evil, orgx), two of them claimed.
    let seq = store
        .publish(
            &batch(PRM, LOAD_CURVE, &[(T0, 1.0)]),
            None,
            Some(&publication(1)),
            MAX_ITEMS,
        )
        .await
        .unwrap();
    assert_eq!(seq, Some(1));
    let claimed = store.claim_fanout(NOW, 2, LEASE, DEAD_CLAIM).await.unwrap();
    assert_eq!(claimed.len(), 2);
    Crash { queued, claimed }
}

/// After a restart: nothing queued or published is lost; what the dead sender claimed goes
/// out once its claim expires, the rest at once.
async fn check_after_crash(store: Arc<dyn Store>, crash: &Crash) {
    let queued = &crash.queued;
    assert_eq!(store.pending_count().await.unwrap(), 3);
    assert_eq!(
        store.claim_outbox(NOW, 10, 10 * LEASE).await.unwrap(),
        queued[2..]
    );
    assert_eq!(
        store.claim_outbox(NOW + LEASE, 10, LEASE).await.unwrap(),
        queued[..2]
    );
    store
        .mark_sent(&entry_ids(queued), NOW + LEASE)
        .await
        .unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.purge_sent(i64::MAX).await.unwrap(), 3);

    // The publication still waits for its three subscribers; the one the dead sender had not
    // claimed is claimed at once, the two others once the dead claim expires, where they were.
    assert_eq!(store.fanout_pending().await.unwrap().0, 3);
    let restart = DEAD_CLAIM + 1;
    let unclaimed = store
        .claim_fanout(NOW, 10, 10 * LEASE, restart)
        .await
        .unwrap();
    assert_eq!(unclaimed.len(), 1);
    let dead: Vec<i64> = crash.claimed.iter().map(|c| c.subscription.id).collect();
    assert!(
        !dead.contains(&unclaimed[0].subscription.id),
        "{unclaimed:?}"
    );
    assert_eq!((unclaimed[0].delivered, unclaimed[0].head), (0, 1));
    assert!(store
        .claim_fanout(NOW + LEASE - 1, 10, LEASE, restart + 1)
        .await
        .unwrap()
        .is_empty());
    let reclaimed = store
        .claim_fanout(NOW + LEASE, 10, LEASE, restart + 1)
        .await
        .unwrap();
    assert_eq!(reclaimed, crash.claimed);
    let advances: Vec<Advance> = unclaimed
        .iter()
        .map(|c| (c, restart))
        .chain(reclaimed.iter().map(|c| (c, restart + 1)))
        .map(|(c, claim)| Advance {
            subscription: c.subscription.id,
            seq: c.head,
            claim,
            done: true,
        })
        .collect();
    store.advance(&advances).await.unwrap();
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert!(store
        .claim_fanout(NOW + 10 * LEASE, 10, LEASE, restart + 2)
        .await
        .unwrap()
        .is_empty());
}

/// Delivery tasks of several instances claiming at once get disjoint sets that cover every
/// entry.
async fn concurrent_claims(stores: Vec<Arc<dyn Store>>) {
    const ENTRIES: usize = 2000;
    let queued: Vec<NewOutboxEntry> = (0..ENTRIES)
        .map(|n| entry(None, stanza("many@example.org", n)))
        .collect();
    let ids = stores[0].enqueue(&queued).await.unwrap();
    let claimers = stores.into_iter().map(|store| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_outbox(NOW, 37, LEASE).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            let batch_ids = entry_ids(&batch);
            store.mark_sent(&batch_ids, NOW).await.unwrap();
            mine.extend(batch_ids);
        }
    });
    let claimed = futures::future::join_all(claimers).await;
    let mut seen = BTreeSet::new();
    // How the entries split between claimers depends on scheduling (under load one may take
    // them all); what must hold is that no entry is taken twice and none is missed.
    for mine in &claimed {
        for id in mine {
            assert!(seen.insert(*id), "entry {id} claimed twice");
        }
    }
    assert_eq!(seen, ids.into_iter().collect());
}

/// The seqs of publications, in the order read.
fn seqs(publications: &[Publication]) -> Vec<i64> {
    publications.iter().map(|p| p.seq).collect()
}

/// Where a claimed subscription stands: (subscription, delivered, head).
fn standing(claimed: &[Claimed]) -> Vec<(i64, i64, i64)> {
    claimed
        .iter()
        .map(|c| (c.subscription.id, c.delivered, c.head))
        .collect()
}

/// The report of a link that wrote everything a claim handed out: each cursor at the head it
/// was claimed with, the claim over.
fn all_written(claimed: &[Claimed], claim: i64) -> Vec<Advance> {
    claimed
        .iter()
        .map(|c| Advance {
            subscription: c.subscription.id,
            seq: c.head,
            claim,
            done: true,
        })
        .collect()
}

/// Publishes publication `n` (see [`publication`]) with one reading of `n` on `series` of
/// `usage_point`; returns its seq.
async fn publish_numbered(store: &dyn Store, usage_point: &str, series: &str, n: i64) -> i64 {
    store
        .publish(
            &batch(usage_point, series, &[(T0 + n * HALF_HOUR, n as f64)]),
            None,
            Some(&publication(n)),
            1,
        )
        .await
        .unwrap()
        .unwrap()
}

/// Cursors over publications: numbering per series, where a new subscription starts, claims
/// and their leases, advancing (forward only, ending only one's own claim), reading
/// publications, settling, pruning, and the count of what waits.
async fn fanout_story(store: Arc<dyn Store>) {
    // Claim ids of successive delivery rounds.
    const FIRST: i64 = 101;
    const SECOND: i64 = 102;
    const THIRD: i64 = 103;
    const FOURTH: i64 = 104;
    const FIFTH: i64 = 105;
    const SIXTH: i64 = 106;
    const LATE: i64 = 107;
    let up = usage_point("99999000000002", "demo", "Fanned-out meter");
    store
        .declare_usage_point(
            &up,
            &[
                series(&up.id, LOAD_CURVE, "Load curve"),
                series(&up.id, DAILY, "Daily"),
                series(&up.id, PRODUCTION, "Production"),
            ],
        )
        .await
        .unwrap();
    let publish = |path: &'static str, n: i64| {
        let (store, id) = (store.clone(), up.id.clone());
        async move { publish_numbered(store.as_ref(), &id, path, n).await }
    };
    let claim = |now: i64, claim: i64| {
        let store = store.clone();
        async move { store.claim_fanout(now, 10, LEASE, claim).await.unwrap() }
    };
    let published_at = |subscription: i64, seq: i64| {
        let store = store.clone();
        async move {
            store
                .publication_for(subscription, seq)
                .await
                .unwrap()
                .unwrap()
                .published_at
        }
    };

    // Nothing published: nothing to claim, settle or prune.
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert!(claim(NOW, FIRST).await.is_empty());
    assert_eq!(store.settle_fanout().await.unwrap(), 0);
    assert_eq!(store.prune_publications(i64::MAX).await.unwrap(), 0);

    // Numbered per series: 1, 2 on the load curve before anyone subscribes, 1 on the daily
    // series. A publish without a publication takes no number. Nobody is there to receive
    // them, and settling forgets both series.
    assert_eq!(publish(LOAD_CURVE, 1).await, 1);
    assert_eq!(publish(LOAD_CURVE, 2).await, 2);
    assert_eq!(publish(DAILY, 101).await, 1);
    let unannounced = batch(&up.id, LOAD_CURVE, &[(T0, 0.5)]);
    assert_eq!(
        store.publish(&unannounced, None, None, 1).await.unwrap(),
        None
    );
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert!(claim(NOW, FIRST).await.is_empty());
    assert_eq!(store.settle_fanout().await.unwrap(), 2);

    // A subscription starts at its series' last publication: nothing old comes to it.
    let subscribe = |kind, path: &'static str, jid: &'static str, subid: &'static str| {
        let (store, id) = (store.clone(), up.id.clone());
        async move { store.subscribe(kind, &id, path, jid, subid).await.unwrap() }
    };
    let a = subscribe(PubSub, LOAD_CURVE, ALICE, "a").await;
    let b = subscribe(Push, LOAD_CURVE, "bob@example.org", "b").await;
    let c = subscribe(PubSub, DAILY, ALICE, "c").await;
    assert!(claim(NOW, FIRST).await.is_empty());
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));

    // Three more on the load curve, one on the daily series: what waits is 3 + 3 + 1
    // notifications, the oldest the load curve's third. A second later than the second, so
    // that the time of the oldest waiting is not that of the last one delivered.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for n in 3..=5 {
        assert_eq!(publish(LOAD_CURVE, n).await, n);
    }
    assert_eq!(publish(DAILY, 102).await, 2);
    let load_3 = published_at(a.id, 3).await;
    let oldest = load_3.min(published_at(c.id, 2).await);
    assert_eq!(store.fanout_pending().await.unwrap(), (7, Some(oldest)));

    // Claimed: the subscriptions behind, series together then by id, with where each stands.
    let claimed = claim(NOW, FIRST).await;
    let series_of = |sub: &Subscription| {
        claimed
            .iter()
            .find(|c| c.subscription.id == sub.id)
            .map(|c| c.series_id)
            .unwrap()
    };
    let (load, daily) = (series_of(&a), series_of(&c));
    assert_ne!(load, daily);
    let claimed_as = |sub: &Subscription, series_id, delivered, head| Claimed {
        subscription: sub.clone(),
        series_id,
        delivered,
        head,
    };
    let mut expected = vec![
        claimed_as(&a, load, 2, 5),
        claimed_as(&b, load, 2, 5),
        claimed_as(&c, daily, 1, 2),
    ];
    expected.sort_by_key(|c| (c.series_id, c.subscription.id));
    assert_eq!(claimed, expected);

    // Held by that claim until its lease passes, whoever asks.
    assert!(claim(NOW, SECOND).await.is_empty());
    assert!(claim(NOW + LEASE - 1, SECOND).await.is_empty());

    // What delivery reads: publications after a cursor, in order, at most `limit`, byte for
    // byte; those before every cursor are still stored.
    let after_2 = store.publications(load, 2, 10).await.unwrap();
    assert_eq!(seqs(&after_2), [3, 4, 5]);
    assert_eq!(
        after_2[0],
        Publication {
            seq: 3,
            published_at: load_3,
            pubsub: publication(3).pubsub,
            push: publication(3).push,
        }
    );
    assert_eq!(seqs(&store.publications(load, 0, 2).await.unwrap()), [1, 2]);
    assert_eq!(seqs(&store.publications(load, 3, 1).await.unwrap()), [4]);
    assert!(store.publications(load, 5, 10).await.unwrap().is_empty());
    assert!(store.publications(load, 0, 0).await.unwrap().is_empty());
    let daily_all = store.publications(daily, 0, usize::MAX).await.unwrap();
    assert_eq!(seqs(&daily_all), [1, 2]);
    assert_eq!(daily_all[1].push, publication(102).push);
    // A bounce names a subscription and a seq: the publication of that subscription's series.
    let bounced = |subscription: i64, seq: i64| {
        let store = store.clone();
        async move {
            store
                .publication_for(subscription, seq)
                .await
                .unwrap()
                .map(|p| p.pubsub)
        }
    };
    assert_eq!(bounced(c.id, 2).await, Some(publication(102).pubsub));
    assert_eq!(bounced(a.id, 2).await, Some(publication(2).pubsub));
    assert_eq!(bounced(a.id, 6).await, None);
    assert_eq!(bounced(c.id + 1000, 1).await, None);

    // The link wrote a's 3 and 4, its claim goes on; b's claim is handed back unsent (seq 0:
    // released, not moved); c is done. b is claimable again at once, where it was.
    let report = |subscription: i64, seq: i64, claim: i64, done: bool| Advance {
        subscription,
        seq,
        claim,
        done,
    };
    store
        .advance(&[
            report(a.id, 4, FIRST, false),
            report(b.id, 0, FIRST, true),
            report(c.id, 2, FIRST, true),
        ])
        .await
        .unwrap();
    assert_eq!(store.fanout_pending().await.unwrap(), (1 + 3, Some(load_3)));
    assert_eq!(claim(NOW + 1, SECOND).await, [claimed_as(&b, load, 2, 5)]);
    // Cursors move forward only: late reports of older publications change nothing. Nor does
    // subscribing again. No report at all is nothing to do.
    store
        .advance(&[
            report(b.id, 1, SECOND, false),
            report(a.id, 3, FIRST, false),
        ])
        .await
        .unwrap();
    store.advance(&[]).await.unwrap();
    assert_eq!(subscribe(PubSub, LOAD_CURVE, ALICE, "a-again").await, a);
    assert_eq!(store.fanout_pending().await.unwrap(), (1 + 3, Some(load_3)));

    // a's lease passes before its claimer ends it: another claim takes a where the link left
    // it (b's lease, taken a second later, still holds).
    assert_eq!(
        claim(NOW + LEASE, THIRD).await,
        [claimed_as(&a, load, 4, 5)]
    );
    // The stale claimer's report moves the cursor (what it wrote is written) but does not end
    // the newer claim: with a publication more, a is still held.
    store
        .advance(&[report(a.id, 5, FIRST, true)])
        .await
        .unwrap();
    assert_eq!(publish(LOAD_CURVE, 6).await, 6);
    assert!(claim(NOW + LEASE, FOURTH).await.is_empty());
    // Its own claimer ends it: a comes back for the new publication only.
    store
        .advance(&[report(a.id, 0, THIRD, true)])
        .await
        .unwrap();
    assert_eq!(
        claim(NOW + LEASE, FOURTH).await,
        [claimed_as(&a, load, 5, 6)]
    );
    assert_eq!(store.fanout_pending().await.unwrap(), (1 + 4, Some(load_3)));

    // Settling forgets the daily series (nobody behind) and keeps the load curve, whose two
    // subscriptions behind are both claimed: they are found again once their leases pass.
    assert_eq!(store.settle_fanout().await.unwrap(), 1);
    assert_eq!(store.settle_fanout().await.unwrap(), 0);
    assert_eq!(
        standing(&claim(NOW + 3 * LEASE, FIFTH).await),
        [(a.id, 5, 6), (b.id, 2, 6)]
    );
    // A forgotten series comes back with its next publication.
    assert_eq!(publish(DAILY, 103).await, 3);
    assert_eq!(
        claim(NOW + 3 * LEASE, SIXTH).await,
        [claimed_as(&c, daily, 2, 3)]
    );

    // Pruning deletes what every cursor of a series has passed, published before `before`:
    // nothing was published before the first publication; then the load curve's 1 and 2 (b
    // is at 2), the daily series' 1 and 2 (c is at 2), and all of a series nobody subscribes
    // to. What waits is untouched.
    assert_eq!(publish(PRODUCTION, 201).await, 1);
    assert_eq!(publish(PRODUCTION, 202).await, 2);
    let first_at = store.publications(load, 0, 1).await.unwrap()[0].published_at;
    assert_eq!(store.prune_publications(first_at).await.unwrap(), 0);
    let waiting = store.fanout_pending().await.unwrap();
    assert_eq!(waiting, (1 + 4 + 1, Some(load_3)));
    assert_eq!(store.prune_publications(i64::MAX).await.unwrap(), 2 + 2 + 2);
    assert_eq!(store.prune_publications(i64::MAX).await.unwrap(), 0);
    assert_eq!(
        seqs(&store.publications(load, 0, 10).await.unwrap()),
        [3, 4, 5, 6]
    );
    assert_eq!(seqs(&store.publications(daily, 0, 10).await.unwrap()), [3]);
    assert_eq!(bounced(a.id, 2).await, None);
    assert_eq!(store.fanout_pending().await.unwrap(), waiting);

    // Everything written: nobody behind, every publication prunable, every series settled.
    store
        .advance(&[
            report(a.id, 6, FIFTH, true),
            report(b.id, 6, FIFTH, true),
            report(c.id, 3, SIXTH, true),
        ])
        .await
        .unwrap();
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert!(claim(NOW + 10 * LEASE, LATE).await.is_empty());
    assert_eq!(store.prune_publications(i64::MAX).await.unwrap(), 4 + 1);
    // Load curve, daily series, production.
    assert_eq!(store.settle_fanout().await.unwrap(), 3);

    // Unsubscribed or removed, a subscription leaves the claims and the count; a report about
    // it is ignored.
    assert_eq!(publish(LOAD_CURVE, 7).await, 7);
    assert_eq!(store.fanout_pending().await.unwrap().0, 2);
    assert_eq!(
        store
            .unsubscribe(Push, &up.id, Some(LOAD_CURVE), "bob@example.org", None)
            .await
            .unwrap(),
        std::slice::from_ref(&b)
    );
    assert_eq!(
        store.remove_subscription(a.id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert!(claim(NOW + 10 * LEASE, LATE).await.is_empty());
    store.advance(&[report(a.id, 7, LATE, true)]).await.unwrap();
    assert_eq!(store.settle_fanout().await.unwrap(), 1);
    assert_eq!(store.prune_publications(i64::MAX).await.unwrap(), 1);

    // The readings of every publish are kept, announced or not.
    assert_eq!(
        store
            .count_readings(&up.id, LOAD_CURVE, i64::MIN, i64::MAX)
            .await
            .unwrap(),
        8
    );
}

/// A node of 1000 subscriptions: a publication is one row, however many subscribe, and
/// claims in pages of 256 cover every subscription exactly once. The rows are counted on a
/// connection of `db`'s own, except in memory, where none reaches them.
async fn fanout_at_scale(store: Arc<dyn Store>, db: &Db) {
    const SUBSCRIBERS: usize = 1000;
    const PAGE: usize = 256;
    let up = usage_point("99999000000004", "demo", "Popular meter");
    store
        .declare_usage_point(&up, &[series(&up.id, LOAD_CURVE, "Load curve")])
        .await
        .unwrap();
    let mut subs = BTreeSet::new();
    for n in 0..SUBSCRIBERS {
        let jid = format!("app{n}@example.org/quoalise");
        let sub = store
            .subscribe(PubSub, &up.id, LOAD_CURVE, &jid, &format!("s{n}"))
            .await
            .unwrap();
        subs.insert(sub.id);
    }
    let rows_before = db.count_rows("publications").await;
    for n in 1..=3 {
        assert_eq!(
            publish_numbered(store.as_ref(), &up.id, LOAD_CURVE, n).await,
            n
        );
    }
    let rows_after = db.count_rows("publications").await;
    assert_eq!(
        rows_after
            .zip(rows_before)
            .map(|(after, before)| after - before),
        db.reaches_rows().then_some(3)
    );
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(
        store.fanout_pending().await.unwrap().0,
        3 * SUBSCRIBERS as u64
    );

    let mut pages = Vec::new();
    let mut claimed = BTreeSet::new();
    let mut series_id = None;
    for claim in 1.. {
        let page = store.claim_fanout(NOW, PAGE, LEASE, claim).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        for c in &page {
            assert_eq!((c.delivered, c.head), (0, 3), "{c:?}");
            assert!(claimed.insert(c.subscription.id), "{c:?} claimed twice");
            series_id = Some(c.series_id);
        }
        assert!(page
            .windows(2)
            .all(|w| w[0].subscription.id < w[1].subscription.id));
        store.advance(&all_written(&page, claim)).await.unwrap();
    }
    assert_eq!(pages, [PAGE, PAGE, PAGE, SUBSCRIBERS - 3 * PAGE]);
    assert_eq!(claimed, subs);
    assert_eq!(
        seqs(
            &store
                .publications(series_id.unwrap(), 0, usize::MAX)
                .await
                .unwrap()
        ),
        [1, 2, 3]
    );
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
    assert_eq!(store.settle_fanout().await.unwrap(), 1);
}

/// A fan-out read as delivery reads it: 40 publications of about 1 KiB to 100 subscribers,
/// then claims of 256 subscriptions, each sent at most [`DEPTH`] publications after its cursor
/// (read once per series and cursor) and advanced. Every subscriber gets every publication
/// once, in order, in two rounds. (Speed is measured by the benchmarks, not here.)
async fn fan_out(store: Arc<dyn Store>) {
    const SUBSCRIBERS: usize = 100;
    const PUBLISHES: i64 = 40;
    let up = usage_point("99999000000001", "demo", "Demo meter");
    store
        .declare_usage_point(&up, &[series(&up.id, LOAD_CURVE, "Load curve")])
        .await
        .unwrap();
    let mut received: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for n in 0..SUBSCRIBERS {
        let jid = format!("app{n}@example.org/quoalise");
        let sub = store
            .subscribe(PubSub, &up.id, LOAD_CURVE, &jid, &format!("sub{n}"))
            .await
            .unwrap();
        received.insert(sub.id, Vec::new());
    }
    // A notification of a 30-minute reading is about 1 KiB.
    let payload = format!(
        "<quoalise xmlns='urn:quoalise:0'><data><meta>{}</meta><sensml/></data></quoalise>",
        "x".repeat(600)
    );
    let templates = |p: i64| NewPublication {
        pubsub: format!("<message id='{p}' type='headline'><event>{payload}</event></message>"),
        push: format!("<message id='{p}'>{payload}</message>"),
    };
    for p in 1..=PUBLISHES {
        let at = T0 + p * HALF_HOUR;
        let item = Item {
            usage_point: up.id.clone(),
            series: LOAD_CURVE.into(),
            item_id: format!("item-{p}"),
            published_at: at,
            payload: payload.clone(),
        };
        let seq = store
            .publish(
                &batch(&up.id, LOAD_CURVE, &[(at, 100.0)]),
                Some(&item),
                Some(&templates(p)),
                10,
            )
            .await
            .unwrap();
        assert_eq!(seq, Some(p));
    }
    assert_eq!(
        store.fanout_pending().await.unwrap().0,
        SUBSCRIBERS as u64 * PUBLISHES as u64
    );
    let (mut rounds, mut reads) = (0, 0);
    for claim in 1.. {
        let claimed = store.claim_fanout(NOW, 256, LEASE, claim).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        rounds += 1;
        let mut read: BTreeMap<(i64, i64), Vec<Publication>> = BTreeMap::new();
        let mut advances = Vec::new();
        for c in &claimed {
            let publications = match read.entry((c.series_id, c.delivered)) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => {
                    reads += 1;
                    new.insert(
                        store
                            .publications(c.series_id, c.delivered, DEPTH)
                            .await
                            .unwrap(),
                    )
                }
            };
            let last = publications.last().unwrap();
            assert_eq!(last.pubsub, templates(last.seq).pubsub);
            received
                .get_mut(&c.subscription.id)
                .unwrap()
                .extend(seqs(publications));
            advances.push(Advance {
                subscription: c.subscription.id,
                seq: last.seq,
                claim,
                done: true,
            });
        }
        store.advance(&advances).await.unwrap();
    }
    // 32, then 8; all subscribers stand at the same place, so one read serves each round.
    assert_eq!((rounds, reads), (2, 2));
    let all: Vec<i64> = (1..=PUBLISHES).collect();
    assert!(received.values().all(|got| *got == all), "{received:?}");
    assert_eq!(store.fanout_pending().await.unwrap(), (0, None));
}

/// Instances sharing a database publish on the same series at once, and claim at once: the
/// publications are numbered without gap or repeat, claims never hand one subscription to two
/// instances while it is leased, and once everything claimed is advanced (with some instances
/// publishing and settling meanwhile) nobody is behind.
async fn concurrent_fanout_claims(stores: Vec<Arc<dyn Store>>) {
    const PER_SERIES: usize = 150;
    const EACH: i64 = 5;
    let first = stores[0].clone();
    let up = usage_point("99999000000003", "demo", "Shared meter");
    declare_curve_and_daily(first.as_ref(), &up).await;
    let mut subs = BTreeSet::new();
    for path in [LOAD_CURVE, DAILY] {
        for n in 0..PER_SERIES {
            let jid = format!("app{n}@example.org");
            let sub = first
                .subscribe(PubSub, &up.id, path, &jid, &jid)
                .await
                .unwrap();
            subs.insert(sub.id);
        }
    }
    // The claim ids of instance `i`.
    let claim_id = |i: usize, k: i64| (i as i64 + 1) * 1_000_000 + k;

    // Every instance publishes on both series at once.
    let publishers = stores.iter().enumerate().map(|(i, store)| {
        let (store, id) = (store.clone(), up.id.clone());
        async move {
            let mut mine = Vec::new();
            for k in 0..EACH {
                let n = i as i64 * EACH + k;
                for path in [LOAD_CURVE, DAILY] {
                    mine.push((path, publish_numbered(store.as_ref(), &id, path, n).await));
                }
            }
            mine
        }
    });
    let total = stores.len() as i64 * EACH;
    let mut numbers: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (path, seq) in futures::future::join_all(publishers).await.concat() {
        numbers.entry(path).or_default().push(seq);
    }
    for seqs in numbers.values_mut() {
        seqs.sort_unstable();
        assert_eq!(*seqs, (1..=total).collect::<Vec<_>>());
    }

    // Every instance claims at once, without advancing: disjoint sets, all behind covered.
    let claimers = stores.iter().enumerate().map(|(i, store)| {
        let store = store.clone();
        async move {
            let mut mine = Vec::new();
            for k in 0.. {
                let claim = claim_id(i, k);
                let page = store.claim_fanout(NOW, 37, LEASE, claim).await.unwrap();
                if page.is_empty() {
                    return mine;
                }
                mine.extend(page.into_iter().map(|c| (claim, c)));
            }
            mine
        }
    });
    let claimed = futures::future::join_all(claimers).await;
    let mut seen = BTreeSet::new();
    for (claim, c) in claimed.iter().flatten() {
        assert!(
            seen.insert(c.subscription.id),
            "subscription {} claimed twice (again by claim {claim})",
            c.subscription.id
        );
        assert_eq!((c.delivered, c.head), (0, total), "{c:?}");
    }
    assert_eq!(seen, subs);

    // Each instance reports what it claimed as written, while the first publishes more and
    // the others claim, deliver and settle until nothing is left.
    let more = 3;
    let publishing = std::sync::atomic::AtomicBool::new(true);
    let deliverers = stores
        .iter()
        .zip(claimed)
        .enumerate()
        .map(|(i, (store, mine))| {
            let (store, id, publishing) = (store.clone(), up.id.clone(), &publishing);
            async move {
                for (claim, c) in &mine {
                    store
                        .advance(&all_written(std::slice::from_ref(c), *claim))
                        .await
                        .unwrap();
                }
                if i == 0 {
                    for n in 0..more {
                        publish_numbered(store.as_ref(), &id, LOAD_CURVE, 1000 + n).await;
                        tokio::task::yield_now().await;
                    }
                    publishing.store(false, std::sync::atomic::Ordering::SeqCst);
                }
                for k in 1000.. {
                    let done_publishing = !publishing.load(std::sync::atomic::Ordering::SeqCst);
                    let claim = claim_id(i, k);
                    let page = store.claim_fanout(NOW, 37, LEASE, claim).await.unwrap();
                    if page.is_empty() {
                        store.settle_fanout().await.unwrap();
                        if done_publishing {
                            return;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    store.advance(&all_written(&page, claim)).await.unwrap();
                }
            }
        });
    futures::future::join_all(deliverers).await;
    assert_eq!(first.fanout_pending().await.unwrap(), (0, None));

    // Nobody was left behind unseen (a series settled too early would hide its subscribers
    // from claims and count alike): one publication more finds every cursor at the head.
    publish_numbered(first.as_ref(), &up.id, LOAD_CURVE, 2000).await;
    publish_numbered(first.as_ref(), &up.id, DAILY, 2000).await;
    let mut behind = BTreeSet::new();
    for k in 0.. {
        let claim = claim_id(99, k);
        let page = first.claim_fanout(NOW, 256, LEASE, claim).await.unwrap();
        if page.is_empty() {
            break;
        }
        for c in &page {
            assert_eq!(c.delivered, c.head - 1, "{c:?}");
            behind.insert(c.subscription.id);
        }
        first.advance(&all_written(&page, claim)).await.unwrap();
    }
    assert_eq!(behind, subs);
}

/// What [`usage_point_story`] leaves behind; checked again after a restart.
async fn check_usage_points_kept(store: Arc<dyn Store>) {
    assert_eq!(
        ids(&store.usage_points(None).await.unwrap()),
        [PRM, DEMO_A3, XAAL_B2, DEMO_A1]
    );
    let linky = store.usage_point(PRM).await.unwrap().unwrap();
    assert_eq!(linky.name, "Linky (garage)");
    assert_eq!(linky.source, "enedis");
    assert!(!store.usage_point(DEMO_A3).await.unwrap().unwrap().online);
    assert_eq!(store.series(PRM).await.unwrap().len(), 3);
    assert_eq!(store.series(XAAL_B2).await.unwrap().len(), 4);
}

/// What [`readings_story`] leaves behind; checked again after a restart.
async fn check_readings_kept(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .count_readings(PRM, LOAD_CURVE, i64::MIN, i64::MAX)
            .await
            .unwrap(),
        5
    );
    let year = year_batch();
    assert_eq!(
        store
            .readings(PRM, PRODUCTION, i64::MIN, i64::MAX, None)
            .await
            .unwrap(),
        year.readings
    );
}

/// What [`audit_story`] leaves behind; checked again after a restart.
async fn check_audit_kept(store: Arc<dyn Store>) {
    assert_eq!(store.audit_entries(0, 100).await.unwrap().len(), 3);
}

/// What [`subscription_story`] leaves behind; checked again after a restart.
async fn check_subscriptions_kept(store: Arc<dyn Store>) {
    // Every subscription resumes as it was, without anyone subscribing again.
    let subs: Vec<(SubscriptionKind, String, String, String, String)> = store
        .all_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.kind, s.usage_point, s.series, s.jid, s.subid))
        .collect();
    let expected = [
        (Push, PRM, LOAD_CURVE, ALICE, "p-1"),
        (PubSub, PRM, LOAD_CURVE, "alice@example.org.evil", "s-evil"),
        (PubSub, PRM, LOAD_CURVE, "alice@example.orgx/res", "s-x"),
        (PubSub, XAAL_B2, TEMPERATURE, ALICE_PHONE, "s-t"),
    ]
    .map(|(k, up, series, jid, subid)| {
        (
            k,
            up.to_owned(),
            series.to_owned(),
            jid.to_owned(),
            subid.to_owned(),
        )
    });
    assert_eq!(subs, expected);
}

/// What [`publish_story`] leaves behind; checked again after a restart: the items, and the
/// two publications still waiting for the sensor's subscription.
async fn check_publish_kept(store: Arc<dyn Store>) {
    assert_eq!(
        item_ids(&store.items(XAAL_B2, TEMPERATURE, None, None).await.unwrap()),
        ["i3", "i5", "i4"]
    );
    let (waiting, oldest) = store.fanout_pending().await.unwrap();
    assert_eq!(waiting, 2);
    let sensor = store.subscribers(XAAL_B2, TEMPERATURE).await.unwrap()[0].id;
    let first = store.publication_for(sensor, 1).await.unwrap().unwrap();
    assert_eq!(oldest, Some(first.published_at));
    assert_eq!(first.pubsub, publication(1).pubsub);
}

/// What [`grant_story`] leaves behind; checked again after a restart.
async fn check_grants_kept(store: Arc<dyn Store>) {
    let subjects: Vec<String> = store
        .grants()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.subject)
        .collect();
    assert_eq!(subjects, ["billing@example.org", "carol@example.org"]);
}

/// The consent chain: pages, single-use states, consents with their grants, revocation.
async fn consent_story(store: Arc<dyn Store>) {
    let request = ConsentRequest {
        id: "req-1".into(),
        source: "enedis".into(),
        app_jid: "app@example.org".into(),
        name: "Elec Expert".into(),
        logo_url: Some("https://example.org/logo.png".into()),
        description: "<p>Nos experts…</p>".into(),
        redirect_uri: None,
        created_at: 1_000,
    };
    store.add_consent_request(&request).await.unwrap();
    assert!(
        store.add_consent_request(&request).await.is_err(),
        "ids are unique"
    );
    assert_eq!(store.consent_request("req-1").await.unwrap(), Some(request));
    assert_eq!(store.consent_request("req-2").await.unwrap(), None);
    assert_eq!(
        store
            .count_consent_requests("app@example.org")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_consent_requests("other@example.org")
            .await
            .unwrap(),
        0
    );

    let state = |name: &str, expires_at: i64| OAuthState {
        state: name.into(),
        request_id: "req-1".into(),
        duration: "P1Y".into(),
        app_state: Some("app & state".into()),
        redirect_uri: Some("https://app.example.org/back?x=1".into()),
        created_at: 1_000,
        expires_at,
    };
    store
        .add_oauth_state(&state("s-live", 5_000), 8)
        .await
        .unwrap();
    store
        .add_oauth_state(&state("s-old", 2_000), 8)
        .await
        .unwrap();
    assert_eq!(
        store.take_oauth_state("s-old", 3_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store.take_oauth_state("s-live", 3_000).await.unwrap(),
        Some(state("s-live", 5_000))
    );
    assert_eq!(
        store.take_oauth_state("s-live", 3_000).await.unwrap(),
        None,
        "single use"
    );

    // Of one page's states only the `keep` newest stay, the one just added included.
    for (i, name) in ["k1", "k2", "k3"].into_iter().enumerate() {
        let mut s = state(name, 5_000);
        s.created_at = 1_100 + i as i64;
        store.add_oauth_state(&s, 2).await.unwrap();
    }
    assert_eq!(
        store.take_oauth_state("k1", 3_000).await.unwrap(),
        None,
        "the oldest made room"
    );
    for name in ["k3", "k2"] {
        assert!(store.take_oauth_state(name, 3_000).await.unwrap().is_some());
    }
    // Adding a state purges the expired ones, whatever page they belong to.
    store
        .add_oauth_state(&state("s-short", 2_000), 8)
        .await
        .unwrap();
    let mut later = state("s-later", 9_000);
    later.created_at = 4_000;
    store.add_oauth_state(&later, 8).await.unwrap();
    assert_eq!(
        store.take_oauth_state("s-short", 0).await.unwrap(),
        None,
        "purged when s-later was added"
    );

    let now = quoalise_component::time::now();
    let consent = Consent {
        id: None,
        source: "enedis".into(),
        usage_point: PRM.into(),
        app_jid: "app@example.org".into(),
        purpose: "Nos experts…".into(),
        request_id: "req-1".into(),
        reference: "auth-42".into(),
        begins_at: now - 10,
        expires_at: now + 3_600,
        grant_id: None,
    };
    let mut consent_grant = grant("app@example.org", PRM, ANY, GrantOrigin::Consent);
    consent_grant.valid_until = Some(consent.expires_at);
    let (consent_id, grant_id) = store
        .record_consent(&consent, &consent_grant)
        .await
        .unwrap();
    let expired = Consent {
        begins_at: now - 7_200,
        expires_at: now - 3_600,
        ..consent.clone()
    };
    store
        .record_consent(&expired, &consent_grant)
        .await
        .unwrap();
    let active = store.active_consents("enedis", now).await.unwrap();
    assert_eq!(
        active,
        [Consent {
            id: Some(consent_id),
            grant_id: Some(grant_id),
            ..consent.clone()
        }]
    );
    assert!(store.active_consents("xaal", now).await.unwrap().is_empty());
    assert!(store
        .grants_for("app@example.org")
        .await
        .unwrap()
        .iter()
        .any(|g| g.id == Some(grant_id) && g.origin == GrantOrigin::Consent));

    let revoked = store.revoke_consents(PRM).await.unwrap();
    assert_eq!(revoked.len(), 2);
    assert!(store
        .active_consents("enedis", now)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .grants_for("app@example.org")
        .await
        .unwrap()
        .iter()
        .all(|g| g.origin != GrantOrigin::Consent));
    assert!(store.revoke_consents(PRM).await.unwrap().is_empty());
}

/// The upstream call log and the per-day cache.
async fn upstream_story(store: Arc<dyn Store>) {
    // Not a foreign key: a call is recorded whatever becomes of its consent.
    let consent_id = 7;
    let call = UpstreamCall {
        id: None,
        source: "enedis".into(),
        api: "courbe_de_charge_consommation".into(),
        usage_point: Some(PRM.into()),
        range_start: Some("2026-09-29".into()),
        range_end: Some("2026-10-01".into()),
        consent_id: Some(consent_id),
        requester: Some("app@example.org".into()),
        started_at: 10_000,
        status: None,
        code: None,
    };
    let first = store.start_upstream_call(&call).await.unwrap();
    let second = store
        .start_upstream_call(&UpstreamCall {
            started_at: 10_001,
            ..call.clone()
        })
        .await
        .unwrap();
    store
        .finish_upstream_call(first, "429", Some("900807"))
        .await
        .unwrap();
    let calls = store.upstream_calls("enedis", 10_000).await.unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id, Some(first));
    assert_eq!(calls[0].status.as_deref(), Some("429"));
    assert_eq!(calls[0].code.as_deref(), Some("900807"));
    assert_eq!(calls[1].id, Some(second));
    assert_eq!(calls[1].status, None, "recorded before the answer");
    assert_eq!(
        store.upstream_calls("enedis", 10_001).await.unwrap().len(),
        1
    );

    let days = |list: &[&str]| list.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    let api = "courbe_de_charge_consommation";
    store
        .mark_fetched(PRM, api, &days(&["2026-09-30", "2026-09-29"]), 10_000)
        .await
        .unwrap();
    store
        .mark_fetched(PRM, api, &days(&["2026-09-30", "2026-10-05"]), 10_001)
        .await
        .unwrap();
    assert_eq!(
        store
            .fetched_days(PRM, api, "2026-09-29", "2026-10-05")
            .await
            .unwrap(),
        days(&["2026-09-29", "2026-09-30"])
    );
    assert!(store
        .fetched_days(PRM, "consommation_quotidienne", "2026-09-01", "2026-11-01")
        .await
        .unwrap()
        .is_empty());
}

/// After a row with an unknown origin appears, grant listings that include it fail loudly.
async fn check_corrupt_grant_is_reported(store: Arc<dyn Store>) {
    for result in [
        store.grants().await,
        store.grants_for("mallory@example.org").await,
    ] {
        match result {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("bogus"), "{message}"),
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
    }
    assert_eq!(
        store.grants_for("carol@example.org").await.unwrap().len(),
        1
    );
}

// ---- Setups: the rows a story needs from other areas, written without checking them ----

/// The usage points and series the stories use, as [`usage_point_story`] leaves them (the
/// details it checks do not matter here).
async fn declare_usage_points(store: &Arc<dyn Store>) {
    let prm_series = [
        series(PRM, LOAD_CURVE, "Load curve"),
        series(PRM, DAILY, "Daily consumption"),
        series(PRM, PRODUCTION, "Production"),
    ];
    store
        .declare_usage_point(&usage_point(PRM, "enedis", "Linky"), &prm_series)
        .await
        .unwrap();
    let sensor_series: Vec<Series> = [
        "temperature/raw",
        "Temperature/raw",
        "humidity/raw",
        "temperature-2/raw",
    ]
    .iter()
    .map(|p| series(XAAL_B2, p, p))
    .collect();
    store
        .declare_usage_point(&usage_point(XAAL_B2, "xaal", XAAL_B2), &sensor_series)
        .await
        .unwrap();
    for (id, source) in [(DEMO_A1, "demo"), (DEMO_A3, "demo")] {
        store
            .declare_usage_point(&usage_point(id, source, id), &[])
            .await
            .unwrap();
    }
}

/// The subscriptions [`subscription_story`] leaves, in its order: push, evil, orgx, sensor (the
/// one subscriber of [`TEMPERATURE`]). Runs after [`declare_usage_points`].
async fn add_subscriptions(store: &Arc<dyn Store>) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for (kind, up, series, jid, subid) in [
        (Push, PRM, LOAD_CURVE, ALICE, "p-1"),
        (PubSub, PRM, LOAD_CURVE, "alice@example.org.evil", "s-evil"),
        (PubSub, PRM, LOAD_CURVE, "alice@example.orgx/res", "s-x"),
        (PubSub, XAAL_B2, TEMPERATURE, ALICE_PHONE, "s-t"),
    ] {
        subs.push(store.subscribe(kind, up, series, jid, subid).await.unwrap());
    }
    subs
}

/// Two entries pending, as delivery queues them: the last item for the subscriber of
/// [`TEMPERATURE`], a notice for nobody.
async fn queue_two_entries(store: &Arc<dyn Store>, subs: &[Subscription]) {
    store
        .enqueue(&[
            entry(Some(subs[3].id), stanza(&subs[3].jid, 0)),
            entry(None, stanza("admin@example.org", 99)),
        ])
        .await
        .unwrap();
}

/// Carol's config grant in force and a config grant revoked since, as [`grant_story`] leaves
/// them for the audit log to refer to.
async fn add_audited_grants(store: &Arc<dyn Store>) -> GrantIds {
    let bob = grant("bob@example.org", PRM, LOAD_CURVE, GrantOrigin::Config);
    store
        .replace_config_grants(std::slice::from_ref(&bob))
        .await
        .unwrap();
    let revoked = grant_ids(&store.grants().await.unwrap())[0];
    let carol = grant("carol@example.org", DEMO_A1, ANY, GrantOrigin::Config);
    store
        .replace_config_grants(std::slice::from_ref(&carol))
        .await
        .unwrap();
    let carol = grant_ids(&store.grants().await.unwrap())[0];
    GrantIds { carol, revoked }
}

// ---- Command sessions ----

/// Unix seconds at which the session stories start.
const T_SESSIONS: i64 = 1_800_000_000;

/// At most 2 sessions per requester and 4 in all; idle ones last 600 s, 60 s above 3 open.
const SESSION_LIMITS: SessionLimits = SessionLimits {
    per_requester: 2,
    total: 4,
    ttl: 600,
    pressure_ttl: 60,
};

/// A session of `owner` (a full JID) at the demo source on `get_history`.
fn session<'a>(id: &'a str, owner: &'a str, state: Option<&'a str>) -> NewSession<'a> {
    NewSession {
        id,
        node: "get_history",
        owner,
        requester: owner.split('/').next().unwrap(),
        target: "demo@quoalise.example",
        state,
    }
}

fn key<'a>(id: &'a str, owner: &'a str) -> SessionKey<'a> {
    SessionKey {
        id,
        owner,
        target: "demo@quoalise.example",
        node: "get_history",
    }
}

async fn open(store: &dyn Store, s: NewSession<'_>, now: i64) -> Opened {
    store.open_session(&s, &SESSION_LIMITS, now).await.unwrap()
}

async fn take(store: &dyn Store, k: SessionKey<'_>, now: i64) -> Taken {
    store.take_session(&k, &SESSION_LIMITS, now).await.unwrap()
}

/// Opening within the limits, taking by the owner only and once, expiry (shorter under
/// pressure), and what the limits refuse.
async fn session_story(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let t = T_SESSIONS;
    const PAGING: &str = r#"{"input":[["identifier",["urn:dev:prm:1_x"]]],"cursor":"c1"}"#;
    assert_eq!(store.session_count().await.unwrap(), 0);

    // Resources of one account share its limit.
    assert_eq!(
        open(store, session("a1", "alice@x/phone", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("a2", "alice@x/tablet", Some(PAGING)), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("a3", "alice@x/third", None), t).await,
        Opened::RequesterFull
    );
    // Then the table's.
    assert_eq!(
        open(store, session("b1", "bob@x/r", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("b2", "bob@x/r", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("c1", "carol@x/r", None), t).await,
        Opened::TableFull { open: 4 }
    );
    // A per-requester refusal comes first, whatever the table.
    assert_eq!(
        open(store, session("a3", "alice@x/phone", None), t).await,
        Opened::RequesterFull
    );
    assert_eq!(store.session_count().await.unwrap(), 4);

    // Only the owner takes a session, at its target, on its node; the others leave it as is.
    assert_eq!(
        take(store, key("a2", "alice@x/phone"), t).await,
        Taken::Unknown
    );
    assert_eq!(take(store, key("a2", "alice@x"), t).await, Taken::Unknown);
    assert_eq!(
        take(store, key("a2", "mallory@x/tablet"), t).await,
        Taken::Unknown
    );
    let elsewhere = SessionKey {
        target: "other@quoalise.example",
        ..key("a2", "alice@x/tablet")
    };
    assert_eq!(take(store, elsewhere, t).await, Taken::Unknown);
    let other_node = SessionKey {
        node: "get_daily",
        ..key("a2", "alice@x/tablet")
    };
    assert_eq!(take(store, other_node, t).await, Taken::Unknown);
    assert_eq!(
        take(store, key("nope", "alice@x/tablet"), t).await,
        Taken::Unknown
    );
    assert_eq!(store.session_count().await.unwrap(), 4);

    // The owner takes it with its state, once. (4 open: under pressure, 30 s is not idle enough.)
    assert_eq!(
        take(store, key("a2", "alice@x/tablet"), t + 30).await,
        Taken::Live {
            state: Some(PAGING.to_owned())
        }
    );
    assert_eq!(
        take(store, key("a2", "alice@x/tablet"), t + 30).await,
        Taken::Unknown
    );
    assert_eq!(
        take(store, key("a1", "alice@x/phone"), t + 30).await,
        Taken::Live { state: None }
    );
    assert_eq!(store.session_count().await.unwrap(), 2);

    // Two open of four: no pressure, an idle session lasts its ttl, to the second.
    assert_eq!(
        take(store, key("b1", "bob@x/r"), t + 599).await,
        Taken::Live { state: None }
    );
    assert_eq!(
        take(store, key("b2", "bob@x/r"), t + 600).await,
        Taken::Expired
    );
    assert_eq!(
        take(store, key("b2", "bob@x/r"), t + 600).await,
        Taken::Unknown
    );
    assert_eq!(store.session_count().await.unwrap(), 0);

    // A session put back (the next page) is touched anew and counts again.
    let t = t + 1000;
    assert_eq!(
        open(store, session("p", "alice@x/phone", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        take(store, key("p", "alice@x/phone"), t + 500).await,
        Taken::Live { state: None }
    );
    assert_eq!(
        open(store, session("p", "alice@x/phone", Some(PAGING)), t + 500).await,
        Opened::Opened
    );
    assert_eq!(
        take(store, key("p", "alice@x/phone"), t + 1099).await,
        Taken::Live {
            state: Some(PAGING.to_owned())
        }
    );

    // A flood fills the table; under pressure (more than 3 of 4 open) idle sessions go after
    // 60 s: a take finds its own expired, an opening deletes them all first.
    let t = t + 2000;
    for (id, owner) in [
        ("f1", "f@x/1"),
        ("f2", "f@x/2"),
        ("g1", "g@x/1"),
        ("g2", "g@x/2"),
    ] {
        assert_eq!(
            open(store, session(id, owner, None), t).await,
            Opened::Opened
        );
    }
    assert_eq!(
        open(store, session("h1", "h@x/1", None), t + 59).await,
        Opened::TableFull { open: 4 }
    );
    assert_eq!(
        take(store, key("f1", "f@x/1"), t + 60).await,
        Taken::Expired
    );
    assert_eq!(store.session_count().await.unwrap(), 3);
    // Three open is no pressure: the others are live for now, and the table has room.
    assert_eq!(
        open(store, session("h1", "h@x/1", None), t + 60).await,
        Opened::Opened
    );
    assert_eq!(store.session_count().await.unwrap(), 4);
    assert_eq!(
        open(store, session("h2", "h@x/2", None), t + 119).await,
        Opened::Opened
    );
    // With the table full again, f2, g1 and g2 (idle 119 s) are gone, h1 (59 s) is not.
    assert_eq!(store.session_count().await.unwrap(), 2);
    assert_eq!(
        take(store, key("g1", "g@x/1"), t + 119).await,
        Taken::Unknown
    );
    assert_eq!(
        take(store, key("h1", "h@x/1"), t + 119).await,
        Taken::Live { state: None }
    );

    // A requester's expired sessions make room for its new one.
    let t = t + 10_000;
    assert_eq!(
        open(store, session("k1", "k@x/1", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("k2", "k@x/1", None), t).await,
        Opened::Opened
    );
    assert_eq!(
        open(store, session("k3", "k@x/1", None), t + 599).await,
        Opened::RequesterFull
    );
    assert_eq!(
        open(store, session("k3", "k@x/1", None), t + 600).await,
        Opened::Opened
    );
    assert_eq!(store.session_count().await.unwrap(), 1);

    // Ids are unique: a duplicate is an error, not a second session.
    let duplicate = store
        .open_session(&session("k3", "k@x/2", None), &SESSION_LIMITS, t + 600)
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Database(_))),
        "{duplicate:?}"
    );
    assert_eq!(store.session_count().await.unwrap(), 1);
}

/// What a restart (or another instance) finds: the session left open, with its state.
async fn check_sessions_kept(store: Arc<dyn Store>) {
    let t = T_SESSIONS + 11_000;
    assert_eq!(store.session_count().await.unwrap(), 1);
    assert_eq!(
        take(store.as_ref(), key("k3", "k@x/1"), t).await,
        Taken::Live { state: None }
    );
}

/// Instances opening sessions at the same moment never exceed a limit together, and of
/// concurrent takes of one session exactly one gets it.
async fn concurrent_sessions(stores: Vec<Arc<dyn Store>>) {
    let limits = SessionLimits {
        per_requester: 5,
        total: 12,
        ttl: 600,
        pressure_ttl: 600,
    };
    let t = T_SESSIONS;
    let mut tasks = Vec::new();
    // 40 openings per instance: 8 requesters of 5 resources each, every one of them at once.
    for (n, store) in stores.iter().enumerate() {
        for k in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let owner = format!("user{}@x/i{n}r{k}", k % 8);
                let id = format!("s{n}.{k}");
                let opened = store
                    .open_session(&session(&id, &owner, None), &limits, t)
                    .await
                    .unwrap();
                (owner, opened)
            }));
        }
    }
    let mut opened = BTreeMap::<String, usize>::new();
    let mut refused = 0;
    for task in tasks {
        let (owner, result) = task.await.unwrap();
        match result {
            Opened::Opened => {
                let requester = owner.split('/').next().unwrap().to_owned();
                *opened.entry(requester).or_default() += 1;
            }
            Opened::RequesterFull | Opened::TableFull { .. } => refused += 1,
        }
    }
    assert_eq!(opened.values().sum::<usize>(), 12, "{opened:?}");
    assert!(opened.values().all(|n| *n <= 5), "{opened:?}");
    assert_eq!(refused, stores.len() * 40 - 12);
    assert_eq!(stores[0].session_count().await.unwrap(), 12);

    // One requester alone, on a table with room: its own limit holds across instances.
    let limits = SessionLimits {
        total: 10_000,
        ..limits
    };
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for k in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("solo{n}.{k}");
                store
                    .open_session(&session(&id, &format!("solo@x/{n}.{k}"), None), &limits, t)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut solo = 0;
    for task in tasks {
        if task.await.unwrap() == Opened::Opened {
            solo += 1;
        }
    }
    assert_eq!(solo, 5);

    // A stage sent twice, to every instance at once, is taken once.
    assert_eq!(
        stores[0]
            .open_session(&session("twice", "twice@x/r", Some("{}")), &limits, t)
            .await
            .unwrap(),
        Opened::Opened
    );
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..5 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .take_session(&key("twice", "twice@x/r"), &limits, t + 1)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut live = 0;
    for task in tasks {
        match task.await.unwrap() {
            Taken::Live { state } => {
                assert_eq!(state.as_deref(), Some("{}"));
                live += 1;
            }
            other => assert_eq!(other, Taken::Unknown),
        }
    }
    assert_eq!(live, 1);
}

// ---- Where the stories run ----

/// A new database of one backend, for the stories of one area.
enum Db {
    /// A file in a temp dir, which holds the databases of several instances too.
    SqliteFile { dir: tempfile::TempDir, url: String },
    /// One database in memory. Opening it again gives the same store: another open would be
    /// another, empty database, and no second instance can reach this one.
    SqliteMemory(Arc<dyn Store>),
    /// A database on a cluster of its own.
    Postgres { cluster: PgCluster, url: String },
}

impl Db {
    async fn sqlite_file() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("quoalise.db").display());
        Db::SqliteFile { dir, url }
    }

    async fn sqlite_memory() -> Db {
        Db::SqliteMemory(store::open("sqlite::memory:").await.unwrap())
    }

    async fn postgres() -> Db {
        let cluster = PgCluster::start();
        let url = cluster.create_database("store_story").await;
        Db::Postgres { cluster, url }
    }

    /// The store as the component opens it at a start, and again after a restart.
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Db::SqliteFile { url, .. } | Db::Postgres { url, .. } => {
                store::open(url).await.unwrap()
            }
            Db::SqliteMemory(store) => store.clone(),
        }
    }

    /// `n` instances sharing a new, empty database `name` of the same backend; none in memory.
    async fn instances(&self, name: &str, n: usize) -> Vec<Arc<dyn Store>> {
        let url = match self {
            Db::SqliteFile { dir, .. } => {
                format!(
                    "sqlite://{}",
                    dir.path().join(format!("{name}.db")).display()
                )
            }
            Db::Postgres { cluster, .. } => cluster.create_database(name).await,
            Db::SqliteMemory(_) => return Vec::new(),
        };
        let mut stores = Vec::new();
        for _ in 0..n {
            stores.push(store::open(&url).await.unwrap());
        }
        stores
    }

    /// A new, empty database `name` of the same backend.
    async fn fresh(&self, name: &str) -> Arc<dyn Store> {
        match self {
            Db::SqliteMemory(_) => store::open("sqlite::memory:").await.unwrap(),
            _ => self.instances(name, 1).await.remove(0),
        }
    }

    /// Runs `sql` on a connection of its own, as a hand edit would; false in memory, which no
    /// other connection reaches.
    async fn hand_edit(&self, sql: &str) -> bool {
        match self {
            Db::SqliteFile { url, .. } => {
                let mut conn = SqliteConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                true
            }
            Db::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                true
            }
            Db::SqliteMemory(_) => false,
        }
    }

    /// How many rows `table` holds, read on a connection of its own; `None` in memory, which
    /// no other connection reaches.
    async fn count_rows(&self, table: &str) -> Option<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Db::SqliteFile { url, .. } => {
                let mut conn = SqliteConnection::connect(url).await.unwrap();
                let count = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                Some(count)
            }
            Db::Postgres { url, .. } => {
                let mut conn = PgConnection::connect(url).await.unwrap();
                let count = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                Some(count)
            }
            Db::SqliteMemory(_) => None,
        }
    }

    /// Whether [`Db::count_rows`] can read the tables.
    fn reaches_rows(&self) -> bool {
        !matches!(self, Db::SqliteMemory(_))
    }

    /// How many instances the stories of several instances run: PostgreSQL is the backend
    /// meant to be shared.
    fn instance_count(&self) -> usize {
        match self {
            Db::Postgres { .. } => 3,
            _ => 2,
        }
    }
}

// ---- The areas: each story, then what a restart finds ----

async fn usage_points_area(db: &Db) {
    usage_point_story(db.open().await).await;
    check_usage_points_kept(db.open().await).await;
}

async fn readings_area(db: &Db) {
    let store = db.open().await;
    declare_usage_points(&store).await;
    readings_story(store).await;
    check_readings_kept(db.open().await).await;
}

async fn grants_area(db: &Db) {
    grant_story(db.open().await).await;
    let store = db.open().await;
    check_grants_kept(store.clone()).await;
    if db.hand_edit(BOGUS_GRANT).await {
        check_corrupt_grant_is_reported(store).await;
    }
    if let [a, b, ..] = &db.instances("grant_instances", 2).await[..] {
        concurrent_config_reconciliation(a.clone(), b.clone()).await;
    }
}

async fn audit_area(db: &Db) {
    let store = db.open().await;
    let grants = add_audited_grants(&store).await;
    audit_story(store, grants).await;
    check_audit_kept(db.open().await).await;
    audit_chain_story(db).await;
    let stores = db.instances("audit_chain", 4).await;
    if !stores.is_empty() {
        concurrent_audit_appends(stores).await;
    }
    audit_views_story(db.open().await).await;
}

/// Reading the log of one usage point or one requester over `[from, to)`, paged by id, with
/// each entry's grant. Uses usage points and requesters of its own, so that what the other
/// audit stories left does not matter.
async fn audit_views_story(store: Arc<dyn Store>) {
    const T: i64 = 1_900_000_000;
    let mut consent = grant("app@example.org", "V-1", ANY, GrantOrigin::Consent);
    consent.purpose = Some("energy advice".into());
    let consent = store.add_grant(&consent).await.unwrap();
    let other = grant("other@example.org", "V-2", LOAD_CURVE, GrantOrigin::Admin);
    let other = store.add_grant(&other).await.unwrap();
    let entry = |requester: &str, usage_point: &str, grant_id: Option<i64>, at: i64| AuditEntry {
        usage_point: usage_point.into(),
        ..audit_entry(requester, grant_id, at)
    };
    let entries = [
        entry("app@example.org", "V-1", Some(consent), T),
        entry("other@example.org", "V-2", Some(other), T + 1),
        entry("boss@example.org", "V-1", None, T + 2),
        // Appended late with an earlier `at`: the order is the chain's (id), not `at`.
        entry("app@example.org", "V-1", Some(consent), T - 10),
        entry("app@example.org", "V-1", Some(consent), T + 100),
    ];
    let mut ids = Vec::new();
    for e in &entries {
        ids.push(store.append_audit(e).await.unwrap());
    }
    // The consent grant, revoked since: the log still names its origin and purpose.
    assert!(store.revoke_grant(consent).await.unwrap().is_some());
    let record = |i: usize| AuditRecord {
        id: ids[i],
        entry: entries[i].clone(),
        grant: match entries[i].grant_id {
            Some(g) if g == consent => Some((GrantOrigin::Consent, Some("energy advice".into()))),
            Some(_) => Some((GrantOrigin::Admin, None)),
            None => None,
        },
    };
    let filter =
        |usage_point: Option<&str>, requester: Option<&str>, from: i64, to: i64| AuditFilter {
            usage_point: usage_point.map(Into::into),
            requester: requester.map(Into::into),
            from,
            to,
        };
    let find = |f: AuditFilter, after: i64, limit: usize| {
        let store = store.clone();
        async move { store.find_audit(&f, after, limit).await.unwrap() }
    };

    // By usage point, all requesters, in id order; `to` excluded, `from` included.
    let v1 = filter(Some("V-1"), None, T - 10, T + 100);
    assert_eq!(
        find(v1.clone(), 0, 10).await,
        vec![record(0), record(2), record(3)]
    );
    // Paged by id.
    assert_eq!(find(v1.clone(), 0, 2).await, vec![record(0), record(2)]);
    assert_eq!(find(v1.clone(), ids[2], 2).await, vec![record(3)]);
    assert!(find(v1.clone(), ids[3], 2).await.is_empty());
    assert!(find(v1, 0, 0).await.is_empty());
    // By requester, every usage point; by both.
    assert_eq!(
        find(filter(None, Some("app@example.org"), T, T + 101), 0, 10).await,
        vec![record(0), record(4)]
    );
    assert_eq!(
        find(
            filter(Some("V-2"), Some("other@example.org"), T, T + 2),
            0,
            10
        )
        .await,
        vec![record(1)]
    );
    assert!(find(
        filter(Some("V-2"), Some("app@example.org"), T, T + 2),
        0,
        10
    )
    .await
    .is_empty());
    // An empty range, and a range before everything.
    assert!(find(filter(Some("V-1"), None, T, T), 0, 10)
        .await
        .is_empty());
    assert!(find(filter(Some("V-1"), None, 0, T - 10), 0, 10)
        .await
        .is_empty());
    // No filter: every entry of the range, the other stories' too (theirs are at 1.8e9).
    assert_eq!(
        find(filter(None, None, T - 10, i64::MAX), 0, usize::MAX).await,
        (0..5).map(record).collect::<Vec<_>>()
    );
}

async fn verdict(store: &Arc<dyn Store>) -> Verdict {
    quoalise_component::audit::verify(store.as_ref())
        .await
        .unwrap()
}

/// The hash chain: intact after appends; an edit, a reorder, a deletion made by hand in the
/// database each caught at the entry where it is; entries written without a hash (as before the
/// chain) chained by `seal_audit`.
async fn audit_chain_story(db: &Db) {
    let store = db.open().await;
    for i in 0..5 {
        store
            .append_audit(&audit_entry("carol@example.org", None, 1_800_000_100 + i))
            .await
            .unwrap();
    }
    let Verdict::Intact {
        entries,
        head: Some((head_id, head_hash)),
    } = verdict(&store).await
    else {
        panic!("the chain of appended entries does not verify");
    };
    assert_eq!(entries, 8, "the story's 3 entries and these 5");
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some((head_id, head_hash))
    );
    let ids: Vec<i64> = store
        .audit_chain(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let (k, next) = (ids[4], ids[5]);
    if !db
        .hand_edit(&format!(
            "UPDATE audit_log SET records = records + 1 WHERE id = {k}"
        ))
        .await
    {
        return; // in memory: nobody else can reach the database
    }
    assert_eq!(
        verdict(&store).await,
        Verdict::Broken {
            entries: 4,
            at: Break::Content { id: k }
        }
    );
    db.hand_edit(&format!(
        "UPDATE audit_log SET records = records - 1 WHERE id = {k}"
    ))
    .await;
    assert!(matches!(
        verdict(&store).await,
        Verdict::Intact { entries: 8, .. }
    ));
    // Reordered: two entries exchange their ids, contents and hashes moving with them.
    let swap = |a: i64, b: i64| {
        format!("UPDATE audit_log SET id = -1 WHERE id = {a}; ")
            + &format!("UPDATE audit_log SET id = {a} WHERE id = {b}; ")
            + &format!("UPDATE audit_log SET id = {b} WHERE id = -1")
    };
    for statement in swap(k, next).split("; ") {
        db.hand_edit(statement).await;
    }
    assert!(matches!(
        verdict(&store).await,
        Verdict::Broken { entries: 4, at: Break::Link { id, .. } } if id == k
    ));
    for statement in swap(k, next).split("; ") {
        db.hand_edit(statement).await;
    }
    assert!(matches!(
        verdict(&store).await,
        Verdict::Intact { entries: 8, .. }
    ));
    // Deleted: the next entry no longer links.
    db.hand_edit(&format!("DELETE FROM audit_log WHERE id = {k}"))
        .await;
    assert!(matches!(
        verdict(&store).await,
        Verdict::Broken { entries: 4, at: Break::Link { id, .. } } if id == next
    ));
    // Entries without hashes (written before the chain existed): sealed, the chain goes on.
    db.hand_edit("DELETE FROM audit_log").await;
    for i in 0..3 {
        db.hand_edit(&format!(
            "INSERT INTO audit_log (at, requester, usage_point, series, range_start, range_end, \
             command, records) VALUES ({i}, 'old@example.org', 'up', 's', 0, 1, 'get_history', 1)"
        ))
        .await;
    }
    assert!(matches!(
        verdict(&store).await,
        Verdict::Broken {
            entries: 0,
            at: Break::Unsealed { .. }
        }
    ));
    assert_eq!(store.seal_audit().await.unwrap(), 3);
    assert_eq!(store.seal_audit().await.unwrap(), 0);
    store
        .append_audit(&audit_entry("carol@example.org", None, 1_800_000_200))
        .await
        .unwrap();
    assert!(matches!(
        verdict(&store).await,
        Verdict::Intact { entries: 4, .. }
    ));

    // Many at once (a delivery claim): one chain still.
    let batch: Vec<AuditEntry> = (0..1200)
        .map(|i| audit_entry(&format!("s{i}@example.org"), None, 1_800_000_300 + i))
        .collect();
    store.append_audits(&batch).await.unwrap();
    store.append_audits(&[]).await.unwrap();
    let Verdict::Intact {
        entries: 1204,
        head: Some((head_id, _)),
    } = verdict(&store).await
    else {
        panic!("a bulk append breaks the chain");
    };
    let tail = store.audit_entries(head_id - 1200, 2000).await.unwrap();
    assert_eq!(
        tail.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        batch,
        "in order, as given"
    );

    // Retention: what is older than the cut goes, a checkpoint vouches for it; the rest still
    // verifies, and a deletion at the new start by hand is still caught.
    let first_kept = tail[0].0;
    let checkpoint = store
        .prune_audit(1_800_000_250, 1_800_100_000)
        .await
        .unwrap()
        .expect("four entries are older");
    assert_eq!(checkpoint.pruned, 4);
    assert_eq!(checkpoint.last_id, first_kept - 1);
    let chain = store.audit_chain(0, 10).await.unwrap();
    assert_eq!(chain[0].id, first_kept);
    assert_eq!(
        chain[0].prev_hash.as_deref(),
        Some(checkpoint.last_hash.as_str())
    );
    let Verdict::Intact {
        entries: 1201,
        head: Some((head, _)),
    } = verdict(&store).await
    else {
        panic!("a pruned log does not verify");
    };
    let last = store.audit_chain(head - 1, 1).await.unwrap();
    assert_eq!(Checkpoint::of(&last[0].entry), Some(checkpoint));
    assert_eq!(
        store
            .prune_audit(1_800_000_250, 1_800_100_000)
            .await
            .unwrap(),
        None
    );
    db.hand_edit(&format!("DELETE FROM audit_log WHERE id = {first_kept}"))
        .await;
    assert_eq!(
        verdict(&store).await,
        Verdict::Broken {
            entries: 1200,
            at: Break::Unattested { id: first_kept + 1 }
        }
    );
}

/// Instances appending at the same moment keep one chain, in id order.
async fn concurrent_audit_appends(stores: Vec<Arc<dyn Store>>) {
    let tasks = stores.iter().enumerate().map(|(i, store)| {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                let entry = audit_entry(&format!("r{i}@example.org"), None, n);
                if n % 5 == 0 {
                    // Bulk appends (delivery) interleave with single ones.
                    store.append_audits(&[entry.clone(), entry]).await.unwrap();
                } else {
                    store.append_audit(&entry).await.unwrap();
                }
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
    assert!(matches!(
        verdict(&stores[0]).await,
        Verdict::Intact { entries: 120, .. }
    ));
}

async fn subscriptions_area(db: &Db) {
    let store = db.open().await;
    declare_usage_points(&store).await;
    subscription_story(store).await;
    check_subscriptions_kept(db.open().await).await;
}

async fn publish_area(db: &Db) {
    let store = db.open().await;
    declare_usage_points(&store).await;
    let subs = add_subscriptions(&store).await;
    publish_story(store, &subs).await;
    check_publish_kept(db.open().await).await;
}

async fn outbox_area(db: &Db) {
    let store = db.open().await;
    declare_usage_points(&store).await;
    let subs = add_subscriptions(&store).await;
    queue_two_entries(&store, &subs).await;
    outbox_story(store.clone(), &subs).await;
    // The process dies with notifications queued, some claimed but not sent.
    let crash = crash_with_claims(store).await;
    check_after_crash(db.open().await, &crash).await;

    let stores = db.instances("claims", db.instance_count()).await;
    if !stores.is_empty() {
        concurrent_claims(stores).await;
    }
}

/// A group of ingested batches in one transaction (the HTTP ingest's group commit): only what
/// is new is published, each publication numbered after the last of its series, items kept and
/// trimmed, readings stored, audit entries appended; all or nothing.
async fn publish_new_story(store: Arc<dyn Store>) {
    let up = usage_point("99999000000003", "home", "Posted meter");
    declare_curve_and_daily(store.as_ref(), &up).await;
    let posted = |path: &str, readings: &[(i64, f64)]| batch(&up.id, path, readings);
    // What `prepare` was asked, and the item and notifications it answers (named by call).
    let asked = std::sync::Mutex::new(Vec::<(usize, Vec<(i64, f64)>)>::new());
    let prepare = |index: usize, new: &Batch| {
        let mut calls = asked.lock().unwrap();
        calls.push((index, pairs(&new.readings)));
        let n = i64::try_from(calls.len()).unwrap();
        let mut item = item(&new.series, &format!("new-{n}"), NOW + n);
        item.usage_point = up.id.clone();
        (item, publication(n))
    };
    let ingest_entry = |records: i64| AuditEntry {
        requester: "pv-roof@quoalise.localhost".into(),
        usage_point: up.id.clone(),
        series: LOAD_CURVE.into(),
        start: T0,
        end: T0 + 4 * HALF_HOUR,
        grant_id: None,
        command: "ingest".into(),
        records,
        at: NOW,
    };
    assert_eq!(
        publish_numbered(store.as_ref(), &up.id, LOAD_CURVE, 0).await,
        1
    );
    let sub = store
        .subscribe(PubSub, &up.id, LOAD_CURVE, ALICE, "new")
        .await
        .unwrap();
    let audit_before = store.audit_head().await.unwrap().map_or(0, |h| h.0);

    let counts = store
        .publish_new(
            &[
                posted(LOAD_CURVE, &[(T0 + HALF_HOUR, 1.0)]),
                posted(DAILY, &[(T0 + 2 * HALF_HOUR, 2.0)]),
                // Stored before, with this value: a retry.
                posted(LOAD_CURVE, &[(T0, 0.0), (T0 + 3 * HALF_HOUR, 3.0)]),
                // The first batch again, in the same group.
                posted(LOAD_CURVE, &[(T0 + HALF_HOUR, 1.0)]),
            ],
            &prepare,
            10,
            &[ingest_entry(4), ingest_entry(1)],
        )
        .await
        .unwrap();
    assert_eq!(counts, [1, 1, 1, 0]);
    assert_eq!(
        std::mem::take(&mut *asked.lock().unwrap()),
        [
            (0, vec![(T0 + HALF_HOUR, 1.0)]),
            (1, vec![(T0 + 2 * HALF_HOUR, 2.0)]),
            (2, vec![(T0 + 3 * HALF_HOUR, 3.0)]),
        ]
    );
    let readings = |path: &'static str| {
        let (store, id) = (store.clone(), up.id.clone());
        async move { pairs(&store.readings(&id, path, 0, i64::MAX, None).await.unwrap()) }
    };
    assert_eq!(
        readings(LOAD_CURVE).await,
        vec![(T0, 0.0), (T0 + HALF_HOUR, 1.0), (T0 + 3 * HALF_HOUR, 3.0)]
    );
    assert_eq!(readings(DAILY).await, vec![(T0 + 2 * HALF_HOUR, 2.0)]);
    let items = store.items(&up.id, LOAD_CURVE, None, None).await.unwrap();
    assert_eq!(item_ids(&items), ["new-3", "new-1"]);
    // The subscription, at publication 1 when it came, has 2 and 3 of its series to receive,
    // in batch order.
    assert_eq!(store.fanout_pending().await.unwrap().0, 2);
    for (seq, call) in [(2, 1), (3, 3)] {
        let stored = store.publication_for(sub.id, seq).await.unwrap().unwrap();
        assert_eq!(stored.pubsub, publication(call).pubsub);
        assert_eq!(stored.push, publication(call).push);
    }
    let audited = store.audit_entries(audit_before, 10).await.unwrap();
    let audited: Vec<_> = audited.into_iter().map(|(_, e)| e).collect();
    assert_eq!(audited, [ingest_entry(4), ingest_entry(1)]);

    // A changed value is new; so is each of two values of one time in one group, and the last
    // one stays. With room for 2 items, the 2 newest are kept.
    let counts = store
        .publish_new(
            &[
                posted(LOAD_CURVE, &[(T0, 9.0)]),
                posted(LOAD_CURVE, &[(T0 + 4 * HALF_HOUR, 4.0)]),
                posted(LOAD_CURVE, &[(T0 + 4 * HALF_HOUR, 5.0)]),
            ],
            &prepare,
            2,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(counts, [1, 1, 1]);
    assert_eq!(
        readings(LOAD_CURVE).await,
        vec![
            (T0, 9.0),
            (T0 + HALF_HOUR, 1.0),
            (T0 + 3 * HALF_HOUR, 3.0),
            (T0 + 4 * HALF_HOUR, 5.0)
        ]
    );
    let items = store.items(&up.id, LOAD_CURVE, None, None).await.unwrap();
    assert_eq!(item_ids(&items), ["new-3", "new-2"]);
    assert_eq!(store.fanout_pending().await.unwrap().0, 5);
    asked.lock().unwrap().clear();

    // One bad batch, and nothing of the others is written, audit included.
    let head = store.audit_head().await.unwrap();
    let mut unknown = posted(LOAD_CURVE, &[(T0 + 5 * HALF_HOUR, 5.0)]);
    unknown.series = "nobody/declared/this".into();
    assert!(matches!(
        store
            .publish_new(
                &[posted(DAILY, &[(T0 + 6 * HALF_HOUR, 6.0)]), unknown],
                &prepare,
                10,
                &[ingest_entry(2)],
            )
            .await,
        Err(StoreError::UnknownSeries { .. })
    ));
    let not_finite = posted(DAILY, &[(T0 + 7 * HALF_HOUR, f64::NAN)]);
    assert!(matches!(
        store
            .publish_new(
                &[posted(DAILY, &[(T0 + 8 * HALF_HOUR, 8.0)]), not_finite],
                &prepare,
                10,
                &[ingest_entry(2)],
            )
            .await,
        Err(StoreError::NonFiniteValue { .. })
    ));
    assert_eq!(readings(DAILY).await, vec![(T0 + 2 * HALF_HOUR, 2.0)]);
    assert_eq!(store.fanout_pending().await.unwrap().0, 5);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert!(asked.lock().unwrap().is_empty());
}

/// The same pack reaching several instances at once (a gateway's retry): each reading is new to
/// exactly one of them, so it is published once.
async fn concurrent_publish_new(stores: Vec<Arc<dyn Store>>) {
    let up = usage_point("99999000000004", "home", "Retried meter");
    declare_curve_and_daily(stores[0].as_ref(), &up).await;
    let pack: Vec<(i64, f64)> = (0..200).map(|k| (T0 + k * HALF_HOUR, k as f64)).collect();
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(k, store)| {
            let (store, id, pack) = (store.clone(), up.id.clone(), pack.clone());
            tokio::spawn(async move {
                let prepare = |_: usize, new: &Batch| {
                    let n = new.readings.len();
                    let mut item = item(
                        &new.series,
                        &format!("retry-{n}-{}", new.readings[0].time),
                        NOW,
                    );
                    item.usage_point = new.usage_point.clone();
                    (item, publication(i64::try_from(n).unwrap()))
                };
                let mut total = 0;
                // Each instance gets the pack several times, in halves that overlap, with the
                // other series' pack in an order of its own.
                for part in [&pack[..120], &pack[80..], &pack[..]] {
                    let mut group = vec![batch(&id, LOAD_CURVE, part), batch(&id, DAILY, part)];
                    if k % 2 == 1 {
                        group.reverse();
                    }
                    let counts = store.publish_new(&group, &prepare, 10, &[]).await.unwrap();
                    total += counts.iter().sum::<usize>();
                }
                total
            })
        })
        .collect();
    let mut published = 0;
    for task in tasks {
        published += task.await.unwrap();
    }
    assert_eq!(published, 2 * pack.len());
    for path in [LOAD_CURVE, DAILY] {
        let stored = stores[0]
            .readings(&up.id, path, 0, i64::MAX, None)
            .await
            .unwrap();
        assert_eq!(pairs(&stored), pack);
    }
}

async fn fanout_area(db: &Db) {
    publish_new_story(db.fresh("publish_new").await).await;
    fanout_story(db.open().await).await;
    fanout_at_scale(db.open().await, db).await;
    fan_out(db.fresh("fan_out").await).await;
    // Four delivery tasks on a shared PostgreSQL; as many instances as the others on SQLite.
    let instances = match db {
        Db::Postgres { .. } => 4,
        _ => db.instance_count(),
    };
    let stores = db.instances("fanout_claims", instances).await;
    if !stores.is_empty() {
        concurrent_fanout_claims(stores).await;
    }
    let stores = db.instances("publish_new_race", instances).await;
    if !stores.is_empty() {
        concurrent_publish_new(stores).await;
    }
}

/// Leases: one holder at a time, renewals keep it, expiry or release hands it over; several
/// instances trying at once: exactly one wins.
async fn lease_story(store: Arc<dyn Store>) {
    const NAME: &str = "source:demo";
    const TTL: i64 = 10_000;
    assert!(store.leases().await.unwrap().is_empty());
    assert!(store.acquire_lease(NAME, "a", 1_000, TTL).await.unwrap());
    // Held: another cannot take it before it expires, even a millisecond before.
    assert!(!store.acquire_lease(NAME, "b", 10_999, TTL).await.unwrap());
    // The holder renews; the renewal keeps when it was acquired and moves the expiry.
    assert!(store.acquire_lease(NAME, "a", 5_000, TTL).await.unwrap());
    let leases = store.leases().await.unwrap();
    assert_eq!(
        leases,
        vec![store::Lease {
            name: NAME.into(),
            holder: "a".into(),
            acquired_at: 1_000,
            expires_at: 15_000
        }]
    );
    assert!(!store.acquire_lease(NAME, "b", 14_999, TTL).await.unwrap());
    // Expired: another takes it, with a new acquisition time; the old holder cannot renew.
    assert!(store.acquire_lease(NAME, "b", 15_000, TTL).await.unwrap());
    assert!(!store.acquire_lease(NAME, "a", 15_001, TTL).await.unwrap());
    assert_eq!(store.leases().await.unwrap()[0].acquired_at, 15_000);
    // Releasing someone else's lease does nothing; releasing one's own frees it at once.
    store.release_lease(NAME, "a").await.unwrap();
    assert!(!store.acquire_lease(NAME, "c", 16_000, TTL).await.unwrap());
    store.release_lease(NAME, "b").await.unwrap();
    assert!(store.leases().await.unwrap().is_empty());
    assert!(store.acquire_lease(NAME, "c", 16_000, TTL).await.unwrap());
    // Leases are independent of each other.
    assert!(store
        .acquire_lease("source:other", "a", 16_000, TTL)
        .await
        .unwrap());
    assert_eq!(store.leases().await.unwrap().len(), 2);
    // A single instance's restart forgets them all: free at once for the new process.
    assert_eq!(store.forget_leases().await.unwrap(), 2);
    assert!(store.acquire_lease(NAME, "d", 16_001, TTL).await.unwrap());
}

/// Instances racing for a free lease, many times: exactly one wins each round.
async fn concurrent_leases(stores: Vec<Arc<dyn Store>>) {
    for round in 0..20i64 {
        let name = format!("race:{round}");
        let tries = stores.iter().enumerate().map(|(i, store)| {
            let name = name.clone();
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(&name, &format!("instance-{i}"), 1_000, 10_000)
                    .await
                    .unwrap()
            })
        });
        let won = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|won| *won.as_ref().unwrap())
            .count();
        assert_eq!(won, 1, "round {round}");
    }
}

async fn leases_area(db: &Db) {
    lease_story(db.open().await).await;
    let stores = db.instances("lease_race", 4).await;
    if !stores.is_empty() {
        concurrent_leases(stores).await;
    }
}

async fn consents_area(db: &Db) {
    consent_story(db.open().await).await;
}

async fn upstream_area(db: &Db) {
    upstream_story(db.open().await).await;
}

async fn sessions_area(db: &Db) {
    session_story(db.open().await).await;
    check_sessions_kept(db.open().await).await;
    let stores = db.instances("sessions", db.instance_count()).await;
    if !stores.is_empty() {
        concurrent_sessions(stores).await;
    }
}

// ---- Privacy: erasure at consent end, one-time export links ----

const PRM2: &str = "30001610071844";
const PRM3: &str = "30001610071845";
const SERVICE: &str = "quoalise.example.org";

/// A consent of `app` on `usage_point` running `[begins_at, expires_at)`; returns its grant id.
async fn add_consent(
    store: &dyn Store,
    usage_point: &str,
    app: &str,
    (begins_at, expires_at): (i64, i64),
) -> i64 {
    let consent = Consent {
        id: None,
        source: "enedis".into(),
        usage_point: usage_point.into(),
        app_jid: app.into(),
        purpose: "tests".into(),
        request_id: "req".into(),
        reference: "auth".into(),
        begins_at,
        expires_at,
        grant_id: None,
    };
    let mut g = grant(app, usage_point, ANY, GrantOrigin::Consent);
    g.valid_until = Some(expires_at);
    store.record_consent(&consent, &g).await.unwrap().1
}

/// A consented meter with readings on two series, a published item and fetched days.
async fn meter_with_data(store: &dyn Store, prm: &str) {
    store
        .declare_usage_point(
            &usage_point(prm, "enedis", prm),
            &[
                series(prm, LOAD_CURVE, "Load curve"),
                series(prm, DAILY, "Daily"),
            ],
        )
        .await
        .unwrap();
    let curve: Vec<(i64, f64)> = (0..5).map(|i| (T0 + i * HALF_HOUR, i as f64)).collect();
    store
        .insert_readings(&batch(prm, LOAD_CURVE, &curve))
        .await
        .unwrap();
    store
        .insert_readings(&batch(prm, DAILY, &[(T0, 10.0), (T0 + 86_400, 11.0)]))
        .await
        .unwrap();
    let item = Item {
        usage_point: prm.into(),
        series: LOAD_CURVE.into(),
        item_id: "i1".into(),
        published_at: T0,
        payload: "<quoalise xmlns=\"urn:quoalise:0\"/>".into(),
    };
    store
        .publish(&batch(prm, LOAD_CURVE, &curve[4..]), Some(&item), None, 10)
        .await
        .unwrap();
    store
        .mark_fetched(
            prm,
            "courbe_de_charge_consommation",
            &["2026-01-01".into()],
            T0,
        )
        .await
        .unwrap();
}

/// Readings, items and fetched days left of `prm`.
async fn data_left(store: &dyn Store, prm: &str) -> (usize, usize, usize) {
    let mut readings = 0;
    for path in [LOAD_CURVE, DAILY] {
        readings += store
            .readings(prm, path, i64::MIN, i64::MAX, None)
            .await
            .unwrap()
            .len();
    }
    let items = store
        .items(prm, LOAD_CURVE, None, None)
        .await
        .unwrap()
        .len();
    let days = store
        .fetched_days(
            prm,
            "courbe_de_charge_consommation",
            "2025-01-01",
            "2027-01-01",
        )
        .await
        .unwrap()
        .len();
    (readings, items, days)
}

async fn erasures_audited(store: &dyn Store) -> Vec<AuditEntry> {
    store
        .audit_entries(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.command == erasure::ERASURE)
        .collect()
}

/// Erasure after consent end: the data of a meter whose consents all ended long enough ago
/// is gone (readings of every series, items, fetched days) with one audit entry; a meter with
/// a live second consent keeps everything until that one ends too.
async fn erasure_story(store: Arc<dyn Store>) {
    let retain = std::time::Duration::from_secs(10);
    let now = quoalise_component::time::now();
    meter_with_data(store.as_ref(), PRM).await;
    meter_with_data(store.as_ref(), PRM2).await;
    let full = (7, 1, 1);
    // PRM: one consent, revoked now (as an admin or ADAM-DC-0008 would).
    let grant_a = add_consent(
        store.as_ref(),
        PRM,
        "app@example.org",
        (now - 100, now + 3_600),
    )
    .await;
    store.revoke_consents(PRM).await.unwrap();
    // PRM2: one consent expired long ago, a second one live.
    add_consent(
        store.as_ref(),
        PRM2,
        "app@example.org",
        (now - 7_200, now - 3_600),
    )
    .await;
    add_consent(
        store.as_ref(),
        PRM2,
        "other@example.org",
        (now - 100, now + 86_400),
    )
    .await;

    // Within the retention nothing goes.
    assert!(erasure::erase_due(store.as_ref(), SERVICE, retain, now + 5)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(data_left(store.as_ref(), PRM).await, full);

    let erased = erasure::erase_due(store.as_ref(), SERVICE, retain, now + 20)
        .await
        .unwrap();
    assert_eq!(
        erased,
        [Erasure {
            usage_point: PRM.into(),
            readings: 7,
            start: T0,
            end: T0 + 86_400 + 1,
            grant_id: Some(grant_a),
        }]
    );
    assert_eq!(data_left(store.as_ref(), PRM).await, (0, 0, 0), "all gone");
    assert_eq!(
        data_left(store.as_ref(), PRM2).await,
        full,
        "a live consent keeps it"
    );
    assert_eq!(
        erasures_audited(store.as_ref()).await,
        [AuditEntry {
            requester: SERVICE.into(),
            usage_point: PRM.into(),
            series: ANY.into(),
            start: T0,
            end: T0 + 86_400 + 1,
            grant_id: Some(grant_a),
            command: erasure::ERASURE.into(),
            records: 7,
            at: now + 20,
        }]
    );
    // Once: a second round neither erases nor audits again.
    assert!(
        erasure::erase_due(store.as_ref(), SERVICE, retain, now + 30)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(erasures_audited(store.as_ref()).await.len(), 1);

    // PRM2's live consent ends (revoked now): its data goes once the retention has passed.
    store.revoke_consents(PRM2).await.unwrap();
    assert!(erasure::erase_due(store.as_ref(), SERVICE, retain, now + 5)
        .await
        .unwrap()
        .is_empty());
    let erased = erasure::erase_due(store.as_ref(), SERVICE, retain, now + 20)
        .await
        .unwrap();
    assert_eq!(erased.len(), 1);
    assert_eq!(
        (erased[0].usage_point.as_str(), erased[0].readings),
        (PRM2, 7)
    );
    assert_eq!(data_left(store.as_ref(), PRM2).await, (0, 0, 0));

    // A new consent on the erased PRM: what it fetches stays while it runs, however long ago
    // the old ones ended.
    meter_with_data(store.as_ref(), PRM).await;
    add_consent(store.as_ref(), PRM, "app@example.org", (now, now + 3_600)).await;
    assert!(
        erasure::erase_due(store.as_ref(), SERVICE, retain, now + 60)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(data_left(store.as_ref(), PRM).await, full);
    // When it expires, the retention counts from its expiry.
    assert!(
        erasure::erase_due(store.as_ref(), SERVICE, retain, now + 3_605)
            .await
            .unwrap()
            .is_empty()
    );
    let erased = erasure::erase_due(store.as_ref(), SERVICE, retain, now + 3_611)
        .await
        .unwrap();
    assert_eq!(erased.len(), 1);
    assert_eq!(data_left(store.as_ref(), PRM).await, (0, 0, 0));
    assert_eq!(erasures_audited(store.as_ref()).await.len(), 3);
    assert!(matches!(
        quoalise_component::audit::verify(store.as_ref())
            .await
            .unwrap(),
        Verdict::Intact { .. }
    ));
}

/// Instances erasing at once erase (and audit) one end once.
async fn concurrent_erasures(stores: Vec<Arc<dyn Store>>) {
    let now = quoalise_component::time::now();
    meter_with_data(stores[0].as_ref(), PRM3).await;
    add_consent(
        stores[0].as_ref(),
        PRM3,
        "app@example.org",
        (now - 7_200, now - 3_600),
    )
    .await;
    let retain = std::time::Duration::from_secs(60);
    let runs = stores.iter().map(|s| {
        let s = s.clone();
        async move {
            erasure::erase_due(s.as_ref(), SERVICE, retain, now)
                .await
                .unwrap()
        }
    });
    let erased: Vec<Erasure> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(erased.len(), 1, "{erased:?}");
    assert_eq!(erased[0].readings, 7);
    assert_eq!(erasures_audited(stores[0].as_ref()).await.len(), 1);
    assert_eq!(data_left(stores[1].as_ref(), PRM3).await, (0, 0, 0));
}

fn export(token_hash: &str, created_at: i64, expires_at: i64) -> Export {
    Export {
        token_hash: token_hash.into(),
        requester: "app@example.org".into(),
        usage_point: PRM.into(),
        series: ANY.into(),
        start: T0,
        end: T0 + 86_400,
        grant_id: None,
        created_at,
        expires_at,
    }
}

/// One-time export links: a live link is claimed once; then it is used; an expired one says
/// so for a day, then is unknown.
async fn export_story(store: Arc<dyn Store>) {
    let now = 1_000_000;
    let live = export("a1", now, now + 3_600);
    store.add_export(&live).await.unwrap();
    assert!(store.add_export(&live).await.is_err(), "hashes are unique");
    assert_eq!(
        store.claim_export("zz", now).await.unwrap(),
        ExportClaim::Unknown
    );
    assert_eq!(
        store.claim_export("a1", now + 1).await.unwrap(),
        ExportClaim::Claimed(live.clone())
    );
    assert_eq!(
        store.claim_export("a1", now + 2).await.unwrap(),
        ExportClaim::Used
    );

    store
        .add_export(&export("b2", now, now + 10))
        .await
        .unwrap();
    assert_eq!(
        store.claim_export("b2", now + 10).await.unwrap(),
        ExportClaim::Expired
    );
    assert_eq!(
        store.claim_export("b2", now + 11).await.unwrap(),
        ExportClaim::Expired
    );
    // A day after its expiry, the next link made forgets it.
    store
        .add_export(&export("c3", now + 86_411, now + 90_000))
        .await
        .unwrap();
    assert_eq!(
        store.claim_export("b2", now + 86_412).await.unwrap(),
        ExportClaim::Unknown
    );
    assert_eq!(
        store.claim_export("a1", now + 86_412).await.unwrap(),
        ExportClaim::Used
    );
}

/// Downloads of one link at once, on every instance: one wins.
async fn concurrent_export_claims(stores: Vec<Arc<dyn Store>>) {
    let now = 2_000_000;
    stores[0]
        .add_export(&export("d4", now, now + 3_600))
        .await
        .unwrap();
    let claims = stores.iter().map(|s| {
        let s = s.clone();
        async move { s.claim_export("d4", now).await.unwrap() }
    });
    let claims = futures::future::join_all(claims).await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, ExportClaim::Claimed(_)))
        .count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(claims
        .iter()
        .all(|c| matches!(c, ExportClaim::Claimed(_) | ExportClaim::Used)));
}

async fn privacy_area(db: &Db) {
    erasure_story(db.open().await).await;
    export_story(db.open().await).await;
    let stores = db.instances("privacy", db.instance_count()).await;
    if !stores.is_empty() {
        concurrent_erasures(stores.clone()).await;
        concurrent_export_claims(stores).await;
    }
}

/// One test per backend for each area, each on a database of its own: `<area>::sqlite_file`,
/// `<area>::sqlite_memory`, `<area>::postgres`.
macro_rules! on_every_backend {
    ($($area:ident => $run:ident),* $(,)?) => {$(
        mod $area {
            use super::{$run, Db};

            #[tokio::test]
            async fn sqlite_file() {
                $run(&Db::sqlite_file().await).await;
            }

            #[tokio::test]
            async fn sqlite_memory() {
                $run(&Db::sqlite_memory().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                $run(&Db::postgres().await).await;
            }
        }
    )*};
}

on_every_backend!(
    usage_points => usage_points_area,
    readings => readings_area,
    grants => grants_area,
    audit => audit_area,
    subscriptions => subscriptions_area,
    publish => publish_area,
    outbox => outbox_area,
    fanout => fanout_area,
    leases => leases_area,
    consents => consents_area,
    upstream => upstream_area,
    sessions => sessions_area,
    privacy => privacy_area,
);

/// Opening a store: creating it, migrating it once, finding it again.
mod opening {
    use super::*;

    /// What an empty store holds.
    async fn check_empty(store: &Arc<dyn Store>) {
        assert!(store.usage_points(None).await.unwrap().is_empty());
        assert!(store.grants().await.unwrap().is_empty());
        assert!(store.audit_entries(0, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        // The directory does not exist yet: opening creates it.
        let path = dir.path().join("state").join("quoalise.db");
        let url = format!("sqlite://{}", path.display());
        let store = store::open(&url).await.unwrap();
        check_empty(&store).await;
        declare_usage_points(&store).await;
        drop(store);
        assert!(path.is_file());

        // A restart finds everything, and migrating again is a no-op.
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        assert_eq!(store.usage_points(None).await.unwrap().len(), 4);

        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        // WAL is a property of the file, so any connection reports it.
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(journal_mode, "wal");
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_memory() {
        let store = store::open("sqlite::memory:").await.unwrap();
        check_empty(&store).await;
        declare_usage_points(&store).await;
        // Another open is another database.
        check_empty(&store::open("sqlite::memory:").await.unwrap()).await;
    }

    #[tokio::test]
    async fn postgres() {
        let cluster = PgCluster::start();
        let url = cluster.create_database("store_story").await;

        // Instances sharing a database may start together on an empty one.
        let (a, b, c) = tokio::join!(
            store::open(&url),
            PostgresStore::open(&url),
            PostgresStore::open(&url)
        );
        let (store, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        check_empty(&store).await;
        declare_usage_points(&store).await;

        // Opening an already migrated database: another instance, or the restart.
        let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url).await.unwrap());
        assert_eq!(store.usage_points(None).await.unwrap().len(), 4);

        // A second database on the same cluster starts empty.
        let other_url = cluster.create_database("store_empty").await;
        let other: Arc<dyn Store> = Arc::new(PostgresStore::open(&other_url).await.unwrap());
        check_empty(&other).await;
    }

    #[tokio::test]
    async fn unknown_url_scheme() {
        assert!(matches!(
            store::open("mysql://localhost/quoalise").await,
            Err(StoreError::UnsupportedUrl)
        ));
    }
}

/// The change feed between instances sharing a database.
mod changes {
    use super::*;
    use quoalise_component::store::Change;
    use std::time::Duration;

    async fn next(feed: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
        tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("a change within 5 s")
            .expect("the feed stays open")
    }

    /// What one instance writes, another hears at once: grants → access, publications → work.
    #[tokio::test]
    async fn postgres() {
        let cluster = PgCluster::start();
        let url = cluster.create_database("changes").await;
        let listener = store::open(&url).await.unwrap();
        let writer = store::open(&url).await.unwrap();
        let mut feed = listener
            .listen()
            .await
            .unwrap()
            .expect("PostgreSQL has a feed");
        declare_usage_points(&writer).await;
        let id = writer
            .add_grant(&grant("bob@example.org", PRM, ANY, GrantOrigin::Admin))
            .await
            .unwrap();
        assert_eq!(next(&mut feed).await, Change::Access);
        assert!(writer.revoke_grant(id).await.unwrap().is_some());
        assert_eq!(next(&mut feed).await, Change::Access);
        publish_numbered(writer.as_ref(), PRM, LOAD_CURVE, 1).await;
        assert_eq!(next(&mut feed).await, Change::Work);
        // Nothing else was said.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), feed.recv())
                .await
                .is_err()
        );
    }

    /// One instance per SQLite file: nothing to hear.
    #[tokio::test]
    async fn sqlite_has_no_feed() {
        let store = store::open("sqlite::memory:").await.unwrap();
        assert!(store.listen().await.unwrap().is_none());
    }

    /// A second instance on one SQLite file is refused, with a message that says why and what
    /// to do; the lock goes with its holder.
    #[tokio::test]
    async fn sqlite_serves_one_instance() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let lock = store::instance_lock(&url)
            .unwrap()
            .expect("a file has a lock");
        let refused = store::instance_lock(&url).unwrap_err();
        assert!(
            refused.contains("another quoalise-component instance"),
            "{refused}"
        );
        assert!(refused.contains("postgres://"), "{refused}");
        drop(lock);
        assert!(store::instance_lock(&url).unwrap().is_some());
        assert!(store::instance_lock("sqlite::memory:").unwrap().is_none());
    }
}
