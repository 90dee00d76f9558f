//! The application's description, made safe to show on the consent page.
//!
//! The description is HTML written by a third party (the application asking for consent) and is
//! shown on a page served from our origin, next to a button to Enedis: anything active in it
//! (scripts, event handlers, `javascript:` links, forms, frames, styles that could restyle our
//! button) would let that application act as us. It goes through `ammonia`, an html5ever-based
//! allowlist sanitiser, with only text formatting and plain links allowed.

use std::collections::{HashMap, HashSet};

/// Tags kept in a description; everything else is unwrapped (its text kept).
const ALLOWED_TAGS: [&str; 13] = [
    "p",
    "br",
    "a",
    "strong",
    "em",
    "b",
    "i",
    "ul",
    "ol",
    "li",
    "h3",
    "h4",
    "blockquote",
];

/// Tags removed with their content: their text is code or UI, never prose meant for the customer.
const DROPPED_WITH_CONTENT: [&str; 12] = [
    "script", "style", "template", "noscript", "iframe", "object", "embed", "textarea", "select",
    "svg", "math", "title",
];

/// `rel` forced on every kept link: the linked site gets no handle on our page (`noopener`), no
/// consent URL in its logs (`noreferrer`), and no ranking benefit from us (`nofollow`).
pub(crate) const LINK_REL: &str = "noopener noreferrer nofollow";

fn builder() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::empty();
    b.tags(HashSet::from(ALLOWED_TAGS))
        .clean_content_tags(HashSet::from(DROPPED_WITH_CONTENT))
        // No `lang`/`title` either (ammonia's defaults): nothing on a description needs them.
        .generic_attributes(HashSet::new())
        // `target` is not listed, so it is removed: links must not open a window we do not control.
        .tag_attributes(HashMap::from([("a", HashSet::from(["href"]))]))
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        // A relative link would point into this component's own site, which the application
        // knows nothing about; dropping it leaves the link's text.
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some(LINK_REL))
        .strip_comments(true);
    b
}

/// The description as HTML safe to embed in our page as is.
pub(crate) fn sanitize_description(html: &str) -> String {
    builder().clean(html).to_string()
}

/// The description as plain text: tags removed, entities decoded, whitespace collapsed.
///
/// This is what the customer read, recorded as the purpose of the consent; it is derived from the
/// sanitised HTML so that dropped content (scripts, styles) never ends up in the record.
pub(crate) fn description_text(html: &str) -> String {
    strip_tags(&sanitize_description(html))
}

/// Tags after which the text flows on a new line; they become a space so that words on either
/// side do not run together.
fn is_block(tag: &str) -> bool {
    matches!(
        tag,
        "p" | "br" | "ul" | "ol" | "li" | "h3" | "h4" | "blockquote"
    )
}

