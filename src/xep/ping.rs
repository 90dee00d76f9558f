//! XEP-0199: XMPP Ping (keepalive pings we send; answers to pings are in the router).

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;

/// A ping from the component's domain to `to`, with the given id.
pub(crate) fn request(from: Jid, to: Jid, id: String) -> Element {
    Iq::from_get(id, Ping).with_from(from).with_to(to).into()
}
