//! Transport packets (ISO/IEC 13818-1 §2.4.3.2): splitting a payload into 188-byte packets with
//! adaptation fields for PCR, random access and stuffing.

use super::pes::TIMESTAMP_MASK;

pub const PACKET_SIZE: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;
const HEADER_LEN: usize = 4;
const MAX_PAYLOAD: usize = PACKET_SIZE - HEADER_LEN;

/// adaptation_field_control values (§2.4.3.3, Table 2-5).
const PAYLOAD_ONLY: u8 = 0b01;
const ADAPTATION_AND_PAYLOAD: u8 = 0b11;

/// adaptation field flags (§2.4.3.5).
const RANDOM_ACCESS_INDICATOR: u8 = 0x40;
const PCR_FLAG: u8 = 0x10;

/// What the first packet of a payload announces in its adaptation field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstPacket {
    /// Program clock reference base in 90 kHz ticks (extension 0).
    pub pcr: Option<u64>,
    /// random_access_indicator: decoding can start in this PES (a keyframe, §2.4.3.5).
    pub random_access: bool,
}

/// Per-PID continuity_counter: 4 bits, +1 for each packet with payload (§2.4.3.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Continuity(u8);

impl Continuity {
    fn take(&mut self) -> u8 {
        let current = self.0;
        self.0 = (self.0 + 1) & 0x0F;
        current
    }
}

/// Writes `parts` (concatenated) as one payload unit on `pid`: payload_unit_start_indicator on
/// the first packet, stuffing in the adaptation field of the last so every packet is full size.
pub fn write_payload_unit(
    out: &mut Vec<u8>,
    pid: u16,
    continuity: &mut Continuity,
    first: FirstPacket,
    parts: &[&[u8]],
) {
    let mut parts = Parts::new(parts);
    let mut remaining = parts.len();
    let mut is_first = true;
    loop {
        let flags = if is_first { first } else { FirstPacket::default() };
        let mut flag_byte = 0;
        if flags.random_access {
            flag_byte |= RANDOM_ACCESS_INDICATOR;
        }
        if flags.pcr.is_some() {
            flag_byte |= PCR_FLAG;
        }
        // Adaptation field bytes this packet needs before stuffing: length byte + flags + PCR.
        let mut adaptation_len = match (flag_byte, flags.pcr) {
            (0, _) => 0,
            (_, Some(_)) => 8,
            (_, None) => 2,
        };
        let chunk = remaining.min(MAX_PAYLOAD - adaptation_len);
        let stuffing = MAX_PAYLOAD - adaptation_len - chunk;
        adaptation_len += stuffing;

        out.push(SYNC_BYTE);
        let start: u16 = if is_first { 0x4000 } else { 0 };
        out.extend_from_slice(&(start | (pid & 0x1FFF)).to_be_bytes());
        let control = if adaptation_len > 0 {
            ADAPTATION_AND_PAYLOAD
        } else {
            PAYLOAD_ONLY
        };
        out.push((control << 4) | continuity.take());
        if adaptation_len > 0 {
            // adaptation_field_length counts the bytes after itself; 0 is a lone stuffing byte.
            out.push((adaptation_len - 1) as u8);
            if adaptation_len > 1 {
                out.push(flag_byte);
                if let Some(pcr) = flags.pcr {
                    out.extend_from_slice(&pcr_bytes(pcr));
                }
                let written = if flags.pcr.is_some() { 8 } else { 2 };
                out.resize(out.len() + (adaptation_len - written), 0xFF);
            }
        }
        parts.copy_into(out, chunk);
        remaining -= chunk;
        is_first = false;
        if remaining == 0 {
            break;
        }
    }
}

/// Writes one PSI section in a single packet: pointer_field 0, the section, then 0xFF filler
/// (§2.4.4.1 allows stuffing bytes after the last section). Sections here are far shorter than
/// one packet.
pub fn write_section(out: &mut Vec<u8>, pid: u16, continuity: &mut Continuity, section: &[u8]) {
    let start = out.len();
    out.push(SYNC_BYTE);
    out.extend_from_slice(&(0x4000 | (pid & 0x1FFF)).to_be_bytes());
    out.push((PAYLOAD_ONLY << 4) | continuity.take());
    out.push(0x00);
    let fits = section.len().min(MAX_PAYLOAD - 1);
    out.extend_from_slice(&section[..fits]);
    out.resize(start + PACKET_SIZE, 0xFF);
}

