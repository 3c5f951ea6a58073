//! The bodies of RTMP audio and video messages: FLV `VIDEODATA`/`AUDIODATA` tag bodies (Adobe
//! FLV spec 10.1, §E.4.2.1 and §E.4.3.1) carrying H.264 (AVCVIDEOPACKET) and AAC
//! (AACAUDIODATA). The H.264 payload conversions (AVCC against Annex B, the
//! AVCDecoderConfigurationRecord) are the media layer's, in [`crate::media::avc`].
//!
//! Parsers return a short description of what is wrong; the caller adds the peer and stream.
//! The builders are public: the conformance suite's RTMP publisher sends its test pattern in
//! tags made here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::AvcParams;
use crate::media::avc;

/// FLV CodecID 7: AVC (§E.4.3.1).
const CODEC_AVC: u8 = 7;
/// FLV SoundFormat 10: AAC (§E.4.2.1).
const SOUND_FORMAT_AAC: u8 = 10;
/// First byte of every AAC audio tag: AAC, 44 kHz, 16-bit, stereo. The spec fixes these flags
/// for AAC whatever the real format is; the AudioSpecificConfig says the truth.
const AAC_TAG_FLAGS: u8 = 0xAF;
/// Frame type 1 (keyframe) and 2 (inter frame) in the high nibble, AVC in the low one.
const AVC_KEYFRAME: u8 = 0x17;
const AVC_INTER_FRAME: u8 = 0x27;
/// Frame type 5: a video info/command frame, no picture.
const FRAME_TYPE_COMMAND: u8 = 5;

/// One parsed video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VideoTag {
    /// AVCPacketType 0: an AVCDecoderConfigurationRecord.
    SequenceHeader(Bytes),
    /// AVCPacketType 1: one access unit as length-prefixed NAL units; `composition_ms` is
    /// pts − dts.
    Nalus { composition_ms: i32, data: Bytes },
    /// AVCPacketType 2, or a tag that carries nothing to decode (a video info/command frame).
    Nothing,
}

/// One parsed audio message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudioTag {
    /// AACPacketType 0: the AudioSpecificConfig.
    SequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    Raw(Bytes),
}

/// Parses a video message body. Codecs other than AVC, and enhanced-RTMP (`ex-header`) tags, are
/// refused with a description.
pub(crate) fn parse_video(body: &Bytes) -> Result<VideoTag, String> {
    let [flags, packet_type, c0, c1, c2, ..] = body[..] else {
        return Err(format!("video tag of {} bytes is too short for AVC", body.len()));
    };
    if flags & 0x80 != 0 {
        return Err("enhanced RTMP video (ex-header) is not supported".into());
    }
    if flags & 0x0F != CODEC_AVC {
        return Err(format!("video codec id {} is not AVC (7)", flags & 0x0F));
    }
    if flags >> 4 == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Nothing);
    }
    // SI24: sign-extend the 24-bit big-endian value.
    let composition_ms = i32::from_be_bytes([c0, c1, c2, 0]) >> 8;
    let payload = body.slice(5..);
    match packet_type {
        0 => Ok(VideoTag::SequenceHeader(payload)),
        1 => Ok(VideoTag::Nalus {
            composition_ms,
            data: payload,
        }),
        2 => Ok(VideoTag::Nothing),
        other => Err(format!("unknown AVCPacketType {other}")),
    }
}

/// Parses an audio message body; codecs other than AAC are refused with a description.
pub(crate) fn parse_audio(body: &Bytes) -> Result<AudioTag, String> {
    let [flags, packet_type, ..] = body[..] else {
        return Err(format!("audio tag of {} bytes is too short for AAC", body.len()));
    };
    if flags >> 4 != SOUND_FORMAT_AAC {
        return Err(format!("sound format {} is not AAC (10)", flags >> 4));
    }
    let payload = body.slice(2..);
    match packet_type {
        0 => Ok(AudioTag::SequenceHeader(payload)),
        1 => Ok(AudioTag::Raw(payload)),
        other => Err(format!("unknown AACPacketType {other}")),
    }
}

/// The AVC sequence header tag (AVCPacketType 0) for `params`.
pub fn avc_sequence_header(params: &AvcParams) -> Bytes {
    let record = avc::avc_decoder_configuration_record(params);
    let mut out = BytesMut::with_capacity(5 + record.len());
    out.put_slice(&[AVC_KEYFRAME, 0, 0, 0, 0]);
    out.put_slice(&record);
    out.freeze()
}

