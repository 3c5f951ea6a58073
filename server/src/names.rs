//! Stream and file names as clients write them in URLs.
//!
//! A name is percent-decoded **once**, here, when a request URL is read (HTTP play, DVR and
//! exports, HTTP ingest, RTSP). From then on it is one string: the name the backend is asked
//! about is the name looked up in the stream table and, for VOD, the path opened under the
//! location's storage ([`MediaRoot::resolve`](crate::media::MediaRoot::resolve) takes it as it
//! is). Decoding again anywhere later would let `%2570` be judged as `%70` and served as `p`.
//!
//! RTMP stream keys are not URLs: they are taken as sent, without decoding (`rtmp/names.rs`),
//! and checked with [`is_valid`] like every other name.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The path of a request URL with its %-escapes decoded, once. `None` when the decoded bytes
/// are not UTF-8.
pub(crate) fn decode_url_path(raw: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(raw).decode_utf8().ok()
}

/// Whether `name` can name a stream: `/`-separated segments, none of them empty, `.` or `..`.
pub(crate) fn is_valid(name: &str) -> bool {
    !name.is_empty() && !name.split('/').any(|p| p.is_empty() || p == "." || p == "..")
}

#[cfg(test)]
pub(crate) mod tests {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_once() {
        assert_eq!(
            decode_url_path("/vods/%2570remium.mp4").as_deref(),
            Some("/vods/%70remium.mp4")
        );
        assert_eq!(decode_url_path("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(decode_url_path("/%ff"), None);
        assert!(is_valid("live/cam1"));
        for bad in ["", "/a", "a/", "a//b", "./a", "a/..", ".."] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    /// Characters escaped in some encodings of a name and not in others.
    const SOME: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'?').add(b'#');

    /// A name and one of the many ways a client may write it in a URL path: every byte either
    /// as it is (where the URL allows it) or as `%XX`, upper or lower case hex.
    pub(crate) fn name_and_encoding() -> impl Strategy<Value = (String, String)> {
        let segment = proptest::string::string_regex("[a-zA-Z0-9%._~ é-]{1,8}")
            .unwrap()
            .prop_filter("a segment is not . or ..", |s| s != "." && s != "..");
        proptest::collection::vec(segment, 1..4)
            .prop_map(|segments| segments.join("/"))
            .prop_flat_map(|name| {
                let len = name.len();
                (
                    Just(name),
                    proptest::collection::vec((any::<bool>(), any::<bool>()), len),
                )
            })
            .prop_map(|(name, choices)| {
                let mut out = String::new();
                for (byte, (escape, lower)) in name.bytes().zip(choices) {
                    let must = !(0x20..0x7f).contains(&byte) || matches!(byte, b' ' | b'%' | b'?' | b'#');
                    if (escape || must) && byte != b'/' {
                        if lower {
                            out.push_str(&format!("%{byte:02x}"));
                        } else {
                            out.push_str(&format!("%{byte:02X}"));
                        }
                    } else {
                        out.push(byte as char);
                    }
                }
                (name, out)
            })
    }

    proptest! {
        /// The canonical encoding and any other encoding of a name decode to that name and
        /// nothing else: a name holding `%70` stays `%70`.
        #[test]
        fn any_encoding_decodes_to_the_name_exactly((name, encoded) in name_and_encoding()) {
            let canonical: String = name
                .split('/')
                .map(|s| utf8_percent_encode(s, SOME).to_string())
                .collect::<Vec<_>>()
                .join("/");
            let from_canonical = decode_url_path(&canonical).map(|n| n.into_owned());
            let from_encoded = decode_url_path(&encoded).map(|n| n.into_owned());
            prop_assert_eq!(from_canonical, Some(name.clone()));
            prop_assert_eq!(from_encoded, Some(name));
        }
    }
}
