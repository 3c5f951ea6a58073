//! H.264 in the shapes the protocol front ends need (ISO/IEC 14496-15, "AVC file format"):
//! length-prefixed NAL units (RTMP/FLV video tags, MP4 samples) versus Annex B start codes
//! (MPEG-TS, our [`AccessUnit`](super::AccessUnit)s), and the AVCDecoderConfigurationRecord that
//! RTMP sends as its AVC sequence header.
//!
//! Everything here is a pure function of its input and returns `None` rather than panicking on
//! bytes that do not parse.

use bytes::{BufMut, Bytes, BytesMut};

use super::h264::{self, nal_type};

/// A 4-byte start code: what every NAL unit written here is prefixed with (ISO/IEC 14496-10
/// §B.1.1 allows 3 or 4 bytes; 4 is what encoders emit before parameter sets and first slices).
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The NALUnitLength size this module writes: 4 bytes, `lengthSizeMinusOne` = 3.
pub const NAL_LENGTH_SIZE: u8 = 4;

/// H.264 parameter sets of a video track (raw NAL units, no start codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcParams {
    pub sps: Bytes,
    pub pps: Bytes,
}

impl AvcParams {
    /// The first SPS and the first PPS of an Annex B byte stream, if it has both.
    pub fn from_annex_b(annex_b: &[u8]) -> Option<AvcParams> {
        let mut sps = None;
        let mut pps = None;
        for unit in h264::nal_units(annex_b) {
            match h264::nal_unit_type(unit) {
                Some(nal_type::SPS) if sps.is_none() => sps = Some(Bytes::copy_from_slice(unit)),
                Some(nal_type::PPS) if pps.is_none() => pps = Some(Bytes::copy_from_slice(unit)),
                _ => {}
            }
        }
        Some(AvcParams { sps: sps?, pps: pps? })
    }

    /// SPS then PPS as an Annex B byte stream, to put in front of an IDR picture.
    pub fn to_annex_b(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + self.sps.len() + self.pps.len());
        for unit in [&self.sps, &self.pps] {
            out.put_slice(&START_CODE);
            out.put_slice(unit);
        }
        out.freeze()
    }

    /// `profile_idc`, the constraint flags byte and `level_idc` (ISO/IEC 14496-10 §7.3.2.1.1):
    /// the SDP `profile-level-id` (RFC 6184 §8.1) and the record's AVCProfileIndication,
    /// profile_compatibility and AVCLevelIndication.
    pub fn profile_level_id(&self) -> Option<[u8; 3]> {
        match *self.sps {
            [_header, profile, constraints, level, ..] => Some([profile, constraints, level]),
            _ => None,
        }
    }

    /// Picture size in pixels, from the SPS (after cropping); `None` if the SPS does not parse.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        parse_sps(&self.sps).map(|sps| (sps.width, sps.height))
    }
}

/// An Annex B access unit as length-prefixed NAL units with 4-byte lengths (ISO/IEC 14496-15
/// §5.3.2, the AVC sample format; RTMP/FLV video tags carry the same). Empty NAL units are left
/// out; the input's NAL units are kept in order, parameter sets included.
pub fn annex_b_to_avcc(annex_b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(annex_b.len() + 16);
    for unit in h264::nal_units(annex_b).filter(|unit| !unit.is_empty()) {
        // A NAL unit longer than 4 GiB cannot be in memory next to its copy anyway.
        out.put_u32(u32::try_from(unit.len()).unwrap_or(u32::MAX));
        out.put_slice(unit);
    }
    out.freeze()
}

/// Length-prefixed NAL units (ISO/IEC 14496-15 §5.3.2) with `nal_length_size`-byte lengths
/// (1, 2, 3 or 4; the record's `lengthSizeMinusOne` + 1) as an Annex B byte stream with 4-byte
/// start codes. `None` if a length runs past the end or the size is not 1..=4.
pub fn avcc_to_annex_b(avcc: &[u8], nal_length_size: u8) -> Option<Bytes> {
    let size = usize::from(nal_length_size);
    if !(1..=4).contains(&size) {
        return None;
    }
    let mut out = BytesMut::with_capacity(avcc.len() + 16);
    let mut rest = avcc;
    while !rest.is_empty() {
        let (length, tail) = rest.split_at_checked(size)?;
        let length = length.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let (unit, tail) = tail.split_at_checked(length)?;
        if !unit.is_empty() {
            out.put_slice(&START_CODE);
            out.put_slice(unit);
        }
        rest = tail;
    }
    Some(out.freeze())
}

