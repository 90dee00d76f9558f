//! What a web handler answers: an HTML page with a status, or a redirect, always sent with the
//! same strict headers (CSP, no-store, no-referrer, nosniff). Every handler, and every error,
//! goes through it, so no page can leave without them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pages::{render_message, CONTENT_SECURITY_POLICY};

/// An answer of ours.
#[derive(Debug)]
pub(crate) enum Page {
    Html {
        status: u16,
        body: String,
    },
    /// 303 See Other to this URL.
    Redirect(String),
}

impl Page {
    pub(crate) fn html(status: u16, body: String) -> Page {
        Page::Html { status, body }
    }

    pub(crate) fn redirect(to: &str) -> Page {
        Page::Redirect(to.to_owned())
    }

    pub(crate) fn error(status: u16, title: &str, text: &str) -> Page {
        Page::html(status, render_message(title, text))
    }

    /// A failure of ours: logged with its detail, shown without.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Page {
        tracing::error!(%detail, "internal error while serving a web page");
        Page::error(
            500,
            "Erreur interne",
            "Le service a rencontré une erreur. Réessayez plus tard.",
        )
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = match self {
            Page::Html { status, body } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    body,
                )
                    .into_response()
            }
            Page::Redirect(to) => match HeaderValue::from_str(&to) {
                Ok(location) => {
                    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
                }
                Err(_) => {
                    return Page::internal("redirect URL is not a header value").into_response()
                }
            },
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}
