//! A small MP4 (ISO/IEC 14496-12 and -14) reader for `file://` and VOD inputs: the first H.264
//! track and the first AAC track of a progressive (non-fragmented) file, as [`AccessUnit`]s.
//!
//! What is read: `moov/mvhd` (movie timescale), and per `trak`: `edts/elst` (the start of the
//! presentation), `mdia/mdhd` (timescale), `mdia/hdlr` (`vide`/`soun`), and in
//! `mdia/minf/stbl`: `stsd` (`avc1`/`avc3` with `avcC`, `mp4a` with `esds`), `stts`, `ctts`,
//! `stsc`, `stsz`/`stz2`, `stco`/`co64`, `stss`. Other tracks (subtitles, HEVC, …) are skipped;
//! fragmented files (`moof`) are refused.
//!
//! Everything is checked before use: a truncated, empty or hostile file yields an [`Mp4Error`]
//! naming the byte offset, never a panic, and sample counts are capped at [`MAX_SAMPLES`] so
//! that no count in the file can make the server allocate without bound.

mod boxes;
mod tables;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use super::Codecs;
use super::aac::AacConfig;
use super::access_unit::{AccessUnit, CLOCK_HZ, Track};
use super::avc::{self, AvcParams};
use boxes::{Mp4Box, Reader, boxes, child_in};
pub use tables::Sample;
use tables::SampleTables;

/// Samples per track this reader accepts: 4 Mi, over 46 hours of 25 fps video.
pub const MAX_SAMPLES: usize = 1 << 22;

/// Why an MP4 file cannot be read: where (file offset) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MP4 byte {offset}: {message}")]
pub struct Mp4Error {
    pub offset: u64,
    pub message: String,
}

impl Mp4Error {
    fn at(offset: u64, message: impl Into<String>) -> Self {
        Mp4Error {
            offset,
            message: message.into(),
        }
    }
}

/// Whether `data` looks like an ISO BMFF file: its first box has a type MP4 files start with.
pub fn looks_like_mp4(data: &[u8]) -> bool {
    matches!(
        data.get(4..8),
        Some(b"ftyp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide" | b"styp" | b"pdin")
    )
}

/// What a track carries, from its sample description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCodec {
    /// H.264 with its parameter sets (absent for `avc3` files that carry them in band only)
    /// and the NAL unit length size of its samples.
    Avc {
        params: Option<AvcParams>,
        nal_length_size: u8,
    },
    Aac(AacConfig),
}

/// One readable track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Track {
    pub codec: TrackCodec,
    /// Ticks per second of `samples`' times.
    pub timescale: u32,
    /// Media time presented first (`elst`): earlier samples (e.g. AAC priming) come before
    /// the start of the presentation.
    pub media_start: i64,
    /// Empty time before the media starts, in the track's timescale (an `elst` empty edit).
    pub delay: u64,
    pub samples: Vec<Sample>,
}

/// The readable tracks of a file: the first H.264 and the first AAC track.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Movie {
    pub video: Option<Mp4Track>,
    pub audio: Option<Mp4Track>,
}

/// Reads the index (`moov`) of a progressive MP4 file.
pub fn parse(data: &[u8]) -> Result<Movie, Mp4Error> {
    if data.is_empty() {
        return Err(Mp4Error::at(0, "the file is empty"));
    }
    let mut moov = None;
    for found in boxes(data, 0) {
        let found = match found {
            Ok(found) => found,
            // A cut-off box after the index (usually `mdat`) only matters if samples point
            // into the missing part, which reading them reports.
            Err(error) if moov.is_some() => {
                tracing::debug!(%error, "MP4 ends inside a box after moov");
                break;
            }
            Err(error) => return Err(error),
        };
        if found.is(b"moof") {
            return Err(Mp4Error::at(found.offset, "fragmented MP4 (moof) is not supported"));
        }
        if found.is(b"moov") && moov.is_none() {
            moov = Some(found);
        }
    }
    let moov = moov.ok_or_else(|| Mp4Error::at(0, "no moov box: not an MP4 file, or its index is missing"))?;
    let movie_timescale = {
        let mvhd = moov.require(b"mvhd")?;
        let (version, mut r) = mvhd.full()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        r.u32()?
    };
    let mut movie = Movie::default();
    for trak in boxes(moov.body, moov.body_offset) {
        let trak = trak?;
        if !trak.is(b"trak") {
            continue;
        }
        let Some(track) = read_track(&trak, movie_timescale)? else {
            continue;
        };
        let slot = match track.codec {
            TrackCodec::Avc { .. } => &mut movie.video,
            TrackCodec::Aac(_) => &mut movie.audio,
        };
        if slot.is_none() {
            *slot = Some(track);
        }
    }
    if movie.video.is_none() && movie.audio.is_none() {
        return Err(Mp4Error::at(moov.offset, "no H.264 or AAC track"));
    }
    Ok(movie)
}

