//! XML namespaces used by the component, in one place.

/// Stanzas on a XEP-0114 stream.
pub const COMPONENT: &str = "jabber:component:accept";
/// Stream-level elements (`<stream:error/>`).
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions.
pub const XMPP_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const XMPP_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// XEP-0030: Service Discovery.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0050: Ad-Hoc Commands.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0060: Publish-Subscribe.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// XEP-0199: XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0092: Software Version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0059: Result Set Management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";

/// Quoalise payloads and features.
pub const QUOALISE: &str = "urn:quoalise:0";
/// XEP-0128 form type describing a data source.
pub const QUOALISE_SOURCE_FORM: &str = "urn:quoalise:0#source";
/// XEP-0128 form type describing a usage point.
pub const QUOALISE_USAGE_POINT_FORM: &str = "urn:quoalise:0#usage-point";
/// RFC 8428: SenML XML.
pub const SENML: &str = "urn:ietf:params:xml:ns:senml";
/// XEP-0004: Data Forms.
pub const DATA_FORMS: &str = "jabber:x:data";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0203: Delayed Delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// The message that tells an application a consent was given (docs/protocol.md §6).
pub const DATACONNECT_AUTHORIZE: &str = "https://consometers.org/dataconnect#authorize";
