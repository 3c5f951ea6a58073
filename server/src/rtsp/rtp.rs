//! RTP packetizers: H.264 (RFC 6184) and AAC in `mpeg4-generic` AAC-hbr mode (RFC 3640).
//!
//! Both are sans-IO: an access unit and its RTP timestamp go in, whole RTP packets (RFC 3550
//! §5.1 fixed header, no CSRC, no extension) come out. Framing for the TCP connection is the
//! caller's business (RFC 2326 §10.12).

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::h264;

/// Largest RTP packet (header and payload) this server sends. Below any Ethernet MTU, so the
/// same packets could go over UDP; also what retina and ffmpeg expect of a TCP server.
pub const MAX_PACKET: usize = 1400;
/// RFC 3550 §5.1: the fixed header without CSRC.
pub const HEADER_LEN: usize = 12;
/// RFC 6184 §5.8: FU indicator and FU header.
const FU_A_OVERHEAD: usize = 2;
/// RFC 6184 Table 1: NAL unit type of an FU-A fragment.
const FU_A: u8 = 28;
/// RFC 3640 §3.3.6: AU-headers-length (16 bits) and one 16-bit AU-header (13-bit size + 3-bit index).
const AAC_HBR_OVERHEAD: usize = 4;
/// RFC 3640 §3.3.6 AAC-hbr `sizelength=13`.
pub const MAX_AAC_AU: usize = (1 << 13) - 1;

/// The sequence number and SSRC state of one RTP stream (RFC 3550 §5.1).
#[derive(Debug, Clone)]
struct RtpStream {
    payload_type: u8,
    ssrc: u32,
    next_seq: u16,
}

impl RtpStream {
    fn packet(&mut self, timestamp: u32, marker: bool, payload_len: usize) -> BytesMut {
        let mut p = BytesMut::with_capacity(HEADER_LEN + payload_len);
        // V=2, P=0, X=0, CC=0.
        p.put_u8(0x80);
        p.put_u8(if marker { 0x80 } else { 0 } | (self.payload_type & 0x7F));
        p.put_u16(self.next_seq);
        p.put_u32(timestamp);
        p.put_u32(self.ssrc);
        self.next_seq = self.next_seq.wrapping_add(1);
        p
    }
}

/// Packs H.264 access units (Annex B) into RTP packets, packetization-mode 1 (RFC 6184
/// §6.3, non-interleaved): a NAL unit that fits goes alone (§5.6), a larger one as FU-A
/// fragments (§5.8). The marker bit is set on the last packet of each access unit (§5.1).
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    rtp: RtpStream,
    max_packet: usize,
}

impl H264Packetizer {
    /// `max_packet` is clamped to at least a header and 3 payload bytes (an FU-A needs one
    /// byte of NAL payload beside its two bytes of overhead).
    pub fn new(payload_type: u8, ssrc: u32, first_seq: u16, max_packet: usize) -> H264Packetizer {
        H264Packetizer {
            rtp: RtpStream {
                payload_type,
                ssrc,
                next_seq: first_seq,
            },
            max_packet: max_packet.max(HEADER_LEN + FU_A_OVERHEAD + 1),
        }
    }

    /// The sequence number of the next packet (for `RTP-Info: seq=`, RFC 2326 §12.33).
    pub fn next_seq(&self) -> u16 {
        self.rtp.next_seq
    }

    pub fn ssrc(&self) -> u32 {
        self.rtp.ssrc
    }

    /// The RTP packets of one access unit given as an Annex B byte stream. Empty NAL units
    /// are skipped; an access unit without any NAL unit gives no packet.
    pub fn packetize(&mut self, timestamp: u32, annex_b: &[u8]) -> Vec<Bytes> {
        let units: Vec<&[u8]> = h264::nal_units(annex_b).filter(|u| !u.is_empty()).collect();
        self.packetize_nal_units(timestamp, &units)
    }

    /// The RTP packets of one access unit given as NAL units without start codes.
    pub fn packetize_nal_units(&mut self, timestamp: u32, units: &[&[u8]]) -> Vec<Bytes> {
        let max_payload = self.max_packet - HEADER_LEN;
        let mut out = Vec::new();
        let last_unit = units.len().saturating_sub(1);
        for (i, unit) in units.iter().enumerate() {
            let last_of_au = i == last_unit;
            let Some((&header, body)) = unit.split_first() else {
                continue;
            };
            if unit.len() <= max_payload {
                let mut p = self.rtp.packet(timestamp, last_of_au, unit.len());
                p.put_slice(unit);
                out.push(p.freeze());
                continue;
            }
            // FU indicator keeps F and NRI of the NAL unit; the FU header carries its type.
            let indicator = (header & 0xE0) | FU_A;
            let nal_type = header & 0x1F;
            let chunk = max_payload - FU_A_OVERHEAD;
            let mut pieces = body.chunks(chunk).peekable();
            let mut start = true;
            while let Some(piece) = pieces.next() {
                let end = pieces.peek().is_none();
                let fu_header = if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 } | nal_type;
                let mut p = self
                    .rtp
                    .packet(timestamp, last_of_au && end, FU_A_OVERHEAD + piece.len());
                p.put_u8(indicator);
                p.put_u8(fu_header);
                p.put_slice(piece);
                out.push(p.freeze());
                start = false;
            }
        }
        out
    }
}

/// Packs raw AAC frames into RTP packets as `mpeg4-generic` in AAC-hbr mode (RFC 3640 §3.3.6):
/// one access unit per packet, or, when it does not fit, fragments of it that each carry the
/// whole AU's size (§3.2.3); the marker bit ends an access unit (§3.2.1).
#[derive(Debug, Clone)]
pub struct AacPacketizer {
    rtp: RtpStream,
    max_packet: usize,
}

