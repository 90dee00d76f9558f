//! The consent chain over HTTP: the consent page (`/authorize`) and Enedis' callback
//! (`/enedis/callback`).
//!
//! Made safe (docs/architecture.md §4.2): the page only exists for an id an application asked for
//! over XMPP; the `state` sent to Enedis is ours (opaque, single use, short-lived) and carries
//! the application's own `state` and `redirect_uri` server-side; the browser is sent back only
//! to the redirect URI the application registered, never to one read from the URL alone.

use std::collections::HashMap;

use reqwest::Url;

use super::answer::Page;
use super::pages::{render_consent, render_message, ConsentPage};
use super::sanitize::description_text;
use super::state::WebState;
use crate::model::id::random_id;
use crate::model::redirect_uri::{parse_redirect_uri, MAX_REDIRECT_URI};
use crate::model::{Consent, ConsentRequest, OAuthState};
use crate::source::enedis::service::ConsentedMeter;
use crate::source::enedis::{meter, Enedis};
use crate::source::FetchError;
use crate::stanzas::consent::authorized_message;
use crate::store::NewOutboxEntry;
use crate::time::duration::ConsentDuration;
use crate::time::now;

/// Consent links (OAuth states) kept per consent page: far more than one person opening the page
/// on a few devices needs, and a bound on what reloading it in a loop can make us store.
const MAX_LINKS_PER_PAGE: usize = 64;
/// Longest application `state` we carry.
const MAX_STATE: usize = 512;
/// Most meters a legacy (v1) callback may name.
const MAX_LEGACY_POINTS: usize = 10;

/// `GET /authorize?id=…[&duration=P1Y][&state=…][&redirect_uri=…]`.
pub(crate) async fn authorize_page(state: &WebState, query: &HashMap<String, String>) -> Page {
    let Some(id) = query.get("id").filter(|id| !id.is_empty()) else {
        return Page::error(
            400,
            "Lien incomplet",
            "Le paramètre id manque à cette adresse.",
        );
    };
    let request = match state.store.consent_request(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return unknown_link(),
        Err(e) => return Page::internal(e),
    };
    let Some(enedis) = state.enedis.get(&request.source) else {
        return unknown_link();
    };
    let duration = match query.get("duration").map(|d| d.parse::<ConsentDuration>()) {
        None => ConsentDuration::default(),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            return Page::error(
                400,
                "Durée invalide",
                &format!(
                    "La durée demandée n'est pas valide ({e}). Elle s'écrit en ISO 8601, par \
                     exemple P1Y pour un an, et ne peut pas dépasser trois ans."
                ),
            )
        }
    };
    let app_state = query.get("state").cloned();
    if app_state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Page::error(400, "Lien invalide", "Le paramètre state est trop long.");
    }
    let redirect_uri = query.get("redirect_uri").cloned();
    if let Some(uri) = &redirect_uri {
        if uri.len() > MAX_REDIRECT_URI || parse_redirect_uri(uri).is_none() {
            return Page::error(
                400,
                "Lien invalide",
                "Le paramètre redirect_uri n'est pas une adresse http(s) valide.",
            );
        }
    }
    let created_at = now();
    let lifetime = i64::try_from(enedis.config.consent_link_lifetime.0.as_secs()).unwrap_or(3600);
    let oauth = OAuthState {
        state: random_id(),
        request_id: request.id.clone(),
        duration: duration.to_string(),
        app_state,
        redirect_uri,
        created_at,
        expires_at: created_at + lifetime,
    };
    if let Err(e) = state
        .store
        .add_oauth_state(&oauth, MAX_LINKS_PER_PAGE)
        .await
    {
        return Page::internal(e);
    }
    let Some(button) = enedis_authorize_url(enedis, &oauth.state, &duration) else {
        return Page::internal("authorize_url is not a URL");
    };
    Page::html(
        200,
        render_consent(&ConsentPage {
            app_name: &request.name,
            logo_url: request.logo_url.as_deref(),
            description_html: &request.description,
            duration: &duration,
            button_href: button.as_str(),
            app_jid: &request.app_jid,
        }),
    )
}

/// `{authorize_url}?client_id=…&response_type=code&state=…&duration=…`.
fn enedis_authorize_url(enedis: &Enedis, state: &str, duration: &ConsentDuration) -> Option<Url> {
    let mut url = Url::parse(&enedis.config.authorize_url).ok()?;
    url.query_pairs_mut()
        .append_pair("client_id", &enedis.config.client_id)
        .append_pair("response_type", "code")
        .append_pair("state", state)
        .append_pair("duration", &duration.to_string());
    Some(url)
}