/// An AVC NALU tag (AVCPacketType 1) around length-prefixed NAL units.
pub fn avc_nalu_tag(keyframe: bool, composition_ms: i32, avcc: &[u8]) -> Bytes {
    let cts = composition_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    let mut out = BytesMut::with_capacity(5 + avcc.len());
    out.put_u8(if keyframe { AVC_KEYFRAME } else { AVC_INTER_FRAME });
    out.put_u8(1);
    out.put_slice(&cts[1..]);
    out.put_slice(avcc);
    out.freeze()
}

/// The AAC sequence header tag for an AudioSpecificConfig.
pub fn aac_sequence_header(asc: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + asc.len());
    out.put_slice(&[AAC_TAG_FLAGS, 0]);
    out.put_slice(asc);
    out.freeze()
}

/// An AAC raw frame tag.
pub fn aac_raw_tag(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + frame.len());
    out.put_slice(&[AAC_TAG_FLAGS, 1]);
    out.put_slice(frame);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 6] = [0x67, 0x42, 0xC0, 0x1E, 0xAB, 0xCD];
    const PPS: [u8; 3] = [0x68, 0xCE, 0x38];

    fn params() -> AvcParams {
        AvcParams {
            sps: Bytes::from_static(&SPS),
            pps: Bytes::from_static(&PPS),
        }
    }

    #[test]
    fn sequence_header_round_trips_through_the_media_layers_record() {
        let tag = avc_sequence_header(&params());
        assert_eq!(&tag[..5], &[0x17, 0, 0, 0, 0]);
        match parse_video(&tag).unwrap() {
            VideoTag::SequenceHeader(record) => {
                let (parsed, length_size) = avc::parse_avc_decoder_configuration_record(&record).unwrap();
                assert_eq!((parsed, length_size), (params(), 4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn composition_time_is_signed_24_bit() {
        let tag = avc_nalu_tag(false, -40, &[0, 0, 0, 1, 0x41]);
        assert_eq!(&tag[..5], &[0x27, 1, 0xFF, 0xFF, 0xD8]);
        match parse_video(&tag).unwrap() {
            VideoTag::Nalus { composition_ms, data } => {
                assert_eq!(composition_ms, -40);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x41]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&avc_nalu_tag(true, 1 << 30, &[])[..], &[0x17, 1, 0x7F, 0xFF, 0xFF]);
    }

    #[test]
    fn audio_tags() {
        assert_eq!(&aac_sequence_header(&[0x11, 0x88])[..], &[0xAF, 0, 0x11, 0x88]);
        assert_eq!(
            parse_audio(&aac_raw_tag(&[1, 2])).unwrap(),
            AudioTag::Raw(Bytes::from_static(&[1, 2]))
        );
        assert!(
            parse_audio(&Bytes::from_static(&[0x2F, 1, 0])).is_err(),
            "MP3 is refused"
        );
        assert!(parse_audio(&Bytes::from_static(&[0xAF])).is_err());
    }

    #[test]
    fn bad_video_is_described_not_panicked() {
        for body in [
            &[][..],
            &[0x17],
            &[0x12, 1, 0, 0, 0],
            &[0x97, 1, 0, 0, 0],
            &[0x17, 7, 0, 0, 0],
        ] {
            assert!(parse_video(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x57, 0, 0, 0, 0])),
            Ok(VideoTag::Nothing)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// FLV tags written by this module read back to what was written (issue: round trips
        /// for every writer the server owns), and no byte string makes the readers panic.
        #[test]
        fn tags_round_trip(
            keyframe in proptest::prelude::any::<bool>(),
            composition in -(1i32 << 23)..(1i32 << 23),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            asc in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let tag = avc_nalu_tag(keyframe, composition, &payload);
            proptest::prop_assert_eq!(tag[0], if keyframe { AVC_KEYFRAME } else { AVC_INTER_FRAME });
            proptest::prop_assert_eq!(
                parse_video(&tag).unwrap(),
                VideoTag::Nalus { composition_ms: composition, data: Bytes::from(payload.clone()) }
            );
            proptest::prop_assert_eq!(parse_audio(&aac_raw_tag(&payload)).unwrap(), AudioTag::Raw(Bytes::from(payload)));
            proptest::prop_assert_eq!(
                parse_audio(&aac_sequence_header(&asc)).unwrap(),
                AudioTag::SequenceHeader(Bytes::from(asc))
            );
            let _ = parse_video(&Bytes::from(junk.clone()));
            let _ = parse_audio(&Bytes::from(junk));
        }
    }
}
