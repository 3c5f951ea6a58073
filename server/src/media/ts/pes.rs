//! PES packet headers (ISO/IEC 13818-1 §2.4.3.6).

/// stream_id values (ISO/IEC 13818-1 Table 2-22): first video and first audio stream.
pub const VIDEO_STREAM_ID: u8 = 0xE0;
pub const AUDIO_STREAM_ID: u8 = 0xC0;

/// Timestamps are 33 bits (§2.4.3.7).
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Longest PES header this module writes: 9 fixed bytes plus PTS and DTS.
pub const MAX_HEADER_LEN: usize = 19;

/// Why a PES header cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PesHeaderError {
    /// PES_packet_length is 16 bits; only video streams may leave it 0 ("unbounded", §2.4.3.7).
    TooLong { payload_len: usize },
}

/// A PES header for `payload_len` bytes of elementary stream data.
///
/// DTS is written only when it differs from PTS (§2.4.3.7: PTS_DTS_flags '10' otherwise).
/// `data_alignment_indicator` is set because every PES carries exactly one whole access unit.
pub fn pes_header(
    stream_id: u8,
    pts: u64,
    dts: u64,
    payload_len: usize,
) -> Result<([u8; MAX_HEADER_LEN], usize), PesHeaderError> {
    let with_dts = pts & TIMESTAMP_MASK != dts & TIMESTAMP_MASK;
    let header_data_length: u8 = if with_dts { 10 } else { 5 };
    // Bytes after PES_packet_length: the 3 flag/length bytes, the timestamps, the payload.
    let packet_length = 3 + usize::from(header_data_length) + payload_len;
    let packet_length_field = match u16::try_from(packet_length) {
        Ok(len) => len,
        Err(_) if stream_id & 0xF0 == VIDEO_STREAM_ID => 0,
        Err(_) => return Err(PesHeaderError::TooLong { payload_len }),
    };

    let mut header = [0u8; MAX_HEADER_LEN];
    header[..3].copy_from_slice(&[0x00, 0x00, 0x01]);
    header[3] = stream_id;
    header[4..6].copy_from_slice(&packet_length_field.to_be_bytes());
    // '10', not scrambled, no priority, data_alignment_indicator 1, not copyrighted, copy
    header[6] = 0x84;
    header[7] = if with_dts { 0xC0 } else { 0x80 };
    header[8] = header_data_length;
    if with_dts {
        header[9..14].copy_from_slice(&timestamp(0b0011, pts));
        header[14..19].copy_from_slice(&timestamp(0b0001, dts));
    } else {
        header[9..14].copy_from_slice(&timestamp(0b0010, pts));
    }
    Ok((header, 9 + usize::from(header_data_length)))
}

/// A 33-bit timestamp in the 5-byte layout of §2.4.3.6, split 3/15/15 with marker bits.
fn timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    let ts = ts & TIMESTAMP_MASK;
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

/// The parts of a received PES header (§2.4.3.6) a demuxer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedPesHeader {
    pub stream_id: u8,
    /// PES_packet_length: bytes after this field; 0 is "unbounded" (video only).
    pub packet_length: u16,
    /// 33-bit timestamps as written.
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Where the elementary stream data starts.
    pub header_len: usize,
}

/// Reads the PES header at the start of `data`. Stream ids without the optional header
/// (padding, private_stream_2, ...; §2.4.3.7 Table 2-21) are refused: they carry nothing here.
pub fn parse_pes_header(data: &[u8]) -> Result<ReceivedPesHeader, &'static str> {
    let Some(
        &[
            p0,
            p1,
            p2,
            stream_id,
            len_hi,
            len_lo,
            flags1,
            flags2,
            header_data_length,
        ],
    ) = data.first_chunk::<9>()
    else {
        return Err("PES header cut short");
    };
    if [p0, p1, p2] != [0, 0, 1] {
        return Err("no PES start code");
    }
    if matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) || flags1 & 0xC0 != 0x80 {
        return Err("PES without the optional header");
    }
    let header_len = 9 + usize::from(header_data_length);
    let fields = data.get(9..header_len).ok_or("PES header cut short")?;
    let (pts, dts) = match flags2 >> 6 {
        0b10 => (Some(read_timestamp(fields.get(..5))?), None),
        0b11 => (
            Some(read_timestamp(fields.get(..5))?),
            Some(read_timestamp(fields.get(5..10))?),
        ),
        0b00 => (None, None),
        _ => return Err("forbidden PTS_DTS_flags 01"),
    };
    Ok(ReceivedPesHeader {
        stream_id,
        packet_length: u16::from_be_bytes([len_hi, len_lo]),
        pts,
        dts,
        header_len,
    })
}

