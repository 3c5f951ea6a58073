//! RTP packetizers against an independent depacketizer (RFC 6184 for H.264, RFC 3640 AAC-hbr):
//! whatever access units go in come back out, in packets that respect the size bound, with
//! contiguous sequence numbers, one timestamp per access unit, and the marker on its last
//! packet.

use proptest::prelude::*;
use usher_server::rtsp::rtp::{AacPacketizer, H264Packetizer, HEADER_LEN, MAX_PACKET};

/// The fields of an RTP fixed header (RFC 3550 §5.1) the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

fn header(p: &[u8]) -> Header {
    assert!(p.len() > HEADER_LEN, "packet shorter than a header with payload: {p:?}");
    assert_eq!(p[0], 0x80, "V=2, no padding, extension or CSRC");
    Header {
        marker: p[1] & 0x80 != 0,
        payload_type: p[1] & 0x7F,
        seq: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    }
}

/// A packetization-mode 1 depacketizer: single NAL unit packets (types 1–23) and FU-A (28).
/// Returns the NAL units of each access unit (closed by the marker bit).
fn depacketize_h264(packets: &[bytes::Bytes]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut units = Vec::new();
    let mut au: Vec<Vec<u8>> = Vec::new();
    let mut fragment: Option<Vec<u8>> = None;
    for p in packets {
        let h = header(p);
        let payload = &p[HEADER_LEN..];
        let nal_type = payload[0] & 0x1F;
        match nal_type {
            1..=23 => {
                if fragment.is_some() {
                    return Err("single NAL unit inside an FU-A".into());
                }
                au.push(payload.to_vec());
            }
            28 => {
                let fu = payload.get(1).ok_or("FU-A without header")?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if fu & 0x20 != 0 {
                    return Err("FU-A reserved bit set".into());
                }
                match (&mut fragment, start) {
                    (None, true) => {
                        // Rebuild the NAL header: F and NRI from the indicator, type from the FU header.
                        fragment = Some(vec![(payload[0] & 0xE0) | (fu & 0x1F)]);
                    }
                    (Some(_), false) => {}
                    _ => return Err(format!("FU-A start bit {start} out of place")),
                }
                let f = fragment.as_mut().ok_or("no fragment")?;
                f.extend_from_slice(&payload[2..]);
                if end {
                    au.push(fragment.take().ok_or("no fragment")?);
                } else if h.marker {
                    return Err("marker on a packet that does not end a NAL unit".into());
                }
            }
            other => return Err(format!("unexpected NAL unit type {other}")),
        }
        if h.marker {
            if fragment.is_some() {
                return Err("marker inside an FU-A".into());
            }
            units.push(std::mem::take(&mut au));
        }
    }
    if !au.is_empty() || fragment.is_some() {
        return Err("packets after the last marker".into());
    }
    Ok(units)
}

/// RFC 3640 AAC-hbr with one AU-header per packet; fragments carry the whole AU's size.
fn depacketize_aac(packets: &[bytes::Bytes]) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    for p in packets {
        let h = header(p);
        let payload = &p[HEADER_LEN..];
        let headers_bits = u16::from_be_bytes([payload[0], payload[1]]);
        if headers_bits != 16 {
            return Err(format!("AU-headers-length {headers_bits}"));
        }
        let au_header = u16::from_be_bytes([payload[2], payload[3]]);
        let (size, index) = (usize::from(au_header >> 3), au_header & 0x7);
        if index != 0 {
            return Err("AU-index not 0".into());
        }
        let (want, data) = current.get_or_insert_with(|| (size, Vec::new()));
        if *want != size {
            return Err("AU-size changed between fragments".into());
        }
        data.extend_from_slice(&payload[4..]);
        if h.marker {
            let (want, data) = current.take().ok_or("no frame")?;
            if data.len() != want {
                return Err(format!("AU of {} bytes announced as {want}", data.len()));
            }
            frames.push(data);
        }
    }
    if current.is_some() {
        return Err("fragment without marker at the end".into());
    }
    Ok(frames)
}

