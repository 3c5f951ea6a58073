//! The bodies of RTMP audio and video messages: FLV `VIDEODATA`/`AUDIODATA` tag bodies (Adobe
//! FLV spec 10.1, §E.4.2.1 and §E.4.3.1) carrying H.264 (AVCVIDEOPACKET) and AAC
//! (AACAUDIODATA), and the H.264 conversions between them and [`AccessUnit`](crate::media::AccessUnit)s:
//! length-prefixed NAL units (AVCC, ISO/IEC 14496-15 §5.3.4.2) against Annex B, and the
//! AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1) of the sequence header.
//!
//! Private to the RTMP front end: the media module had no AVCC helpers when this was written.
//! Parsers return a short description of what is wrong; the caller adds the peer and stream.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::AvcParams;
use crate::media::h264::{nal_type, nal_unit_type, nal_units};

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
/// The 4-byte NAL unit lengths this server writes (lengthSizeMinusOne = 3).
const NAL_LENGTH_SIZE: usize = 4;

/// One parsed video message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VideoTag {
    /// AVCPacketType 0: the decoder configuration.
    SequenceHeader(AvcConfig),
    /// AVCPacketType 1: one access unit in AVCC form; `composition_ms` is pts − dts.
    Nalus {
        keyframe: bool,
        composition_ms: i32,
        data: Bytes,
    },
    /// AVCPacketType 2, or a tag that carries nothing to decode (a video info/command frame).
    EndOfSequence,
}

/// One parsed audio message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudioTag {
    /// AACPacketType 0: the AudioSpecificConfig.
    SequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    Raw(Bytes),
}

/// The parts of an AVCDecoderConfigurationRecord a server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AvcConfig {
    /// Bytes of each NAL unit length in the NALU tags: 1, 2 or 4.
    pub length_size: usize,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// The first SPS and PPS, as the media layer keeps them; `None` if either is missing.
    pub fn params(&self) -> Option<AvcParams> {
        Some(AvcParams {
            sps: self.sps.first()?.clone(),
            pps: self.pps.first()?.clone(),
        })
    }
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
    let frame_type = flags >> 4;
    if frame_type == 5 {
        // A video info/command frame: no picture.
        return Ok(VideoTag::EndOfSequence);
    }
    // SI24: sign-extend the 24-bit big-endian value.
    let composition_ms = (i32::from_be_bytes([c0, c1, c2, 0])) >> 8;
    let payload = body.slice(5..);
    match packet_type {
        0 => parse_avc_config(&payload).map(VideoTag::SequenceHeader),
        1 => Ok(VideoTag::Nalus {
            keyframe: frame_type == 1,
            composition_ms,
            data: payload,
        }),
        2 => Ok(VideoTag::EndOfSequence),
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

/// Reads an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1.1). Trailing fields of the
/// High profiles (chroma format, bit depths, SPS extensions) are ignored.
pub(crate) fn parse_avc_config(record: &[u8]) -> Result<AvcConfig, String> {
    let mut r = Reader(record);
    let version = r.u8().ok_or("empty AVCDecoderConfigurationRecord")?;
    if version != 1 {
        return Err(format!("AVCDecoderConfigurationRecord version {version}, expected 1"));
    }
    r.take(3)
        .ok_or("AVCDecoderConfigurationRecord truncated in the profile")?;
    let length_size = usize::from(r.u8().ok_or("AVCDecoderConfigurationRecord truncated")? & 0x03) + 1;
    if length_size == 3 {
        return Err("NAL unit length size 3 is not allowed".into());
    }
    let sps_count = r.u8().ok_or("AVCDecoderConfigurationRecord truncated before the SPS")? & 0x1F;
    let mut sps = Vec::new();
    for _ in 0..sps_count {
        sps.push(r.sized().ok_or("AVCDecoderConfigurationRecord truncated in an SPS")?);
    }
    let pps_count = r.u8().ok_or("AVCDecoderConfigurationRecord truncated before the PPS")?;
    let mut pps = Vec::new();
    for _ in 0..pps_count {
        pps.push(r.sized().ok_or("AVCDecoderConfigurationRecord truncated in a PPS")?);
    }
    Ok(AvcConfig { length_size, sps, pps })
}

/// Builds the AVC sequence header tag (AVCPacketType 0) for `sps`/`pps`. `None` if the SPS is
/// too short to hold profile and level, or a parameter set exceeds 64 KiB.
pub(crate) fn avc_sequence_header(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    let [_, profile, compatibility, level, ..] = *sps else {
        return None;
    };
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut out = BytesMut::with_capacity(16 + sps.len() + pps.len());
    out.put_slice(&[AVC_KEYFRAME, 0, 0, 0, 0]);
    out.put_slice(&[1, profile, compatibility, level]);
    out.put_u8(0xFC | (NAL_LENGTH_SIZE as u8 - 1));
    out.put_u8(0xE0 | 1);
    out.put_u16(sps_len);
    out.put_slice(sps);
    out.put_u8(1);
    out.put_u16(pps_len);
    out.put_slice(pps);
    Some(out.freeze())
}

/// Builds an AVC NALU tag (AVCPacketType 1) from AVCC `data`.
pub(crate) fn avc_nalu_tag(keyframe: bool, composition_ms: i32, data: &[u8]) -> Bytes {
    let cts = composition_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    let mut out = BytesMut::with_capacity(5 + data.len());
    out.put_u8(if keyframe { AVC_KEYFRAME } else { AVC_INTER_FRAME });
    out.put_u8(1);
    out.put_slice(&cts[1..]);
    out.put_slice(data);
    out.freeze()
}

/// Builds the AAC sequence header tag from an AudioSpecificConfig.
pub(crate) fn aac_sequence_header(asc: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + asc.len());
    out.put_slice(&[AAC_TAG_FLAGS, 0]);
    out.put_slice(asc);
    out.freeze()
}

