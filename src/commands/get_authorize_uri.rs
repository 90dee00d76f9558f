//! `get_authorize_uri` (on `enedis@D`; docs/architecture.md §4.2, docs/protocol.md §6): an
//! application without a web front-end asks for a consent page describing it; the answer is the
//! page's address, to hand to customers.

use async_trait::async_trait;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};

use super::get_history::required;
use crate::model::id::random_id;
use crate::model::redirect_uri::{parse_redirect_uri, MAX_REDIRECT_URI};
use crate::model::ConsentRequest;
use crate::request::error::RequestError;
use crate::request::{Context, Request};
use crate::stanzas::form::Submitted;
use crate::time::now;
use crate::xep::adhoc::{Access, AdHocCommand, Scope, Spec, Stage};

pub(crate) struct GetAuthorizeUri;

static SPEC: Spec = Spec {
    node: "get_authorize_uri",
    name: "Get a consent page address",
    access: Access::Anyone,
    scopes: &[Scope::Source(Some("enedis"))],
};

/// Longest application name shown as the page's heading.
const MAX_NAME: usize = 100;
/// Largest description (HTML) kept.
const MAX_DESCRIPTION: usize = 16 * 1024;

#[async_trait]
impl AdHocCommand for GetAuthorizeUri {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    async fn form(&self, _ctx: &Context, _req: &Request) -> Result<DataForm, RequestError> {
        let mut logo = Field::text_single("logo_url", "");
        logo.label = Some("Logo (https URL, shown 100 px wide)".into());
        let mut redirect = Field::text_single("redirect_uri", "");
        redirect.label = Some("Where the customer's browser returns (optional)".into());
        Ok(DataForm {
            type_: DataFormType::Form,
            title: Some("Consent page".into()),
            instructions: Some(
                "Describe your application and the purpose of the processing; customers read it \
                 before giving consent at Enedis. The grant goes to your bare JID."
                    .into(),
            ),
            fields: vec![
                required(Field::text_single("name", ""), "Application name"),
                logo,
                required(
                    Field::new("description", FieldType::TextMulti),
                    "Description and purpose (HTML)",
                ),
                redirect,
            ],
        })
    }

    async fn run(
        &self,
        ctx: &Context,
        req: &Request,
        input: &Submitted,
        _cursor: Option<&str>,
    ) -> Result<Stage, RequestError> {
        let (source, pages) = req
            .source_id()
            .and_then(|id| Some((id, ctx.consent_sources.get(id)?)))
            .ok_or(RequestError::ItemNotFound)?;
        let name = super::required_value(input, "name")?;
        if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(RequestError::bad_request(format!(
                "name: at most {MAX_NAME} characters, on one line"
            )));
        }
        let logo_url = input.single("logo_url");
        if let Some(url) = &logo_url {
            let https =
                reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
            if !https || url.len() > MAX_REDIRECT_URI {
                return Err(RequestError::bad_request(
                    "logo_url: must be an absolute https URL",
                ));
            }
        }
        let description = super::required_value(input, "description")?;
        if description.len() > MAX_DESCRIPTION {
            return Err(RequestError::bad_request(format!(
                "description: at most {MAX_DESCRIPTION} bytes"
            )));
        }
        let redirect_uri = input.single("redirect_uri");
        if let Some(uri) = &redirect_uri {
            if uri.len() > MAX_REDIRECT_URI || parse_redirect_uri(uri).is_none() {
                return Err(RequestError::bad_request(
                    "redirect_uri: must be an absolute http(s) URL without user info",
                ));
            }
        }
        let app_jid = req.requester.to_string();
        let pages_allowed = pages;
        let pages = ctx.store.count_consent_requests(&app_jid).await?;
        if pages >= u64::from(pages_allowed.max_per_app) {
            return Err(RequestError::ResourceConstraint(format!(
                "you already have {pages} consent pages, the most one application may keep"
            )));
        }
        let id = random_id();
        ctx.store
            .add_consent_request(&ConsentRequest {
                id: id.clone(),
                source: source.to_owned(),
                app_jid,
                name,
                logo_url,
                description,
                redirect_uri,
                created_at: now(),
            })
            .await?;
        let uri = format!("{}/authorize?id={id}", ctx.public_url.trim_end_matches('/'));
        let mut field = Field::text_single("authorize_uri", &uri);
        field.label = Some("Adresse pour recueillir le consentement".into());
        Ok(super::completed("Authorize URI", vec![field]))
    }
}
