//! XEP-0060: Publish-Subscribe — request and notification models.
//!
//! xmpp-parsers 0.23 cannot parse an `<unsubscribe/>` without `subid` (slixmpp omits it) nor RSM
//! inside `<pubsub/>`, so requests are read here. Only what a subscriber may send is modelled in
//! full; owner and publisher requests are recognised so they can be refused precisely.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::rsm::SetQuery;

use crate::stanzas::ns;

/// A request inside `<iq><pubsub/></iq>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe {
        node: String,
        jid: String,
    },
    Unsubscribe {
        node: String,
        jid: String,
        subid: Option<String>,
    },
    /// Retrieve subscriptions (all nodes, or one).
    Subscriptions {
        node: Option<String>,
    },
    Items {
        node: String,
        max_items: Option<usize>,
        /// Specific item ids; empty = by recency.
        ids: Vec<String>,
        rsm: Option<SetQuery>,
    },
    /// Requests users may never make here (create, publish, retract, purge, delete, configure),
    /// by XEP-0060 feature name.
    Forbidden(&'static str),
    /// Requests we do not implement (affiliations, options, default), by feature name.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PubSubError {
    #[error("expected <pubsub xmlns='{}'>", ns::PUBSUB)]
    NotPubSub,
    #[error("<pubsub/> holds no request")]
    Empty,
    #[error("<{0}/> needs a node attribute")]
    NodeIdRequired(&'static str),
    #[error("<{0}/> needs a jid attribute")]
    JidRequired(&'static str),
    #[error("max_items: {0:?} is not a positive number")]
    BadMaxItems(String),
    #[error("rsm: {0}")]
    BadRsm(String),
}

fn node(el: &Element, name: &'static str) -> Result<String, PubSubError> {
    el.attr("node")
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or(PubSubError::NodeIdRequired(name))
}

impl TryFrom<&Element> for Request {
    type Error = PubSubError;

    fn try_from(pubsub: &Element) -> Result<Request, PubSubError> {
        if pubsub.is("pubsub", ns::PUBSUB_OWNER) {
            let first = pubsub.children().next().ok_or(PubSubError::Empty)?;
            return Ok(match first.name() {
                "delete" => Request::Forbidden("delete-nodes"),
                "purge" => Request::Forbidden("purge-nodes"),
                "configure" => Request::Forbidden("config-node"),
                "subscriptions" => Request::Unsupported("manage-subscriptions"),
                "affiliations" => Request::Unsupported("modify-affiliations"),
                _ => Request::Unsupported("owner"),
            });
        }
        if !pubsub.is("pubsub", ns::PUBSUB) {
            return Err(PubSubError::NotPubSub);
        }
        let rsm = pubsub
            .get_child("set", ns::RSM)
            .map(|s| SetQuery::try_from(s.clone()).map_err(|e| PubSubError::BadRsm(e.to_string())))
            .transpose()?;
        // The request is the first child that is not an RSM set or subscription options.
        let el = pubsub
            .children()
            .find(|c| c.has_ns(ns::PUBSUB) && c.name() != "options")
            .ok_or(PubSubError::Empty)?;
        Ok(match el.name() {
            "subscribe" => Request::Subscribe {
                node: node(el, "subscribe")?,
                jid: el
                    .attr("jid")
                    .map(str::to_owned)
                    .ok_or(PubSubError::JidRequired("subscribe"))?,
            },
            "unsubscribe" => Request::Unsubscribe {
                node: node(el, "unsubscribe")?,
                jid: el
                    .attr("jid")
                    .map(str::to_owned)
                    .ok_or(PubSubError::JidRequired("unsubscribe"))?,
                subid: el
                    .attr("subid")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            },
            "subscriptions" => Request::Subscriptions {
                node: el.attr("node").filter(|n| !n.is_empty()).map(str::to_owned),
            },
            "items" => Request::Items {
                node: node(el, "items")?,
                max_items: el
                    .attr("max_items")
                    .map(|m| {
                        m.parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| PubSubError::BadMaxItems(m.to_owned()))
                    })
                    .transpose()?,
                ids: el
                    .children()
                    .filter(|c| c.is("item", ns::PUBSUB))
                    .filter_map(|c| c.attr("id").map(str::to_owned))
                    .collect(),
                rsm,
            },
            "create" => Request::Forbidden("create-nodes"),
            "publish" => Request::Forbidden("publish"),
            "retract" => Request::Forbidden("retract-items"),
            "configure" => Request::Forbidden("config-node"),
            "affiliations" => Request::Unsupported("retrieve-affiliations"),
            "default" => Request::Unsupported("retrieve-default"),
            _ => Request::Unsupported("subscribe"),
        })
    }
}

/// Subscription states we report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Subscribed,
    None,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Subscribed => "subscribed",
            State::None => "none",
        }
    }
}

/// `<subscription node jid subid subscription/>` in namespace `ns`.
pub(crate) fn subscription(
    ns: &str,
    node: &str,
    jid: &str,
    subid: Option<&str>,
    state: State,
) -> Element {
    let mut b = Element::builder("subscription", ns)
        .attr(xml_ncname!("node").to_ncname(), node)
        .attr(xml_ncname!("jid").to_ncname(), jid);
    if let Some(subid) = subid {
        b = b.attr(xml_ncname!("subid").to_ncname(), subid);
    }
    b.attr(xml_ncname!("subscription").to_ncname(), state.as_str())
        .build()
}

