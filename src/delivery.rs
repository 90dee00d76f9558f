//! Delivery of the outbox: stanzas queued in the store by the publisher go to the XMPP server
//! while the link is up, at a bounded rate, at least once.
//!
//! An entry is claimed (leased) from the store, handed to the link's writer, and marked sent
//! once the link reports it written. Entries the link hands back (it dropped before writing
//! them) and leases that expire (a crash) make entries pending again, so nothing queued is lost.
//! Each stanza gets the id `q<outbox id>`, unique per subscriber and batch, which is how a
//! bounce finds its subscription.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use minidom::Element;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::request::Context;
use crate::stanzas::outgoing::{Outgoing, Payload};
use crate::store::{Store, StoreError};
use crate::time::now;

/// Entries claimed at once.
const CLAIM: usize = 256;
/// How long a claim holds before another instance (or this one after a crash) may take it.
const LEASE_SECS: i64 = 60;
/// Poll interval when idle (retries whose time has come, entries queued by other instances).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The stanza id of an outbox entry.
pub(crate) fn stanza_id(outbox_id: i64) -> String {
    format!("q{outbox_id}")
}

/// The outbox id of a stanza id we gave, if it is one.
pub(crate) fn outbox_id(stanza_id: &str) -> Option<i64> {
    stanza_id.strip_prefix('q')?.parse().ok()
}

/// Sends pending entries while the link is up; returns at shutdown.
pub(crate) async fn send_pending(
    store: Arc<dyn Store>,
    outbound: mpsc::Sender<Outgoing>,
    mut connected: watch::Receiver<bool>,
    wake: Arc<Notify>,
    rate: NonZeroU32,
    written: mpsc::UnboundedSender<i64>,
    shutdown: CancellationToken,
) {
    let limiter = RateLimiter::direct(Quota::per_second(rate));
    let mut parser = StanzaParser::default();
    // A claim must be sent well within its lease, or it would be claimed and sent twice.
    let claim = CLAIM.min((rate.get() as usize * LEASE_SECS as usize / 2).max(1));
    loop {
        tokio::select! {
            up = connected.wait_for(|up| *up) => if up.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let entries = match store.claim_outbox(now(), claim, LEASE_SECS).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying");
                Vec::new()
            }
        };
        if entries.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        for entry in entries {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = shutdown.cancelled() => return,
            }
            let mut stanza = match parser.parse(&entry.stanza) {
                Ok(stanza) => stanza,
                Err(e) => {
                    // Retrying would fail forever; mark it sent so it stops blocking the queue.
                    tracing::error!(id = entry.id, error = %e, "dropping an outbox entry that does not parse");
                    let _ = written.send(entry.id);
                    continue;
                }
            };
            stanza.set_attr(
                minidom::rxml::Namespace::NONE,
                minidom::rxml::xml_ncname!("id").to_ncname(),
                stanza_id(entry.id),
            );
            let out = Outgoing {
                payload: Payload::Tree(stanza),
                outbox_id: Some(entry.id),
            };
            if outbound.send(out).await.is_err() {
                return;
            }
        }
    }
}

/// Turns outbox texts back into elements. Parsing costs more than the rest of a delivery, and
/// the notifications of one batch, queued one after the other, differ only in their `to`: the
/// last stanza parsed is kept, and a text equal to it but for the value of `to` becomes a copy
/// of it with that `to`.
#[derive(Default)]
struct StanzaParser {
    last: Option<Parsed>,
}

struct Parsed {
    /// The text before and after the value of `to` in its first tag.
    before_to: String,
    after_to: String,
    element: Element,
}

impl StanzaParser {
    fn parse(&mut self, text: &str) -> Result<Element, minidom::Error> {
        let Some((start, end)) = to_value(text) else {
            return text.parse();
        };
        let (before, value, after) = (&text[..start], &text[start..end], &text[end..]);
        if let Some(last) = &self.last {
            if last.before_to == before && last.after_to == after {
                let mut element = last.element.clone();
                element.set_attr(
                    minidom::rxml::Namespace::NONE,
                    minidom::rxml::xml_ncname!("to").to_ncname(),
                    value,
                );
                return Ok(element);
            }
        }
        let element: Element = text.parse()?;
        self.last = Some(Parsed {
            before_to: before.to_owned(),
            after_to: after.to_owned(),
            element: element.clone(),
        });
        Ok(element)
    }
}

