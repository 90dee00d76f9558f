//! Decisions both backends must take the same way, kept out of SQL so that they are written (and
//! tested) once: how a batch of readings is cleaned before it is written, how the config
//! grants of a new start are reconciled with the stored ones, and how a publication numbers the
//! outbox entries it queues and accounts for those it drops.

use std::collections::BTreeMap;

use crate::model::{Batch, Grant, Reading};

use super::{NewOutboxEntry, StoreError};

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

/// An outbox row about to be inserted: a [`NewOutboxEntry`], or a notice of dropped
/// notifications, with what the bound needs.
pub(super) struct OutboxInsert<'a> {
    pub(crate) subscription: Option<i64>,
    pub(crate) stanza: &'a str,
    /// Its number among its subscription's entries (`outbox.seq`); `None`: never dropped.
    pub(crate) seq: Option<i64>,
    /// On a notice of dropped notifications, how many it reports.
    pub(crate) missed: Option<i64>,
}

impl<'a> OutboxInsert<'a> {
    /// An entry queued outside the bound (no number, not a notice).
    pub(crate) fn plain(subscription: Option<i64>, stanza: &'a str) -> Self {
        OutboxInsert {
            subscription,
            stanza,
            seq: None,
            missed: None,
        }
    }
}

/// How many of `outbox` go to each subscription, by subscription id.
pub(super) fn entries_per_subscription(outbox: &[NewOutboxEntry]) -> Vec<(i64, i64)> {
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for id in outbox.iter().filter_map(|e| e.subscription) {
        *counts.entry(id).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// `outbox` numbered: `newest` gives each subscription's last number once this publication's
/// entries are counted in, so its `n` entries take the `n` numbers up to it, in list order.
/// Entries of a subscription `newest` does not know (removed meanwhile) get no number.
pub(super) fn number_entries<'a>(
    outbox: &'a [NewOutboxEntry],
    newest: &[(i64, i64)],
) -> Vec<OutboxInsert<'a>> {
    let per_subscription: BTreeMap<i64, i64> =
        entries_per_subscription(outbox).into_iter().collect();
    // The next number to give, per subscription.
    let mut next: BTreeMap<i64, i64> = newest
        .iter()
        .filter_map(|&(id, last)| {
            let n = per_subscription.get(&id)?;
            Some((id, last - n + 1))
        })
        .collect();
    outbox
        .iter()
        .map(|entry| {
            let seq = entry.subscription.and_then(|s| next.get_mut(&s)).map(|n| {
                *n += 1;
                *n - 1
            });
            OutboxInsert {
                seq,
                ..OutboxInsert::plain(entry.subscription, &entry.stanza)
            }
        })
        .collect()
}

/// Dropped entries (`(subscription, created_at)`, as the delete returns them) per subscription:
/// how many, and when the oldest was queued.
pub(super) fn tally_drops(dropped: &[(i64, i64)]) -> BTreeMap<i64, (i64, i64)> {
    let mut tally: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &(subscription, created_at) in dropped {
        let (count, since) = tally.entry(subscription).or_insert((0, created_at));
        *count += 1;
        *since = (*since).min(created_at);
    }
    tally
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
    fn entries_are_numbered_per_subscription_in_list_order() {
        let outbox: Vec<NewOutboxEntry> = [
            (Some(7), "a"),
            (None, "x"),
            (Some(3), "b"),
            (Some(7), "c"),
            (Some(9), "gone"),
            (Some(7), "d"),
        ]
        .into_iter()
        .map(|(subscription, stanza)| NewOutboxEntry {
            subscription,
            stanza: stanza.to_owned(),
        })
        .collect();
        assert_eq!(entries_per_subscription(&outbox), [(3, 1), (7, 3), (9, 1)]);
        // 7 had 10 entries before these three, 3 had none; 9 is unknown.
        let numbered = number_entries(&outbox, &[(3, 1), (7, 13)]);
        let seqs: Vec<_> = numbered.iter().map(|e| (e.stanza, e.seq)).collect();
        assert_eq!(
            seqs,
            [
                ("a", Some(11)),
                ("x", None),
                ("b", Some(1)),
                ("c", Some(12)),
                ("gone", None),
                ("d", Some(13)),
            ]
        );
        assert!(numbered.iter().all(|e| e.missed.is_none()));
    }

    #[test]
    fn drops_are_tallied_per_subscription() {
        let tally = tally_drops(&[(2, 50), (1, 40), (2, 30), (2, 60)]);
        assert_eq!(
            tally.into_iter().collect::<Vec<_>>(),
            [(1, (1, 40)), (2, (3, 30))]
        );
        assert!(tally_drops(&[]).is_empty());
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
