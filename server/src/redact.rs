//! What the log may show of a credential or of a URL that can carry one (docs/security.md).
//!
//! Every log line that holds a URL a client, a backend or the configuration wrote (a Referer,
//! an RTMP `tcUrl`, app or stream key, an RTSP URL, a backend URL, a redirect's Location, a
//! stream input) formats it with [`url`]; every token goes through [`token`]. Nothing else
//! decides what is hidden.

use std::fmt;

/// What stands for a hidden value.
pub const HIDDEN: &str = "…";

/// Tokens shorter than this are hidden whole: four characters of a six-character token are most
/// of it. From this length on the first [`TOKEN_PREFIX`] characters are shown, enough to tell
/// tokens apart in a log and at most a third of the token.
pub const TOKEN_SHOWN_FROM: usize = 12;
/// How many leading characters of a long token are shown.
pub const TOKEN_PREFIX: usize = 4;

/// A token as the log may show it: `abcd…` for a long one, `…` for one shorter than
/// [`TOKEN_SHOWN_FROM`] characters (an empty token is shown empty: there is nothing to hide).
pub fn token(token: &str) -> String {
    if token.is_empty() {
        return String::new();
    }
    if token.chars().count() < TOKEN_SHOWN_FROM {
        return HIDDEN.to_string();
    }
    let mut shown: String = token.chars().take(TOKEN_PREFIX).collect();
    shown.push_str(HIDDEN);
    shown
}

/// A URL (absolute or not, well-formed or not) as the log may show it: the user information
/// before `@` in the authority is replaced by `…`, and so is the value of every query and
/// fragment parameter (`?token=secret&a` → `?token=…&…`); scheme, host, port, path and the
/// parameters' names stay, so a line still says where a request went.
///
/// `http://user:hunter2@evil.example/player?token=LEAK#t=1` → `http://…@evil.example/player?token=…#t=…`
pub fn url(raw: &str) -> String {
    let (before_fragment, fragment) = match raw.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (raw, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(raw.len());
    // The authority runs from after `scheme://` (or a leading `//`) to the next `/`; without
    // either, up to the first `/` (an app name or a Referer written without its scheme).
    let authority_start = match before_query.find("://") {
        Some(i)
            if before_query[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            i + 3
        }
        _ if before_query.starts_with("//") => 2,
        _ => 0,
    };
    let rest = &before_query[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    out.push_str(&before_query[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(HIDDEN);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&rest[authority_end..]);
    if let Some(query) = query {
        out.push('?');
        push_params(&mut out, query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        push_params(&mut out, fragment);
    }
    out
}

/// `k=v&k2=v2` with every value hidden; an item without `=` may itself be a secret and is
/// hidden whole. Empty items stay empty.
fn push_params(out: &mut String, params: &str) {
    for (i, item) in params.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match item.split_once('=') {
            Some((name, value)) => {
                out.push_str(name);
                out.push('=');
                if !value.is_empty() {
                    out.push_str(HIDDEN);
                }
            }
            None if item.is_empty() => {}
            None => out.push_str(HIDDEN),
        }
    }
}

/// A JSON value (a backend's `config` override, an answer's extras) as compact JSON for the
/// log, every string in it that could be a URL (it holds `://`, `?` or `@`) passed through
/// [`url`]: an override's input may carry a password or a token.
pub fn json(value: &serde_json::Value) -> String {
    fn redacted(value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) if s.contains("://") || s.contains('?') || s.contains('@') => Value::String(url(s)),
            Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), redacted(v))).collect()),
            other => other.clone(),
        }
    }
    redacted(value).to_string()
}

/// [`url`] for `tracing` fields: `referer = %Url(&text)` formats without an allocation at call
/// sites whose level is off.
pub struct Url<'a>(pub &'a str);

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&url(self.0))
    }
}

impl fmt::Debug for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&url(self.0), f)
    }
}

/// How many characters of a stream name (or RTMP key) a log line shows. A refused name can be
/// as long as a request line or an RTMP command allows (kilobytes); a line per refusal that
/// carried it whole would let a stranger write that much into the log each time.
pub const NAME_SHOWN: usize = 64;