/// Where the value of the `to` attribute of the first tag of `text` lies, when it reads the
/// same parsed as raw (no entity, no character a parser would normalise); `None` sends the text
/// to a full parse. The attributes are walked one by one, so a ` to='` inside another
/// attribute's value is never taken for the attribute.
fn to_value(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let skip_spaces = |mut i: usize| {
        while bytes.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        i
    };
    // `<` and the element name, ended by a space: `>` or `/` first means no attribute at all.
    if bytes.first() != Some(&b'<') {
        return None;
    }
    let mut i = 1;
    while bytes
        .get(i)
        .is_some_and(|&b| !is_space(b) && b != b'>' && b != b'/')
    {
        i += 1;
    }
    if !bytes.get(i).copied().is_some_and(is_space) {
        return None;
    }
    loop {
        i = skip_spaces(i);
        let name_start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| b != b'=' && !is_space(b) && b != b'>' && b != b'/')
        {
            i += 1;
        }
        if i == name_start {
            return None; // `>`, `/>` or the end: no `to`
        }
        let name = &text[name_start..i];
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_spaces(i + 1);
        let quote = *bytes.get(i).filter(|&&q| q == b'\'' || q == b'"')?;
        let start = i + 1;
        let end = start + bytes.get(start..)?.iter().position(|&b| b == quote)?;
        if name == "to" {
            let value = &text[start..end];
            let plain = !value.contains(|c: char| c == '&' || c == '<' || c < ' ');
            return plain.then_some((start, end));
        }
        i = end + 1;
    }
}

