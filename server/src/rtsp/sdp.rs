//! The session description a DESCRIBE answers with (RFC 2326 §10.2, Appendix C; SDP RFC 8866).
//!
//! Every `a=control` is an absolute URL carrying the token: clients join relative ones by string
//! pasting and break the token (see `target`). H.264 is described per RFC 6184 §8.2.1, AAC as
//! `mpeg4-generic` AAC-hbr per RFC 3640 §4.1 and §3.3.6.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};
use url::Url;

use crate::media::aac::AacConfig;
use crate::media::{AvcParams, Codecs};

/// Dynamic payload types (RFC 3551 §6).
pub(crate) const H264_PAYLOAD_TYPE: u8 = 96;
pub(crate) const AAC_PAYLOAD_TYPE: u8 = 97;
/// Track numbers in control URLs are fixed per kind, so that a client never meets a track id
/// that means one thing in one DESCRIBE and another in the next.
pub(crate) const VIDEO_TRACK: usize = 0;
pub(crate) const AUDIO_TRACK: usize = 1;

/// What one track carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrackKind {
    H264(AvcParams),
    Aac(AacConfig),
}

/// One track of the presentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrackDescription {
    pub(crate) id: usize,
    pub(crate) kind: TrackKind,
    pub(crate) control: Url,
}

impl TrackDescription {
    pub(crate) fn payload_type(&self) -> u8 {
        match self.kind {
            TrackKind::H264(_) => H264_PAYLOAD_TYPE,
            TrackKind::Aac(_) => AAC_PAYLOAD_TYPE,
        }
    }

    /// The RTP clock: 90 kHz for video (RFC 6184 §5.1), the sampling rate for AAC (RFC 3640
    /// §4.1).
    pub(crate) fn clock_rate(&self) -> u32 {
        match &self.kind {
            TrackKind::H264(_) => 90_000,
            TrackKind::Aac(config) => config.sample_rate().unwrap_or(90_000),
        }
    }
}

/// The tracks a source's codecs allow: H.264 when its parameter sets are known, AAC when its
/// configuration can be signalled. `track_url` gives each track's control URL.
pub(crate) fn tracks(codecs: &Codecs, track_url: impl Fn(usize) -> Url) -> Vec<TrackDescription> {
    let mut tracks = Vec::new();
    if let Some(video) = &codecs.video {
        tracks.push(TrackDescription {
            id: VIDEO_TRACK,
            kind: TrackKind::H264(video.clone()),
            control: track_url(VIDEO_TRACK),
        });
    }
    if let Some(audio) = codecs.audio.filter(|a| a.sample_rate().is_some()) {
        tracks.push(TrackDescription {
            id: AUDIO_TRACK,
            kind: TrackKind::Aac(audio),
            control: track_url(AUDIO_TRACK),
        });
    }
    tracks
}