/// A client-written stream name for `tracing` fields: the first [`NAME_SHOWN`] characters, then
/// `…(N bytes)` with the whole length when it is longer, so a line still tells names apart and
/// says how long the refused one was. Names are not credentials; their length is the concern.
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(NAME_SHOWN) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}{HIDDEN}({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// [`url`] of an optional URL: `none` when there is none.
pub struct OptUrl<'a>(pub Option<&'a str>);

impl fmt::Display for OptUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(u) => f.write_str(&url(u)),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn urls_lose_userinfo_and_query_values() {
        assert_eq!(
            url("http://user:hunter2@evil.example/player?token=LEAKME123456"),
            "http://…@evil.example/player?token=…"
        );
        assert_eq!(url("rtmp://h:1935/live?token=T&x"), "rtmp://h:1935/live?token=…&…");
        assert_eq!(
            url("https://a.example/p#access_token=S&n=1"),
            "https://a.example/p#access_token=…&n=…"
        );
        assert_eq!(url("http://a.example/p?"), "http://a.example/p?");
        assert_eq!(url("http://a.example/p?a=&b=1"), "http://a.example/p?a=&b=…");
        assert_eq!(url("static?token=T"), "static?token=…");
        assert_eq!(url("cam1"), "cam1");
        assert_eq!(url("//u:p@h/x"), "//…@h/x");
        assert_eq!(url("u:p@h/x?y=1"), "…@h/x?y=…");
        // An `@` in the path is not user information.
        assert_eq!(url("http://h/a@b"), "http://h/a@b");
        assert_eq!(url("http://good.com@evil.com/"), "http://…@evil.com/");
        assert_eq!(url("file://vod/clip.mp4"), "file://vod/clip.mp4");
    }

    #[test]
    fn json_strings_that_may_be_urls_are_redacted() {
        let v = serde_json::json!({
            "inputs": [{"url": "rtmp://u:PW@cam/live?token=TOK"}, {"url": "fake://fake"}],
            "protocols": {"hls": false},
            "note": "plain"
        });
        let shown = json(&v);
        assert!(!shown.contains("PW") && !shown.contains("TOK"), "{shown}");
        assert!(
            shown.contains("rtmp://…@cam/live?token=…") && shown.contains("fake://fake"),
            "{shown}"
        );
        assert!(
            shown.contains("\"hls\":false") && shown.contains("\"plain\""),
            "{shown}"
        );
    }

    #[test]
    fn long_names_are_cut_with_their_length() {
        assert_eq!(Name("live/cam1").to_string(), "live/cam1");
        let exact = "n".repeat(NAME_SHOWN);
        assert_eq!(Name(&exact).to_string(), exact);
        let long = format!("live/{}", "é".repeat(5000));
        let shown = Name(&long).to_string();
        assert_eq!(shown.chars().count(), NAME_SHOWN + 1 + "(10005 bytes)".len(), "{shown}");
        assert!(
            shown.starts_with("live/é") && shown.ends_with("…(10005 bytes)"),
            "{shown}"
        );
    }

    #[test]
    fn short_tokens_are_hidden_whole() {
        assert_eq!(token("abc"), "…");
        assert_eq!(token("abcd"), "…");
        assert_eq!(token("abcdefghijk"), "…");
        assert_eq!(token("abcdefghijkl"), "abcd…");
        assert_eq!(token("tokKICK1-0123456789"), "tokK…");
        assert_eq!(token("ééééééééééééé"), "éééé…");
        assert_eq!(token(""), "");
    }

    proptest! {
        /// Whatever the URL, no query or fragment value, and no password, appears in what is
        /// shown.
        #[test]
        fn secrets_never_survive(
            scheme in "(http|https|rtmp|rtsp|)",
            user in "[a-z]{0,6}",
            secret in "[A-Z0-9]{6,20}",
            host in "[a-z]{1,8}\\.example",
            path in "(/[a-z@]{0,6}){0,3}",
            names in proptest::collection::vec("[a-z_]{1,6}", 1..4),
        ) {
            let prefix = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
            let query: Vec<String> = names.iter().map(|n| format!("{n}={secret}")).collect();
            let raw = format!("{prefix}{user}:{secret}@{host}{path}?{}#f={secret}", query.join("&"));
            let shown = url(&raw);
            prop_assert!(!shown.contains(&secret), "{raw} → {shown}");
            prop_assert!(shown.contains(&host), "{raw} → {shown}");
            let shown = token(&secret);
            prop_assert!(!shown.contains(&secret));
        }
    }
}