/// Records what the link reports: written entries are marked sent (in batches), entries handed
/// back become pending again at once.
pub(crate) async fn record_reports(
    store: Arc<dyn Store>,
    mut written: mpsc::UnboundedReceiver<i64>,
    mut released: mpsc::UnboundedReceiver<i64>,
    wake: Arc<Notify>,
    metrics: crate::metrics::Metrics,
) {
    /// Puts `first` and what else is already queued on `rx` into `batch`, up to [`CLAIM`] ids.
    fn drain(first: i64, rx: &mut mpsc::UnboundedReceiver<i64>, batch: &mut Vec<i64>) {
        batch.push(first);
        while batch.len() < CLAIM {
            match rx.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
    }

    let mut batch = Vec::with_capacity(CLAIM);
    loop {
        tokio::select! {
            id = written.recv() => match id {
                Some(id) => {
                    drain(id, &mut written, &mut batch);
                    metrics.notifications_sent(batch.len() as u64);
                    if let Err(e) = store.mark_sent(&batch, now()).await {
                        // They will be sent again when their lease expires: a duplicate, not a loss.
                        tracing::error!(error = %e, entries = batch.len(), "cannot mark outbox entries sent");
                    }
                    batch.clear();
                }
                None => return,
            },
            Some(id) = released.recv() => {
                drain(id, &mut released, &mut batch);
                // No attempt is counted: the subscriber never saw them.
                if let Err(e) = store.release(&batch).await {
                    tracing::error!(error = %e, entries = batch.len(), "cannot release outbox entries; their lease will");
                }
                batch.clear();
                wake.notify_one();
            }
        }
    }
}

/// Attempts after which a subscriber that keeps answering `wait`/`auth` loses the notification.
pub const MAX_ATTEMPTS: i32 = 5;

/// Handles a `<message type="error"/>` answering one of our notifications: a `cancel` error ends
/// the subscription (the subscriber is gone for good); `wait` and `auth` are retried later, with
/// an exponential backoff, up to [`MAX_ATTEMPTS`].
pub(crate) async fn bounce(ctx: &Context, message: &Element) {
    let Some(id) = message.attr("id").and_then(outbox_id) else {
        return;
    };
    let error_type = message
        .get_child("error", crate::stanzas::ns::COMPONENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or("cancel");
    let result: Result<(), StoreError> = async {
        let Some(entry) = ctx.store.outbox_entry(id).await? else {
            return Ok(());
        };
        let Some(subscription) = entry.subscription else {
            return Ok(());
        };
        let retry = matches!(error_type, "wait" | "auth") && entry.attempts + 1 < MAX_ATTEMPTS;
        if retry {
            let delay = 10i64 << entry.attempts.clamp(0, 10);
            ctx.store.retry_later(id, now() + delay).await?;
            tracing::info!(
                id,
                error_type,
                attempt = entry.attempts + 1,
                delay,
                "notification bounced; will retry"
            );
            return Ok(());
        }
        tracing::info!(
            id,
            error_type,
            subscription,
            "notification bounced; ending the subscription"
        );
        crate::publisher::end_subscription(
            ctx,
            subscription,
            "notifications to this address bounce",
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, id, "cannot handle a bounce");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(to: &str, value: u32) -> String {
        crate::stanzas::notification::notification_xml(
            "99999000000001@quoalise.example",
            to,
            "consumption/power/active/instant",
            "item-1",
            &format!(
                "<quoalise xmlns='urn:quoalise:0'><data><sensml xmlns='urn:ietf:params:xml:ns:senml'>\
                 <senml n='x' t='1' v='{value}' u='W'/></sensml></data></quoalise>"
            ),
            None,
        )
    }

    /// Whatever the parser kept, each text gives what a full parse of it gives.
    #[test]
    fn stanzas_parse_as_a_full_parse_would() {
        let texts = [
            notification("alice@example.org", 1),
            notification("bob@example.org/phone", 1),
            notification("carol@example.org", 1),
            notification("carol@example.org", 2),
            notification("o'hara@example.org", 2),
            notification("dave@example.org", 2),
            "<message xmlns='jabber:component:accept' to='x@example.org'><body>a</body></message>"
                .to_owned(),
            "<message xmlns='jabber:component:accept' to='y@example.org'><body>a</body></message>"
                .to_owned(),
            "<message xmlns='jabber:component:accept'><body>no to</body></message>".to_owned(),
        ];
        let mut parser = StanzaParser::default();
        for text in &texts {
            let full: Element = text.parse().unwrap();
            assert_eq!(parser.parse(text).unwrap(), full, "{text}");
        }
        assert_eq!(
            parser
                .parse(&notification("o'hara@example.org", 2))
                .unwrap()
                .attr("to"),
            Some("o'hara@example.org")
        );
        // The kept stanza is not a parse of what follows.
        assert!(parser
            .parse("<message to='z@example.org'><unclosed>")
            .is_err());
        assert!(parser.parse("not xml").is_err());
    }

    #[test]
    fn the_to_value_is_found_only_where_it_reads_raw() {
        let value = |text: &'static str| to_value(text).map(|(s, e)| &text[s..e]);
        assert_eq!(
            value("<message from='a' to='b@c/d'><x/></message>"),
            Some("b@c/d")
        );
        assert_eq!(value("<message\nto = \"b@c\" type='chat'/>"), Some("b@c"));
        assert_eq!(value("<message from='a'><x to='no'/></message>"), None);
        assert_eq!(value("<message/>"), None);
        assert_eq!(value("<message"), None);
        // A ` to='` inside another attribute's value is not the attribute.
        assert_eq!(value("<message from=\"a to='x'\" to='b@c'/>"), Some("b@c"));
        assert_eq!(value("<message from=\"a to='x'\"/>"), None);
        // Nor is one in the content, whatever the first tag holds.
        assert_eq!(value("<message><body>x to='evil'</body></message>"), None);
        assert_eq!(value("<message/><x to='evil'/>"), None);
        assert_eq!(value(" <message to='b@c'/>"), None);
        assert_eq!(to_value("<message to='a&amp;b'/>"), None);
        assert_eq!(to_value("<message to='a\tb'/>"), None);
        assert_eq!(to_value("<message to='unterminated>"), None);
    }

    proptest::proptest! {
        /// Any sequence of notifications, with `to`s and contents drawn from characters that
        /// matter to XML and to the scan (quotes, `&`, `<`, `>`, spaces, ` to='`), parses as a
        /// full parse would.
        #[test]
        fn any_sequence_parses_as_a_full_parse_would(
            stanzas in proptest::collection::vec(
                ("[a-c' &<>=/\"]{0,8}|alice@example[.]org|a to='b'", "[a-c' &<>=\"]{0,8}"),
                1..12,
            )
        ) {
            let mut parser = StanzaParser::default();
            for (to, body) in &stanzas {
                let text = crate::stanzas::notification::notification_xml(
                    "99999000000001@quoalise.example",
                    to,
                    "node",
                    "item-1",
                    &format!("<x xmlns='urn:x' a='{0}'>{0}</x>", crate::stanzas::xml::escape(body)),
                    None,
                );
                let full: Element = text.parse().unwrap();
                proptest::prop_assert_eq!(parser.parse(&text).unwrap(), full);
            }
        }
    }

    #[test]
    fn stanza_ids_round_trip() {
        assert_eq!(outbox_id(&stanza_id(42)), Some(42));
        assert_eq!(outbox_id("keepalive-1"), None);
        assert_eq!(outbox_id("qx"), None);
    }
}
