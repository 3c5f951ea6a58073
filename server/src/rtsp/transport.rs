//! The `Transport` header of SETUP (RFC 2326 §12.39).
//!
//! Only RTP over the RTSP connection itself is served (`RTP/AVP/TCP`, interleaved, §10.12):
//! media then shares the fate of the control connection, which is what ties a session to its
//! connection (SESS-07). A request offering only UDP or multicast gets 461 Unsupported
//! Transport; ffmpeg then retries with TCP on its own.

/// What a SETUP asked for, reduced to what the server can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requested {
    /// Interleaved TCP, with the client's channel pair if it named one.
    Interleaved(Option<(u8, u8)>),
    /// Nothing this server serves (UDP, multicast, another profile).
    Unsupported,
}

/// Reads a `Transport` value: the client's alternatives in order of preference, comma
/// separated; the first TCP one wins.
pub(crate) fn requested(header: &str) -> Requested {
    for spec in header.split(',') {
        let mut params = spec.split(';').map(str::trim);
        let profile = params.next().unwrap_or_default();
        if !profile.eq_ignore_ascii_case("RTP/AVP/TCP") {
            continue;
        }
        let mut channels = None;
        let mut multicast = false;
        for param in params {
            if param.eq_ignore_ascii_case("multicast") {
                multicast = true;
            } else if let Some(v) = param.strip_prefix("interleaved=") {
                channels = interleaved(v);
                if channels.is_none() {
                    return Requested::Unsupported;
                }
            }
        }
        if !multicast {
            return Requested::Interleaved(channels);
        }
    }
    Requested::Unsupported
}

/// `interleaved=N` or `interleaved=N-M` (§12.39): RTP on N, RTCP on the next channel.
fn interleaved(v: &str) -> Option<(u8, u8)> {
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?),
        None => {
            let a = v.trim().parse::<u8>().ok()?;
            (a, a.checked_add(1)?)
        }
    };
    (a != b).then_some((a, b))
}

/// The answer's `Transport` value (§12.39; `ssrc` as eight hex digits).
pub(crate) fn answer((rtp, rtcp): (u8, u8), ssrc: u32) -> String {
    format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp};ssrc={ssrc:08X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_offers_are_taken_and_udp_refused() {
        assert_eq!(
            requested("RTP/AVP/TCP;unicast;interleaved=0-1"),
            Requested::Interleaved(Some((0, 1)))
        );
        assert_eq!(
            requested("RTP/AVP/TCP;interleaved=2"),
            Requested::Interleaved(Some((2, 3)))
        );
        assert_eq!(requested("rtp/avp/tcp;unicast"), Requested::Interleaved(None));
        assert_eq!(
            requested("RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;unicast;interleaved=4-5"),
            Requested::Interleaved(Some((4, 5)))
        );
        assert_eq!(
            requested("RTP/AVP;unicast;client_port=5000-5001"),
            Requested::Unsupported
        );
        assert_eq!(
            requested("RTP/AVP/UDP;unicast;client_port=5000-5001"),
            Requested::Unsupported
        );
        assert_eq!(requested("RTP/AVP/TCP;multicast"), Requested::Unsupported);
        assert_eq!(requested("RTP/AVP/TCP;interleaved=x-y"), Requested::Unsupported);
        assert_eq!(requested("RTP/AVP/TCP;interleaved=255"), Requested::Unsupported);
        assert_eq!(requested(""), Requested::Unsupported);
    }

    #[test]
    fn the_answer_is_what_retina_requires() {
        assert_eq!(
            answer((0, 1), 0xAB),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=000000AB"
        );
    }
}
