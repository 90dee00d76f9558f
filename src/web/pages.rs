//! HTML of the consent pages: the consent request, and the messages (errors, confirmation).
//!
//! Self-contained documents in French: inline CSS, no script, no external font; the only
//! external resource is the application's https logo, which [`CONTENT_SECURITY_POLICY`] allows and
//! nothing else. Every interpolated string goes through [`escape`], except the description, which
//! is sanitised here (not by the caller) so that no caller can forget it.

use std::fmt::Write;

use crate::time::duration::ConsentDuration;
use crate::web::sanitize::sanitize_description;

/// `Content-Security-Policy` to send with these pages: nothing runs, nothing is framed, posted or
/// loaded, except https images (the logo) and the inline stylesheet.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; img-src https:; \
     style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Plain, readable, high contrast; system fonts so that nothing is fetched.
const STYLE: &str = "\
body{margin:0;background:#f4f5f7;color:#1b1b1b;\
font:1.0625rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif}\
main{max-width:36rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;\
border:1px solid #d0d4da;border-radius:.5rem}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}\
header img{display:block;height:auto}\
.description{border-left:4px solid #d0d4da;padding-left:1rem;margin:1rem 0}\
.request{font-weight:600}\
.app-address{color:#4a4f57;font-size:.875rem;word-break:break-all}\
a{color:#0645ad}\
.button{display:inline-block;margin:1rem 0;padding:.75rem 1.25rem;border-radius:.375rem;\
background:#1f4f9c;color:#fff;font-weight:600;text-decoration:none}\
.button:hover{background:#173b75}\
a:focus-visible{outline:3px solid #f0a30a;outline-offset:2px}\
.note{color:#4a4f57;font-size:.9375rem}";

/// Escapes text for HTML content and for double- or single-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the consent page shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsentPage<'a> {
    /// The application's name, as it asked for the page.
    pub(crate) app_name: &'a str,
    /// Its logo, an https URL checked by the caller; shown 100 px wide.
    pub(crate) logo_url: Option<&'a str>,
    /// Its description, raw HTML as received: sanitised by [`render_consent`].
    pub(crate) description_html: &'a str,
    pub(crate) duration: &'a ConsentDuration,
    /// Enedis' authorize URL with its query, already built.
    pub(crate) button_href: &'a str,
    /// The application's XMPP address, so that the customer can tell two homonyms apart.
    pub(crate) app_jid: &'a str,
}

/// The consent page: who asks, what for, for how long, and the button to Enedis.
pub(crate) fn render_consent(page: &ConsentPage) -> String {
    let name = escape(page.app_name);
    // `write!` to a String cannot fail: its results are ignored below.
    let mut body = String::new();
    body.push_str("<header>\n");
    // Defence in depth: the CSP would block a non-https logo anyway, but an `http:` or `data:`
    // URL has no business in the page at all.
    if let Some(logo) = page.logo_url.filter(|url| is_https(url)) {
        let _ = writeln!(
            body,
            "<img src=\"{}\" width=\"100\" alt=\"Logo de {name}\">",
            escape(logo)
        );
    }
    let _ = writeln!(body, "<h1>{name}</h1>\n</header>");
    let _ = writeln!(
        body,
        "<section class=\"description\" aria-label=\"Présentation de l'application\">\n{}\n\
         </section>",
        sanitize_description(page.description_html)
    );
    let _ = writeln!(
        body,
        "<p class=\"request\">L'application demande l'accès aux données de votre compteur Linky \
         pour une durée de {}.</p>",
        escape(&page.duration.french())
    );
    let _ = writeln!(
        body,
        "<p class=\"app-address\"><small>Adresse XMPP de l'application&nbsp;: {}</small></p>",
        escape(page.app_jid)
    );
    let _ = writeln!(
        body,
        "<p><a id=\"authorize\" class=\"button\" href=\"{}\">Continuer vers mon espace Enedis</a>\
         </p>",
        escape(page.button_href)
    );
    body.push_str(
        "<p class=\"note\">Vous donnerez votre accord sur le site d'Enedis, le gestionnaire du \
         réseau de distribution d'électricité. Vous pourrez le retirer à tout moment depuis votre \
         espace client Enedis.</p>\n",
    );
    document(&format!("Autoriser {}", page.app_name), &body)
}

