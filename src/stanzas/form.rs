//! XEP-0004: Data Forms — what xmpp-parsers' `DataForm` lacks: reading submitted values by field
//! name.
//!
//! The forms we send go through `xmpp_parsers::data_forms::DataForm`.

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
}
