//! Ad-hoc commands (XEP-0050) through the router, without a socket: build a request, send it,
//! read the answer's command, form values and the command list.

use minidom::Element;
use quoalise_component::xmpp::router::Router;

pub const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// One submitted form field.
pub fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// A `<command/>` request from `from` to `to` for `node`, with `attrs` (action, sessionid) and
/// a submitted form when `fields` is given.
pub fn command(
    from: &str,
    to: &str,
    node: &str,
    attrs: &str,
    fields: Option<&[(&str, &str)]>,
) -> Element {
    let form = fields
        .map(|f| {
            let inner: String = f.iter().map(|(k, v)| field(k, v)).collect();
            format!("<x xmlns='jabber:x:data' type='submit'>{inner}</x>")
        })
        .unwrap_or_default();
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='c1' from='{from}' to='{to}'>\
         <command xmlns='{COMMANDS}' node='{node}' {attrs}>{form}</command></iq>"
    )
    .parse()
    .unwrap()
}

/// Sends one stanza; its one answer.
pub async fn send(router: &Router, el: Element) -> Element {
    let mut out = router.handle(el).await;
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// The `<command/>` of a `result` answer.
pub fn cmd(reply: &Element) -> &Element {
    assert_eq!(
        reply.attr("type"),
        Some("result"),
        "{}",
        String::from(reply)
    );
    reply.get_child("command", COMMANDS).unwrap()
}

/// Every value of field `var` in the answer's form.
pub fn result_values(reply: &Element, var: &str) -> Vec<String> {
    let form = cmd(reply).get_child("x", "jabber:x:data").unwrap();
    form.children()
        .filter(|f| f.attr("var") == Some(var))
        .flat_map(|f| f.children().map(|v| v.text()))
        .collect()
}

/// The first value of field `var` in the answer's form.
pub fn result_value(reply: &Element, var: &str) -> Option<String> {
    result_values(reply, var).into_iter().next()
}

/// The command nodes `from` sees listed on `to`.
pub async fn command_nodes(router: &Router, from: &str, to: &str) -> Vec<String> {
    let list = format!("<iq xmlns='jabber:component:accept' type='get' id='d' from='{from}' to='{to}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>")
        .parse::<Element>()
        .unwrap();
    send(router, list)
        .await
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .map(|i| i.attr("node").unwrap().to_owned())
        .collect()
}