/// One `trak`, or `None` if it is not H.264 or AAC.
fn read_track(trak: &Mp4Box<'_>, movie_timescale: u32) -> Result<Option<Mp4Track>, Mp4Error> {
    let mdia = trak.require(b"mdia")?;
    let handler = {
        let hdlr = mdia.require(b"hdlr")?;
        let (_, mut r) = hdlr.full()?;
        r.skip(4)?; // pre_defined
        r.bytes(4)?
    };
    if handler != b"vide" && handler != b"soun" {
        return Ok(None);
    }
    let timescale = {
        let mdhd = mdia.require(b"mdhd")?;
        let (version, mut r) = mdhd.full()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let timescale = r.u32()?;
        if timescale == 0 {
            return Err(r.error("timescale 0"));
        }
        timescale
    };
    let stbl = mdia.require(b"minf")?.require(b"stbl")?;
    let Some(codec) = sample_description(&stbl.require(b"stsd")?)? else {
        return Ok(None);
    };
    let (media_start, delay) = match trak.child(b"edts")? {
        Some(edts) => edit_list(&edts, timescale, movie_timescale)?,
        None => (0, 0),
    };
    let samples = SampleTables { stbl }.samples()?;
    Ok(Some(Mp4Track {
        codec,
        timescale,
        media_start,
        delay,
        samples,
    }))
}

/// `stsd` (§8.5.2): the codec of the first sample entry, if it is one we read.
fn sample_description(stsd: &Mp4Box<'_>) -> Result<Option<TrackCodec>, Mp4Error> {
    let (_, mut r) = stsd.full()?;
    let count = r.u32()?;
    if count == 0 {
        return Err(r.error("no sample entries"));
    }
    let base = r.offset();
    let Some(entry) = boxes(r.rest(), base).next().transpose()? else {
        return Err(r.error("no sample entries"));
    };
    match &entry.kind.0 {
        b"avc1" | b"avc3" => {
            // VisualSampleEntry (§12.1.3): 78 bytes of fields before the child boxes.
            let mut r = entry.reader();
            r.skip(78)?;
            let children = r.rest();
            let Some(avcc) = child_in(children, r.offset(), b"avcC")? else {
                return Err(entry_error(&entry, "has no avcC box"));
            };
            match avc::parse_avc_decoder_configuration_record(avcc.body) {
                Some((params, nal_length_size)) => Ok(Some(TrackCodec::Avc {
                    params: Some(params),
                    nal_length_size,
                })),
                None if &entry.kind.0 == b"avc3" => {
                    let nal_length_size = avcc.body.get(4).map_or(4, |b| (b & 0x03) + 1);
                    Ok(Some(TrackCodec::Avc {
                        params: None,
                        nal_length_size,
                    }))
                }
                None => Err(Mp4Error::at(
                    avcc.offset,
                    "avcC is not a valid AVCDecoderConfigurationRecord with an SPS and a PPS",
                )),
            }
        }
        b"mp4a" => {
            // AudioSampleEntry (§12.2.3): 28 bytes; QuickTime sound description versions 1 and
            // 2 add 16 and 36.
            let mut r = entry.reader();
            r.skip(8)?;
            let version = r.u16()?;
            r.skip(18)?;
            r.skip(match version {
                1 => 16,
                2 => 36,
                _ => 0,
            })?;
            let Some(esds) = child_in(r.rest(), r.offset(), b"esds")? else {
                return Err(entry_error(&entry, "has no esds box"));
            };
            let (_, mut r) = esds.full()?;
            let asc = audio_specific_config(&mut r)?;
            match AacConfig::from_audio_specific_config(asc) {
                Some(config) => Ok(Some(TrackCodec::Aac(config))),
                None => Err(Mp4Error::at(
                    esds.offset,
                    format!("AudioSpecificConfig {asc:02x?} is not an AAC configuration ADTS can carry"),
                )),
            }
        }
        _ => {
            tracing::debug!(entry = %entry.kind, "track with an unsupported codec skipped");
            Ok(None)
        }
    }
}