/// The 33-bit value of a 5-byte timestamp field; marker bits are not checked (real muxers get
/// them right, and a wrong one says nothing about the value).
fn read_timestamp(field: Option<&[u8]>) -> Result<u64, &'static str> {
    let Some(&[a, b, c, d, e]) = field else {
        return Err("PES timestamp cut short");
    };
    Ok((u64::from(a & 0x0E) << 29)
        | (u64::from(b) << 22)
        | (u64::from(c & 0xFE) << 14)
        | (u64::from(d) << 7)
        | u64::from(e >> 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_only_header() {
        let (header, len) = pes_header(AUDIO_STREAM_ID, 126_000, 126_000, 11).expect("fits");
        assert_eq!(len, 14);
        assert_eq!(
            &header[..len],
            [0, 0, 1, 0xC0, 0, 19, 0x84, 0x80, 5, 0x21, 0x00, 0x07, 0xD8, 0x61]
        );
    }

    #[test]
    fn written_headers_parse_back() {
        for (pts, dts) in [(126_000, 126_000), ((1 << 33) - 1, (1 << 33) - 3_001), (0, 0)] {
            let (header, len) = pes_header(VIDEO_STREAM_ID, pts, dts, 10).expect("fits");
            let parsed = parse_pes_header(&header[..len]).expect("own header parses");
            let expected_dts = (pts != dts).then_some(dts);
            assert_eq!(
                (parsed.pts, parsed.dts, parsed.header_len),
                (Some(pts), expected_dts, len)
            );
            assert_eq!(usize::from(parsed.packet_length), len - 6 + 10);
        }
    }

    #[test]
    fn broken_headers_are_refused() {
        let (header, len) = pes_header(AUDIO_STREAM_ID, 1, 1, 0).expect("fits");
        assert_eq!(parse_pes_header(&header[..len - 1]), Err("PES header cut short"));
        assert_eq!(parse_pes_header(&header[..8]), Err("PES header cut short"));
        let mut wrong = header;
        wrong[2] = 2;
        assert_eq!(parse_pes_header(&wrong[..len]), Err("no PES start code"));
        let mut padding = header;
        padding[3] = 0xBE;
        assert_eq!(
            parse_pes_header(&padding[..len]),
            Err("PES without the optional header")
        );
        let mut forbidden = header;
        forbidden[7] = 0x40;
        assert_eq!(parse_pes_header(&forbidden[..len]), Err("forbidden PTS_DTS_flags 01"));
    }

    #[test]
    fn timestamps_wrap_to_33_bits() {
        let (a, _) = pes_header(VIDEO_STREAM_ID, 5, 5, 0).expect("fits");
        let (b, _) = pes_header(VIDEO_STREAM_ID, (1 << 33) + 5, (1 << 33) + 5, 0).expect("fits");
        assert_eq!(a, b);
    }

    #[test]
    fn long_payloads_are_unbounded_for_video_only() {
        let (video, _) = pes_header(VIDEO_STREAM_ID, 0, 0, 70_000).expect("video may be unbounded");
        assert_eq!(&video[4..6], [0, 0]);
        assert_eq!(
            pes_header(AUDIO_STREAM_ID, 0, 0, 70_000),
            Err(PesHeaderError::TooLong { payload_len: 70_000 })
        );
    }
}
