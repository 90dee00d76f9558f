//! Decisions both backends must take the same way, kept out of SQL so that they are written (and
//! tested) once: how a batch of readings is cleaned before it is written, how the config
//! grants of a new start are reconciled with the stored ones, and how a publication numbers the
//! outbox entries it queues and accounts for those it drops.

use std::collections::BTreeMap;

use crate::model::{Batch, Grant, Reading};

use super::{Advance, StoreError};

/// The readings of `batch` as they will be written: ascending by time, one per time (the last
/// one sent for a time wins, as it would if the readings were written one by one), `-0.0` as
/// `0.0` (SQLite keeps no sign of zero, PostgreSQL would). Refuses the whole batch when a value
/// is NaN or infinite.
pub(super) fn prepare_readings(batch: &Batch) -> Result<Vec<Reading>, StoreError> {
    if let Some(bad) = batch.readings.iter().find(|r| !r.value.is_finite()) {
        return Err(StoreError::NonFiniteValue {
            usage_point: batch.usage_point.clone(),
            series: batch.series.clone(),
            time: bad.time,
        });
    }
    let mut readings: Vec<Reading> = batch
        .readings
        .iter()
        .map(|r| Reading {
            time: r.time,
            // -0.0 + 0.0 is 0.0; every other value is unchanged.
            value: r.value + 0.0,
        })
        .collect();
    if readings.windows(2).all(|w| w[0].time < w[1].time) {
        return Ok(readings);
    }
    // Stable: readings of equal time keep the order they were sent in.
    readings.sort_by_key(|r| r.time);
    let mut unique: Vec<Reading> = Vec::with_capacity(readings.len());
    for r in readings {
        match unique.last_mut() {
            Some(last) if last.time == r.time => *last = r,
            _ => unique.push(r),
        }
    }
    Ok(unique)
}

/// Unsigned count from SQL's `COUNT(*)`, which both backends return as a signed integer.
pub(super) fn count_from_sql(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

/// A `limit` argument as SQL takes it; `usize` beyond `i64` is as good as no limit.
pub(super) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An optional limit as one `LIMIT $n` both backends read: none is the largest `i64`, since
/// SQLite's "no limit" (-1) is an error in PostgreSQL and PostgreSQL's (NULL) one in SQLite.
pub(super) fn sql_limit(limit: Option<usize>) -> i64 {
    limit.map_or(i64::MAX, limit_to_sql)
}

/// The JIDs whose bare part is `bare_jid`, other than `bare_jid` itself, are the full JIDs
/// `bare_jid/…`: in byte order, exactly the strings in `[bare_jid + "/", bare_jid + "0")`, `0`
/// being the byte after `/`. A range, unlike `LIKE` or a prefix function, needs no escaping and
/// is one index scan.
pub(super) fn jid_range(bare_jid: &str) -> (String, String) {
    (format!("{bare_jid}/"), format!("{bare_jid}0"))
}

/// An outbox row about to be inserted.
pub(super) struct OutboxInsert<'a> {
    pub(crate) subscription: Option<i64>,
    pub(crate) stanza: &'a str,
}

/// The advances of a batch of link reports, one per subscription (a statement updating a row
/// twice would keep either): the furthest seq, and the end of a claim if one is reported.
pub(super) fn one_advance_per_subscription(advances: &[Advance]) -> Vec<Advance> {
    let mut merged: BTreeMap<i64, Advance> = BTreeMap::new();
    for a in advances {
        merged
            .entry(a.subscription)
            .and_modify(|m| {
                m.seq = m.seq.max(a.seq);
                if a.done || !m.done {
                    m.done |= a.done;
                    m.claim = a.claim;
                }
            })
            .or_insert(*a);
    }
    merged.into_values().collect()
}

/// What reconciling the config grants changes.
#[derive(Debug, PartialEq)]
pub(super) struct ConfigGrantPlan<'a> {
    /// Stored config grants the new config no longer lists.
    pub(crate) revoke: Vec<i64>,
    /// Listed grants with no identical stored one, in config order.
    pub(crate) insert: Vec<&'a Grant>,
}

/// Matches the wanted config grants against the stored, unrevoked config grants `existing`
/// (which carry ids). Each stored grant is kept for at most one identical wanted grant, so a
/// grant listed twice in the config is stored twice, as before.
pub(super) fn plan_config_grants<'a>(
    existing: &[Grant],
    wanted: &'a [Grant],
) -> ConfigGrantPlan<'a> {
    let mut kept = vec![false; existing.len()];
    let mut insert = Vec::new();
    for grant in wanted {
        let found = existing
            .iter()
            .enumerate()
            .find(|(i, stored)| !kept[*i] && same_config_grant(stored, grant));
        match found {
            Some((i, _)) => kept[i] = true,
            None => insert.push(grant),
        }
    }
    let revoke = existing
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| !**kept)
        .filter_map(|(g, _)| g.id)
        .collect();
    ConfigGrantPlan { revoke, insert }
}