fn entry_error(entry: &Mp4Box<'_>, what: &str) -> Mp4Error {
    Mp4Error::at(entry.offset, format!("sample entry {} {what}", entry.kind))
}

/// The DecoderSpecificInfo of an `esds` box: ES_Descriptor (tag 3) → DecoderConfigDescriptor
/// (tag 4, object type 0x40 or 0x66–0x68 for AAC) → DecoderSpecificInfo (tag 5), ISO/IEC
/// 14496-1 §7.2.6.
fn audio_specific_config<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Mp4Error> {
    let (tag, len) = descriptor(r)?;
    if tag != 0x03 {
        return Err(r.error(format!("expected ES_Descriptor (tag 3), found tag {tag}")));
    }
    let mut es = Reader::new(r.bytes(len)?, r.offset() - len as u64, boxes::FourCc(*b"esds"));
    es.skip(2)?; // ES_ID
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        let url_len = es.u8()?;
        es.skip(usize::from(url_len))?;
    }
    if flags & 0x20 != 0 {
        es.skip(2)?; // OCR_ES_Id
    }
    let (tag, len) = descriptor(&mut es)?;
    if tag != 0x04 {
        return Err(es.error(format!("expected DecoderConfigDescriptor (tag 4), found tag {tag}")));
    }
    let mut config = Reader::new(es.bytes(len)?, es.offset() - len as u64, boxes::FourCc(*b"esds"));
    let object_type = config.u8()?;
    if !matches!(object_type, 0x40 | 0x66 | 0x67 | 0x68) {
        return Err(config.error(format!("object type {object_type:#04x} is not AAC")));
    }
    config.skip(12)?; // streamType, bufferSizeDB, maxBitrate, avgBitrate
    let (tag, len) = descriptor(&mut config)?;
    if tag != 0x05 {
        return Err(config.error(format!("expected DecoderSpecificInfo (tag 5), found tag {tag}")));
    }
    config.bytes(len)
}

/// A descriptor's tag and its expandable size (ISO/IEC 14496-1 §8.3.3: up to four bytes of 7
/// bits, high bit set on all but the last).
fn descriptor(r: &mut Reader<'_>) -> Result<(u8, usize), Mp4Error> {
    let tag = r.u8()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let byte = r.u8()?;
        len = (len << 7) | usize::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            return Ok((tag, len));
        }
    }
    Err(r.error("descriptor size longer than four bytes"))
}

/// `elst` (§8.6.6): the media time presented first and any empty time before it (converted
/// from the movie's timescale to the track's). Only the common shapes matter here: an optional
/// leading empty edit, then one edit whose media time is where presentation starts.
fn edit_list(edts: &Mp4Box<'_>, timescale: u32, movie_timescale: u32) -> Result<(i64, u64), Mp4Error> {
    let Some(elst) = edts.child(b"elst")? else {
        return Ok((0, 0));
    };
    let (version, mut r) = elst.full()?;
    let n = r.count(if version == 1 { 20 } else { 12 })?;
    let mut delay = 0u64;
    for _ in 0..n {
        let (duration, media_time) = if version == 1 {
            (r.u64()?, r.i64()?)
        } else {
            (u64::from(r.u32()?), i64::from(r.i32()?))
        };
        r.skip(4)?; // media_rate
        if media_time == -1 {
            if movie_timescale > 0 {
                let ticks = u128::from(duration) * u128::from(timescale) / u128::from(movie_timescale);
                delay = delay.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
            }
            continue;
        }
        return Ok((media_time.max(0), delay));
    }
    Ok((0, delay))
}

/// `ticks` of `timescale` in 90 kHz, rounded to nearest.
fn to_clock(ticks: i128, timescale: u32) -> i128 {
    let scale = i128::from(timescale.max(1));
    (ticks * i128::from(CLOCK_HZ) + scale / 2).div_euclid(scale)
}

/// What a file holds, ready to packetize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUnits {
    pub codecs: Codecs,
    /// Video (Annex B, parameter sets in front of every keyframe) and audio (raw AAC) in
    /// decoding order, on one 90 kHz clock whose smallest timestamp is 0. Timestamps before
    /// the start of the presentation (edit lists) are kept, so they may be negative relative
    /// to the presentation; `presentation_start` says where it begins.
    pub units: Vec<AccessUnit>,
    /// The 90 kHz timestamp at which the presentation starts.
    pub presentation_start: u64,
    /// The end of the video track (or the audio track when there is no video): the last
    /// sample's time plus its duration, on the same clock.
    pub end: u64,
}