/// The NAL units of an Annex B access unit without SPS, PPS and access unit delimiters, for
/// protocols that send parameter sets out of band (RTMP sequence header, SDP
/// `sprop-parameter-sets`). Annex B in, Annex B out (4-byte start codes).
pub fn strip_parameter_sets(annex_b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(annex_b.len());
    for unit in h264::nal_units(annex_b) {
        let kind = h264::nal_unit_type(unit);
        if unit.is_empty()
            || matches!(
                kind,
                Some(nal_type::SPS | nal_type::PPS | nal_type::ACCESS_UNIT_DELIMITER)
            )
        {
            continue;
        }
        out.put_slice(&START_CODE);
        out.put_slice(unit);
    }
    out.freeze()
}

/// profile_idc values whose SPS carries chroma_format_idc and the bit depths (ISO/IEC 14496-10
/// §7.3.2.1.1); the record repeats those fields for them (ISO/IEC 14496-15 §5.3.3.1.2 lists
/// 100, 110, 122 and 144; later profiles follow the same rule, as ffmpeg's writer does).
const PROFILES_WITH_CHROMA_FORMAT: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1, numbered §5.2.4.1 in the 2004
/// edition) for one SPS and one PPS, with 4-byte NAL unit lengths.
///
/// For the High profiles the record ends with chroma_format, the bit depths and no SPS
/// extensions, read from the SPS; if the SPS does not parse that far they are left out, which
/// is what many writers do and what readers (ffmpeg among them) accept.
pub fn avc_decoder_configuration_record(params: &AvcParams) -> Bytes {
    let [profile, compatibility, level] = params.profile_level_id().unwrap_or([66, 0, 30]);
    let mut out = BytesMut::with_capacity(16 + params.sps.len() + params.pps.len());
    out.put_u8(1); // configurationVersion
    out.put_u8(profile);
    out.put_u8(compatibility);
    out.put_u8(level);
    out.put_u8(0xFC | (NAL_LENGTH_SIZE - 1)); // reserved '111111', lengthSizeMinusOne
    out.put_u8(0xE0 | 1); // reserved '111', numOfSequenceParameterSets
    put_u16_prefixed(&mut out, &params.sps);
    out.put_u8(1); // numOfPictureParameterSets
    put_u16_prefixed(&mut out, &params.pps);
    if PROFILES_WITH_CHROMA_FORMAT.contains(&profile)
        && let Some(sps) = parse_sps(&params.sps)
    {
        out.put_u8(0xFC | (sps.chroma_format_idc & 0x03));
        out.put_u8(0xF8 | (sps.bit_depth_luma_minus8 & 0x07));
        out.put_u8(0xF8 | (sps.bit_depth_chroma_minus8 & 0x07));
        out.put_u8(0); // numOfSequenceParameterSetExt
    }
    out.freeze()
}

/// Reads an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1): the first SPS and the
/// first PPS, and the NAL unit length size (`lengthSizeMinusOne` + 1). `None` unless
/// configurationVersion is 1 and at least one SPS and one PPS are present and whole. Trailing
/// High-profile fields are not needed and not checked.
pub fn parse_avc_decoder_configuration_record(record: &[u8]) -> Option<(AvcParams, u8)> {
    let (&[version, _profile, _compatibility, _level, length_size], rest) = record.split_first_chunk::<5>()?;
    if version != 1 {
        return None;
    }
    let nal_length_size = (length_size & 0x03) + 1;
    let (&num_sps, mut rest) = rest.split_first()?;
    let mut sps = None;
    for _ in 0..(num_sps & 0x1F) {
        let (unit, tail) = take_u16_prefixed(rest)?;
        sps.get_or_insert(unit);
        rest = tail;
    }
    let (&num_pps, mut rest) = rest.split_first()?;
    let mut pps = None;
    for _ in 0..num_pps {
        let (unit, tail) = take_u16_prefixed(rest)?;
        pps.get_or_insert(unit);
        rest = tail;
    }
    let params = AvcParams {
        sps: Bytes::copy_from_slice(sps?),
        pps: Bytes::copy_from_slice(pps?),
    };
    Some((params, nal_length_size))
}

