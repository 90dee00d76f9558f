//! Reading the answers of the component: what an error stanza says.

use minidom::Element;

const ACCEPT: &str = "jabber:component:accept";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The parts of an error answer (RFC 6120 §8.3) that tests check.
#[derive(Debug, PartialEq, Eq)]
pub struct StanzaError {
    /// `cancel`, `modify`, `wait`...
    pub type_: String,
    /// The defined condition, e.g. `item-not-found`.
    pub condition: String,
    /// The application-specific condition in Clark notation, `{namespace}name`.
    pub app: Option<String>,
    /// The `<text/>`, empty when there is none.
    pub text: String,
}

/// The error of `reply`; panics, showing the reply, when it is not an error answer.
pub fn stanza_error(reply: &Element) -> StanzaError {
    assert_eq!(reply.attr("type"), Some("error"), "{}", String::from(reply));
    let error = reply
        .get_child("error", ACCEPT)
        .unwrap_or_else(|| panic!("no <error/> in {}", String::from(reply)));
    let condition = error
        .children()
        .find(|c| c.ns() == STANZAS && c.name() != "text")
        .unwrap_or_else(|| panic!("no defined condition in {}", String::from(reply)))
        .name()
        .to_owned();
    let app = error
        .children()
        .find(|c| c.ns() != STANZAS)
        .map(|c| clark(&c.ns(), c.name()));
    let text = error
        .get_child("text", STANZAS)
        .map(|t| t.text())
        .unwrap_or_default();
    StanzaError {
        type_: error.attr("type").unwrap_or_default().to_owned(),
        condition,
        app,
        text,
    }
}

/// `{namespace}name`, how [`StanzaError::app`] names an element.
pub fn clark(ns: &str, name: &str) -> String {
    format!("{{{ns}}}{name}")
}
