//! XEP-0030: Service Discovery (with XEP-0128 extended info).
//!
//! What each address shows is in docs/protocol.md §2: the domain lists sources, a source lists
//! the usage points the requester may see, a usage point lists its series as PubSub nodes.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity, Item};
use xmpp_parsers::jid::{BareJid, Jid};

use crate::model::{Series, UsagePoint};
use crate::request::error::RequestError;
use crate::request::{Context, Request, Target};
use crate::source::SourceInfo;
use crate::stanzas::ns;
use crate::xep::adhoc::Engine;
use crate::xep::rsm;

/// Name of the service identity.
pub(crate) const SERVICE_NAME: &str = "Quoalise";

/// Features of the component's domain.
const SERVICE_FEATURES: &[&str] = &[
    ns::QUOALISE,
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::COMMANDS,
    ns::PING,
    ns::VERSION,
];

/// Features of a source JID.
const SOURCE_FEATURES: &[&str] = &[
    ns::QUOALISE,
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::COMMANDS,
    ns::PING,
];

/// Features of a usage-point JID: ours, then the PubSub service's.
fn usage_point_features() -> Vec<&'static str> {
    let mut features = vec![
        ns::QUOALISE,
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::COMMANDS,
        ns::PING,
        ns::PUBSUB,
        ns::RSM,
    ];
    features.extend_from_slice(crate::xep::pubsub::FEATURES);
    features
}

pub(crate) async fn info(
    ctx: &Context,
    commands: &Engine,
    req: &Request,
    query: &Element,
) -> Result<Element, RequestError> {
    let node = query.attr("node").filter(|n| !n.is_empty());
    let result = match (&req.target, node) {
        (_, Some(node)) if commands.info(req, node).is_some() => {
            commands.info(req, node).ok_or(RequestError::ItemNotFound)?
        }
        (_, Some(ns::COMMANDS)) => info_result(
            node,
            vec![Identity::new_anonymous::<_, _, String, String>(
                "automation",
                "command-list",
            )],
            &[ns::COMMANDS],
            vec![],
        ),
        (Target::Service, None) => info_result(
            None,
            vec![identity("component", "generic", SERVICE_NAME)],
            SERVICE_FEATURES,
            vec![],
        ),
        (Target::Source(source), None) => {
            let visible = visible_usage_points(ctx, req, source).await?.len();
            info_result(
                None,
                vec![identity("automation", "command-list", &source.title)],
                SOURCE_FEATURES,
                vec![source_form(source, visible)],
            )
        }
        (Target::UsagePoint(up), None) => {
            let series = ctx.store.series(&up.id).await?;
            info_result(
                None,
                vec![
                    identity("pubsub", "service", &up.name),
                    identity("automation", "command-list", &up.name),
                ],
                &usage_point_features(),
                vec![usage_point_form(up, &series)],
            )
        }
        (Target::UsagePoint(up), Some(node)) => {
            let series = ctx.store.series(&up.id).await?;
            let series = series
                .iter()
                .find(|s| s.path == node)
                .ok_or(RequestError::ItemNotFound)?;
            info_result(
                Some(node),
                vec![identity("pubsub", "leaf", &series.title)],
                &[ns::PUBSUB],
                vec![node_meta_data(series)],
            )
        }
        (_, Some(_)) => return Err(RequestError::ItemNotFound),
    };
    Ok(result.into())
}

pub(crate) async fn items(
    ctx: &Context,
    commands: &Engine,
    req: &Request,
    query: &Element,
) -> Result<Element, RequestError> {
    let query = DiscoItemsQuery::try_from(query.clone())
        .map_err(|e| RequestError::bad_request(format!("disco#items query: {e}")))?;
    let node = query.node.as_deref().filter(|n| !n.is_empty());
    let all: Vec<Item> = match (&req.target, node) {
        (_, Some(ns::COMMANDS)) => commands.items(req),
        (Target::Service, None) => ctx
            .sources
            .iter()
            .map(|s| item(jid(ctx, Some(&s.id)), None, &s.title))
            .collect(),
        (Target::Source(source), None) => visible_usage_points(ctx, req, source)
            .await?
            .iter()
            .map(|up| item(jid(ctx, Some(&up.id)), None, &up.name))
            .collect(),
        (Target::UsagePoint(up), None) => ctx
            .store
            .series(&up.id)
            .await?
            .iter()
            .map(|s| item(jid(ctx, Some(&up.id)), Some(&s.path), &s.title))
            .collect(),
        (Target::UsagePoint(up), Some(node)) => {
            // A series node: the ids of its published items, for those who may read them.
            let series = ctx.store.series(&up.id).await?;
            if !series.iter().any(|s| s.path == node) {
                return Err(RequestError::ItemNotFound);
            }
            if !req.view.may_read(&up.id, node) {
                return Err(RequestError::ClosedNode(format!(
                    "You have no grant for usage point {}, series {node}",
                    up.id
                )));
            }
            let node_jid = jid(ctx, Some(&up.id));
            ctx.store
                .items(&up.id, node, None, None)
                .await?
                .into_iter()
                .map(|i| Item {
                    jid: node_jid.clone(),
                    node: None,
                    name: Some(i.item_id),
                })
                .collect()
        }
        (_, Some(_)) => return Err(RequestError::ItemNotFound),
    };
    let (items, rsm) = rsm::page(&all, item_uid, query.rsm.as_ref())?;
    Ok(DiscoItemsResult {
        node: query.node,
        items,
        rsm,
    }
    .into())
}