/// Builds an AAC raw frame tag.
pub(crate) fn aac_raw_tag(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + frame.len());
    out.put_slice(&[AAC_TAG_FLAGS, 1]);
    out.put_slice(frame);
    out.freeze()
}

/// An Annex B access unit split for RTMP: the parameter sets it carries, and the other NAL units
/// (without access unit delimiters, which FLV does not use) in AVCC form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SplitUnit {
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
    pub avcc: Vec<u8>,
    pub has_idr: bool,
}

pub(crate) fn annex_b_to_avcc(annex_b: &[u8]) -> SplitUnit {
    let mut out = SplitUnit::default();
    for nal in nal_units(annex_b) {
        match nal_unit_type(nal) {
            None => {}
            Some(nal_type::SPS) => out.sps = Some(Bytes::copy_from_slice(nal)),
            Some(nal_type::PPS) => out.pps = Some(Bytes::copy_from_slice(nal)),
            Some(nal_type::ACCESS_UNIT_DELIMITER) => {}
            Some(t) => {
                out.has_idr |= t == nal_type::IDR_SLICE;
                // A NAL unit never comes near 4 GiB: the input is one RTMP message.
                out.avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.avcc.extend_from_slice(nal);
            }
        }
    }
    out
}

/// An AVCC access unit as Annex B, with `config`'s parameter sets in front when it holds an IDR
/// picture and does not carry its own (what [`AccessUnit`](crate::media::AccessUnit) requires).
/// Returns the bytes and whether there is an IDR picture.
pub(crate) fn avcc_to_annex_b(avcc: &[u8], config: &AvcConfig) -> Result<(Bytes, bool), String> {
    let mut nals = Vec::new();
    let mut r = Reader(avcc);
    while !r.0.is_empty() {
        let len = r.uint(config.length_size).ok_or("NAL unit length cut short")?;
        let len = usize::try_from(len).map_err(|_| "NAL unit length overflows")?;
        let nal = r
            .take(len)
            .ok_or_else(|| format!("NAL unit of {len} bytes runs past the end of the tag"))?;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    let types: Vec<u8> = nals.iter().filter_map(|n| nal_unit_type(n)).collect();
    let has_idr = types.contains(&nal_type::IDR_SLICE);
    let carries_params = types.contains(&nal_type::SPS) && types.contains(&nal_type::PPS);
    let mut out = BytesMut::with_capacity(avcc.len() + 64);
    if has_idr && !carries_params {
        for ps in config.sps.iter().chain(&config.pps) {
            out.put_slice(&[0, 0, 0, 1]);
            out.put_slice(ps);
        }
    }
    for nal in nals {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
    Ok((out.freeze(), has_idr))
}

/// A cursor over a byte slice that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn uint(&mut self, size: usize) -> Option<u64> {
        Some(self.take(size)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A parameter set: 16-bit length, then the bytes.
    fn sized(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.uint(2)?).ok()?;
        self.take(len).map(Bytes::copy_from_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 6] = [0x67, 0x42, 0xC0, 0x1E, 0xAB, 0xCD];
    const PPS: [u8; 3] = [0x68, 0xCE, 0x38];

    #[test]
    fn sequence_header_round_trips() {
        let tag = avc_sequence_header(&SPS, &PPS).unwrap();
        assert_eq!(&tag[..5], &[0x17, 0, 0, 0, 0]);
        match parse_video(&tag).unwrap() {
            VideoTag::SequenceHeader(config) => {
                assert_eq!(config.length_size, 4);
                assert_eq!(config.sps, vec![Bytes::from_static(&SPS)]);
                assert_eq!(config.pps, vec![Bytes::from_static(&PPS)]);
                let params = config.params().unwrap();
                assert_eq!((&params.sps[..], &params.pps[..]), (&SPS[..], &PPS[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn annex_b_and_avcc_convert_both_ways_with_params_before_the_idr() {
        let annex_b = [
            &[0, 0, 0, 1, 0x09, 0xF0][..],
            &[0, 0, 0, 1],
            &SPS,
            &[0, 0, 1],
            &PPS,
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
        ]
        .concat();
        let split = annex_b_to_avcc(&annex_b);
        assert_eq!(split.sps.as_deref(), Some(&SPS[..]));
        assert_eq!(split.pps.as_deref(), Some(&PPS[..]));
        assert!(split.has_idr);
        assert_eq!(split.avcc, [0, 0, 0, 3, 0x65, 0x88, 0x84]);

        let config = AvcConfig {
            length_size: 4,
            sps: vec![Bytes::from_static(&SPS)],
            pps: vec![Bytes::from_static(&PPS)],
        };
        let (back, idr) = avcc_to_annex_b(&split.avcc, &config).unwrap();
        assert!(idr);
        let expected = [
            &[0, 0, 0, 1][..],
            &SPS,
            &[0, 0, 0, 1],
            &PPS,
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
        ]
        .concat();
        assert_eq!(&back[..], &expected[..]);

        // A non-IDR picture gets no parameter sets.
        let (p, idr) = avcc_to_annex_b(&[0, 0, 0, 2, 0x41, 0x9A], &config).unwrap();
        assert!(!idr);
        assert_eq!(&p[..], &[0, 0, 0, 1, 0x41, 0x9A]);
    }

    #[test]
    fn short_length_prefixes_work_and_truncation_is_an_error() {
        let config = AvcConfig {
            length_size: 2,
            sps: vec![],
            pps: vec![],
        };
        let (out, _) = avcc_to_annex_b(&[0, 2, 0x41, 0x9A], &config).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 1, 0x41, 0x9A]);
        assert!(avcc_to_annex_b(&[0, 9, 0x41], &config).is_err());
        assert!(avcc_to_annex_b(&[0], &config).is_err());
    }

    #[test]
    fn composition_time_is_signed_24_bit() {
        let tag = avc_nalu_tag(false, -40, &[0, 0, 0, 1, 0x41]);
        assert_eq!(&tag[..5], &[0x27, 1, 0xFF, 0xFF, 0xD8]);
        match parse_video(&tag).unwrap() {
            VideoTag::Nalus {
                keyframe,
                composition_ms,
                ..
            } => assert_eq!((keyframe, composition_ms), (false, -40)),
            other => panic!("{other:?}"),
        }
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
            &[0x17, 0, 0, 0, 0, 2],
        ] {
            assert!(parse_video(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
        assert!(parse_avc_config(&[1, 0x42, 0, 0x1E, 0xFF, 0xE1, 0, 10, 0x67]).is_err());
    }
}
