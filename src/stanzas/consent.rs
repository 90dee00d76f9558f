//! The message that tells an application a customer gave consent (docs/protocol.md §6): the
//! usage points now readable, and the application's own `state`, as the Quoalise consent flow
//! of the original proxies sends it.

use minidom::rxml::xml_ncname;
use minidom::Element;

use crate::model::id::random_id;
use crate::stanzas::ns;

/// The message of docs/protocol.md §6: a `<usage-point>` per meter and the application's `state`.
pub(crate) fn authorized_message(
    from: &str,
    to: &str,
    usage_points: &[&str],
    app_state: Option<&str>,
) -> Element {
    let mut x = Element::builder("x", ns::DATACONNECT_AUTHORIZE).build();
    for prm in usage_points {
        x.append_child(
            Element::builder("usage-point", ns::DATACONNECT_AUTHORIZE)
                .append(*prm)
                .build(),
        );
    }
    if let Some(s) = app_state {
        x.append_child(
            Element::builder("state", ns::DATACONNECT_AUTHORIZE)
                .append(s)
                .build(),
        );
    }
    let id = random_id();
    Element::builder("message", ns::COMPONENT)
        .attr(xml_ncname!("type").to_ncname(), "chat")
        .attr(xml_ncname!("from").to_ncname(), from)
        .attr(xml_ncname!("to").to_ncname(), to)
        .attr(xml_ncname!("id").to_ncname(), id.as_str())
        .append(
            Element::builder("body", ns::COMPONENT)
                .append(format!(
                    "Access granted for usage points {}",
                    usage_points.join(",")
                ))
                .build(),
        )
        .append(x)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_usage_points_and_state() {
        let m = authorized_message(
            "enedis@quoalise.example.org",
            "app@example.org",
            &["99999999999991"],
            Some("a&b"),
        );
        let x = m.get_child("x", ns::DATACONNECT_AUTHORIZE).unwrap();
        assert_eq!(
            x.get_child("usage-point", ns::DATACONNECT_AUTHORIZE)
                .unwrap()
                .text(),
            "99999999999991"
        );
        assert_eq!(
            x.get_child("state", ns::DATACONNECT_AUTHORIZE)
                .unwrap()
                .text(),
            "a&b"
        );
        assert_eq!(m.attr("to"), Some("app@example.org"));
        assert!(String::from(&m).contains("a&amp;b"));
    }
}
