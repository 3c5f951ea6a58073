//! HLS media playlists (RFC 8216 §4).

use std::fmt::Write;

use super::SegmentInfo;

/// A media playlist listing `segments` (oldest first) as `segment-<sequence>.ts<uri_query>`.
///
/// URIs are relative (RFC 8216 §4.1) so the playlist works behind any path prefix, and the
/// query is copied verbatim so a viewer's token reaches every segment request. `ended` adds
/// EXT-X-ENDLIST once a source has stopped.
pub fn media_playlist(segments: &[SegmentInfo], uri_query: &str, ended: bool) -> String {
    // §4.3.3.1: every EXTINF rounded to the nearest integer must not exceed the target
    // duration; rounding up is always safe, and 0 is not a useful target.
    let target = segments
        .iter()
        .map(|s| s.duration.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let media_sequence = segments.first().map_or(0, |s| s.sequence);

    let mut text = String::with_capacity(96 + segments.len() * (32 + uri_query.len()));
    text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    // Writing to a String cannot fail.
    let _ = writeln!(text, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
    for segment in segments {
        // Version 3 allows decimal durations (§4.3.2.1, §7).
        let _ = writeln!(text, "#EXTINF:{:.3},", segment.duration);
        let _ = writeln!(text, "segment-{}.ts{uri_query}", segment.sequence);
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(range: std::ops::Range<u64>, duration: f64) -> Vec<SegmentInfo> {
        range.map(|sequence| SegmentInfo { sequence, duration }).collect()
    }

    #[test]
    fn live_playlist_with_token() {
        let text = media_playlist(&segments(7..10, 1.0), "?token=abc", false);
        assert_eq!(
            text,
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-TARGETDURATION:1\n\
             #EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:1.000,\nsegment-7.ts?token=abc\n\
             #EXTINF:1.000,\nsegment-8.ts?token=abc\n\
             #EXTINF:1.000,\nsegment-9.ts?token=abc\n"
        );
    }

    #[test]
    fn empty_query_and_fractional_durations() {
        let text = media_playlist(&segments(0..1, 1.5), "", true);
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert!(text.contains("#EXTINF:1.500,\nsegment-0.ts\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    }

    #[test]
    fn an_empty_window_is_still_a_playlist() {
        let text = media_playlist(&[], "", false);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }
}
