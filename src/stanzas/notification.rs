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
use crate::stanzas::template::{Hole, Template};
use crate::stanzas::xml::{escape, xep_0082};

/// The headline notification of one item (XEP-0060 §7.1.2.1), with holes for the subscriber's
/// `to` (exactly as subscribed) and the stanza id: the payload is serialised once per
/// publication and shared by every subscriber. With `delay` (the last item sent on subscribe) it
/// carries a XEP-0203 stamp.
pub(crate) fn notification_template(
    from: &str,
    node: &str,
    item_id: &str,
    payload: &str,
    delay: Option<i64>,
) -> Template {
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
    let mut template = Template::default();
    template
        .hole(Hole::Start)
        .text(&format!(
            "<message xmlns='{}' type='headline' from='{}' to='",
            ns::COMPONENT,
            escape(from)
        ))
        .hole(Hole::To)
        .text("' id='")
        .hole(Hole::Id)
        .text(&format!(
            "'><event xmlns='{}'><items node='{}'><item id='{}'>{payload}</item></items></event>{delay}</message>",
            ns::PUBSUB_EVENT,
            escape(node),
            escape(item_id),
        ));
    template
}

/// [`notification_template`] as text for one subscriber, for the outbox (which sets the id).
pub(crate) fn notification_xml(
    from: &str,
    to: &str,
    node: &str,
    item_id: &str,
    payload: &str,
    delay: Option<i64>,
) -> String {
    notification_template(from, node, item_id, payload, delay).fill(&escape(to), |_| random_id())
}

/// Generation-2 pushes: one `<message>` per chunk of readings, to the subscriber's bare JID,
/// carrying `<quoalise>` as text, with holes for `to` and each message's id.
pub(crate) fn push_template<'a>(from: &str, chunks: impl IntoIterator<Item = &'a str>) -> Template {
    let mut template = Template::default();
    let open = format!(
        "<message xmlns='{}' from='{}' to='",
        ns::COMPONENT,
        escape(from)
    );
    for quoalise in chunks {
        template
            .hole(Hole::Start)
            .text(&open)
            .hole(Hole::To)
            .text("' id='")
            .hole(Hole::Id)
            .text("'>")
            .text(quoalise)
            .text("</message>");
    }
    template
}

/// The notice that `count` notifications of `node` to `to` were dropped, `since` being when
/// the oldest dropped one was published. A headline from the usage point, like the
/// notifications it replaces: a human body, and for programs
/// `<missed xmlns='urn:quoalise:0' node='…' count='N' since='RFC 3339'/>`.
pub(crate) fn missed_notice_xml(
    from: &str,
    to: &str,
    id: &str,
    node: &str,
    kind: SubscriptionKind,
    since: i64,
    count: u64,
) -> String {
    let since = xep_0082(since);
    let fetch = match kind {
        SubscriptionKind::PubSub => "PubSub items or the history command",
        SubscriptionKind::Push => "the get_history command",
    };
    let body = escape(&format!(
        "Notifications for node {node} dropped while you could not be reached: {count}, \
         the oldest from {since}. Fetch the readings with {fetch}."
    ))
    .into_owned();
    format!(
        "<message xmlns='{}' type='headline' from='{}' to='{}' id='{}'><body>{body}</body>\
         <missed xmlns='{}' node='{}' count='{count}' since='{since}'/></message>",
        ns::COMPONENT,
        escape(from),
        escape(to),
        escape(id),
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
    }

    /// A template filled for one subscriber is the stanza a tree would give: `to` and the id
    /// where they belong, the payload shared; each push chunk a message of its own.
    #[test]
    fn templates_fill_into_well_formed_stanzas() {
        let payload = "<quoalise xmlns='urn:quoalise:0'><data/></quoalise>";
        let t = notification_template("1@d", "x/y", "i1", payload, None);
        let el: Element = t
            .fill(&escape("o'hara@b/r<&"), |k| format!("p1.2.{k}"))
            .parse()
            .unwrap();
        assert_eq!(el.attr("to"), Some("o'hara@b/r<&"));
        assert_eq!(el.attr("id"), Some("p1.2.0"));
        assert!(el.get_child("event", ns::PUBSUB_EVENT).is_some());
        let pushes = push_template("1@d", [payload, payload]);
        assert_eq!(pushes.stanzas(), 2);
        for k in 0..2 {
            let push: Element = pushes
                .stanza(k, "a@b", &format!("p1.2.{k}"))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(push.attr("id"), Some(&*format!("p1.2.{k}")));
            assert_eq!(push.attr("to"), Some("a@b"));
            assert!(push.get_child("quoalise", ns::QUOALISE).is_some());
        }
    }

    /// A well-formed headline; names with markup in them stay text.
    #[test]
    fn missed_notices_are_well_formed_and_escaped() {
        let node = "a'<b>&<?missed-count?>";
        let text = missed_notice_xml(
            "1@d",
            "o'hara@b/r<&",
            "m1",
            node,
            SubscriptionKind::PubSub,
            1_790_632_800,
            12,
        );
        let el: Element = text.parse().unwrap();
        assert_eq!(
            (
                el.attr("type"),
                el.attr("from"),
                el.attr("to"),
                el.attr("id")
            ),
            (
                Some("headline"),
                Some("1@d"),
                Some("o'hara@b/r<&"),
                Some("m1")
            )
        );
        let missed = el.get_child("missed", ns::QUOALISE).unwrap();
        assert_eq!(missed.attr("node"), Some(node));
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
        let push = missed_notice_xml("1@d", "a@b", "m", "n", SubscriptionKind::Push, 0, 1);
        assert!(push.contains("the get_history command"), "{push}");
    }
}