/// A page with a title and a plain-text message: errors, and the confirmation.
///
/// `text` is plain text (escaped here): a blank line starts a new paragraph and a single line
/// break is kept, so that a list of usage points can be one per line.
pub(crate) fn render_message(title: &str, text: &str) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(title));
    for paragraph in text.split("\n\n") {
        let lines: Vec<String> = paragraph
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(escape)
            .collect();
        if !lines.is_empty() {
            let _ = writeln!(body, "<p>{}</p>", lines.join("<br>\n"));
        }
    }
    document(title, &body)
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

fn document(title: &str, body: &str) -> String {
    // `no-referrer`: the page's URL carries the request id and state, which neither the logo's
    // host nor Enedis need to see.
    format!(
        "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HREF: &str = "https://mon-compte-particulier.enedis.fr/dataconnect/v1/oauth2/authorize\
                        ?client_id=abc&response_type=code&state=s%22t&duration=P1Y";

    fn page<'a>(duration: &'a ConsentDuration) -> ConsentPage<'a> {
        ConsentPage {
            app_name: "Watt & Co",
            logo_url: Some("https://example.com/logo.png"),
            description_html: "<p>Nos experts analysent votre consommation.</p>",
            duration,
            button_href: HREF,
            app_jid: "app@example.com",
        }
    }

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("Électricité"), "Électricité");
    }

    #[test]
    fn consent_page_shows_everything() {
        let duration: ConsentDuration = "P1Y6M".parse().unwrap();
        let html = render_consent(&page(&duration));
        assert!(
            html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"),
            "{html}"
        );
        assert!(
            html.contains("<title>Autoriser Watt &amp; Co</title>"),
            "{html}"
        );
        assert!(html.contains("<h1>Watt &amp; Co</h1>"), "{html}");
        assert!(
            html.contains(
                "<img src=\"https://example.com/logo.png\" width=\"100\" alt=\"Logo de Watt &amp; \
                 Co\">"
            ),
            "{html}"
        );
        assert!(html.contains("<p>Nos experts analysent votre consommation.</p>"));
        assert!(html.contains(
            "L'application demande l'accès aux données de votre compteur Linky pour une durée de \
             1 an et 6 mois."
        ));
        assert!(
            html.contains("<small>Adresse XMPP de l'application&nbsp;: app@example.com</small>")
        );
        let button = format!(
            "<a id=\"authorize\" class=\"button\" href=\"{}\">Continuer vers mon espace \
             Enedis</a>",
            escape(HREF)
        );
        assert!(html.contains(&button), "{html}");
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn button_href_appears_once_and_escaped() {
        let duration = ConsentDuration::default();
        let html = render_consent(&page(&duration));
        assert_eq!(html.matches("id=\"authorize\"").count(), 1);
        assert_eq!(html.matches(&escape(HREF)).count(), 1);
        // `&` in the query and `"` in the state are escaped, so the attribute is not cut short.
        assert!(html.contains("client_id=abc&amp;response_type=code&amp;state=s%22t"));
        assert!(!html.contains(HREF));

        let hostile = ConsentPage {
            button_href: "https://e.example/?a=\"><script>x()</script>",
            ..page(&duration)
        };
        let html = render_consent(&hostile);
        assert!(html
            .contains("href=\"https://e.example/?a=&quot;&gt;&lt;script&gt;x()&lt;/script&gt;\""));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn name_and_address_are_escaped() {
        let duration = ConsentDuration::default();
        let hostile = ConsentPage {
            app_name: "<b>Evil\" onload=\"x()</b>",
            app_jid: "a'<i>@example.com",
            logo_url: Some("https://example.com/l.png\" onerror=\"x()"),
            ..page(&duration)
        };
        let html = render_consent(&hostile);
        assert!(html.contains("<h1>&lt;b&gt;Evil&quot; onload=&quot;x()&lt;/b&gt;</h1>"));
        assert!(html.contains("alt=\"Logo de &lt;b&gt;Evil&quot; onload=&quot;x()&lt;/b&gt;\""));
        assert!(html.contains("src=\"https://example.com/l.png&quot; onerror=&quot;x()\""));
        assert!(html.contains("a&#39;&lt;i&gt;@example.com"));
        assert!(!html.contains("<b>") && !html.contains("<i>"));
        assert!(!html.contains("onload=\"") && !html.contains("onerror=\""));
    }

    #[test]
    fn hostile_description_is_neutralised() {
        let duration = ConsentDuration::default();
        let hostile = ConsentPage {
            description_html: "<p>Bonjour</p><script>alert(1)</script>\
                <img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">clic</a>\
                <a href=\"jav&#x09;ascript:alert(4)\">clic</a><style>.button{display:none}</style>\
                <a href=\"https://e.example/\" id=\"authorize\" class=\"button\">faux</a></p>",
            ..page(&duration)
        };
        let html = render_consent(&hostile).to_ascii_lowercase();
        assert!(html.contains("<p>bonjour</p>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("onerror"));
        assert!(!html.contains("javascript:"));
        assert!(!html.contains("alert("));
        // The only stylesheet is ours, and the description cannot fake the button.
        assert_eq!(html.matches("<style").count(), 1);
        assert_eq!(html.matches("id=\"authorize\"").count(), 1);
        assert_eq!(html.matches("class=\"button\"").count(), 1);
    }

    #[test]
    fn logo_only_when_https() {
        let duration = ConsentDuration::default();
        let no_logo = ConsentPage {
            logo_url: None,
            ..page(&duration)
        };
        assert!(!render_consent(&no_logo).contains("<img"));
        for url in [
            "http://example.com/l.png",
            "data:image/png;base64,AAAA",
            "//e.example/l",
        ] {
            let bad = ConsentPage {
                logo_url: Some(url),
                ..page(&duration)
            };
            assert!(!render_consent(&bad).contains("<img"), "{url}");
        }
        let upper = ConsentPage {
            logo_url: Some("HTTPS://example.com/l.png"),
            ..page(&duration)
        };
        assert!(render_consent(&upper).contains("<img src=\"HTTPS://example.com/l.png\""));
    }

    #[test]
    fn message_page() {
        let html = render_message(
            "Accès autorisé",
            "Vous avez autorisé l'accès aux compteurs :\n12345678901234\n09876543210987\n\n\
             Vous pouvez fermer cette page.",
        );
        assert!(html.contains("<html lang=\"fr\">"));
        assert!(html.contains("<title>Accès autorisé</title>"));
        assert!(html.contains("<h1>Accès autorisé</h1>"));
        assert!(html.contains(
            "<p>Vous avez autorisé l&#39;accès aux compteurs :<br>\n12345678901234<br>\n\
             09876543210987</p>\n<p>Vous pouvez fermer cette page.</p>"
        ));

        let html = render_message("Erreur <400>", "Paramètre « id » manquant & <script>");
        assert!(html.contains("<title>Erreur &lt;400&gt;</title>"));
        assert!(html.contains("<p>Paramètre « id » manquant &amp; &lt;script&gt;</p>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn pages_are_self_contained() {
        let duration = ConsentDuration::default();
        for html in [
            render_consent(&ConsentPage {
                logo_url: None,
                ..page(&duration)
            }),
            render_message("Erreur", "Demande inconnue."),
        ] {
            // No external stylesheet, font, script or frame; only the button links out.
            assert!(!html.contains("<link"));
            assert!(!html.contains("<script"));
            assert!(!html.contains("@import"));
            assert!(!html.contains("url("));
            assert!(html.matches("https://").count() <= 1, "{html}");
            assert!(html.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
        }
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'none'"));
        assert!(CONTENT_SECURITY_POLICY.contains("img-src https:;"));
        assert!(!CONTENT_SECURITY_POLICY.contains("script-src"));
    }
}