fn annex_b(units: &[Vec<u8>], four_byte: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, u) in units.iter().enumerate() {
        if four_byte.get(i).copied().unwrap_or(false) {
            out.push(0);
        }
        out.extend_from_slice(&[0, 0, 1]);
        out.extend_from_slice(u);
    }
    out
}

/// A NAL unit without start-code emulation (no `00 00` inside, as emulation prevention
/// guarantees in a real stream) and not ending in a zero byte (Annex B trailing zeros belong
/// to the next start code).
fn nal_unit() -> impl Strategy<Value = Vec<u8>> {
    (0u8..=3, 1u8..=23, prop::collection::vec(1u8..=255, 0..4000)).prop_map(|(nri, nal_type, body)| {
        let mut unit = vec![(nri << 5) | nal_type];
        unit.extend(body);
        unit
    })
}

fn access_unit() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<bool>)> {
    prop::collection::vec(nal_unit(), 1..6).prop_flat_map(|units| {
        let n = units.len();
        (Just(units), prop::collection::vec(any::<bool>(), n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn h264_access_units_round_trip(
        aus in prop::collection::vec(access_unit(), 1..5),
        ssrc in any::<u32>(),
        first_seq in any::<u16>(),
        first_ts in any::<u32>(),
        max_packet in prop_oneof![Just(MAX_PACKET), 20usize..1400],
    ) {
        let mut packetizer = H264Packetizer::new(96, ssrc, first_seq, max_packet);
        let mut all = Vec::new();
        for (i, (units, four)) in aus.iter().enumerate() {
            let ts = first_ts.wrapping_add(i as u32 * 9000);
            let packets = packetizer.packetize(ts, &annex_b(units, four));
            prop_assert!(!packets.is_empty());
            for (j, p) in packets.iter().enumerate() {
                let h = header(p);
                prop_assert!(p.len() <= max_packet.max(HEADER_LEN + 3), "{} > {max_packet}", p.len());
                prop_assert_eq!(h.timestamp, ts);
                prop_assert_eq!(h.ssrc, ssrc);
                prop_assert_eq!(h.payload_type, 96);
                prop_assert_eq!(h.marker, j == packets.len() - 1);
            }
            all.extend(packets);
        }
        for (i, p) in all.iter().enumerate() {
            prop_assert_eq!(header(p).seq, first_seq.wrapping_add(i as u16));
        }
        prop_assert_eq!(packetizer.next_seq(), first_seq.wrapping_add(all.len() as u16));
        let back = depacketize_h264(&all).map_err(TestCaseError::fail)?;
        let sent: Vec<Vec<Vec<u8>>> = aus.into_iter().map(|(units, _)| units).collect();
        prop_assert_eq!(back, sent);
    }

    #[test]
    fn aac_frames_round_trip(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..3000), 1..8),
        ssrc in any::<u32>(),
        first_seq in any::<u16>(),
        max_packet in prop_oneof![Just(MAX_PACKET), 17usize..1400],
    ) {
        let mut packetizer = AacPacketizer::new(97, ssrc, first_seq, max_packet);
        let mut all = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let packets = packetizer.packetize(i as u32 * 1024, frame).expect("frames under 8191 bytes fit");
            for p in &packets {
                prop_assert!(p.len() <= max_packet);
                prop_assert_eq!(header(p).timestamp, i as u32 * 1024);
            }
            all.extend(packets);
        }
        for (i, p) in all.iter().enumerate() {
            prop_assert_eq!(header(p).seq, first_seq.wrapping_add(i as u16));
        }
        prop_assert_eq!(depacketize_aac(&all).map_err(TestCaseError::fail)?, frames);
    }
}

#[test]
fn the_depacketizer_notices_a_lost_fragment() {
    let mut packetizer = H264Packetizer::new(96, 1, 0, MAX_PACKET);
    let mut unit = vec![0x65];
    unit.extend(std::iter::repeat_n(7u8, 5000));
    let mut packets = packetizer.packetize_nal_units(0, &[&unit]);
    assert!(packets.len() > 2);
    assert_eq!(depacketize_h264(&packets).unwrap(), vec![vec![unit]]);
    packets.remove(0);
    assert!(depacketize_h264(&packets).is_err());
}
