//! Who may see what: admins from the config, grants from the store.
//!
//! Grants are read at request time (not cached) so that a revocation or an expiry takes effect on
//! the very next request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use xmpp_parsers::jid::BareJid;

use crate::config::GrantConfig;
use crate::model::{Grant, GrantOrigin};
use crate::store::{Store, StoreError};
use crate::time::now;

/// The access policy of the component.
#[derive(Clone)]
pub struct Access {
    admins: Arc<HashSet<BareJid>>,
    store: Arc<dyn Store>,
}

impl Access {
    pub fn new(admins: impl IntoIterator<Item = BareJid>, store: Arc<dyn Store>) -> Self {
        Access {
            admins: Arc::new(admins.into_iter().collect()),
            store,
        }
    }

    pub(crate) fn is_admin(&self, requester: &BareJid) -> bool {
        self.admins.contains(requester)
    }

    /// What `requester` may see right now.
    pub(crate) async fn view(&self, requester: &BareJid) -> Result<View, StoreError> {
        if self.is_admin(requester) {
            return Ok(View::All);
        }
        let now = now();
        let grants = self
            .store
            .grants_for(requester.as_str())
            .await?
            .into_iter()
            .filter(|g| g.is_valid_at(now))
            .collect();
        Ok(View::Grants(grants))
    }

    /// The views of many requesters (bare JID strings) with one store query: a publication
    /// checks every subscriber, and one round trip per subscriber dominated its cost.
    pub(crate) async fn views<'a>(
        &self,
        requesters: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, View>, StoreError> {
        let now = now();
        let mut views: HashMap<String, View> = HashMap::new();
        for requester in requesters {
            let admin = requester
                .parse::<BareJid>()
                .is_ok_and(|jid| self.is_admin(&jid));
            views.insert(
                requester.to_owned(),
                if admin {
                    View::All
                } else {
                    View::Grants(Vec::new())
                },
            );
        }
        let subjects: Vec<String> = views
            .iter()
            .filter(|(_, v)| !matches!(v, View::All))
            .map(|(s, _)| s.clone())
            .collect();
        for grant in self.store.grants_of(&subjects).await? {
            if let Some(View::Grants(list)) = views.get_mut(&grant.subject) {
                if grant.is_valid_at(now) {
                    list.push(grant);
                }
            }
        }
        Ok(views)
    }
}

/// A requester's rights at one moment.
#[derive(Debug, Clone)]
pub(crate) enum View {
    /// An admin: everything.
    All,
    /// The grants in force for this requester.
    Grants(Vec<Grant>),
}

impl View {
    /// True when the requester may know this usage point exists.
    pub(crate) fn sees_usage_point(&self, usage_point: &str) -> bool {
        match self {
            View::All => true,
            View::Grants(grants) => grants.iter().any(|g| g.covers_usage_point(usage_point)),
        }
    }

    /// The grant that lets the requester read this series, if any (`None` for admins too: they
    /// read under no grant, which the audit log records as such).
    pub(crate) fn grant_for(&self, usage_point: &str, series: &str) -> Option<&Grant> {
        match self {
            View::All => None,
            View::Grants(grants) => grants
                .iter()
                .find(|g| g.covers_usage_point(usage_point) && g.covers_series(series)),
        }
    }

    /// The grant that makes the requester a holder of this usage point's data, if any: one
    /// given by the data subject's consent or by a source's owners list. Only holders may ask
    /// for the data-subject rights (access report, export); a grant an admin or the config made
    /// lets an application read, not speak for the subject. Admins hold nothing by this.
    pub(crate) fn holder_grant(&self, usage_point: &str) -> Option<&Grant> {
        match self {
            View::All => None,
            View::Grants(grants) => grants.iter().find(|g| {
                matches!(g.origin, GrantOrigin::Consent | GrantOrigin::Source)
                    && g.covers_usage_point(usage_point)
            }),
        }
    }

    pub(crate) fn may_read(&self, usage_point: &str, series: &str) -> bool {
        matches!(self, View::All) || self.grant_for(usage_point, series).is_some()
    }
}

/// Expands `[[access.grant]]` tables into grants, one per (usage point, series) pair.
///
/// The config must have been validated (`Config::validate`), which checks JIDs and dates.
pub fn grants_from_config(tables: &[GrantConfig]) -> Vec<Grant> {
    let mut grants = Vec::new();
    for table in tables {
        let valid_until = table
            .valid_until
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp());
        for usage_point in &table.usage_points {
            for series in &table.series {
                grants.push(Grant {
                    id: None,
                    subject: table.jid.clone(),
                    usage_point: usage_point.clone(),
                    series: series.clone(),
                    valid_from: None,
                    valid_until,
                    origin: GrantOrigin::Config,
                    purpose: table.purpose.clone(),
                });
            }
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ANY;

    fn grant(up: &str, series: &str) -> Grant {
        Grant {
            id: Some(1),
            subject: "alice@example.org".into(),
            usage_point: up.into(),
            series: series.into(),
            valid_from: None,
            valid_until: None,
            origin: GrantOrigin::Admin,
            purpose: None,
        }
    }

    #[test]
    fn view_checks_usage_points_and_series() {
        let view = View::Grants(vec![grant("a", "consumption/power/active/raw")]);
        assert!(view.sees_usage_point("a"));
        assert!(!view.sees_usage_point("b"));
        assert!(view.may_read("a", "consumption/power/active/raw"));
        assert!(!view.may_read("a", "consumption/energy/active/daily"));
        assert!(View::All.may_read("b", "x"));
        assert!(View::Grants(vec![]).grant_for("a", "x").is_none());
        assert!(View::Grants(vec![grant(ANY, ANY)]).may_read("z", "y"));
    }

    #[test]
    fn config_tables_expand_to_one_grant_per_pair() {
        let tables = vec![GrantConfig {
            jid: "alice@example.org".into(),
            usage_points: vec!["a".into(), "b".into()],
            series: vec!["x".into(), "y".into()],
            purpose: Some("tests".into()),
            valid_until: Some("2030-01-01T00:00:00Z".into()),
        }];
        let grants = grants_from_config(&tables);
        assert_eq!(grants.len(), 4);
        assert!(grants.iter().all(|g| g.origin == GrantOrigin::Config
            && g.valid_until == Some(1_893_456_000)
            && g.purpose.as_deref() == Some("tests")));
    }
}
