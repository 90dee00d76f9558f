//! XEP-0004: Data Forms — what xmpp-parsers' `DataForm` lacks: reading submitted values by field
//! name, and `<reported>`/`<item>` tables (§3.4) in result forms.
//!
//! The forms we send go through `xmpp_parsers::data_forms::DataForm`; a table is appended to its
//! element here, one `<item/>` per row, built row by row so that a pager can measure each.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};

use crate::stanzas::ns;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("expected <x xmlns='jabber:x:data'>")]
    NotAForm,
    #[error("the form must be of type submit, not {0:?}")]
    NotSubmitted(String),
    #[error("{0}")]
    Invalid(String),
}

/// The values a requester submitted, by field name. Serialised (serde) as the list of its
/// fields, `[[var, [value, …]], …]`: the command engine keeps it between the pages of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Submitted {
    fields: Vec<(String, Vec<String>)>,
}

impl Submitted {
    /// Reads a submitted form; `type` must be `submit` (a client answering our form).
    pub fn parse(x: &Element) -> Result<Submitted, FormError> {
        if !x.is("x", ns::DATA_FORMS) {
            return Err(FormError::NotAForm);
        }
        let form = DataForm::try_from(x.clone()).map_err(|e| FormError::Invalid(e.to_string()))?;
        if form.type_ != DataFormType::Submit {
            return Err(FormError::NotSubmitted(
                x.attr("type").unwrap_or_default().to_owned(),
            ));
        }
        Ok(Submitted {
            fields: form
                .fields
                .into_iter()
                .filter_map(|f| Some((f.var?, f.values)))
                .collect(),
        })
    }

    /// The value of a single-valued field, trimmed; `None` when absent or blank.
    pub(crate) fn single(&self, var: &str) -> Option<String> {
        self.multi(var)
            .map(|v| v.join("\n").trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// All values of a field (text-multi lines, list-multi choices).
    pub(crate) fn multi(&self, var: &str) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, values)| values.as_slice())
    }
}

/// A table's columns: (var, label) of each, in order.
pub(crate) type Columns = [(&'static str, &'static str)];

fn table_field(var: &str) -> minidom::element::ElementBuilder {
    Element::builder("field", ns::DATA_FORMS).attr(xml_ncname!("var").to_ncname(), var)
}

/// The `<item/>` of one row: one value per column, in column order.
pub(crate) fn table_item(columns: &Columns, values: &[String]) -> Element {
    Element::builder("item", ns::DATA_FORMS)
        .append_all(columns.iter().zip(values).map(|((var, _), value)| {
            table_field(var)
                .append(
                    Element::builder("value", ns::DATA_FORMS)
                        .append(value.as_str())
                        .build(),
                )
                .build()
        }))
        .build()
}

/// `form` with the table appended after its fields: the `<reported/>` header of `columns`, then
/// `items` (from [`table_item`]).
pub(crate) fn with_table(form: DataForm, columns: &Columns, items: Vec<Element>) -> Element {
    let mut el = Element::from(form);
    el.append_child(
        Element::builder("reported", ns::DATA_FORMS)
            .append_all(columns.iter().map(|(var, label)| {
                table_field(var)
                    .attr(xml_ncname!("label").to_ncname(), *label)
                    .build()
            }))
            .build(),
    );
    for item in items {
        el.append_child(item);
    }
    el
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::Field;

    #[test]
    fn submitted_values() {
        let mut form = DataForm::new(DataFormType::Submit, "", vec![]);
        form.fields = vec![
            Field::text_single("identifier", "  urn:dev:prm:1_x  "),
            Field::text_single("blank", "   "),
            Field::new(
                "description",
                xmpp_parsers::data_forms::FieldType::TextMulti,
            )
            .with_value("<p>")
            .with_value("hello</p>"),
        ];
        let s = Submitted::parse(&Element::from(form)).unwrap();
        assert_eq!(s.single("identifier").as_deref(), Some("urn:dev:prm:1_x"));
        assert_eq!(s.single("blank"), None);
        assert_eq!(s.single("missing"), None);
        assert_eq!(s.single("description").as_deref(), Some("<p>\nhello</p>"));
    }

    #[test]
    fn only_submissions_are_accepted() {
        let x: Element = "<x xmlns='jabber:x:data' type='form'/>".parse().unwrap();
        assert_eq!(
            Submitted::parse(&x).unwrap_err(),
            FormError::NotSubmitted("form".into())
        );
        let bad: Element = "<x xmlns='jabber:x:data' type='nonsense'/>"
            .parse()
            .unwrap();
        assert!(matches!(Submitted::parse(&bad), Err(FormError::Invalid(_))));
    }

    #[test]
    fn tables_follow_the_fields() {
        const COLUMNS: &Columns = &[("jid", "JID"), ("up", "Usage point")];
        let form = DataForm {
            type_: DataFormType::Result_,
            title: None,
            instructions: None,
            fields: vec![Field::text_single("a", "1")],
        };
        let items = vec![
            table_item(COLUMNS, &["alice@example.org".into(), "<*>".into()]),
            table_item(COLUMNS, &["bob@example.org".into(), "1234".into()]),
        ];
        let x = with_table(form, COLUMNS, items);
        let names: Vec<&str> = x.children().map(|c| c.name()).collect();
        assert_eq!(names, ["field", "reported", "item", "item"]);
        let wire = String::from_utf8(xso::to_vec(&x).unwrap()).unwrap();
        assert!(
            wire.contains(
                "<reported><field label='JID' var='jid'></field>\
                 <field label='Usage point' var='up'></field></reported>"
            ),
            "{wire}"
        );
        assert!(
            wire.contains(
                "<item><field var='jid'><value>alice@example.org</value></field>\
                 <field var='up'><value>&lt;*&gt;</value></field></item>"
            ),
            "{wire}"
        );
        // What a client reads back: the form still parses, its fields intact.
        let back = DataForm::try_from(x).unwrap();
        assert_eq!(back.fields.len(), 1);
    }
}
