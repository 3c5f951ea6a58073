//! HLS media playlists (RFC 8216 §4).

use std::fmt::Write;

use super::SegmentInfo;

/// A media playlist listing `segments` (oldest first) as `segment-<sequence>.ts<uri_query>`.
///
/// URIs are relative (RFC 8216 §4.1) so the playlist works behind any path prefix, and the
/// query is copied verbatim so a viewer's token reaches every segment request. `ended` adds
/// EXT-X-ENDLIST once a source has stopped. `discontinuity_sequence` counts the
/// EXT-X-DISCONTINUITY tags of segments that left the list (§4.3.3.3); `min_target` keeps the
/// target duration from shrinking when long segments leave the list (§4.3.3.1: it must not
/// change).
pub fn media_playlist(
    segments: &[SegmentInfo],
    discontinuity_sequence: u64,
    min_target: u64,
    uri_query: &str,
    ended: bool,
) -> String {
    // §4.3.3.1: every EXTINF rounded to the nearest integer must not exceed the target
    // duration; rounding up is always safe, and 0 is not a useful target.
    let target = segments
        .iter()
        .map(|s| s.duration.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(min_target)
        .max(1);
    let media_sequence = segments.first().map_or(0, |s| s.sequence);

    let mut text = String::with_capacity(96 + segments.len() * (32 + uri_query.len()));
    text.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
    // Writing to a String cannot fail.
    let _ = writeln!(text, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
    if discontinuity_sequence > 0 {
        let _ = writeln!(text, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}");
    }
    for segment in segments {
        if segment.discontinuity {
            text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        // Version 3 allows decimal durations (§4.3.2.1, §7).
        text.push_str("#EXTINF:");
        push_seconds(&mut text, segment.duration);
        text.push_str(",\nsegment-");
        let _ = write!(text, "{}", segment.sequence);
        text.push_str(".ts");
        text.push_str(uri_query);
        text.push('\n');
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

/// `seconds` with three decimals, as `{:.3}` writes it, from whole milliseconds: float
/// formatting (`{:.3}` falls back to big-number arithmetic) was the largest single cost of a
/// playlist request in a profile (docs/performance.md §1).
fn push_seconds(text: &mut String, seconds: f64) {
    let millis = seconds * 1000.0;
    // Near a half millisecond the product's rounding can differ from the exact decimal
    // expansion `{:.3}` rounds: those few go the slow way, so the text is always the same.
    if !(0.0..1e15).contains(&millis) || (millis.fract() - 0.5).abs() < 1e-6 {
        let _ = write!(text, "{seconds:.3}");
        return;
    }
    let millis = millis.round() as u64;
    let _ = write!(text, "{}.", millis / 1000);
    let frac = millis % 1000;
    text.push(char::from(b'0' + (frac / 100) as u8));
    text.push(char::from(b'0' + (frac / 10 % 10) as u8));
    text.push(char::from(b'0' + (frac % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(range: std::ops::Range<u64>, duration: f64) -> Vec<SegmentInfo> {
        range
            .map(|sequence| SegmentInfo {
                sequence,
                duration,
                discontinuity: false,
            })
            .collect()
    }

    #[test]
    fn live_playlist_with_token() {
        let text = media_playlist(&segments(7..10, 1.0), 0, 1, "?token=abc", false);
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
        let text = media_playlist(&segments(0..1, 1.5), 0, 1, "", true);
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert!(text.contains("#EXTINF:1.500,\nsegment-0.ts\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    }

    #[test]
    fn discontinuities_are_tagged_and_counted() {
        let mut list = segments(20..23, 2.0);
        list[1].discontinuity = true;
        let text = media_playlist(&list, 4, 6, "", false);
        assert_eq!(
            text,
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-TARGETDURATION:6\n\
             #EXT-X-MEDIA-SEQUENCE:20\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:4\n\
             #EXTINF:2.000,\nsegment-20.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXTINF:2.000,\nsegment-21.ts\n\
             #EXTINF:2.000,\nsegment-22.ts\n"
        );
    }

    /// Every duration a 90 kHz clock can give up to a minute, and the millisecond grid, is
    /// written exactly as `{:.3}` writes it.
    #[test]
    fn durations_are_written_as_three_decimals_would_be() {
        let grid = (0..60_000u64).map(|ms| ms as f64 / 1000.0);
        for seconds in (0..90_000u64 * 60).map(|ticks| ticks as f64 / 90_000.0).chain(grid) {
            let mut ours = String::new();
            push_seconds(&mut ours, seconds);
            assert_eq!(ours, format!("{seconds:.3}"));
        }
        let mut odd = String::new();
        push_seconds(&mut odd, -1.0);
        assert_eq!(odd, "-1.000");
    }

    #[test]
    fn an_empty_window_is_still_a_playlist() {
        let text = media_playlist(&[], 0, 1, "", false);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }
}
