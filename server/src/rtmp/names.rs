//! From what an RTMP client says (the `connect` app and the play/publish stream key) to the
//! stream name and query the auth core sees (T9, PUB-06).
//!
//! A client URL `rtmp://HOST/APP/NAME?token=T` reaches the server as app `APP` in `connect` and
//! stream key `NAME?token=T` in `play`/`publish`: the query travels inside the key, verbatim.
//! The app words `static` and `rtmp` only select the server and are dropped; any other app is
//! part of the name (`live` + `cam1` is the stream `live/cam1`).

/// App names that are not part of the stream name (T9).
const TRANSPARENT_APPS: [&str; 2] = ["static", "rtmp"];

/// A stream key resolved against its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRef {
    pub name: String,
    /// The raw query (without `?`), as the backend's `qs` (T1).
    pub qs: Option<String>,
    /// The decoded query pairs.
    pub query: Vec<(String, String)>,
}

impl StreamRef {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Resolves `app` and `key`. `None` when no name is left (an empty key) or the name would
/// climb out of the stream namespace (`..`, empty path segments).
///
/// Some clients put the query on the app (`rtmp://HOST/static?token=T` plus a bare key); such a
/// query is used too, after the key's own parameters, so the key wins on a clash.
pub(crate) fn resolve(app: &str, key: &str) -> Option<StreamRef> {
    let (app, app_qs) = split_query(app.trim_matches('/'));
    let (key, key_qs) = split_query(key);
    let key = key.trim_matches('/');
    if key.is_empty() {
        return None;
    }
    let name = if app.is_empty() || TRANSPARENT_APPS.contains(&app) {
        key.to_string()
    } else {
        format!("{app}/{key}")
    };
    // Not a URL: the key is taken as sent, never percent-decoded (see `crate::names`).
    if !crate::names::is_valid(&name) {
        return None;
    }
    let qs = match (key_qs, app_qs) {
        (Some(k), Some(a)) => Some(format!("{k}&{a}")),
        (k, a) => k.or(a).map(str::to_string),
    }
    .filter(|q| !q.is_empty());
    let query = qs
        .as_deref()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    Some(StreamRef { name, qs, query })
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_rtmp_apps_are_dropped() {
        let r = resolve("static", "cam1?token=abc").unwrap();
        assert_eq!(r.name, "cam1");
        assert_eq!(r.qs.as_deref(), Some("token=abc"));
        assert_eq!(r.param("token"), Some("abc"));
        assert_eq!(resolve("rtmp", "cam1").unwrap().name, "cam1");
        assert_eq!(resolve("static/", "cam1").unwrap().name, "cam1");
    }

    #[test]
    fn other_apps_prefix_the_name() {
        assert_eq!(resolve("live", "cam1?token=t").unwrap().name, "live/cam1");
        // ffmpeg sends `live/a` as the app for rtmp://HOST/live/a/b.
        assert_eq!(resolve("live/a", "b").unwrap().name, "live/a/b");
        assert_eq!(resolve("", "cam1").unwrap().name, "cam1");
    }

    #[test]
    fn query_is_decoded_and_kept_raw() {
        let r = resolve("static", "pub?token=a%20b&password=P").unwrap();
        assert_eq!(r.qs.as_deref(), Some("token=a%20b&password=P"));
        assert_eq!(r.param("token"), Some("a b"));
        assert_eq!(r.param("password"), Some("P"));
        assert_eq!(resolve("static", "pub?").unwrap().qs, None);
    }

    #[test]
    fn a_query_on_the_app_counts_after_the_keys() {
        let r = resolve("static?token=fromapp", "cam1").unwrap();
        assert_eq!((r.name.as_str(), r.param("token")), ("cam1", Some("fromapp")));
        let r = resolve("static?token=fromapp", "cam1?token=fromkey").unwrap();
        assert_eq!(r.param("token"), Some("fromkey"));
    }

    #[test]
    fn empty_or_climbing_names_are_refused() {
        assert_eq!(resolve("static", ""), None);
        assert_eq!(resolve("static", "?token=x"), None);
        assert_eq!(resolve("static", "../etc"), None);
        assert_eq!(resolve("live", "a//b"), None);
    }

    #[test]
    fn keys_are_not_percent_decoded() {
        assert_eq!(resolve("vods", "%70remium.mp4").unwrap().name, "vods/%70remium.mp4");
    }
}