/// `GET /enedis/callback?autorisation_id=…&state=…` (authorize v2), or the legacy
/// `?code=…&usage_point_id=…&state=…` (v1).
pub(crate) async fn callback(state: &WebState, query: &HashMap<String, String>) -> Page {
    let Some(our_state) = query.get("state").filter(|s| !s.is_empty()) else {
        return Page::error(
            400,
            "Lien incomplet",
            "Le paramètre state manque à cette adresse.",
        );
    };
    let reference = match (query.get("autorisation_id"), query.get("code")) {
        (Some(id), _) if !id.is_empty() => Reference::Autorisation(id.clone()),
        (_, Some(code)) if !code.is_empty() => match query.get("usage_point_id") {
            Some(points) => Reference::Legacy {
                code: code.clone(),
                usage_points: points.split(',').map(|p| p.trim().to_owned()).collect(),
            },
            None => {
                return Page::error(
                    400,
                    "Lien incomplet",
                    "Le paramètre usage_point_id manque à cette adresse.",
                )
            }
        },
        _ if query.contains_key("error") => Reference::Refused,
        _ => {
            return Page::error(
                400,
                "Lien incomplet",
                "Le paramètre autorisation_id (ou code) manque à cette adresse.",
            )
        }
    };
    // Taken (deleted) before anything else: a state works once, whatever follows.
    let oauth =
        match state.store.take_oauth_state(our_state, now()).await {
            Ok(Some(s)) => s,
            Ok(None) => return Page::error(
                400,
                "Lien expiré ou déjà utilisé",
                "Ce retour d'Enedis ne correspond à aucune demande en cours : le lien a expiré, \
                 a déjà servi, ou n'a pas été émis par ce service. Recommencez depuis \
                 l'application.",
            ),
            Err(e) => return Page::internal(e),
        };
    let request = match state.store.consent_request(&oauth.request_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return unknown_link(),
        Err(e) => return Page::internal(e),
    };
    let Some(enedis) = state.enedis.get(&request.source) else {
        return unknown_link();
    };
    let (meters, reference) =
        match reference {
            Reference::Refused => return Page::error(
                403,
                "Consentement refusé",
                "Vous n'avez pas donné votre accord sur le site d'Enedis : aucune donnée ne sera \
                 transmise à l'application.",
            ),
            Reference::Autorisation(id) => match enedis.consented_meters(&id).await {
                Ok(meters) => (meters, id),
                Err(FetchError::Upstream { code, message, .. }) => {
                    return Page::error(
                        502,
                        "Enedis n'a pas confirmé votre accord",
                        &format!("Enedis a répondu : {message} ({code}). Réessayez plus tard."),
                    )
                }
                Err(e) => return Page::internal(e),
            },
            Reference::Legacy { code, usage_points } => {
                // v1 named the meters in the URL: Enedis still checks each call against its own
                // consents (ADAM-DC-0008 revokes what it does not know), and a share rarely
                // covers more than a few meters.
                if usage_points.len() > MAX_LEGACY_POINTS
                    || !usage_points.iter().all(|p| meter::is_prm(p))
                {
                    return Page::error(
                        400,
                        "Lien invalide",
                        "Le paramètre usage_point_id doit lister au plus dix PRM de 14 chiffres.",
                    );
                }
                let meters = usage_points
                    .into_iter()
                    .map(|prm| ConsentedMeter {
                        prm,
                        consumption: true,
                        production: false,
                        service_end: None,
                    })
                    .collect();
                (meters, code)
            }
        };
    if meters.is_empty() {
        return Page::error(
            502,
            "Aucun compteur partagé",
            "Enedis n'indique aucun compteur partagé avec ce service. Recommencez depuis \
             l'application.",
        );
    }
    match record(state, enedis, &request, &oauth, &meters, &reference).await {
        Ok(()) => {}
        Err(page) => return page,
    }
    let prms: Vec<&str> = meters.iter().map(|m| m.prm.as_str()).collect();
    finish(&request, &oauth, &prms)
}

enum Reference {
    Autorisation(String),
    Legacy {
        code: String,
        usage_points: Vec<String>,
    },
    Refused,
}