impl AacPacketizer {
    pub fn new(payload_type: u8, ssrc: u32, first_seq: u16, max_packet: usize) -> AacPacketizer {
        AacPacketizer {
            rtp: RtpStream {
                payload_type,
                ssrc,
                next_seq: first_seq,
            },
            max_packet: max_packet.max(HEADER_LEN + AAC_HBR_OVERHEAD + 1),
        }
    }

    pub fn next_seq(&self) -> u16 {
        self.rtp.next_seq
    }

    pub fn ssrc(&self) -> u32 {
        self.rtp.ssrc
    }

    /// The packets of one raw AAC frame; `None` if the frame is empty or longer than the
    /// 13-bit AU-size can say.
    pub fn packetize(&mut self, timestamp: u32, frame: &[u8]) -> Option<Vec<Bytes>> {
        if frame.is_empty() || frame.len() > MAX_AAC_AU {
            return None;
        }
        // Fits in 13 bits (checked above); the 3-bit AU-index is 0.
        let au_header = (frame.len() as u16) << 3;
        let chunk = self.max_packet - HEADER_LEN - AAC_HBR_OVERHEAD;
        let mut pieces = frame.chunks(chunk).peekable();
        let mut out = Vec::new();
        while let Some(piece) = pieces.next() {
            let end = pieces.peek().is_none();
            let mut p = self.rtp.packet(timestamp, end, AAC_HBR_OVERHEAD + piece.len());
            // AU-headers-length in bits.
            p.put_u16(16);
            p.put_u16(au_header);
            p.put_slice(piece);
            out.push(p.freeze());
        }
        Some(out)
    }
}

/// An RTP timestamp for a media time: `ticks` of the 90 kHz media clock since the session's
/// start point, scaled to `clock_rate` and offset by the stream's random start (RFC 3550 §5.1).
/// Negative offsets (an audio frame just before the first video frame) wrap like any other.
pub fn rtp_timestamp(ticks_since_start: i64, clock_rate: u32, initial: u32) -> u32 {
    let scaled = i128::from(ticks_since_start) * i128::from(clock_rate);
    let units = scaled.div_euclid(i128::from(crate::media::CLOCK_HZ));
    // Reduced modulo 2^32 on purpose: RTP timestamps wrap.
    (units.rem_euclid(1 << 32) as u32).wrapping_add(initial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(p: &[u8]) -> (bool, u8, u16, u32, u32) {
        (
            p[1] & 0x80 != 0,
            p[1] & 0x7F,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    }

    #[test]
    fn small_nal_units_go_alone_and_the_last_one_has_the_marker() {
        let mut p = H264Packetizer::new(96, 0xdead_beef, 65_535, MAX_PACKET);
        let au = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 4, 5];
        let packets = p.packetize(9_000, &au);
        assert_eq!(packets.len(), 3);
        assert_eq!(header(&packets[0]), (false, 96, 65_535, 9_000, 0xdead_beef));
        assert_eq!(header(&packets[2]), (true, 96, 1, 9_000, 0xdead_beef));
        assert_eq!(&packets[0][HEADER_LEN..], &[0x67, 1, 2]);
        assert_eq!(&packets[2][HEADER_LEN..], &[0x65, 4, 5]);
        assert_eq!(p.next_seq(), 2);
    }

    #[test]
    fn a_large_nal_unit_becomes_fu_a_fragments() {
        let mut p = H264Packetizer::new(96, 1, 0, MAX_PACKET);
        let mut nal = vec![0x65];
        nal.extend((0..3000u32).map(|i| (i % 251) as u8 + 1));
        let packets = p.packetize_nal_units(0, &[&nal]);
        assert_eq!(packets.len(), 3);
        assert!(packets.iter().all(|p| p.len() <= MAX_PACKET));
        // FU indicator: NRI 3, type 28; headers S, -, E with type 5.
        assert_eq!(packets[0][HEADER_LEN], 0x60 | 28);
        assert_eq!(packets[0][HEADER_LEN + 1], 0x80 | 5);
        assert_eq!(packets[1][HEADER_LEN + 1], 5);
        assert_eq!(packets[2][HEADER_LEN + 1], 0x40 | 5);
        let marks: Vec<bool> = packets.iter().map(|p| header(p).0).collect();
        assert_eq!(marks, [false, false, true]);
    }

    #[test]
    fn aac_frames_carry_one_au_header() {
        let mut p = AacPacketizer::new(97, 7, 10, MAX_PACKET);
        let packets = p.packetize(1_024, &[0x01, 0x18, 0x20, 0x07]).unwrap();
        assert_eq!(packets.len(), 1);
        assert_eq!(header(&packets[0]), (true, 97, 10, 1_024, 7));
        assert_eq!(
            &packets[0][HEADER_LEN..],
            &[0x00, 0x10, 0x00, 0x20, 0x01, 0x18, 0x20, 0x07]
        );
        assert!(p.packetize(0, &[]).is_none());
        assert!(p.packetize(0, &vec![0; MAX_AAC_AU + 1]).is_none());
        let big = p.packetize(0, &vec![1; 3000]).unwrap();
        assert_eq!(big.len(), 3);
        assert!(
            big.iter()
                .all(|p| p.len() <= MAX_PACKET && u16::from_be_bytes([p[14], p[15]]) >> 3 == 3000)
        );
    }

    #[test]
    fn timestamps_scale_and_wrap() {
        assert_eq!(rtp_timestamp(0, 90_000, 5), 5);
        assert_eq!(rtp_timestamp(1_920, 48_000, 0), 1_024);
        assert_eq!(rtp_timestamp(-1_920, 48_000, 0), u32::MAX - 1_023);
        assert_eq!(rtp_timestamp(1, 90_000, u32::MAX), 0);
    }
}
