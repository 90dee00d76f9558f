//! The `Store` contract, told once as stories and run on SQLite (file and memory) and on a
//! PostgreSQL cluster the test starts itself.

mod support;

use std::sync::Arc;

use quoalise_component::model::{
    Grant, GrantOrigin, Identifier, Measurement, Series, UsagePoint, ANY,
};
use quoalise_component::store::{self, PostgresStore, SqliteStore, Store, StoreError};
use sqlx::{Connection, PgConnection, SqliteConnection};

use support::PgCluster;

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
/// [`check_final_state`] expects.
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

/// Config replacement, admin and consent grants, revocation. Leaves the state that
/// [`check_final_state`] expects.
async fn grant_story(store: Arc<dyn Store>) {
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

    let first_config = [
        grant("alice@example.org", ANY, ANY, GrantOrigin::Config),
        Grant {
            valid_until: Some(4_000_000_000),
            ..grant("bob@example.org", PRM, LOAD_CURVE, GrantOrigin::Config)
        },
    ];
    store.replace_config_grants(&first_config).await.unwrap();
    let all = store.grants().await.unwrap();
    assert_eq!(all[0], admin);
    assert_eq!(without_ids(&all[1..]), first_config);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{all:?}");

    // The second start brings another config: the first one goes, the admin grant stays, and
    // replacing again does not duplicate.
    let carol = grant("carol@example.org", DEMO_A1, ANY, GrantOrigin::Config);
    for _ in 0..2 {
        store
            .replace_config_grants(std::slice::from_ref(&carol))
            .await
            .unwrap();
        let all = store.grants().await.unwrap();
        assert_eq!(all[0], admin);
        assert_eq!(without_ids(&all[1..]), std::slice::from_ref(&carol));
    }
    assert!(store
        .grants_for("alice@example.org")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.grants_for("billing@example.org").await.unwrap(),
        std::slice::from_ref(&admin)
    );

    // A grant handed to the config replacement is a config grant, whatever it says, so that the
    // next replacement removes it.
    store
        .replace_config_grants(&[grant("dave@example.org", ANY, ANY, GrantOrigin::Admin)])
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
    assert_eq!(carols[1].id, Some(consent_id));
    assert!(carols[0].id < carols[1].id);
    assert!(store.revoke_grant(consent_id).await.unwrap());
    assert!(!store.revoke_grant(consent_id).await.unwrap());
    assert!(!store.revoke_grant(consent_id + 1000).await.unwrap());
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
}

/// What both stories leave behind; checked again after a restart.
async fn check_final_state(store: Arc<dyn Store>) {
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

    let subjects: Vec<String> = store
        .grants()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.subject)
        .collect();
    assert_eq!(subjects, ["billing@example.org", "carol@example.org"]);
}

async fn all_stories(store: Arc<dyn Store>) {
    usage_point_story(store.clone()).await;
    grant_story(store.clone()).await;
    check_final_state(store).await;
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

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet: opening creates it.
    let path = dir.path().join("state").join("quoalise.db");
    let url = format!("sqlite://{}", path.display());

    let store = store::open(&url).await.unwrap();
    all_stories(store.clone()).await;
    drop(store);
    assert!(path.is_file());

    // A restart finds everything, and migrating again is a no-op.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    check_final_state(store.clone()).await;

    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    // WAL is a property of the file, so any connection reports it.
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal_mode, "wal");
    sqlx::query(BOGUS_GRANT).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    check_corrupt_grant_is_reported(store).await;
}

#[tokio::test]
async fn sqlite_memory() {
    all_stories(store::open("sqlite::memory:").await.unwrap()).await;
}

#[tokio::test]
async fn unknown_url_scheme() {
    assert!(matches!(
        store::open("mysql://localhost/quoalise").await,
        Err(StoreError::UnsupportedUrl)
    ));
}

/// One test for every PostgreSQL case, so that one cluster serves them all and is stopped when
/// the test ends.
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
    all_stories(store).await;

    // Opening an already migrated database.
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url).await.unwrap());
    check_final_state(store.clone()).await;

    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(BOGUS_GRANT).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    check_corrupt_grant_is_reported(store).await;

    // A second database on the same cluster starts empty.
    let other: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&cluster.create_database("store_empty").await)
            .await
            .unwrap(),
    );
    assert!(other.usage_points(None).await.unwrap().is_empty());
    assert!(other.grants().await.unwrap().is_empty());
}