/// Records the consents and grants, then queues the application's message.
async fn record(
    state: &WebState,
    enedis: &Enedis,
    request: &ConsentRequest,
    oauth: &OAuthState,
    meters: &[ConsentedMeter],
    reference: &str,
) -> Result<(), Page> {
    let begins_at = now();
    let duration: ConsentDuration = oauth.duration.parse().unwrap_or_default();
    let asked_until = duration
        .expires_at(begins_at)
        .unwrap_or(begins_at + 365 * 86_400);
    let purpose = description_text(&request.description);
    for meter in meters {
        let expires_at = meter
            .service_end
            .filter(|end| *end > begins_at)
            .map_or(asked_until, |end| end.min(asked_until));
        let consent = Consent {
            id: None,
            source: request.source.clone(),
            usage_point: meter.prm.clone(),
            app_jid: request.app_jid.clone(),
            purpose: purpose.clone(),
            request_id: request.id.clone(),
            reference: reference.to_owned(),
            begins_at,
            expires_at,
            grant_id: None,
        };
        enedis
            .record_consent(meter, consent)
            .await
            .map_err(Page::internal)?;
    }
    let prms: Vec<&str> = meters.iter().map(|m| m.prm.as_str()).collect();
    let message = authorized_message(
        &format!("{}@{}", request.source, state.domain),
        &request.app_jid,
        &prms,
        oauth.app_state.as_deref(),
    );
    state
        .store
        .enqueue(&[NewOutboxEntry::unattached(String::from(&message))])
        .await
        .map_err(Page::internal)?;
    state.wake.notify_one();
    Ok(())
}

/// Where the browser goes: back to the application only at the address it registered.
fn finish(request: &ConsentRequest, oauth: &OAuthState, prms: &[&str]) -> Page {
    let asked = oauth
        .redirect_uri
        .as_ref()
        .or(request.redirect_uri.as_ref());
    let registered = request.redirect_uri.as_deref();
    if let (Some(asked), Some(registered)) = (asked, registered) {
        if asked == registered {
            if let Some(mut url) = parse_redirect_uri(registered) {
                url.query_pairs_mut()
                    .append_pair("usage_points", &prms.join(","));
                if let Some(s) = &oauth.app_state {
                    url.query_pairs_mut().append_pair("state", s);
                }
                return Page::redirect(url.as_str());
            }
        }
    }
    let mut text = format!(
        "Vous avez autorisé {} à accéder aux données de :\n{}",
        request.name,
        prms.join("\n")
    );
    if asked.is_some() {
        text.push_str(
            "\n\nL'adresse de retour demandée n'est pas celle que l'application a déclarée : \
             vous n'y êtes pas redirigé. Vous pouvez fermer cette page et revenir à \
             l'application.",
        );
    } else {
        text.push_str("\n\nVous pouvez fermer cette page et revenir à l'application.");
    }
    Page::html(200, render_message("Accès autorisé", &text))
}

fn unknown_link() -> Page {
    Page::error(
        404,
        "Lien inconnu",
        "Cette adresse ne correspond à aucune demande d'accès. Vérifiez le lien reçu de \
         l'application.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(redirect_uri: Option<&str>) -> ConsentRequest {
        ConsentRequest {
            id: "r".into(),
            source: "enedis".into(),
            app_jid: "app@example.org".into(),
            name: "App".into(),
            logo_url: None,
            description: String::new(),
            redirect_uri: redirect_uri.map(str::to_owned),
            created_at: 0,
        }
    }

    fn oauth(redirect_uri: Option<&str>) -> OAuthState {
        OAuthState {
            state: "s".into(),
            request_id: "r".into(),
            duration: "P1Y".into(),
            app_state: Some("x y&z".into()),
            redirect_uri: redirect_uri.map(str::to_owned),
            created_at: 0,
            expires_at: 1,
        }
    }

    #[test]
    fn only_the_registered_redirect_uri_is_followed() {
        let back = "https://app.example.org/back?user=plop";
        match finish(&request(Some(back)), &oauth(None), &["1", "2"]) {
            Page::Redirect(to) => assert_eq!(
                to,
                "https://app.example.org/back?user=plop&usage_points=1%2C2&state=x+y%26z"
            ),
            other => panic!("expected a redirect, got {other:?}"),
        }
        match finish(&request(Some(back)), &oauth(Some(back)), &["1"]) {
            Page::Redirect(_) => {}
            other => panic!("expected a redirect, got {other:?}"),
        }
        for (registered, asked) in [
            (Some(back), Some("https://evil.example.net/")),
            (None, Some("https://evil.example.net/")),
            (None, None),
        ] {
            match finish(&request(registered), &oauth(asked), &["1"]) {
                Page::Html { status, body } => {
                    assert_eq!(status, 200);
                    assert!(!body.contains("evil.example.net"));
                }
                other => panic!("expected a confirmation page, got {other:?}"),
            }
        }
    }
}