fn put_u16_prefixed(out: &mut BytesMut, unit: &[u8]) {
    let len = u16::try_from(unit.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.put_slice(&unit[..usize::from(len)]);
}

fn take_u16_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))
}

/// The fields of a sequence parameter set that packaging needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpsInfo {
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
}

/// Parses `seq_parameter_set_data` (ISO/IEC 14496-10 §7.3.2.1.1) up to the frame cropping.
fn parse_sps(sps: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let mut bits = BitReader::new(&rbsp);
    let profile_idc = bits.bits(8)? as u8;
    bits.bits(16)?; // constraint flags, reserved, level_idc
    bits.ue()?; // seq_parameter_set_id
    let (mut chroma_format_idc, mut depth_luma, mut depth_chroma, mut separate_planes) = (1, 0, 0, false);
    if PROFILES_WITH_CHROMA_FORMAT.contains(&profile_idc) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            separate_planes = bits.bit()?;
        }
        depth_luma = bits.ue()?;
        depth_chroma = bits.ue()?;
        bits.bit()?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for index in 0..lists {
                if bits.bit()? {
                    skip_scaling_list(&mut bits, if index < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.bit()?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            for _ in 0..bits.ue()? {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.ue()?.checked_add(1)?;
    let height_map_units = bits.ue()?.checked_add(1)?;
    let frame_mbs_only = bits.bit()?;
    if !frame_mbs_only {
        bits.bit()?; // mb_adaptive_frame_field_flag
    }
    bits.bit()?; // direct_8x8_inference_flag
    let frame_height_mbs = if frame_mbs_only { 1 } else { 2 } * height_map_units;
    let mut width = width_mbs.checked_mul(16)?;
    let mut height = frame_height_mbs.checked_mul(16)?;
    if bits.bit()? {
        // frame_cropping_flag: offsets in chroma sample units (§7.4.2.1.1, Table 6-1).
        let (sub_width, sub_height) = match (chroma_format_idc, separate_planes) {
            (1, false) => (2, 2),
            (2, false) => (2, 1),
            _ => (1, 1),
        };
        let crop_unit_y = sub_height * if frame_mbs_only { 1 } else { 2 };
        let (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
        width = width.checked_sub(left.checked_add(right)?.checked_mul(sub_width)?)?;
        height = height.checked_sub(top.checked_add(bottom)?.checked_mul(crop_unit_y)?)?;
    }
    Some(SpsInfo {
        chroma_format_idc: u8::try_from(chroma_format_idc).ok()?,
        bit_depth_luma_minus8: u8::try_from(depth_luma).ok()?,
        bit_depth_chroma_minus8: u8::try_from(depth_chroma).ok()?,
        width,
        height,
    })
}

/// scaling_list() (§7.3.2.1.1.1), read only to get past it.
fn skip_scaling_list(bits: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = bits.se()?;
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation_prevention_three_byte (§7.4.1): `00 00 03` becomes `00 00`.
fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// Reads bits most significant first, with Exp-Golomb codes (§9.1).
struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, position: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.position / 8)?;
        let bit = (byte >> (7 - self.position % 8)) & 1;
        self.position += 1;
        Some(bit == 1)
    }

    fn bits(&mut self, count: u32) -> Option<u32> {
        (0..count).try_fold(0u32, |acc, _| Some((acc << 1) | u32::from(self.bit()?)))
    }

    /// ue(v): unsigned Exp-Golomb; codes longer than 32 bits do not occur in valid streams.
    fn ue(&mut self) -> Option<u32> {
        let mut leading_zeros = 0;
        while !self.bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return None;
            }
        }
        let suffix = self.bits(leading_zeros)?;
        ((1u64 << leading_zeros) - 1 + u64::from(suffix)).try_into().ok()
    }

    /// se(v): signed Exp-Golomb.
    fn se(&mut self) -> Option<i64> {
        let code = i64::from(self.ue()?);
        Some(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The SPS and PPS libx264 writes for `ffmpeg -f lavfi -i testsrc=size=160x120:rate=25
    /// -pix_fmt yuv420p -c:v libx264`: High profile, 10x8 macroblocks cropped by 8 lines.
    fn x264_params() -> AvcParams {
        AvcParams {
            sps: Bytes::from_static(&[
                0x67, 0x64, 0x00, 0x0B, 0xAC, 0xB2, 0x05, 0x08, 0xFC, 0xB8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80,
                0x00, 0x00, 0x19, 0x07, 0x8A, 0x15, 0x24,
            ]),
            pps: Bytes::from_static(&[0x68, 0xEB, 0xC3, 0xCB, 0x22, 0xC0]),
        }
    }

    /// The same picture from libx264 with `-profile:v baseline`.
    fn x264_baseline_params() -> AvcParams {
        AvcParams {
            sps: Bytes::from_static(&[
                0x67, 0x42, 0xC0, 0x0B, 0xD9, 0x02, 0x84, 0x7E, 0x5C, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00,
                0x00, 0x0C, 0x83, 0xC5, 0x0A, 0x92,
            ]),
            pps: Bytes::from_static(&[0x68, 0xCB, 0x83, 0xCB, 0x20]),
        }
    }

    #[test]
    fn annex_b_and_avcc_convert_both_ways() {
        let annex_b = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let avcc = annex_b_to_avcc(&annex_b);
        assert_eq!(
            &avcc[..],
            [0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 4, 5]
        );
        let back = avcc_to_annex_b(&avcc, 4).expect("well formed");
        assert_eq!(
            &back[..],
            [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5]
        );
    }

    #[test]
    fn avcc_with_short_lengths_and_truncation() {
        assert_eq!(
            avcc_to_annex_b(&[0, 2, 0x65, 9, 0, 1, 0x41], 2).as_deref(),
            Some(&[0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 0x41][..])
        );
        assert_eq!(avcc_to_annex_b(&[0, 3, 0x65, 9], 2), None, "length past the end");
        assert_eq!(
            avcc_to_annex_b(&[0, 0], 2),
            Some(Bytes::new()),
            "empty NAL unit dropped"
        );
        assert_eq!(avcc_to_annex_b(&[1, 0x65], 0), None);
        assert_eq!(avcc_to_annex_b(&[1, 0x65], 5), None);
        assert_eq!(avcc_to_annex_b(&[], 4), Some(Bytes::new()));
    }

    #[test]
    fn stripping_parameter_sets_keeps_the_slices() {
        let unit = [
            0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x06, 5, 0, 0, 1, 0x65, 7,
        ];
        assert_eq!(
            &strip_parameter_sets(&unit)[..],
            [0, 0, 0, 1, 0x06, 5, 0, 0, 0, 1, 0x65, 7]
        );
    }

    #[test]
    fn parameter_sets_found_in_an_access_unit() {
        let params = x264_params();
        let unit = [&params.to_annex_b()[..], &[0, 0, 1, 0x65, 0x88]].concat();
        assert_eq!(AvcParams::from_annex_b(&unit), Some(params));
        assert_eq!(AvcParams::from_annex_b(&[0, 0, 1, 0x65, 0x88]), None);
    }

    #[test]
    fn sps_gives_the_cropped_picture_size() {
        assert_eq!(x264_params().dimensions(), Some((160, 120)));
        assert_eq!(x264_baseline_params().dimensions(), Some((160, 120)));
        assert_eq!(x264_params().profile_level_id(), Some([0x64, 0x00, 0x0B]));
    }

    #[test]
    fn record_for_a_high_profile_stream_is_what_ffmpeg_writes() {
        let params = x264_params();
        let record = avc_decoder_configuration_record(&params);
        // ffmpeg's avcC box for the same stream (`-c copy -f mp4`): header, SPS, PPS, then the
        // High-profile tail (4:2:0, 8-bit, no SPS extensions).
        let ffmpeg = "0164000bffe100186764000bacb20508fcb808800000030080000019078a152401000668ebc3cb22c0fdf8f800";
        assert_eq!(hex::encode(&record), ffmpeg);
        assert_eq!(parse_avc_decoder_configuration_record(&record), Some((params, 4)));
    }

    #[test]
    fn record_for_a_baseline_stream_has_no_tail() {
        let params = x264_baseline_params();
        let record = avc_decoder_configuration_record(&params);
        assert_eq!(record.len(), 6 + 2 + params.sps.len() + 1 + 2 + params.pps.len());
        assert_eq!(&record[..6], [1, 0x42, 0xC0, 0x0B, 0xFF, 0xE1]);
        assert_eq!(parse_avc_decoder_configuration_record(&record), Some((params, 4)));
    }

    #[test]
    fn records_that_do_not_parse() {
        assert_eq!(parse_avc_decoder_configuration_record(&[]), None);
        assert_eq!(
            parse_avc_decoder_configuration_record(&[2, 0x42, 0, 30, 0xFF, 0xE1, 0, 1, 0x67, 1, 0, 1, 0x68]),
            None,
            "version 2"
        );
        assert_eq!(
            parse_avc_decoder_configuration_record(&[1, 0x42, 0, 30, 0xFF, 0xE1, 0, 9, 0x67]),
            None,
            "SPS cut short"
        );
        assert_eq!(
            parse_avc_decoder_configuration_record(&[1, 0x42, 0, 30, 0xFF, 0xE0, 0]),
            None,
            "no SPS"
        );
        // A record with two-byte lengths reports them.
        let (_, size) =
            parse_avc_decoder_configuration_record(&[1, 0x42, 0, 30, 0xFD, 0xE1, 0, 1, 0x67, 1, 0, 1, 0x68])
                .expect("valid");
        assert_eq!(size, 2);
    }

    fn nal_unit() -> impl Strategy<Value = Vec<u8>> {
        // No zero bytes: Annex B cannot carry `00 00 0x` inside a NAL unit without emulation
        // prevention, which is the encoder's job, not the converter's.
        prop::collection::vec(1u8..=255, 1..300)
    }

    proptest! {
        #[test]
        fn avcc_round_trips(units in prop::collection::vec(nal_unit(), 0..8), size in 1u8..=4) {
            let annex_b: Vec<u8> = units.iter().flat_map(|u| [&START_CODE[..], u].concat()).collect();
            let avcc = annex_b_to_avcc(&annex_b);
            prop_assert_eq!(&avcc_to_annex_b(&avcc, 4).expect("own output parses")[..], &annex_b[..]);

            // The same units with shorter length fields, where they fit.
            let max = if size == 4 { u64::MAX } else { (1u64 << (8 * u32::from(size))) - 1 };
            prop_assume!(units.iter().all(|u| u.len() as u64 <= max));
            let short: Vec<u8> = units
                .iter()
                .flat_map(|u| {
                    let len = (u.len() as u32).to_be_bytes();
                    [&len[4 - usize::from(size)..], u].concat()
                })
                .collect();
            prop_assert_eq!(&avcc_to_annex_b(&short, size).expect("parses")[..], &annex_b[..]);
        }

        #[test]
        fn records_round_trip(sps in nal_unit(), pps in nal_unit()) {
            let params = AvcParams { sps: Bytes::from(sps), pps: Bytes::from(pps) };
            let record = avc_decoder_configuration_record(&params);
            prop_assert_eq!(parse_avc_decoder_configuration_record(&record), Some((params, 4)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), size in 0u8..6) {
            let _ = avcc_to_annex_b(&data, size);
            let _ = parse_avc_decoder_configuration_record(&data);
            let _ = parse_sps(&data);
            let _ = annex_b_to_avcc(&data);
            let _ = strip_parameter_sets(&data);
        }
    }
}
