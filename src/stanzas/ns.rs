//! XML namespaces used by the component, in one place.

/// Stanzas on a XEP-0114 stream.
pub(crate) const COMPONENT: &str = "jabber:component:accept";
/// Stream-level elements (`<stream:error/>`).
pub(crate) const STREAM: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions.
pub(crate) const XMPP_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// XEP-0030: Service Discovery.
pub(crate) const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub(crate) const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0050: Ad-Hoc Commands.
pub(crate) const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0060: Publish-Subscribe.
pub(crate) const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub(crate) const PUBSUB_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// XEP-0199: XMPP Ping.
pub(crate) const PING: &str = "urn:xmpp:ping";
/// XEP-0092: Software Version.
pub(crate) const VERSION: &str = "jabber:iq:version";
/// XEP-0059: Result Set Management.
pub(crate) const RSM: &str = "http://jabber.org/protocol/rsm";

/// Quoalise payloads and features.
pub(crate) const QUOALISE: &str = "urn:quoalise:0";
/// XEP-0128 form type describing a data source.
pub(crate) const QUOALISE_SOURCE_FORM: &str = "urn:quoalise:0#source";
/// XEP-0128 form type describing a usage point.
pub(crate) const QUOALISE_USAGE_POINT_FORM: &str = "urn:quoalise:0#usage-point";
/// RFC 8428: SenML XML.
pub(crate) const SENML: &str = "urn:ietf:params:xml:ns:senml";
/// XEP-0335: JSON Containers (`export` carries its SenML JSON pages in one, `access_report`
/// its entries).
pub(crate) const JSON: &str = "urn:xmpp:json:0";
/// XEP-0004: Data Forms.
pub(crate) const DATA_FORMS: &str = "jabber:x:data";
pub(crate) const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub(crate) const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub(crate) const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0203: Delayed Delivery.
pub(crate) const DELAY: &str = "urn:xmpp:delay";
/// The message that tells an application a consent was given (docs/protocol.md §6).
pub(crate) const DATACONNECT_AUTHORIZE: &str = "https://consometers.org/dataconnect#authorize";