/// Usage points of `source` the requester may see, ordered by id.
async fn visible_usage_points(
    ctx: &Context,
    req: &Request,
    source: &SourceInfo,
) -> Result<Vec<UsagePoint>, RequestError> {
    Ok(ctx
        .store
        .usage_points(Some(&source.id))
        .await?
        .into_iter()
        .filter(|up| req.view.sees_usage_point(&up.id))
        .collect())
}

/// The paging key of a disco item: the node when there is one, else the JID.
fn item_uid(item: &Item) -> String {
    item.node.clone().unwrap_or_else(|| item.jid.to_string())
}

fn jid(ctx: &Context, node: Option<&str>) -> Jid {
    match node.and_then(|n| BareJid::new(&format!("{n}@{}", ctx.domain)).ok()) {
        Some(jid) => jid.into(),
        None => ctx.domain.clone().into(),
    }
}

fn item(jid: Jid, node: Option<&str>, name: &str) -> Item {
    Item {
        jid,
        node: node.map(Into::into),
        name: Some(name.into()),
    }
}

fn identity(category: &str, type_: &str, name: &str) -> Identity {
    Identity {
        category: category.into(),
        type_: type_.into(),
        lang: None,
        name: Some(name.into()),
    }
}

fn info_result(
    node: Option<&str>,
    identities: Vec<Identity>,
    features: &[&str],
    extensions: Vec<DataForm>,
) -> DiscoInfoResult {
    DiscoInfoResult {
        node: node.map(Into::into),
        identities,
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        extensions,
    }
}

fn source_form(source: &SourceInfo, visible_usage_points: usize) -> DataForm {
    DataForm::new(
        DataFormType::Result_,
        ns::QUOALISE_SOURCE_FORM,
        vec![
            Field::text_single("kind", &source.kind),
            Field::text_single("title", &source.title),
            Field::text_single("description", &source.description),
            Field::text_single("usage-points", &visible_usage_points.to_string()),
        ],
    )
}

fn usage_point_form(up: &UsagePoint, series: &[Series]) -> DataForm {
    let mut series_field = Field::new("series", FieldType::TextMulti);
    series_field.values = series.iter().map(|s| s.path.clone()).collect();
    DataForm::new(
        DataFormType::Result_,
        ns::QUOALISE_USAGE_POINT_FORM,
        vec![
            Field::text_single("source", &up.source),
            Field::text_single("device-type", &up.device_type),
            Field::text_single("identifier-authority", &up.identifier.authority),
            Field::text_single("identifier-type", &up.identifier.kind),
            Field::text_single("identifier-value", &up.identifier.value),
            Field::text_single("urn", &up.identifier.urn()),
            Field::text_single("name", &up.name),
            Field::new("online", FieldType::Boolean).with_value(if up.online { "1" } else { "0" }),
            series_field,
        ],
    )
}

/// The XEP-0060 `pubsub#meta-data` form of a series node, carrying the Quoalise measurement.
fn node_meta_data(series: &Series) -> DataForm {
    let m = &series.measurement;
    DataForm::new(
        DataFormType::Result_,
        ns::PUBSUB_META_DATA,
        vec![
            Field::text_single("pubsub#title", &series.title),
            Field::text_single("pubsub#type", ns::QUOALISE),
            Field::text_single("quoalise#name", &m.name),
            Field::text_single("quoalise#direction", &m.direction),
            Field::text_single("quoalise#quantity", &m.quantity),
            Field::text_single("quoalise#type", &m.kind),
            Field::text_single("quoalise#unit", &m.unit),
            Field::text_single("quoalise#aggregation", &m.aggregation),
            Field::text_single("quoalise#sampling-interval", &m.sampling_interval),
        ],
    )
}
