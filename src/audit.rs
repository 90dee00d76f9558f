//! The audit trail as a whole: recording events that are not reads (grants, consents, admin
//! actions; `crate::model::audit_command` names them), and verifying the hash chain
//! (`crate::model::audit_chain`) from the store, page by page, for `quoalise-component admin
//! audit verify` and the periodic anchor.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::model::audit_chain::{Break, Verifier};
use crate::model::{audit_command, AuditEntry, Consent, Grant};
use crate::store::{Store, StoreError};
use crate::time::now;

/// An entry for an event on a usage point (`*`: every one) and series (`*`: every one), stamped
/// now, with no time range: `actor` did `command`.
pub fn event(
    actor: &str,
    command: &str,
    usage_point: &str,
    series: &str,
    grant_id: Option<i64>,
    records: i64,
) -> AuditEntry {
    AuditEntry {
        requester: actor.to_owned(),
        usage_point: usage_point.to_owned(),
        series: series.to_owned(),
        start: 0,
        end: 0,
        grant_id,
        command: command.to_owned(),
        records,
        at: now(),
    }
}

/// An entry for `actor` adding or revoking `grant` (`command`: `grant-added` or `grant-revoked`).
pub fn grant_event(actor: &str, command: &str, grant: &Grant) -> AuditEntry {
    event(
        actor,
        command,
        &grant.usage_point,
        &grant.series,
        grant.id,
        0,
    )
}

/// Entries for `actor` ending `consents` (one each, under the consent's grant).
pub fn consents_ended(actor: &str, consents: &[Consent]) -> Vec<AuditEntry> {
    consents
        .iter()
        .map(|c| {
            event(
                actor,
                audit_command::CONSENT_ENDED,
                &c.usage_point,
                crate::model::ANY,
                c.grant_id,
                1,
            )
        })
        .collect()
}

/// Appends events whose action has already happened (see [`record`]).
pub async fn record_all(store: &dyn Store, entries: &[AuditEntry]) {
    if let Err(e) = store.append_audits(entries).await {
        tracing::error!(error = %e, entries = entries.len(), "cannot append to the audit log");
    }
}

/// Appends an event whose action has already happened: a failure is logged loudly rather than
/// undoing it (a revocation must not come back because the log was unreachable).
pub async fn record(store: &dyn Store, entry: AuditEntry) {
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(error = %e, command = %entry.command, requester = %entry.requester,
            usage_point = %entry.usage_point, "cannot append to the audit log");
    }
}

/// How often the head is anchored and old entries pruned (and once at start).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// The hourly upkeep: prunes entries older than `keep` (a checkpoint vouching for the cut),
/// then anchors the head: logs it and shows it in `/metrics`, so that a copy kept elsewhere (a
/// log collector, Prometheus' own history) proves later that the past was not rewritten.
pub async fn upkeep(store: &dyn Store, keep: Option<Duration>, metrics: &Metrics) {
    if let Some(keep) = keep {
        let now = now();
        let before = now.saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        match store.prune_audit(before, now).await {
            Ok(Some(c)) => tracing::info!(
                pruned = c.pruned,
                first = c.first_id,
                last = c.last_id,
                "audit entries beyond [audit] keep pruned; a checkpoint vouches for them"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot prune the audit log"),
        }
    }
    match store.audit_head().await {
        Ok(Some((id, hash))) => {
            tracing::info!(id, %hash, "audit chain head");
            metrics.set_audit_anchor(id, &hash);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the audit chain head"),
    }
}

/// Entries read per page while verifying.
const PAGE: usize = 1000;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry links to the one before and matches its hash.
    Intact {
        entries: u64,
        /// The last entry's id and hash: what an outside copy should match.
        head: Option<(i64, String)>,
    },
    /// The first break, after `entries` good ones.
    Broken { entries: u64, at: Break },
}

/// Recomputes the chain from the first entry; stops at the first break.
pub async fn verify(store: &dyn Store) -> Result<Verdict, StoreError> {
    let mut verifier = Verifier::default();
    let mut after = 0;
    let mut head = None;
    loop {
        let page = store.audit_chain(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(match verifier.finish() {
                Ok(()) => Verdict::Intact {
                    entries: verifier.checked(),
                    head,
                },
                Err(at) => Verdict::Broken {
                    entries: verifier.checked(),
                    at,
                },
            });
        };
        after = last.id;
        for entry in &page {
            if let Err(at) = verifier.check(entry) {
                return Ok(Verdict::Broken {
                    entries: verifier.checked(),
                    at,
                });
            }
            head = Some((entry.id, verifier.head().to_owned()));
        }
    }
}
