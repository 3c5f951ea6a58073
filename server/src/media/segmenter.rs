//! Turning the access units of one segment into a self-contained TS file.

use bytes::Bytes;

use super::access_unit::AccessUnit;
use super::ts::{PACKET_SIZE, TsMuxer};

/// One media segment of the live window.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u64,
    /// A complete TS file: PAT, PMT, then the access units, video keyframe first.
    pub data: Bytes,
}

/// PAT and PMT, then every access unit in the given (decoding) order.
///
/// An access unit the muxer refuses is logged and left out: one bad frame from a publisher must
/// not end the stream for everyone.
pub fn mux_segment(muxer: &mut TsMuxer, units: &[AccessUnit]) -> Bytes {
    let payload: usize = units.iter().map(|au| au.data.len()).sum();
    // Payload plus about 3% packet overhead and a packet or two per access unit for headers.
    let mut out = Vec::with_capacity(payload + payload / 32 + (units.len() + 2) * PACKET_SIZE);
    muxer.write_tables(&mut out);
    for au in units {
        if let Err(error) = muxer.write_access_unit(au, &mut out) {
            tracing::warn!(%error, track = ?au.track, pts = au.pts, "access unit left out of segment");
        }
    }
    Bytes::from(out)
}

/// A live segment, kept while it is in the window and read by every viewer of the stream: on
/// Linux in memory that connections send with sendfile (`crate::zerocopy`).
pub fn live_bytes(data: Bytes) -> Bytes {
    #[cfg(target_os = "linux")]
    return crate::zerocopy::shared_bytes(data);
    #[cfg(not(target_os = "linux"))]
    data
}