/// The SDP text for `tracks`, with `aggregate` as the session-level control URL.
pub(crate) fn describe(
    name: &str,
    server_ip: IpAddr,
    session_id: u64,
    aggregate: &Url,
    tracks: &[TrackDescription],
) -> String {
    let mut session = Session::new(
        Origin::with_ip_addr(session_id, 1, server_ip),
        if name.is_empty() { "-" } else { name },
    );
    session.connection = Some(Connection::from_ip_addr(unspecified_like(server_ip)));
    session.times.push(Time::new(0, 0));
    session.attributes.push(Attribute::with_value("tool", "usher"));
    // A live source: open-ended, no seeking.
    session.attributes.push(Attribute::with_value("range", "npt=now-"));
    session
        .attributes
        .push(Attribute::with_value("control", aggregate.as_str()));
    for track in tracks {
        session.medias.push(media(track));
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn media(track: &TrackDescription) -> Media {
    let pt = track.payload_type();
    let (kind, rtpmap, fmtp) = match &track.kind {
        TrackKind::H264(params) => ("video", format!("{pt} H264/90000"), h264_fmtp(pt, params)),
        TrackKind::Aac(config) => (
            "audio",
            format!(
                "{pt} MPEG4-GENERIC/{}/{}",
                track.clock_rate(),
                config.channel_configuration.max(1)
            ),
            aac_fmtp(pt, config),
        ),
    };
    let mut media = Media {
        media: kind.to_string(),
        port: 0,
        num_ports: None,
        proto: "RTP/AVP".to_string(),
        fmt: pt.to_string(),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    media.attributes.push(Attribute::with_value("rtpmap", rtpmap));
    media.attributes.push(Attribute::with_value("fmtp", fmtp));
    media
        .attributes
        .push(Attribute::with_value("control", track.control.as_str()));
    media
}

/// RFC 6184 §8.1: `packetization-mode=1` (non-interleaved), `profile-level-id` from the SPS's
/// profile_idc, constraint flags and level_idc, and the parameter sets in base64.
fn h264_fmtp(pt: u8, params: &AvcParams) -> String {
    let mut fmtp = format!("{pt} packetization-mode=1");
    if let Some(profile_level) = params.sps.get(1..4) {
        fmtp.push_str(";profile-level-id=");
        fmtp.push_str(&hex::encode_upper(profile_level));
    }
    fmtp.push_str(";sprop-parameter-sets=");
    fmtp.push_str(&STANDARD.encode(&params.sps));
    fmtp.push(',');
    fmtp.push_str(&STANDARD.encode(&params.pps));
    fmtp
}

/// RFC 3640 §3.3.6 AAC-hbr: 13-bit sizes, 3-bit indices; `config` is the AudioSpecificConfig
/// in hex (§4.1).
fn aac_fmtp(pt: u8, config: &AacConfig) -> String {
    format!(
        "{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={}",
        hex::encode_upper(config.audio_specific_config())
    )
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn codecs() -> Codecs {
        Codecs {
            video: Some(AvcParams {
                sps: Bytes::from_static(&[0x67, 0x42, 0xC0, 0x1E, 0xAB]),
                pps: Bytes::from_static(&[0x68, 0xCE, 0x3C, 0x80]),
            }),
            audio: Some(AacConfig::LC_48K_MONO),
        }
    }

    #[test]
    fn sdp_has_absolute_controls_and_codec_parameters() {
        let base = Url::parse("rtsp://127.0.0.1:8554/live/s?token=abc").unwrap();
        let tracks = tracks(&codecs(), |n| {
            Url::parse(&format!("rtsp://127.0.0.1:8554/live/s/trackID={n}?token=abc")).unwrap()
        });
        let text = describe("live/s", "127.0.0.1".parse().unwrap(), 42, &base, &tracks);
        let parsed = Session::parse(text.as_bytes()).expect("the SDP parses");
        assert_eq!(
            parsed.get_first_attribute_value("control").unwrap(),
            Some(base.as_str())
        );
        assert_eq!(parsed.medias.len(), 2);
        let video = &parsed.medias[0];
        assert_eq!((video.media.as_str(), video.fmt.as_str()), ("video", "96"));
        assert_eq!(
            video.get_first_attribute_value("rtpmap").unwrap(),
            Some("96 H264/90000")
        );
        assert_eq!(
            video.get_first_attribute_value("fmtp").unwrap(),
            Some("96 packetization-mode=1;profile-level-id=42C01E;sprop-parameter-sets=Z0LAHqs=,aM48gA==")
        );
        assert_eq!(
            video.get_first_attribute_value("control").unwrap(),
            Some("rtsp://127.0.0.1:8554/live/s/trackID=0?token=abc")
        );
        let audio = &parsed.medias[1];
        assert_eq!(
            audio.get_first_attribute_value("rtpmap").unwrap(),
            Some("97 MPEG4-GENERIC/48000/1")
        );
        assert!(
            audio
                .get_first_attribute_value("fmtp")
                .unwrap()
                .unwrap()
                .ends_with("config=1188")
        );
    }

    #[test]
    fn unknown_codecs_give_no_tracks() {
        let url = |_| Url::parse("rtsp://h/s").unwrap();
        assert!(tracks(&Codecs::default(), url).is_empty());
        let audio_only = Codecs {
            video: None,
            audio: Some(AacConfig::LC_48K_MONO),
        };
        assert_eq!(tracks(&audio_only, url)[0].id, AUDIO_TRACK);
    }
}
