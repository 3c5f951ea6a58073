//! What a request URL names: the stream, possibly a track of it, and the query that carries the
//! token (T9: `rtsp://HOST:PORT/NAME?token=T`, NAME may contain `/`).
//!
//! Track URLs come in two shapes. The server's own (absolute, from the SDP) put the track in the
//! path: `rtsp://h/NAME/trackID=0?token=T`. A client that joins a relative control URL by
//! pasting strings (retina and ffmpeg both do) makes
//! `rtsp://h/NAME?token=T/trackID=0`; that shape is understood too, so that the token is not
//! read as `T/trackID=0`.

use url::Url;

/// Path segment (and pasted query suffix) that names a track.
const TRACK_PREFIX: &str = "trackID=";

/// A parsed request URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The stream name, percent-decoded, without leading or trailing `/`.
    pub(crate) name: String,
    pub(crate) track: Option<usize>,
    /// The raw query (the backend's `qs`), without a pasted track suffix.
    pub(crate) raw_query: Option<String>,
    pub(crate) query: Vec<(String, String)>,
}

impl Target {
    /// Reads `url`; `None` for a URL that names no stream (no path, `..`, empty segments, bad
    /// percent-encoding).
    pub(crate) fn parse(url: &Url) -> Option<Target> {
        // Decoded here, once ([`crate::names`]).
        let path = crate::names::decode_url_path(url.path())?;
        let mut path = path.trim_matches('/').to_string();
        let mut raw_query = url.query().map(str::to_string);
        let mut track = None;
        if let Some(q) = &raw_query
            && let Some((before, n)) = q.rsplit_once(&format!("/{TRACK_PREFIX}"))
            && let Ok(n) = n.parse::<usize>()
        {
            track = Some(n);
            raw_query = Some(before.to_string()).filter(|q| !q.is_empty());
        }
        if track.is_none()
            && let Some((before, last)) = path.rsplit_once('/')
            && let Some(n) = last.strip_prefix(TRACK_PREFIX).and_then(|n| n.parse::<usize>().ok())
        {
            track = Some(n);
            path = before.to_string();
        }
        if !crate::names::is_valid(&path) {
            return None;
        }
        let query = raw_query
            .as_deref()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Some(Target {
            name: path,
            track,
            raw_query,
            query,
        })
    }

    /// `host[:port]` of the URL: the RTSP equivalent of HTTP's `Host` (T1 `host`).
    pub(crate) fn host(url: &Url) -> Option<String> {
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        })
    }
}

/// An absolute control URL for the presentation (`track` = `None`) or one track: the request
/// URL's scheme and authority, the stream name, and the client's query with the session's
/// token in it, so that any client that follows it stays in its session (T9, TOK-02).
pub(crate) fn control_url(
    request: &Url,
    name: &str,
    track: Option<usize>,
    query: &[(String, String)],
    token_param: &str,
    token: &str,
) -> Url {
    let mut url = request.clone();
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.clear();
        segments.extend(name.split('/'));
        if let Some(n) = track {
            segments.push(&format!("{TRACK_PREFIX}{n}"));
        }
    }
    // Re-encoded rather than copied: RTP-Info lists URLs separated by commas (RFC 2326
    // §12.33), so a raw comma in a query would split a URL in two.
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    let mut has_token = false;
    for (k, v) in query {
        if k == token_param {
            if !has_token {
                pairs.append_pair(k, token);
                has_token = true;
            }
        } else {
            pairs.append_pair(k, v);
        }
    }
    if !has_token {
        pairs.append_pair(token_param, token);
    }
    url.set_query(Some(&pairs.finish()));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<Target> {
        Target::parse(&Url::parse(s).unwrap())
    }

    #[test]
    fn names_tracks_and_queries() {
        let t = parse("rtsp://h:554/live/cam%201?token=abc&x=1").unwrap();
        assert_eq!((t.name.as_str(), t.track), ("live/cam 1", None));
        assert_eq!(t.raw_query.as_deref(), Some("token=abc&x=1"));
        assert_eq!(t.query[0], ("token".into(), "abc".into()));

        let t = parse("rtsp://h/live/cam/trackID=1?token=abc").unwrap();
        assert_eq!((t.name.as_str(), t.track), ("live/cam", Some(1)));

        // Relative control joined by string pasting.
        let t = parse("rtsp://h/s1?token=abc/trackID=0").unwrap();
        assert_eq!((t.name.as_str(), t.track), ("s1", Some(0)));
        assert_eq!(t.raw_query.as_deref(), Some("token=abc"));
        assert_eq!(t.query, [("token".to_string(), "abc".to_string())]);

        let t = parse("rtsp://h/s1/").unwrap();
        assert_eq!((t.name.as_str(), t.track, t.raw_query), ("s1", None, None));
    }

    #[test]
    fn urls_that_name_no_stream() {
        for bad in ["rtsp://h", "rtsp://h/", "rtsp://h/a//b", "rtsp://h/a/..%2f/b"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // Dot segments are removed by URL parsing itself (RFC 3986 §5.2.4), never reaching a name.
        assert_eq!(parse("rtsp://h/a/%2e%2e/b").unwrap().name, "b");
    }

    #[test]
    fn names_are_decoded_once() {
        assert_eq!(
            parse("rtsp://h/vods/%2570remium.mp4?token=t").unwrap().name,
            "vods/%70remium.mp4"
        );
    }

    proptest::proptest! {
        /// However a client writes a name in the URL, the name read is that name exactly, with
        /// or without a track.
        #[test]
        fn any_encoding_of_a_name_reads_as_that_name(
            (name, encoded) in crate::names::tests::name_and_encoding()
        ) {
            for (suffix, track) in [("?token=t", None), ("/trackID=1?token=t", Some(1)), ("?token=t/trackID=0", Some(0))] {
                let t = parse(&format!("rtsp://h:554/{encoded}{suffix}")).expect("a stream URL");
                proptest::prop_assert_eq!((t.name.as_str(), t.track), (name.as_str(), track));
            }
        }
    }

    #[test]
    fn control_urls_carry_the_session_token_and_survive_a_round_trip() {
        let request = Url::parse("rtsp://u:p@h:8554/live/cam?x=a,b&token=old").unwrap();
        let query = parse(request.as_str()).unwrap().query;
        let url = control_url(&request, "live/cam", Some(0), &query, "token", "n w");
        assert_eq!(url.as_str(), "rtsp://h:8554/live/cam/trackID=0?x=a%2Cb&token=n+w");
        let back = Target::parse(&url).unwrap();
        assert_eq!((back.name.as_str(), back.track), ("live/cam", Some(0)));
        assert!(back.query.contains(&("token".to_string(), "n w".to_string())));

        let bare = Url::parse("rtsp://h/s").unwrap();
        let url = control_url(&bare, "s", None, &[], "t", "abc");
        assert_eq!(url.as_str(), "rtsp://h/s?t=abc");
    }
}
