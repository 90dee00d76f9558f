//! Where an application may send the customer's browser back after consent: the rule shared by
//! the command that registers a consent page and the page that follows it.

use reqwest::Url;

/// Longest redirect URI we accept.
pub(crate) const MAX_REDIRECT_URI: usize = 2048;

/// An absolute http(s) URL without user info (which would show a misleading host).
pub(crate) fn parse_redirect_uri(text: &str) -> Option<Url> {
    Url::parse(text).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_absolute_http_without_credentials() {
        assert!(parse_redirect_uri("https://app.example.org/back?x=1").is_some());
        assert!(parse_redirect_uri("http://127.0.0.1:9/back").is_some());
        assert!(parse_redirect_uri("javascript:alert(1)").is_none());
        assert!(parse_redirect_uri("/relative").is_none());
        assert!(parse_redirect_uri("https://evil@app.example.org/").is_none());
    }
}
