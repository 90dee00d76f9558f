//! The stanzas sent to subscribers, written as text once per batch and spliced per subscriber:
//! PubSub headline notifications (XEP-0060 §7.1.2.1), generation-2 pushes, the notice of dropped
//! notifications and the notices that a subscription ended.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::jid::Jid;

use crate::model::id::random_id;
use crate::model::{Subscription, SubscriptionKind};
use crate::stanzas::ns;
use crate::stanzas::pubsub::{self as stanza, State};
use crate::stanzas::xml::{escape, xep_0082};

/// The headline notification of one item to `to` (exactly as subscribed), as text: the payload is
/// serialised once per batch and spliced into each subscriber's message. With `delay` (the last
/// item sent on subscribe) it carries a XEP-0203 stamp. The `id` is set at delivery.
pub(crate) fn notification_xml(
    from: &str,
    to: &str,
    node: &str,
    item_id: &str,
    payload: &str,
    delay: Option<i64>,
) -> String {
    let delay = delay
        .map(|stamp| {
            format!(
                "<delay xmlns='{}' from='{}' stamp='{}'/>",
                ns::DELAY,
                escape(from),
                xep_0082(stamp)
            )
        })
        .unwrap_or_default();
    format!(
        "<message xmlns='{}' type='headline' from='{}' to='{}'><event xmlns='{}'><items node='{}'><item id='{}'>{payload}</item></items></event>{delay}</message>",
        ns::COMPONENT,
        escape(from),
        escape(to),
        ns::PUBSUB_EVENT,
        escape(node),
        escape(item_id),
    )
}

/// A generation-2 push: `<message>` to the subscriber's bare JID carrying `<quoalise>` as text.
pub(crate) fn push_xml(from: &str, to: &str, quoalise: &str) -> String {
    format!(
        "<message xmlns='{}' from='{}' to='{}'>{quoalise}</message>",
        ns::COMPONENT,
        escape(from),
        escape(to)
    )
}

/// The notice that notifications of `node` to `to` were dropped, `since` being when the oldest
/// dropped one was queued. The count is not known yet when the notice is built (the store
/// counts the drops): `count` (a marker no escaped text can contain) stands where it goes. A headline from the
/// usage point, like the notifications it replaces: a human body, and for programs
/// `<missed xmlns='urn:quoalise:0' node='…' count='N' since='RFC 3339'/>`.
pub(crate) fn missed_notice_xml(
    from: &str,
    to: &str,
    node: &str,
    kind: SubscriptionKind,
    since: i64,
    count: &str,
) -> String {
    let since = xep_0082(since);
    let fetch = match kind {
        SubscriptionKind::PubSub => "PubSub items or the history command",
        SubscriptionKind::Push => "the get_history command",
    };
    // Escaped around the count's marker, never over it: a node name cannot forge one.
    let body = format!(
        "{}{count}{}",
        escape(&format!(
            "Notifications for node {node} dropped while you could not be reached: "
        )),
        escape(&format!(
            ", the oldest from {since}. Fetch the readings with {fetch}."
        )),
    );
    format!(
        "<message xmlns='{}' type='headline' from='{}' to='{}'><body>{body}</body>\
         <missed xmlns='{}' node='{}' count='{count}' since='{since}'/></message>",
        ns::COMPONENT,
        escape(from),
        escape(to),
        ns::QUOALISE,
        escape(node),
    )
}

/// The note that a push subscription ended: a plain message with a human body.
pub(crate) fn push_ended_xml(from: &str, to: &str, text: &str) -> String {
    format!(
        "<message xmlns='{}' from='{}' to='{}'><body>{}</body></message>",
        ns::COMPONENT,
        escape(from),
        escape(to),
        escape(text),
    )
}

/// The notice that a subscription ended (`subscription="none"`), e.g. after a grant expired.
pub(crate) fn subscription_ended(from: &Jid, subscription: &Subscription) -> Element {
    Element::builder("message", ns::COMPONENT)
        .attr(xml_ncname!("from").to_ncname(), from.to_string())
        .attr(xml_ncname!("to").to_ncname(), &subscription.jid)
        .attr(xml_ncname!("id").to_ncname(), random_id())
        .append(stanza::event(stanza::subscription(
            ns::PUBSUB_EVENT,
            &subscription.series,
            &subscription.jid,
            Some(&subscription.subid),
            State::None,
        )))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's marker for the count.
    const COUNT: &str = "<?missed-count?>";

    #[test]
    fn notifications_are_well_formed_and_escaped() {
        let payload = "<quoalise xmlns='urn:quoalise:0'><data/></quoalise>";
        let xml = notification_xml("1@d", "a@b/r'<&", "x/y", "i1", payload, Some(1_790_632_800));
        let el: Element = xml.parse().unwrap();
        assert_eq!(el.attr("to"), Some("a@b/r'<&"));
        assert_eq!(el.attr("type"), Some("headline"));
        let delay = el.get_child("delay", ns::DELAY).unwrap();
        assert_eq!(delay.attr("stamp"), Some("2026-09-28T22:00:00Z"));
        let item = el
            .get_child("event", ns::PUBSUB_EVENT)
            .unwrap()
            .get_child("items", ns::PUBSUB_EVENT)
            .unwrap()
            .get_child("item", ns::PUBSUB_EVENT)
            .unwrap();
        assert_eq!(item.attr("id"), Some("i1"));
        assert!(item.get_child("quoalise", ns::QUOALISE).is_some());
        let push: Element = push_xml("1@d", "a@b", payload).parse().unwrap();
        assert!(push.get_child("quoalise", ns::QUOALISE).is_some());
    }

    /// With the count written in, a well-formed headline; names with markup in them stay text,
    /// and cannot pass for the count's marker.
    #[test]
    fn missed_notices_are_well_formed_and_escaped() {
        let node = format!("a'<b>&{COUNT}");
        let text = missed_notice_xml(
            "1@d",
            "o'hara@b/r<&",
            &node,
            SubscriptionKind::PubSub,
            1_790_632_800,
            COUNT,
        );
        assert_eq!(text.matches(COUNT).count(), 2);
        let el: Element = text.replace(COUNT, "12").parse().unwrap();
        assert_eq!(
            (el.attr("type"), el.attr("from"), el.attr("to")),
            (Some("headline"), Some("1@d"), Some("o'hara@b/r<&"))
        );
        let missed = el.get_child("missed", ns::QUOALISE).unwrap();
        assert_eq!(missed.attr("node"), Some(&*node));
        assert_eq!(missed.attr("count"), Some("12"));
        assert_eq!(missed.attr("since"), Some("2026-09-28T22:00:00Z"));
        let body = el.get_child("body", ns::COMPONENT).unwrap().text();
        assert_eq!(
            body,
            format!(
                "Notifications for node {node} dropped while you could not be reached: 12, the \
                 oldest from 2026-09-28T22:00:00Z. Fetch the readings with PubSub items or the \
                 history command."
            )
        );
        let push = missed_notice_xml("1@d", "a@b", "n", SubscriptionKind::Push, 0, COUNT);
        assert!(push.contains("the get_history command"), "{push}");
    }
}
