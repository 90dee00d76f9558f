//! The HTTP server (axum): consent pages, Enedis' callback, export downloads, `/healthz`,
//! `/metrics`.
//!
//! Handlers take the raw query as a map and answer with a [`Page`], so that every bad request
//! gets a readable French page rather than a framework rejection. Handlers share a
//! [`WebState`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::answer::Page;
use super::consent;
use super::ingest::{self, Problem};
use super::state::WebState;
use crate::metrics::CONTENT_TYPE;

pub fn router(state: Arc<WebState>) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/authorize", get(authorize))
        .route("/enedis/callback", get(callback))
        .route("/export/{token}", get(super::export::download))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ingest/{source}/{device}", post(ingest))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(move |request, next| {
            refuse_large_bodies(max_body, request, next)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Answers 413 to a request that announces a body larger than `max_body`, before reading it.
/// (A body without a length is cut at `max_body` by [`axum::extract::DefaultBodyLimit`] where
/// a route reads one.)
async fn refuse_large_bodies(
    max_body: usize,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body as u64) {
        // Devices read problem documents, not pages.
        if request.uri().path().starts_with("/ingest/") {
            return Problem::too_large(max_body).into_response();
        }
        return Page::error(
            413,
            "Requête trop grande",
            "Le corps de la requête dépasse la taille acceptée.",
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves on `listener` until `shutdown`, within `limits`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<WebState>,
    limits: super::listener::Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    super::listener::serve(listener, router(state), limits, shutdown).await
}

async fn authorize(
    State(state): State<Arc<WebState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Page {
    match query {
        Ok(Query(query)) => consent::authorize_page(&state, &query).await,
        Err(_) => bad_query(),
    }
}

async fn callback(
    State(state): State<Arc<WebState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Page {
    match query {
        Ok(Query(query)) => consent::callback(&state, &query).await,
        Err(_) => bad_query(),
    }
}

async fn ingest(
    State(state): State<Arc<WebState>>,
    Path((source, device)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    ingest::post(
        state.ingest.clone(),
        state.max_body,
        &source,
        &device,
        request,
    )
    .await
}

fn bad_query() -> Page {
    Page::error(
        400,
        "Lien invalide",
        "Les paramètres de cette adresse sont mal encodés.",
    )
}

async fn not_found() -> Page {
    Page::error(404, "Page introuvable", "Cette adresse n'existe pas.")
}

/// 200 when the store answers and the XMPP link is up, 503 otherwise; JSON says which.
/// 200 when the link makes progress and the store answers; 503 with the reasons otherwise.
async fn healthz(State(state): State<Arc<WebState>>) -> Response {
    let report = state.health.check().await;
    let status = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        report.to_json().to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<WebState>>) -> Response {
    state.metrics.set_connected(*state.connected.borrow());
    match state.store.count_subscriptions().await {
        Ok(n) => state.metrics.set_subscriptions(n),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count subscriptions"),
    }
    match crate::store::undelivered(state.store.as_ref()).await {
        Ok((n, oldest)) => {
            state.metrics.set_outbox_pending(n);
            let age = oldest.map_or(0, |queued| {
                u64::try_from(crate::time::now().saturating_sub(queued)).unwrap_or(0)
            });
            state.metrics.set_outbox_oldest_age(age);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count the outbox"),
    }
    match state.store.count_active_consents(crate::time::now()).await {
        Ok(n) => state.metrics.set_consents_active(n),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count consents"),
    }
    let report = state.health.check().await;
    state.metrics.set_health(
        report.xmpp.is_ok(),
        report.store.is_ok(),
        report.outbox.is_ok(),
    );
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
