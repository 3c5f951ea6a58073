//! Playing: access units from the stream's feed as RTMP video and audio messages.
//!
//! Timestamps are decoding times in milliseconds, rebased so the first message is at 0 (players
//! start their clock there); the AVC composition offset carries pts − dts. Sequence headers come
//! from the source's codecs when playback starts and again whenever a keyframe brings parameter
//! sets that differ from the ones sent, so a publisher that changes resolution mid-stream, or
//! whose configuration was not known yet at start, still plays.

use std::sync::Arc;

use rml_rtmp::chunk_io::Packet;
use rml_rtmp::sessions::{ServerSession, ServerSessionError};
use rml_rtmp::time::RtmpTimestamp;

use super::flv;
use crate::media::avc::{self, AvcParams};
use crate::media::h264::{self, nal_type};
use crate::media::{AccessUnit, AuFeed, CLOCK_HZ, MediaSource, Track};

/// What every viewer sends for one video access unit: its parameter sets (if it carries any),
/// whether it is a keyframe, and the FLV video tag (`None` when no picture is left once the
/// parameter sets are stripped).
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
    tag: Option<bytes::Bytes>,
}

/// Units converted lately, newest last: all viewers of a stream get the same units (the
/// feed hands out clones of one `Bytes`), so each is converted once, not once per viewer.
/// A handful covers the streams played at the same moment; a miss only costs the conversion.
static VIDEO_TAGS: std::sync::Mutex<Vec<Arc<VideoTag>>> = std::sync::Mutex::new(Vec::new());
const VIDEO_TAGS_KEPT: usize = 16;

/// The FLV tag and facts of `unit`, converted once for all the viewers that send it.
fn video_tag(unit: &AccessUnit) -> Arc<VideoTag> {
    let composition_ms = (unit.pts as i64 - unit.dts as i64) * 1000 / CLOCK_HZ as i64;
    let composition_ms = composition_ms.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let same = |t: &Arc<VideoTag>| {
        t.data.as_ptr() == unit.data.as_ptr()
            && t.data.len() == unit.data.len()
            && t.unit_keyframe == unit.keyframe
            && t.composition_ms == composition_ms
    };
    if let Some(hit) = VIDEO_TAGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .rev()
        .find(|t| same(t))
    {
        return hit.clone();
    }
    let keyframe =
        unit.keyframe || h264::nal_units(&unit.data).any(|n| h264::nal_unit_type(n) == Some(nal_type::IDR_SLICE));
    let avcc = avc::annex_b_to_avcc(&avc::strip_parameter_sets(&unit.data));
    let converted = Arc::new(VideoTag {
        data: unit.data.clone(),
        unit_keyframe: unit.keyframe,
        composition_ms,
        params: AvcParams::from_annex_b(&unit.data),
        keyframe,
        tag: (!avcc.is_empty()).then(|| flv::avc_nalu_tag(keyframe, composition_ms, &avcc)),
    });
    let mut kept = VIDEO_TAGS.lock().unwrap_or_else(|e| e.into_inner());
    if !kept.iter().any(same) {
        if kept.len() == VIDEO_TAGS_KEPT {
            kept.remove(0);
        }
        kept.push(converted.clone());
    }
    converted
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

    /// What follows the accepted play: the sequence headers known now. No onMetaData: `rml_rtmp`
    /// stamps it with its session clock, and ffmpeg makes a bogus subtitle stream of script data
    /// that is not at time 0 (see `connection::is_script_data`).
    pub fn start(&mut self, session: &mut ServerSession) -> Result<Vec<Packet>, ServerSessionError> {
        let codecs = self.media.codecs();
        let mut out = Vec::new();
        if let Some(params) = codecs.video {
            out.extend(self.avc_header(session, params, RtmpTimestamp::new(0))?);
        }
        if let Some(aac) = codecs.audio {
            let tag = flv::aac_sequence_header(&aac.audio_specific_config());
            out.push(session.send_audio_data(self.stream_id, tag, RtmpTimestamp::new(0), false)?);
            self.aac_header_sent = true;
        }
        Ok(out)
    }

    /// The messages for one access unit (none while its codec configuration is unknown).
    pub fn packets(
        &mut self,
        unit: AccessUnit,
        session: &mut ServerSession,
    ) -> Result<Vec<Packet>, ServerSessionError> {
        let base = *self.base_dts.get_or_insert(unit.dts);
        let millis = unit.dts.saturating_sub(base) * 1000 / CLOCK_HZ;
        // RTMP time is 32-bit milliseconds and wraps after 49.7 days, as the protocol intends.
        let timestamp = RtmpTimestamp::new(millis as u32);
        match unit.track {
            Track::Video => self.video(unit, timestamp, session),
            Track::Audio => self.audio(unit, timestamp, session),
        }
    }

    fn video(
        &mut self,
        unit: AccessUnit,
        timestamp: RtmpTimestamp,
        session: &mut ServerSession,
    ) -> Result<Vec<Packet>, ServerSessionError> {
        let mut out = Vec::new();
        let converted = video_tag(&unit);
        match converted.params.clone() {
            Some(params) => out.extend(self.avc_header(session, params, timestamp)?),
            None if self.avc_params.is_none() => {
                if let Some(params) = self.media.codecs().video {
                    out.extend(self.avc_header(session, params, timestamp)?);
                }
            }
            None => {}
        }
        let Some(tag) = converted.tag.clone() else {
            return Ok(out);
        };
        if self.avc_params.is_none() || (!self.keyframe_sent && !converted.keyframe) {
            return Ok(out);
        }
        self.keyframe_sent = true;
        out.push(session.send_video_data(self.stream_id, tag, timestamp, false)?);
        Ok(out)
    }

    fn audio(
        &mut self,
        unit: AccessUnit,
        timestamp: RtmpTimestamp,
        session: &mut ServerSession,
    ) -> Result<Vec<Packet>, ServerSessionError> {
        let mut out = Vec::new();
        if !self.aac_header_sent {
            let Some(aac) = self.media.codecs().audio else {
                return Ok(out);
            };
            let tag = flv::aac_sequence_header(&aac.audio_specific_config());
            out.push(session.send_audio_data(self.stream_id, tag, timestamp, false)?);
            self.aac_header_sent = true;
        }
        let tag = flv::aac_raw_tag(&unit.data);
        out.push(session.send_audio_data(self.stream_id, tag, timestamp, false)?);
        Ok(out)
    }

    /// An AVC sequence header, unless these parameter sets were the last ones sent.
    fn avc_header(
        &mut self,
        session: &mut ServerSession,
        params: AvcParams,
        timestamp: RtmpTimestamp,
    ) -> Result<Option<Packet>, ServerSessionError> {
        if self.avc_params.as_ref() == Some(&params) {
            return Ok(None);
        }
        let tag = flv::avc_sequence_header(&params);
        self.avc_params = Some(params);
        session.send_video_data(self.stream_id, tag, timestamp, false).map(Some)
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
        assert_eq!(first.tag.as_deref(), Some(&flv::avc_nalu_tag(true, 40, &avcc)[..]));
        assert_eq!(first.params, AvcParams::from_annex_b(&data));
        assert!(first.keyframe);
        let later = video_tag(&unit(&data, 7_200, 0));
        assert!(!Arc::ptr_eq(&first, &later));
        assert_eq!(later.tag.as_deref(), Some(&flv::avc_nalu_tag(true, 80, &avcc)[..]));
        // Other bytes with the same content are another unit.
        let copy = bytes::Bytes::copy_from_slice(&data);
        assert!(!Arc::ptr_eq(&first, &video_tag(&unit(&copy, 3_600, 0))));
    }
}
