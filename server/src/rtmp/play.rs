//! Playing: access units from the stream's feed as RTMP video and audio messages.
//!
//! Timestamps are decoding times in milliseconds, rebased so the first message is at 0 (players
//! start their clock there); the AVC composition offset carries pts − dts. Sequence headers come
//! from the source's codecs when playback starts and again whenever a keyframe brings parameter
//! sets that differ from the ones sent, so a publisher that changes resolution mid-stream, or
//! whose configuration was not known yet at start, still plays.

use std::sync::Arc;

use super::flv;
use super::outbox::{self, AUDIO_CSID, AUDIO_TYPE, Outbox, VIDEO_CSID, VIDEO_TYPE};
use crate::media::avc::{self, AvcParams};
use crate::media::h264::{self, nal_type};
use crate::media::{AccessUnit, AuFeed, CLOCK_HZ, MediaSource, Track};

/// What every viewer sends for one video access unit: its parameter sets (if it carries any),
/// whether it is a keyframe, and the FLV video tag cut into RTMP chunks (`None` when no picture
/// is left once the parameter sets are stripped), with the tag's length.
#[derive(Debug)]
struct VideoTag {
    /// The unit's bytes: held so that no other unit can take their address while cached.
    /// A looping source sends the same bytes again at other times, so the composition offset
    /// and the unit's keyframe flag are part of what a hit must match.
    data: bytes::Bytes,
    unit_keyframe: bool,
    composition_ms: i32,
    params: Option<AvcParams>,
    keyframe: bool,
    tag: Option<(usize, bytes::Bytes)>,
}

/// Units converted lately, newest last: all viewers of a stream get the same units (the
/// feed hands out clones of one `Bytes`), so each is converted once, not once per viewer.
/// A handful covers the streams played at the same moment; a miss only costs the conversion.
/// An entry holds its unit's bytes, so no other unit can take their address while it is kept.
struct Recent<T> {
    kept: std::sync::Mutex<Vec<Arc<T>>>,
}

const RECENT_KEPT: usize = 16;