/// Text of html5ever's serialisation of a sanitised fragment.
///
/// This is not a general HTML parser: it relies on the serialiser escaping `<`, `>` and `&` in
/// text and attribute values, and quoting attribute values with `"`, so a `<` always opens a tag
/// and `&` always starts one of the four entities it writes.
fn strip_tags(serialized: &str) -> String {
    let mut text = String::with_capacity(serialized.len());
    let mut rest = serialized;
    while let Some(start) = rest.find('<') {
        text.push_str(&decode_entities(&rest[..start]));
        let tag = &rest[start + 1..];
        let end = tag.find('>').unwrap_or(tag.len());
        let name: String = tag[..end]
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if is_block(&name.to_ascii_lowercase()) {
            text.push(' ');
        }
        rest = tag.get(end + 1..).unwrap_or("");
    }
    text.push_str(&decode_entities(rest));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the entities html5ever writes in text nodes.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let (decoded, len) = [
            ("&amp;", "&"),
            ("&lt;", "<"),
            ("&gt;", ">"),
            ("&nbsp;", " "),
            ("&quot;", "\""),
        ]
        .iter()
        .find(|(entity, _)| after.starts_with(entity))
        .map_or(("&", 1), |(entity, c)| (*c, entity.len()));
        out.push_str(decoded);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "<p>Nos experts analysent votre consommation pour vous proposer des \
        économies.<br/>Vos données ne sont jamais revendues.</p><p>Retrouvez plus de détails sur \
        notre <a href=\"#\">politique de confidentialité</a>.</p>";

    fn lower(s: &str) -> String {
        s.to_ascii_lowercase()
    }

    #[test]
    fn script_is_removed_with_its_content() {
        let out = sanitize_description("<p>Bonjour</p><script>alert('x')</script>");
        assert_eq!(out, "<p>Bonjour</p>");
        let out = sanitize_description("<SCRIPT SRC=https://evil.example/x.js></SCRIPT>ok");
        assert_eq!(out, "ok");
    }

    #[test]
    fn event_handlers_are_removed() {
        let out = sanitize_description("<p onclick=\"steal()\" onmouseover='x()'>texte</p>");
        assert_eq!(out, "<p>texte</p>");
    }

    #[test]
    fn img_with_onerror_is_removed() {
        let out = sanitize_description("avant<img src=x onerror=alert(1)>après");
        assert_eq!(out, "avantaprès");
        assert!(!lower(&out).contains("onerror"));
    }

    #[test]
    fn javascript_links_lose_their_href() {
        for href in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "JaVaScRiPt:alert(1)",
            "jav&#x09;ascript:alert(1)",
            "jav&#x0A;ascript:alert(1)",
            "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
            " javascript:alert(1)",
            "vbscript:msgbox(1)",
            "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        ] {
            let out = sanitize_description(&format!("<a href=\"{href}\">lien</a>"));
            assert!(!lower(&out).contains("script:"), "{href} -> {out}");
            assert!(!lower(&out).contains("data:"), "{href} -> {out}");
            assert!(!out.contains("href"), "{href} -> {out}");
            assert!(out.contains(">lien</a>"), "{href} -> {out}");
        }
    }

    #[test]
    fn https_links_are_kept_with_rel_and_without_target() {
        let out = sanitize_description(
            "<a href=\"https://example.com/privacy?a=1&amp;b=2\" target=\"_blank\" rel=\"opener\" \
             title=\"t\">politique</a>",
        );
        assert_eq!(
            out,
            "<a href=\"https://example.com/privacy?a=1&amp;b=2\" \
             rel=\"noopener noreferrer nofollow\">politique</a>"
        );
    }

    #[test]
    fn mailto_and_http_links_are_kept() {
        let out = sanitize_description("<a href=\"mailto:dpo@example.com\">DPO</a>");
        assert!(out.contains("href=\"mailto:dpo@example.com\""), "{out}");
        let out = sanitize_description("<a href=\"http://example.com/\">site</a>");
        assert!(out.contains("href=\"http://example.com/\""), "{out}");
    }

    #[test]
    fn style_iframe_form_and_comments_are_removed() {
        let out = sanitize_description(
            "<style>a{color:red}</style><p style=\"position:fixed\">a</p>\
             <iframe src=\"https://evil.example\">cadre</iframe>\
             <form action=\"https://evil.example\"><input name=x><button>Envoyer</button></form>\
             <!-- secret --><link rel=stylesheet href=https://evil.example/s.css>",
        );
        assert_eq!(out, "<p>a</p>Envoyer");
    }

    #[test]
    fn allowed_formatting_is_kept() {
        let html = "<h3>Titre</h3><h4>Sous-titre</h4><ul><li><strong>a</strong></li>\
                    <li><em>b</em></li></ul><ol><li><b>c</b> <i>d</i></li></ol>\
                    <blockquote>citation</blockquote>";
        assert_eq!(sanitize_description(html), html);
    }

    #[test]
    fn unclosed_markup_cannot_swallow_the_page() {
        // The rest of our page follows the description: it must come out balanced.
        let out = sanitize_description("<p><strong>gras<a href=\"https://e.example/\">lien");
        assert_eq!(
            out,
            "<p><strong>gras<a href=\"https://e.example/\" rel=\"noopener noreferrer nofollow\">\
             lien</a></strong></p>"
        );
        let out = sanitize_description("<textarea>texte");
        assert_eq!(out, "");
    }

    #[test]
    fn seed_description_survives_readable() {
        let out = sanitize_description(SEED);
        assert!(out.starts_with("<p>Nos experts analysent"), "{out}");
        assert!(out.contains("<br>Vos données"), "{out}");
        // `#` is relative: the link stays, without a target.
        assert!(
            out.contains(
                "<a rel=\"noopener noreferrer nofollow\">politique de confidentialité</a>"
            ),
            "{out}"
        );
        assert_eq!(
            description_text(SEED),
            "Nos experts analysent votre consommation pour vous proposer des économies. Vos \
             données ne sont jamais revendues. Retrouvez plus de détails sur notre politique de \
             confidentialité."
        );
    }

    #[test]
    fn text_decodes_entities_and_collapses_whitespace() {
        assert_eq!(
            description_text(
                "<p>  A &amp; B &lt;3&gt;\n\n</p><p>C&nbsp;D &quot;e&quot; &eacute;</p>"
            ),
            "A & B <3> C D \"e\" é"
        );
        assert_eq!(description_text("a<br>b<li>c</li>d"), "a b c d");
        assert_eq!(description_text("<b>gr</b>as"), "gras");
    }

    #[test]
    fn text_drops_what_the_sanitiser_drops() {
        assert_eq!(
            description_text("<p>ok</p><script>alert(1)</script><style>p{}</style><!-- c -->"),
            "ok"
        );
        assert_eq!(
            description_text("<a href=\"https://e.example/?a=<b>&amp;\">lien</a> &lt;i&gt;"),
            "lien <i>"
        );
        assert_eq!(description_text(""), "");
    }
}