/// program_clock_reference (§2.4.3.5): 33-bit base, 6 reserved bits, 9-bit extension (0 here).
fn pcr_bytes(base: u64) -> [u8; 6] {
    let base = base & TIMESTAMP_MASK;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        (((base & 1) as u8) << 7) | 0x7E,
        0x00,
    ]
}

/// The header fields of one received packet that a demuxer acts on (§2.4.3.2, §2.4.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedPacket {
    pub pid: u16,
    pub transport_error: bool,
    pub payload_unit_start: bool,
    pub continuity_counter: u8,
    /// adaptation_field_control says the packet has a payload.
    pub has_payload: bool,
    /// discontinuity_indicator: the continuity counter may jump here.
    pub discontinuity: bool,
    /// Where the payload starts in the packet (188 when there is none).
    pub payload_offset: usize,
}

/// Reads a packet's header and adaptation field length; `Err` with a short description if the
/// packet does not start with the sync byte or its adaptation field overruns the packet.
pub fn parse_packet(packet: &[u8; PACKET_SIZE]) -> Result<ReceivedPacket, &'static str> {
    if packet[0] != SYNC_BYTE {
        return Err("no sync byte");
    }
    let control = (packet[3] >> 4) & 0x03;
    if control == 0 {
        return Err("reserved adaptation_field_control 00");
    }
    let has_adaptation = control & 0b10 != 0;
    let has_payload = control & 0b01 != 0;
    let (payload_offset, discontinuity) = if has_adaptation {
        let length = usize::from(packet[4]);
        if HEADER_LEN + 1 + length > PACKET_SIZE {
            return Err("adaptation field longer than the packet");
        }
        (HEADER_LEN + 1 + length, length > 0 && packet[5] & 0x80 != 0)
    } else {
        (HEADER_LEN, false)
    };
    Ok(ReceivedPacket {
        pid: u16::from_be_bytes([packet[1], packet[2]]) & 0x1FFF,
        transport_error: packet[1] & 0x80 != 0,
        payload_unit_start: packet[1] & 0x40 != 0,
        continuity_counter: packet[3] & 0x0F,
        has_payload,
        discontinuity,
        payload_offset: if has_payload { payload_offset } else { PACKET_SIZE },
    })
}

/// A payload given as several slices, consumed front to back without joining them first.
struct Parts<'a> {
    parts: &'a [&'a [u8]],
    offset: usize,
}