/// Reads a whole MP4 file into access units.
pub fn read(data: &[u8]) -> Result<FileUnits, Mp4Error> {
    let movie = parse(data)?;
    // (track, pts, dts, keyframe, data) on the presentation clock, where 0 is the start of the
    // presentation and samples before it are negative.
    let mut timed: Vec<(Track, i128, i128, bool, Bytes)> = Vec::new();
    let mut codecs = Codecs::default();
    let mut ends: [Option<i128>; 2] = [None, None];
    for (index, track) in [movie.video.as_ref(), movie.audio.as_ref()].into_iter().enumerate() {
        let Some(track) = track else { continue };
        let (kind, nal_length_size) = match &track.codec {
            TrackCodec::Avc {
                params,
                nal_length_size,
            } => {
                codecs.video = params.clone();
                (Track::Video, Some(*nal_length_size))
            }
            TrackCodec::Aac(config) => {
                codecs.audio = Some(*config);
                (Track::Audio, None)
            }
        };
        let shift = i128::from(track.delay) - i128::from(track.media_start);
        for (number, sample) in track.samples.iter().enumerate() {
            let bytes = sample_bytes(data, sample, number)?;
            let payload = match nal_length_size {
                Some(size) => {
                    let Some(annex_b) = avc::avcc_to_annex_b(bytes, size) else {
                        return Err(Mp4Error::at(
                            sample.offset,
                            format!("video sample {number}: NAL unit lengths run past the sample"),
                        ));
                    };
                    annex_b
                }
                None => Bytes::copy_from_slice(bytes),
            };
            let dts = i128::from(sample.dts) + shift;
            let pts = dts + i128::from(sample.composition_offset);
            let end = dts + i128::from(sample.duration);
            let slot = &mut ends[index];
            *slot = Some(slot.map_or(end, |e: i128| e.max(end)));
            timed.push((
                kind,
                to_clock(pts, track.timescale),
                to_clock(dts, track.timescale),
                sample.sync,
                payload,
            ));
        }
        let slot = &mut ends[index];
        *slot = slot.map(|end| to_clock(end, track.timescale));
    }
    if codecs.video.is_none()
        && let Some((_, _, _, _, first)) = timed.iter().find(|t| t.0 == Track::Video && t.3)
    {
        // avc3: parameter sets only in band.
        codecs.video = AvcParams::from_annex_b(first);
    }
    let base = timed.iter().map(|t| t.1.min(t.2)).min().unwrap_or(0).min(0);
    let to_u64 = |t: i128| u64::try_from(t - base).unwrap_or(u64::MAX);
    let end = ends[0].or(ends[1]).unwrap_or(0);
    let prefix = codecs.video.as_ref().map(AvcParams::to_annex_b);
    let mut units: Vec<AccessUnit> = timed
        .into_iter()
        .map(|(track, pts, dts, keyframe, data)| {
            let data = match (&prefix, track, keyframe) {
                (Some(prefix), Track::Video, true) if AvcParams::from_annex_b(&data).is_none() => {
                    Bytes::from([&prefix[..], &data[..]].concat())
                }
                _ => data,
            };
            AccessUnit {
                track,
                pts: to_u64(pts.max(dts)),
                dts: to_u64(dts),
                keyframe: track == Track::Audio || keyframe,
                data,
            }
        })
        .collect();
    units.sort_by_key(|u| (u.dts, u.track == Track::Audio));
    Ok(FileUnits {
        codecs,
        units,
        presentation_start: to_u64(0),
        end: to_u64(end),
    })
}

fn sample_bytes<'a>(data: &'a [u8], sample: &Sample, number: usize) -> Result<&'a [u8], Mp4Error> {
    let start = usize::try_from(sample.offset).ok();
    let end = start.and_then(|s| s.checked_add(sample.size as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= data.len() => Ok(&data[start..end]),
        _ => Err(Mp4Error::at(
            sample.offset,
            format!(
                "sample {number} ({} bytes) lies past the end of the file ({} bytes): the file is truncated",
                sample.size,
                data.len()
            ),
        )),
    }
}
