//! Renumbering continuity counters for a viewer of the continuous feed.
//!
//! Segments muxed in order already continue each other's counters, but a viewer that falls
//! behind skips segments, and a skip would show as a counter jump. ffmpeg reports such a jump
//! only at debug level but marks the packets corrupt, and stricter demuxers drop them, so each
//! viewer renumbers the packets it is sent: every PID counts on from the last packet this viewer
//! saw (ISO/IEC 13818-1 §2.4.3.3).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::packet::{PACKET_SIZE, SYNC_BYTE};

#[derive(Debug, Default)]
pub struct ContinuityRewriter {
    /// The counter the next packet with payload gets, per PID.
    next: HashMap<u16, u8>,
}

impl ContinuityRewriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// `ts` (whole packets) renumbered to follow what this rewriter has already emitted.
    /// Bytes that are not aligned packets are passed through untouched.
    pub fn rewrite(&mut self, ts: &[u8]) -> Bytes {
        let mut buf = BytesMut::from(ts);
        for packet in buf.chunks_exact_mut(PACKET_SIZE) {
            if packet[0] != SYNC_BYTE {
                continue;
            }
            let pid = u16::from_be_bytes([packet[1], packet[2]]) & 0x1FFF;
            let has_payload = packet[3] & 0x10 != 0;
            let own = packet[3] & 0x0F;
            let next = self.next.entry(pid).or_insert(own);
            // A packet without payload repeats the previous counter instead of advancing it.
            let cc = if has_payload {
                *next
            } else {
                next.wrapping_sub(1) & 0x0F
            };
            packet[3] = (packet[3] & 0xF0) | cc;
            if has_payload {
                *next = (*next + 1) & 0x0F;
            }
        }
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, cc: u8) -> [u8; PACKET_SIZE] {
        let mut p = [0xFF; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1..3].copy_from_slice(&pid.to_be_bytes());
        p[3] = 0x10 | cc;
        p
    }

    #[test]
    fn a_skip_is_renumbered_per_pid() {
        let mut rewriter = ContinuityRewriter::new();
        let first = [packet(0x100, 4), packet(0x101, 9), packet(0x100, 5)].concat();
        assert_eq!(
            &rewriter.rewrite(&first)[..],
            &first[..],
            "first sight keeps the counters"
        );

        let after_skip = [packet(0x100, 12), packet(0x101, 0)].concat();
        let out = rewriter.rewrite(&after_skip);
        assert_eq!(out[3] & 0x0F, 6);
        assert_eq!(out[PACKET_SIZE + 3] & 0x0F, 10);
    }
}
