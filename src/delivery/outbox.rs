//! Delivery of the outbox: single stanzas, each claimed, written with the id `q<outbox id>`, and
//! marked sent once written (see [`reports`](super::reports)).

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;

use super::{Delivery, Limiter, LEASE_SECS};
use crate::stanzas::outgoing::{Outgoing, Payload, Report};
use crate::time::now;

/// The stanza id of an outbox entry.
pub(crate) fn stanza_id(outbox_id: i64) -> String {
    format!("q{outbox_id}")
}

/// The outbox id of a stanza id we gave, if it is one.
pub(crate) fn outbox_id(stanza_id: &str) -> Option<i64> {
    stanza_id.strip_prefix('q')?.parse().ok()
}

/// Claims due entries and queues them; returns how many (`None`: shutdown).
pub(super) async fn send(delivery: &Delivery, limiter: &Limiter, claim: usize) -> Option<usize> {
    let entries = match delivery
        .ctx
        .store
        .claim_outbox(now(), claim, LEASE_SECS)
        .await
    {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox; retrying");
            return Some(0);
        }
    };
    let count = entries.len();
    for entry in entries {
        let mut stanza: Element = match entry.stanza.parse() {
            Ok(stanza) => stanza,
            Err(e) => {
                // Retrying would fail forever: reported written, so it stops blocking the queue.
                tracing::error!(id = entry.id, error = %e, "dropping an outbox entry that does not parse");
                let out = Outgoing {
                    payload: Payload::Wire(Vec::new()),
                    report: Some(Report::Outbox(entry.id)),
                };
                if !delivery.queue(limiter, 1, out).await {
                    return None;
                }
                continue;
            }
        };
        stanza.set_attr(
            Namespace::NONE,
            xml_ncname!("id").to_ncname(),
            stanza_id(entry.id),
        );
        let out = Outgoing {
            payload: Payload::Tree(stanza),
            report: Some(Report::Outbox(entry.id)),
        };
        if !delivery.queue(limiter, 1, out).await {
            return None;
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_ids_read_back() {
        assert_eq!(outbox_id(&stanza_id(42)), Some(42));
        assert_eq!(outbox_id("p1.2.3"), None);
        assert_eq!(outbox_id("q"), None);
    }
}