/// Identity of a config grant: everything the config says, not the id nor the origin (always
/// `config` once stored).
fn same_config_grant(a: &Grant, b: &Grant) -> bool {
    a.subject == b.subject
        && a.usage_point == b.usage_point
        && a.series == b.series
        && a.valid_from == b.valid_from
        && a.valid_until == b.valid_until
        && a.purpose == b.purpose
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantOrigin, ANY};

    fn batch(readings: &[(i64, f64)]) -> Batch {
        Batch {
            usage_point: "up".into(),
            series: "s".into(),
            readings: readings
                .iter()
                .map(|&(time, value)| Reading { time, value })
                .collect(),
        }
    }

    fn times_values(readings: &[Reading]) -> Vec<(i64, f64)> {
        readings.iter().map(|r| (r.time, r.value)).collect()
    }

    #[test]
    fn readings_are_sorted_and_the_last_of_a_time_wins() {
        let ready = prepare_readings(&batch(&[(30, 3.0), (10, 1.0), (30, 4.0), (20, 2.0)]));
        assert_eq!(
            times_values(&ready.unwrap()),
            [(10, 1.0), (20, 2.0), (30, 4.0)]
        );
        let sorted = [(1, 1.0), (2, 2.0)];
        assert_eq!(
            times_values(&prepare_readings(&batch(&sorted)).unwrap()),
            sorted
        );
        assert!(prepare_readings(&batch(&[])).unwrap().is_empty());
        let zero = prepare_readings(&batch(&[(1, -0.0)])).unwrap();
        assert_eq!(zero[0].value.to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn non_finite_values_refuse_the_batch() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            match prepare_readings(&batch(&[(1, 1.0), (2, bad)])) {
                Err(StoreError::NonFiniteValue { time, .. }) => assert_eq!(time, 2),
                other => panic!("expected a non-finite error, got {other:?}"),
            }
        }
    }

    #[test]
    fn full_jids_of_a_bare_jid_form_a_byte_range() {
        let (from, to) = jid_range("alice@example.org");
        let inside = |jid: &str| from.as_str() <= jid && jid < to.as_str();
        assert!(inside("alice@example.org/phone"));
        assert!(inside("alice@example.org/"));
        assert!(inside("alice@example.org//x"));
        assert!(!inside("alice@example.org"));
        assert!(!inside("alice@example.org.evil"));
        assert!(!inside("alice@example.orgx/res"));
        assert!(!inside("alice@example.org0"));
        assert!(!inside("alice@example.or/g"));
    }

    #[test]
    fn limits_and_counts() {
        assert_eq!(limit_to_sql(10), 10);
        assert_eq!(limit_to_sql(usize::MAX), i64::MAX);
        assert_eq!(count_from_sql(3).unwrap(), 3);
        assert!(count_from_sql(-1).is_err());
    }

    fn config(subject: &str, id: Option<i64>) -> Grant {
        Grant {
            id,
            subject: subject.into(),
            usage_point: ANY.into(),
            series: ANY.into(),
            valid_from: None,
            valid_until: None,
            origin: GrantOrigin::Config,
            purpose: None,
        }
    }

    #[test]
    fn reports_merge_into_one_advance_per_subscription() {
        let a = |subscription, seq, claim, done| Advance {
            subscription,
            seq,
            claim,
            done,
        };
        let merged = one_advance_per_subscription(&[
            a(7, 3, 1, false),
            a(2, 5, 1, true),
            a(7, 5, 1, true),
            a(7, 4, 1, false),
            a(9, 0, 2, true),
            a(9, 8, 1, false),
        ]);
        assert_eq!(
            merged,
            [a(2, 5, 1, true), a(7, 5, 1, true), a(9, 8, 2, true)]
        );
    }

    #[test]
    fn identical_config_grants_are_kept() {
        let existing = [
            config("a", Some(1)),
            config("b", Some(2)),
            config("b", Some(3)),
        ];
        let wanted = [
            // Origin is not part of the identity: config grants are stored as config anyway.
            Grant {
                origin: GrantOrigin::Admin,
                ..config("b", None)
            },
            config("c", None),
            Grant {
                purpose: Some("new purpose".into()),
                ..config("a", None)
            },
        ];
        let plan = plan_config_grants(&existing, &wanted);
        assert_eq!(plan.revoke, [1, 3]);
        assert_eq!(plan.insert, [&wanted[1], &wanted[2]]);
    }

    #[test]
    fn a_grant_listed_twice_is_stored_twice() {
        let wanted = [config("a", None), config("a", None)];
        let plan = plan_config_grants(&[config("a", Some(7))], &wanted);
        assert!(plan.revoke.is_empty());
        assert_eq!(plan.insert, [&wanted[1]]);
        let plan = plan_config_grants(&[config("a", Some(7)), config("a", Some(8))], &wanted);
        assert!(plan.revoke.is_empty() && plan.insert.is_empty());
    }
}