impl<'a> Parts<'a> {
    fn new(parts: &'a [&'a [u8]]) -> Self {
        Parts { parts, offset: 0 }
    }

    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum::<usize>() - self.offset
    }

    fn copy_into(&mut self, out: &mut Vec<u8>, mut n: usize) {
        while n > 0 {
            let Some((head, tail)) = self.parts.split_first() else {
                return;
            };
            let available = &head[self.offset..];
            let take = available.len().min(n);
            out.extend_from_slice(&available[..take]);
            n -= take;
            self.offset += take;
            if self.offset == head.len() {
                self.parts = tail;
                self.offset = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(out: &[u8]) -> Vec<&[u8]> {
        assert_eq!(out.len() % PACKET_SIZE, 0, "whole packets only");
        out.chunks(PACKET_SIZE).collect()
    }

    /// The payload bytes of one packet, skipping any adaptation field.
    fn payload(packet: &[u8]) -> &[u8] {
        if packet[3] & 0x20 != 0 {
            &packet[5 + usize::from(packet[4])..]
        } else {
            &packet[4..]
        }
    }

    #[test]
    fn every_payload_length_fills_whole_packets_and_survives() {
        for len in 0..600 {
            for first in [
                FirstPacket::default(),
                FirstPacket {
                    pcr: None,
                    random_access: true,
                },
                FirstPacket {
                    pcr: Some(12_345),
                    random_access: true,
                },
            ] {
                let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let (a, b) = data.split_at(len / 3);
                let mut out = Vec::new();
                let mut cc = Continuity::default();
                write_payload_unit(&mut out, 0x100, &mut cc, first, &[a, b]);
                let mut joined = Vec::new();
                for (i, packet) in packets(&out).into_iter().enumerate() {
                    assert_eq!(packet[0], SYNC_BYTE);
                    assert_eq!(packet[1] & 0x40 != 0, i == 0, "start indicator on the first only");
                    assert_eq!(usize::from(packet[3] & 0x0F), i % 16);
                    joined.extend_from_slice(payload(packet));
                }
                assert_eq!(joined, data, "len {len} first {first:?}");
            }
        }
    }

    #[test]
    fn first_packet_carries_pcr_and_random_access() {
        let mut out = Vec::new();
        let first = FirstPacket {
            pcr: Some(0x1_2345_6789),
            random_access: true,
        };
        write_payload_unit(&mut out, 0x100, &mut Continuity::default(), first, &[&[1; 500]]);
        let packet = &out[..PACKET_SIZE];
        assert_eq!(packet[3] >> 4, ADAPTATION_AND_PAYLOAD);
        assert_eq!(packet[4], 7, "flags + 6 PCR bytes");
        assert_eq!(packet[5], RANDOM_ACCESS_INDICATOR | PCR_FLAG);
        let base = (u64::from(packet[6]) << 25)
            | (u64::from(packet[7]) << 17)
            | (u64::from(packet[8]) << 9)
            | (u64::from(packet[9]) << 1)
            | u64::from(packet[10] >> 7);
        assert_eq!(base, 0x1_2345_6789);
    }

    #[test]
    fn one_byte_short_uses_a_zero_length_adaptation_field() {
        let mut out = Vec::new();
        write_payload_unit(
            &mut out,
            0x101,
            &mut Continuity::default(),
            FirstPacket::default(),
            &[&[7; 183]],
        );
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(out[3] >> 4, ADAPTATION_AND_PAYLOAD);
        assert_eq!(out[4], 0);
    }

    #[test]
    fn written_packets_parse_back() {
        let mut out = Vec::new();
        let mut cc = Continuity::default();
        let first = FirstPacket {
            pcr: Some(1),
            random_access: true,
        };
        write_payload_unit(&mut out, 0x101, &mut cc, first, &[&[9; 300]]);
        let packets: Vec<&[u8; PACKET_SIZE]> = out
            .chunks_exact(PACKET_SIZE)
            .filter_map(|p| p.try_into().ok())
            .collect();
        let head = parse_packet(packets[0]).expect("valid");
        assert_eq!(
            (head.pid, head.payload_unit_start, head.continuity_counter),
            (0x101, true, 0)
        );
        assert_eq!(head.payload_offset, 12, "header, length, flags, PCR");
        let tail = parse_packet(packets[1]).expect("valid");
        assert_eq!(
            (tail.payload_unit_start, tail.continuity_counter, tail.has_payload),
            (false, 1, true)
        );
        assert_eq!(
            PACKET_SIZE - tail.payload_offset + PACKET_SIZE - head.payload_offset,
            300
        );
    }

    #[test]
    fn broken_packets_are_refused() {
        let mut packet = [0xFF; PACKET_SIZE];
        assert_eq!(parse_packet(&packet), Err("no sync byte"));
        packet[..5].copy_from_slice(&[SYNC_BYTE, 0, 0x20, 0x30, 184]);
        assert_eq!(parse_packet(&packet), Err("adaptation field longer than the packet"));
        packet[4] = 183;
        assert_eq!(parse_packet(&packet).map(|p| p.payload_offset), Ok(PACKET_SIZE));
        packet[3] = 0x00;
        assert!(parse_packet(&packet).is_err(), "adaptation_field_control 00");
        packet[3] = 0x20;
        packet[5] = 0x80;
        assert_eq!(
            parse_packet(&packet).map(|p| (p.has_payload, p.discontinuity)),
            Ok((false, true))
        );
    }

    #[test]
    fn section_packet_is_padded_with_ff() {
        let mut out = Vec::new();
        write_section(&mut out, 0, &mut Continuity::default(), &[1, 2, 3]);
        assert_eq!(out.len(), PACKET_SIZE);
        assert_eq!(&out[..8], [0x47, 0x40, 0x00, 0x10, 0x00, 1, 2, 3]);
        assert!(out[8..].iter().all(|&b| b == 0xFF));
    }
}
