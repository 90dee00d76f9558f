//! `quoalise-component admin --config FILE …`: administration from the command line, on the
//! store directly, for scripts and emergencies; it works while the component runs
//! (PostgreSQL, or SQLite in WAL).
//!
//! The same operations as the admin ad-hoc commands (`commands::admin_grants`,
//! `commands::admin_access`, `commands::admin_audit`). A grant or consent revoked here ends its
//! subscriptions on the running instances: at once on PostgreSQL (the store's change feed),
//! within a minute on SQLite (the periodic check).

use anyhow::Context as _;

use crate::audit::{self, Verdict};
use crate::commands::admin_forms::{
    admin_grant, audit_filter, describe_consent, describe_grant, usage_point_id,
};
use crate::commands::time_range::parse_instant;
use crate::model::{audit_command, ANY};
use crate::settings::Settings;
use crate::store::{self, AuditFilter, AuditRecord, Store};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    GrantsList {
        jid: Option<String>,
    },
    GrantsAdd {
        jid: String,
        usage_point: String,
        series: String,
        purpose: Option<String>,
        valid_until: Option<String>,
    },
    GrantsRevoke {
        id: i64,
    },
    ConsentsList {
        usage_point: Option<String>,
    },
    /// Every consent in force on a usage point, and their grants (as `admin-consent-revoke`).
    ConsentsRevoke {
        usage_point: String,
    },
    AuditVerify,
    AuditExport,
    /// Entries of a usage point and/or a requester (at least one) appended in `[from, to)`
    /// (instants as the forms take them; none: unbounded).
    AuditShow {
        usage_point: Option<String>,
        requester: Option<String>,
        from: Option<String>,
        to: Option<String>,
    },
}

/// What it printed, and whether it succeeded (the exit status).
pub struct Outcome {
    pub output: String,
    pub ok: bool,
}

fn ok(output: String) -> anyhow::Result<Outcome> {
    Ok(Outcome { output, ok: true })
}

/// Who the audit log names for what the command line does: it runs as whoever has the config
/// file, which the log cannot know better.
const CLI: &str = "admin-cli";

/// Runs `command` against the store of `settings`.
pub async fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<Outcome> {
    let store = store::open(&settings.config.store.url)
        .await
        .context("cannot open the store ([store] url)")?;
    let store = store.as_ref();
    match command {
        AdminCommand::GrantsList { jid } => {
            let grants = match jid {
                Some(jid) => {
                    let subject = admin_grant(&jid, ANY.into(), ANY.into(), None, None)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .subject;
                    store.grants_for(&subject).await?
                }
                None => store.grants().await?,
            };
            ok(grants.iter().map(|g| describe_grant(g) + "\n").collect())
        }
        AdminCommand::GrantsAdd {
            jid,
            usage_point,
            series,
            purpose,
            valid_until,
        } => {
            let mut grant = admin_grant(&jid, usage_point, series, purpose, valid_until.as_deref())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = store.add_grant(&grant).await?;
            grant.id = Some(id);
            audit::record(
                store,
                audit::grant_event(CLI, audit_command::GRANT_ADDED, &grant),
            )
            .await;
            ok(format!("grant #{id} added\n"))
        }
        AdminCommand::GrantsRevoke { id } => {
            if let Some(grant) = store.revoke_grant(id).await? {
                audit::record(
                    store,
                    audit::grant_event(CLI, audit_command::GRANT_REVOKED, &grant),
                )
                .await;
                ok(format!("grant #{id} revoked\n"))
            } else {
                Ok(Outcome {
                    output: format!("no grant #{id} in force\n"),
                    ok: false,
                })
            }
        }
        AdminCommand::ConsentsList { usage_point } => {
            let now = crate::time::now();
            let mut out = String::new();
            for source in &settings.config.sources {
                for c in store.active_consents(source.id(), now).await? {
                    if usage_point.as_deref().is_none_or(|up| c.usage_point == up) {
                        out.push_str(&describe_consent(&c));
                        out.push('\n');
                    }
                }
            }
            ok(out)
        }
        AdminCommand::ConsentsRevoke { usage_point } => {
            usage_point_id(&usage_point).map_err(|e| anyhow::anyhow!("{e}"))?;
            let revoked = store.revoke_consents(&usage_point).await?;
            audit::record_all(store, &audit::consents_ended(CLI, &revoked)).await;
            Ok(Outcome {
                output: match revoked.len() {
                    0 => format!("no consent in force on {usage_point}\n"),
                    n => format!("{n} consent(s) on {usage_point} revoked\n"),
                },
                ok: !revoked.is_empty(),
            })
        }
        AdminCommand::AuditVerify => Ok(match crate::audit::verify(store).await? {
            Verdict::Intact { entries, head } => Outcome {
                output: match head {
                    Some((id, hash)) => {
                        format!("audit chain intact: {entries} entries, head {id} {hash}\n")
                    }
                    None => format!("audit chain intact: {entries} entries\n"),
                },
                ok: true,
            },
            Verdict::Broken { entries, at } => Outcome {
                output: format!("audit chain broken after {entries} good entries: {at}\n"),
                ok: false,
            },
        }),
        AdminCommand::AuditExport => ok(export(store).await?),
        AdminCommand::AuditShow {
            usage_point,
            requester,
            from,
            to,
        } => {
            let instant = |field: &str, text: Option<String>, unbounded: i64| {
                text.map_or(Ok(unbounded), |t| parse_instant(field, &t))
                    .map_err(|e| anyhow::anyhow!("{e}"))
            };
            let from = instant("from", from, i64::MIN)?;
            let to = instant("to", to, i64::MAX)?;
            let filter = audit_filter(usage_point, requester, from, to)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ok(show(store, &filter).await?)
        }
    }
}

/// The entries of `filter`, one line each (`describe_audit`).
async fn show(store: &dyn Store, filter: &AuditFilter) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = store.find_audit(filter, after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.id;
        for record in &page {
            out.push_str(&describe_audit(record));
            out.push('\n');
        }
    }
}

/// `#id at requester usage-point series [start, end) command N records` and the grant:
/// `under grant #g (origin[, purpose: …])`, or `under no grant` (an admin's access).
fn describe_audit(r: &AuditRecord) -> String {
    let t = |t: i64| crate::time::paris::rfc3339(t).unwrap_or_else(|| t.to_string());
    let e = &r.entry;
    let grant = match (e.grant_id, &r.grant) {
        (None, _) => "under no grant".to_owned(),
        (Some(id), None) => format!("under grant #{id}"),
        (Some(id), Some((origin, None))) => format!("under grant #{id} ({origin})"),
        (Some(id), Some((origin, Some(purpose)))) => {
            format!("under grant #{id} ({origin}, purpose: {purpose})")
        }
    };
    format!(
        "#{} {} {} {} {} [{}, {}) {} {} records {grant}",
        r.id,
        t(e.at),
        e.requester,
        e.usage_point,
        e.series,
        t(e.start),
        t(e.end),
        e.command,
        e.records
    )
}

/// The whole log as JSON lines, with the chain columns: what an outside verifier needs.
async fn export(store: &dyn Store) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.id;
        for e in &page {
            let line = serde_json::json!({
                "id": e.id,
                "at": e.entry.at,
                "requester": e.entry.requester,
                "usage_point": e.entry.usage_point,
                "series": e.entry.series,
                "start": e.entry.start,
                "end": e.entry.end,
                "grant_id": e.entry.grant_id,
                "command": e.entry.command,
                "records": e.entry.records,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
}
