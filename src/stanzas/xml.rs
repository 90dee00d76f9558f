//! Writing XML as text, for the stanzas built once and sent many times (notifications), where a
//! tree would cost more than the text: the one XML escaping function, and XEP-0082 stamps.
//! (HTML has its own escaping, in `web::pages`.)

/// XEP-0082 date-time in UTC.
pub(crate) fn xep_0082(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Escapes text for an XML attribute value or text node.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>', '\'', '"']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_entities_and_borrows_plain_text() {
        assert_eq!(escape("a&b<c>d'e\"f"), "a&amp;b&lt;c&gt;d&apos;e&quot;f");
        assert!(matches!(
            escape("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn stamps_are_utc_seconds() {
        assert_eq!(xep_0082(1_790_632_800), "2026-09-28T22:00:00Z");
    }
}