/// `<pubsub>` wrapping a result.
pub(crate) fn pubsub(children: impl IntoIterator<Item = Element>) -> Element {
    Element::builder("pubsub", ns::PUBSUB)
        .append_all(children)
        .build()
}

/// `<subscriptions [node]>` list.
pub(crate) fn subscriptions(node: Option<&str>, list: Vec<Element>) -> Element {
    let mut b = Element::builder("subscriptions", ns::PUBSUB);
    if let Some(node) = node {
        b = b.attr(xml_ncname!("node").to_ncname(), node);
    }
    b.append_all(list).build()
}

/// `<item id>payload</item>` in namespace `ns`.
pub(crate) fn item(ns: &str, id: &str, payload: Option<Element>) -> Element {
    Element::builder("item", ns)
        .attr(xml_ncname!("id").to_ncname(), id)
        .append_all(payload)
        .build()
}

/// `<items node>` in namespace `ns`.
pub(crate) fn items(ns: &str, node: &str, items: Vec<Element>) -> Element {
    Element::builder("items", ns)
        .attr(xml_ncname!("node").to_ncname(), node)
        .append_all(items)
        .build()
}

/// `<event xmlns='…#event'>` holding one child.
pub(crate) fn event(child: Element) -> Element {
    Element::builder("event", ns::PUBSUB_EVENT)
        .append(child)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(inner: &str) -> Result<Request, PubSubError> {
        let el: Element =
            format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub>")
                .parse()
                .unwrap();
        Request::try_from(&el)
    }

    #[test]
    fn subscribe_and_unsubscribe_without_subid() {
        assert_eq!(
            parse("<subscribe node='a/b' jid='alice@x/r'/>").unwrap(),
            Request::Subscribe {
                node: "a/b".into(),
                jid: "alice@x/r".into()
            }
        );
        assert_eq!(
            parse("<unsubscribe node='a/b' jid='alice@x'/>").unwrap(),
            Request::Unsubscribe {
                node: "a/b".into(),
                jid: "alice@x".into(),
                subid: None
            }
        );
        assert_eq!(
            parse("<unsubscribe node='a/b' jid='alice@x' subid='s1'/>").unwrap(),
            Request::Unsubscribe {
                node: "a/b".into(),
                jid: "alice@x".into(),
                subid: Some("s1".into())
            }
        );
        // Subscription options next to the request are tolerated.
        assert!(matches!(
            parse("<subscribe node='n' jid='a@x'/><options/>").unwrap(),
            Request::Subscribe { .. }
        ));
    }

    #[test]
    fn items_with_max_ids_and_rsm() {
        let r = parse(
            "<items node='n' max_items='2'><item id='i1'/><item id='i2'/></items>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set>",
        )
        .unwrap();
        let Request::Items {
            node,
            max_items,
            ids,
            rsm,
        } = r
        else {
            panic!()
        };
        assert_eq!((node.as_str(), max_items), ("n", Some(2)));
        assert_eq!(ids, ["i1", "i2"]);
        assert_eq!(rsm.unwrap().max, Some(10));
    }

    #[test]
    fn user_writes_are_recognised_to_be_refused() {
        assert_eq!(
            parse("<create node='x'/>").unwrap(),
            Request::Forbidden("create-nodes")
        );
        assert_eq!(
            parse("<publish node='x'><item/></publish>").unwrap(),
            Request::Forbidden("publish")
        );
        assert_eq!(
            parse("<retract node='x'><item id='1'/></retract>").unwrap(),
            Request::Forbidden("retract-items")
        );
        let owner: Element =
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='x'/></pubsub>"
                .parse()
                .unwrap();
        assert_eq!(
            Request::try_from(&owner).unwrap(),
            Request::Forbidden("purge-nodes")
        );
        let owner: Element =
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='x'/></pubsub>"
                .parse()
                .unwrap();
        assert_eq!(
            Request::try_from(&owner).unwrap(),
            Request::Forbidden("delete-nodes")
        );
        assert_eq!(
            parse("<affiliations/>").unwrap(),
            Request::Unsupported("retrieve-affiliations")
        );
    }

    #[test]
    fn invalid_requests() {
        assert_eq!(parse(""), Err(PubSubError::Empty));
        assert_eq!(
            parse("<subscribe jid='a@x'/>"),
            Err(PubSubError::NodeIdRequired("subscribe"))
        );
        assert_eq!(
            parse("<subscribe node='n'/>"),
            Err(PubSubError::JidRequired("subscribe"))
        );
        assert_eq!(
            parse("<items node='n' max_items='-1'/>"),
            Err(PubSubError::BadMaxItems("-1".into()))
        );
        assert_eq!(
            parse("<items node='n' max_items='0'/>"),
            Err(PubSubError::BadMaxItems("0".into()))
        );
        let other: Element = "<pubsub xmlns='urn:other'/>".parse().unwrap();
        assert_eq!(Request::try_from(&other), Err(PubSubError::NotPubSub));
    }

    #[test]
    fn serialises_results_and_events() {
        let el = pubsub([subscription(
            ns::PUBSUB,
            "n",
            "a@x/r",
            Some("s1"),
            State::Subscribed,
        )]);
        let expected: Element = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscription node='n' jid='a@x/r' subid='s1' subscription='subscribed'/></pubsub>".parse().unwrap();
        assert_eq!(el, expected);
        let ev = event(items(
            ns::PUBSUB_EVENT,
            "n",
            vec![item(ns::PUBSUB_EVENT, "i1", None)],
        ));
        let expected: Element = "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='i1'/></items></event>".parse().unwrap();
        assert_eq!(ev, expected);
    }
}