impl<T> Recent<T> {
    const fn new() -> Self {
        Recent {
            kept: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The kept conversion that is `same`, or `make`'s, kept from now on.
    fn get_or_make(&self, same: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> Arc<T> {
        let lock = || self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = lock().iter().rev().find(|t| same(t)) {
            return hit.clone();
        }
        let made = Arc::new(make());
        let mut kept = lock();
        if !kept.iter().any(|t| same(t)) {
            if kept.len() == RECENT_KEPT {
                kept.remove(0);
            }
            kept.push(made.clone());
        }
        made
    }
}

static VIDEO_TAGS: Recent<VideoTag> = Recent::new();
static AUDIO_TAGS: Recent<AudioTag> = Recent::new();

/// An audio access unit's FLV tag cut into chunks, for every viewer; keyed like [`VideoTag`].
#[derive(Debug)]
struct AudioTag {
    data: bytes::Bytes,
    len: usize,
    body: bytes::Bytes,
}

/// The chunked FLV tag of an audio `unit`, made once for all the viewers that send it.
fn audio_tag(unit: &AccessUnit) -> Arc<AudioTag> {
    AUDIO_TAGS.get_or_make(
        |t| t.data.as_ptr() == unit.data.as_ptr() && t.data.len() == unit.data.len(),
        || {
            let tag = flv::aac_raw_tag(&unit.data);
            AudioTag {
                data: unit.data.clone(),
                len: tag.len(),
                body: outbox::chunk_body(AUDIO_CSID, &tag),
            }
        },
    )
}

/// The FLV tag and facts of `unit`, converted once for all the viewers that send it.
fn video_tag(unit: &AccessUnit) -> Arc<VideoTag> {
    let composition_ms = (unit.pts as i64 - unit.dts as i64) * 1000 / CLOCK_HZ as i64;
    let composition_ms = composition_ms.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    VIDEO_TAGS.get_or_make(
        |t| {
            t.data.as_ptr() == unit.data.as_ptr()
                && t.data.len() == unit.data.len()
                && t.unit_keyframe == unit.keyframe
                && t.composition_ms == composition_ms
        },
        || {
            let keyframe = unit.keyframe
                || h264::nal_units(&unit.data).any(|n| h264::nal_unit_type(n) == Some(nal_type::IDR_SLICE));
            let avcc = avc::annex_b_to_avcc(&avc::strip_parameter_sets(&unit.data));
            VideoTag {
                data: unit.data.clone(),
                unit_keyframe: unit.keyframe,
                composition_ms,
                params: AvcParams::from_annex_b(&unit.data),
                keyframe,
                tag: (!avcc.is_empty()).then(|| {
                    let tag = flv::avc_nalu_tag(keyframe, composition_ms, &avcc);
                    (tag.len(), outbox::chunk_body(VIDEO_CSID, &tag))
                }),
            }
        },
    )
}

/// One viewer's position in the stream and what it has been told so far.
#[derive(Debug)]
pub(super) struct Player {
    media: Arc<MediaSource>,
    feed: AuFeed,
    stream_id: u32,
    /// Decoding time of the first message; RTMP time 0.
    base_dts: Option<u64>,
    /// The parameter sets of the last AVC sequence header sent.
    avc_params: Option<AvcParams>,
    aac_header_sent: bool,
    /// Video waits for a keyframe after the sequence header.
    keyframe_sent: bool,
}

impl Player {
    pub fn new(media: Arc<MediaSource>, stream_id: u32) -> Player {
        let feed = media.subscribe();
        Player {
            media,
            feed,
            stream_id,
            base_dts: None,
            avc_params: None,
            aac_header_sent: false,
            keyframe_sent: false,
        }
    }

    /// The RTMP message stream the client plays on.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The next access unit of the feed; `None` when the source ended. Cancel-safe.
    pub async fn next_unit(&mut self) -> Option<AccessUnit> {
        self.feed.next().await
    }

    /// The next access unit if the feed has it at once.
    pub fn unit_now(&mut self) -> Option<AccessUnit> {
        self.feed.try_next()
    }

    /// What follows the accepted play: the sequence headers known now. No onMetaData: `rml_rtmp`
    /// stamps it with its session clock, and ffmpeg makes a bogus subtitle stream of script data
    /// that is not at time 0 (see `connection::is_script_data`).
    pub fn start(&mut self, out: &mut Outbox) {
        let codecs = self.media.codecs();
        if let Some(params) = codecs.video {
            self.avc_header(out, params, 0);
        }
        if let Some(aac) = codecs.audio {
            let tag = flv::aac_sequence_header(&aac.audio_specific_config());
            out.message(AUDIO_CSID, 0, AUDIO_TYPE, self.stream_id, &tag);
            self.aac_header_sent = true;
        }
    }

    /// The messages for one access unit (none while its codec configuration is unknown).
    pub fn packets(&mut self, unit: AccessUnit, out: &mut Outbox) {
        let base = *self.base_dts.get_or_insert(unit.dts);
        let millis = unit.dts.saturating_sub(base) * 1000 / CLOCK_HZ;
        // RTMP time is 32-bit milliseconds and wraps after 49.7 days, as the protocol intends.
        let timestamp = millis as u32;
        match unit.track {
            Track::Video => self.video(unit, timestamp, out),
            Track::Audio => self.audio(unit, timestamp, out),
        }
    }

    fn video(&mut self, unit: AccessUnit, timestamp: u32, out: &mut Outbox) {
        let converted = video_tag(&unit);
        match converted.params.clone() {
            Some(params) => self.avc_header(out, params, timestamp),
            None if self.avc_params.is_none() => {
                if let Some(params) = self.media.codecs().video {
                    self.avc_header(out, params, timestamp);
                }
            }
            None => {}
        }
        let Some((len, body)) = &converted.tag else {
            return;
        };
        if self.avc_params.is_none() || (!self.keyframe_sent && !converted.keyframe) {
            return;
        }
        self.keyframe_sent = true;
        out.shared_message(VIDEO_CSID, timestamp, VIDEO_TYPE, self.stream_id, *len, body);
    }

    fn audio(&mut self, unit: AccessUnit, timestamp: u32, out: &mut Outbox) {
        if !self.aac_header_sent {
            let Some(aac) = self.media.codecs().audio else {
                return;
            };
            let tag = flv::aac_sequence_header(&aac.audio_specific_config());
            out.message(AUDIO_CSID, timestamp, AUDIO_TYPE, self.stream_id, &tag);
            self.aac_header_sent = true;
        }
        let converted = audio_tag(&unit);
        out.shared_message(
            AUDIO_CSID,
            timestamp,
            AUDIO_TYPE,
            self.stream_id,
            converted.len,
            &converted.body,
        );
    }

    /// An AVC sequence header, unless these parameter sets were the last ones sent.
    fn avc_header(&mut self, out: &mut Outbox, params: AvcParams, timestamp: u32) {
        if self.avc_params.as_ref() == Some(&params) {
            return;
        }
        let tag = flv::avc_sequence_header(&params);
        self.avc_params = Some(params);
        out.message(VIDEO_CSID, timestamp, VIDEO_TYPE, self.stream_id, &tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    fn unit(data: &bytes::Bytes, pts: u64, dts: u64) -> AccessUnit {
        AccessUnit {
            track: Track::Video,
            pts,
            dts,
            keyframe: true,
            data: data.clone(),
        }
    }

    /// Viewers of one unit share one conversion, equal to converting it directly; the same
    /// bytes sent again with another composition offset (a looping source) are converted anew.
    #[test]
    fn a_unit_is_converted_once_for_every_viewer() {
        let data = testing::picture(32, 32, 77);
        let first = video_tag(&unit(&data, 3_600, 0));
        let again = video_tag(&unit(&data, 3_600, 0));
        assert!(Arc::ptr_eq(&first, &again));
        let avcc = avc::annex_b_to_avcc(&avc::strip_parameter_sets(&data));
        let chunked = |tag: bytes::Bytes| Some((tag.len(), outbox::chunk_body(VIDEO_CSID, &tag)));
        assert_eq!(first.tag, chunked(flv::avc_nalu_tag(true, 40, &avcc)));
        assert_eq!(first.params, AvcParams::from_annex_b(&data));
        assert!(first.keyframe);
        let later = video_tag(&unit(&data, 7_200, 0));
        assert!(!Arc::ptr_eq(&first, &later));
        assert_eq!(later.tag, chunked(flv::avc_nalu_tag(true, 80, &avcc)));
        // Other bytes with the same content are another unit.
        let copy = bytes::Bytes::copy_from_slice(&data);
        assert!(!Arc::ptr_eq(&first, &video_tag(&unit(&copy, 3_600, 0))));
    }
}
