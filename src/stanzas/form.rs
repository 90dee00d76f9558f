//! XEP-0004: Data Forms — what xmpp-parsers' `DataForm` lacks: `<reported>`/`<item>` tables, and
//! reading submitted values by field name.
//!
//! Single-item forms go through `xmpp_parsers::data_forms::DataForm`; a result table is appended
//! to its element here, and parsed back for tests and clients.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType};

use crate::stanzas::ns;

/// A `<reported/>` header and its `<item/>` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// (var, label) of each column.
    pub(crate) columns: Vec<(String, String)>,
    /// One value per column, in column order.
    pub(crate) rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("expected <x xmlns='jabber:x:data'>")]
    NotAForm,
    #[error("the form must be of type submit, not {0:?}")]
    NotSubmitted(String),
    #[error("table: item {row} has a field {var:?} that is not a reported column")]
    UnknownColumn { row: usize, var: String },
    #[error("{0}")]
    Invalid(String),
}

impl Table {
    /// The form element with this table appended after its fields.
    pub(crate) fn append_to(&self, form: &DataForm) -> Element {
        let mut el = Element::from(form.clone());
        let field = |var: &str| {
            Element::builder("field", ns::DATA_FORMS).attr(xml_ncname!("var").to_ncname(), var)
        };
        el.append_child(
            Element::builder("reported", ns::DATA_FORMS)
                .append_all(self.columns.iter().map(|(var, label)| {
                    field(var)
                        .attr(xml_ncname!("label").to_ncname(), label)
                        .build()
                }))
                .build(),
        );
        for row in &self.rows {
            el.append_child(
                Element::builder("item", ns::DATA_FORMS)
                    .append_all(self.columns.iter().zip(row).map(|((var, _), value)| {
                        field(var)
                            .append(
                                Element::builder("value", ns::DATA_FORMS)
                                    .append(value.as_str())
                                    .build(),
                            )
                            .build()
                    }))
                    .build(),
            );
        }
        el
    }

    /// Reads the table of a form element (empty when it has none).
    pub fn parse(x: &Element) -> Result<Table, FormError> {
        if !x.is("x", ns::DATA_FORMS) {
            return Err(FormError::NotAForm);
        }
        let columns: Vec<(String, String)> = x
            .get_child("reported", ns::DATA_FORMS)
            .map(|r| {
                r.children()
                    .filter_map(|f| {
                        Some((
                            f.attr("var")?.to_owned(),
                            f.attr("label").unwrap_or_default().to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut rows = Vec::new();
        for (i, item) in x
            .children()
            .filter(|c| c.is("item", ns::DATA_FORMS))
            .enumerate()
        {
            let mut row = vec![String::new(); columns.len()];
            for f in item.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
                let var = f.attr("var").unwrap_or_default();
                let col = columns.iter().position(|(v, _)| v == var).ok_or_else(|| {
                    FormError::UnknownColumn {
                        row: i,
                        var: var.to_owned(),
                    }
                })?;
                row[col] = values_of(f).join("\n");
            }
            rows.push(row);
        }
        Ok(Table { columns, rows })
    }
}

fn values_of(field: &Element) -> Vec<String> {
    field
        .children()
        .filter(|v| v.is("value", ns::DATA_FORMS))
        .map(|v| v.text())
        .collect()
}

/// The values a requester submitted, by field name.
#[derive(Debug, Clone, Default)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::data_forms::Field;

    #[test]
    fn table_round_trip() {
        let table = Table {
            columns: vec![
                ("jid".into(), "JID".into()),
                ("up".into(), "Usage point".into()),
            ],
            rows: vec![
                vec!["alice@example.org".into(), "*".into()],
                vec!["bob@example.org".into(), "1234".into()],
            ],
        };
        let form = DataForm::new(DataFormType::Result_, "urn:quoalise:0#grants", vec![]);
        let el = table.append_to(&form);
        assert_eq!(el.children().filter(|c| c.name() == "item").count(), 2);
        assert_eq!(Table::parse(&el).unwrap(), table);
    }

    #[test]
    fn table_rejects_unknown_columns() {
        let x: Element =
            "<x xmlns='jabber:x:data' type='result'><reported><field var='a'/></reported>\
            <item><field var='b'><value>1</value></field></item></x>"
                .parse()
                .unwrap();
        assert_eq!(
            Table::parse(&x),
            Err(FormError::UnknownColumn {
                row: 0,
                var: "b".into()
            })
        );
        let not_x: Element = "<y xmlns='jabber:x:data'/>".parse().unwrap();
        assert_eq!(Table::parse(&not_x), Err(FormError::NotAForm));
    }

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
}
