//! A fragmented MP4 writer (ISO/IEC 14496-12 §8.8, codec boxes per ISO/IEC 14496-14/-15) for
//! H.264 and AAC access units, so an export streams with bounded memory:
//!
//! ```text
//! ftyp  moov{mvhd mvex{mehd trex…} trak{tkhd mdia{mdhd hdlr minf{vmhd|smhd dinf stbl{stsd …}}}}…}
//! moof{mfhd traf{tfhd tfdt trun}…} mdat   — once per fragment
//! ```
//!
//! Timestamps of the units are 90 kHz; video keeps that timescale, audio uses its sample rate.
//! Both are taken relative to the first unit written, so the file starts at zero. `mehd`
//! carries the export's duration, which players (and ffprobe) report for fragmented files.
//!
//! [`progressive`] writes the same tracks as one progressive file instead (`ftyp`, `moov` with
//! the whole sample tables, then one `mdat`): what `file://` inputs read (fragmented files are
//! refused there) and what the conformance suite puts in a target's media folder.

use bytes::Bytes;

use crate::media::aac::AacConfig;
use crate::media::access_unit::{AccessUnit, CLOCK_HZ, Track};
use crate::media::avc::{self, AvcParams};

/// Timescale of `mvhd`/`mehd`: milliseconds.
const MOVIE_TIMESCALE: u32 = 1000;
/// Samples per AAC-LC frame.
const AAC_FRAME_SAMPLES: u32 = 1024;
/// Duration given to a fragment's last video sample when no later one is known yet: 40 ms.
const DEFAULT_VIDEO_DELTA: u32 = 3600;

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on nothing.
const FLAGS_SYNC: u32 = 0x0200_0000;
/// A non-sync sample depends on others.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + body.len());
    inner.push(version);
    inner.extend_from_slice(&flags.to_be_bytes()[1..]);
    inner.extend_from_slice(body);
    bx(kind, &inner)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

#[derive(Debug, Clone)]
struct VideoTrack {
    id: u32,
    params: AvcParams,
    width: u32,
    height: u32,
}

#[derive(Debug, Clone)]
struct AudioTrack {
    id: u32,
    config: AacConfig,
    sample_rate: u32,
}

/// Writes one fragmented MP4 file: [`init`](Self::init) first, then [`fragment`](Self::fragment)
/// for each batch of units in decoding order.
#[derive(Debug)]
pub struct Fmp4Writer {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    sequence: u32,
    /// 90 kHz time of the file's zero; set by the first fragment.
    origin: Option<u64>,
    last_video_delta: u32,
}

impl Fmp4Writer {
    /// A writer for the tracks whose parameters are known; `None` if neither is.
    pub fn new(video: Option<AvcParams>, audio: Option<AacConfig>) -> Option<Fmp4Writer> {
        let video = video.map(|params| {
            let (width, height) = params.dimensions().unwrap_or((0, 0));
            VideoTrack {
                id: 1,
                params,
                width,
                height,
            }
        });
        let audio = audio.and_then(|config| {
            let sample_rate = config.sample_rate()?;
            Some(AudioTrack {
                id: if video.is_some() { 2 } else { 1 },
                config,
                sample_rate,
            })
        });
        if video.is_none() && audio.is_none() {
            return None;
        }
        Some(Fmp4Writer {
            video,
            audio,
            sequence: 0,
            origin: None,
            last_video_delta: DEFAULT_VIDEO_DELTA,
        })
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// `ftyp` and `moov`, announcing `duration_ms` (in `mvhd` and `mehd`).
    pub fn init(&self, duration_ms: u64) -> Bytes {
        let mvhd = self.mvhd(duration_ms);
        let mut mvex = full(b"mehd", 1, 0, &duration_ms.to_be_bytes());
        let mut traks = Vec::new();
        if let Some(v) = &self.video {
            mvex.extend(trex(v.id));
            traks.extend(self.video_trak(v, duration_ms, &Tables::default()));
        }
        if let Some(a) = &self.audio {
            mvex.extend(trex(a.id));
            traks.extend(self.audio_trak(a, duration_ms, &Tables::default()));
        }
        let moov = bx(b"moov", &cat(&[mvhd, bx(b"mvex", &mvex), traks]));
        Bytes::from(cat(&[ftyp(), moov]))
    }

    /// `mvhd` announcing `duration_ms`.
    fn mvhd(&self, duration_ms: u64) -> Vec<u8> {
        let next_track = 1 + u32::from(self.video.is_some()) + u32::from(self.audio.is_some());
        let mut mvhd = Vec::new();
        mvhd.extend_from_slice(&0u64.to_be_bytes()); // creation_time
        mvhd.extend_from_slice(&0u64.to_be_bytes()); // modification_time
        mvhd.extend_from_slice(&MOVIE_TIMESCALE.to_be_bytes());
        mvhd.extend_from_slice(&duration_ms.to_be_bytes());
        mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
        mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
        mvhd.extend_from_slice(&[0; 10]);
        for m in MATRIX {
            mvhd.extend_from_slice(&m.to_be_bytes());
        }
        mvhd.extend_from_slice(&[0; 24]); // pre_defined
        mvhd.extend_from_slice(&next_track.to_be_bytes());
        full(b"mvhd", 1, 0, &mvhd)
    }

    fn video_trak(&self, v: &VideoTrack, duration_ms: u64, tables: &Tables) -> Vec<u8> {
        let tkhd = tkhd(v.id, duration_ms, 0, v.width, v.height);
        let mdhd = mdhd(CLOCK_HZ as u32, tables.duration());
        let hdlr = hdlr(b"vide", "VideoHandler");
        let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
        let avcc = bx(b"avcC", &avc::avc_decoder_configuration_record(&v.params));
        let mut entry = vec![0; 6];
        entry.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
        entry.extend_from_slice(&[0; 16]); // pre_defined, reserved
        entry.extend_from_slice(&(v.width as u16).to_be_bytes());
        entry.extend_from_slice(&(v.height as u16).to_be_bytes());
        entry.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
        entry.extend_from_slice(&0x0048_0000u32.to_be_bytes());
        entry.extend_from_slice(&0u32.to_be_bytes());
        entry.extend_from_slice(&1u16.to_be_bytes()); // frame_count
        entry.extend_from_slice(&[0; 32]); // compressorname
        entry.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
        entry.extend_from_slice(&(-1i16).to_be_bytes());
        entry.extend(avcc);
        let stbl = stbl(bx(b"avc1", &entry), tables);
        let minf = bx(b"minf", &cat(&[vmhd, dinf(), stbl]));
        bx(b"trak", &cat(&[tkhd, bx(b"mdia", &cat(&[mdhd, hdlr, minf]))]))
    }

    fn audio_trak(&self, a: &AudioTrack, duration_ms: u64, tables: &Tables) -> Vec<u8> {
        let tkhd = tkhd(a.id, duration_ms, 0x0100, 0, 0);
        let mdhd = mdhd(a.sample_rate, tables.duration());
        let hdlr = hdlr(b"soun", "SoundHandler");
        let smhd = full(b"smhd", 0, 0, &[0; 4]);
        let asc = a.config.audio_specific_config();
        // ES_Descriptor{ES_ID, DecoderConfigDescriptor{AAC, audio, DecoderSpecificInfo}, SLConfig}
        let specific = descriptor(0x05, &asc);
        let mut decoder = vec![0x40, 0x15, 0, 0, 0];
        decoder.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate
        decoder.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate
        decoder.extend(specific);
        let mut es = Vec::new();
        es.extend_from_slice(&(a.id as u16).to_be_bytes());
        es.push(0);
        es.extend(descriptor(0x04, &decoder));
        es.extend(descriptor(0x06, &[0x02]));
        let esds = full(b"esds", 0, 0, &descriptor(0x03, &es));
        let mut entry = vec![0; 6];
        entry.extend_from_slice(&1u16.to_be_bytes());
        entry.extend_from_slice(&[0; 8]);
        entry.extend_from_slice(&u16::from(a.config.channel_configuration.max(1)).to_be_bytes());
        entry.extend_from_slice(&16u16.to_be_bytes()); // samplesize
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(&(a.sample_rate.min(0xFFFF) << 16).to_be_bytes());
        entry.extend(esds);
        let stbl = stbl(bx(b"mp4a", &entry), tables);
        let minf = bx(b"minf", &cat(&[smhd, dinf(), stbl]));
        bx(b"trak", &cat(&[tkhd, bx(b"mdia", &cat(&[mdhd, hdlr, minf]))]))
    }

    /// `moof` + `mdat` for `units` (decoding order); units of a track this file does not have
    /// are left out. `None` when nothing is left.
    pub fn fragment(&mut self, units: &[AccessUnit]) -> Option<Bytes> {
        let video: Vec<&AccessUnit> = units
            .iter()
            .filter(|u| u.track == Track::Video && self.video.is_some())
            .collect();
        let audio: Vec<&AccessUnit> = units
            .iter()
            .filter(|u| u.track == Track::Audio && self.audio.is_some())
            .collect();
        if video.is_empty() && audio.is_empty() {
            return None;
        }
        let first = video.iter().chain(&audio).map(|u| u.dts).min().unwrap_or(0);
        let origin = *self.origin.get_or_insert(first);
        self.sequence += 1;

        let video_data: Vec<Vec<u8>> = video
            .iter()
            .map(|u| avc::annex_b_to_avcc(&avc::strip_parameter_sets(&u.data)).to_vec())
            .collect();
        let mut video_samples = Vec::with_capacity(video.len());
        for (i, u) in video.iter().enumerate() {
            let duration = match video.get(i + 1) {
                Some(next) => {
                    let d = u32::try_from(next.dts.saturating_sub(u.dts)).unwrap_or(u32::MAX);
                    self.last_video_delta = d.max(1);
                    d
                }
                None => self.last_video_delta,
            };
            let offset =
                i32::try_from(i64::try_from(u.pts).unwrap_or(0) - i64::try_from(u.dts).unwrap_or(0)).unwrap_or(0);
            video_samples.push(TrunSample {
                duration,
                size: video_data[i].len() as u32,
                flags: Some(if u.keyframe { FLAGS_SYNC } else { FLAGS_NON_SYNC }),
                composition_offset: Some(offset),
            });
        }
        let rate = self.audio.as_ref().map_or(1, |a| u64::from(a.sample_rate));
        let audio_time = |u: &AccessUnit| u.dts.saturating_sub(origin) * rate / CLOCK_HZ;
        let mut audio_samples = Vec::with_capacity(audio.len());
        for (i, u) in audio.iter().enumerate() {
            let duration = match audio.get(i + 1) {
                Some(next) => {
                    u32::try_from(audio_time(next).saturating_sub(audio_time(u))).unwrap_or(AAC_FRAME_SAMPLES)
                }
                None => AAC_FRAME_SAMPLES,
            };
            audio_samples.push(TrunSample {
                duration,
                size: u.data.len() as u32,
                flags: None,
                composition_offset: None,
            });
        }

        // Two passes: the data offsets in `trun` depend on the size of `moof` itself.
        let build = |video_offset: u32, audio_offset: u32| -> Vec<u8> {
            let mut trafs = Vec::new();
            if let (Some(v), Some(first)) = (&self.video, video.first()) {
                trafs.extend(traf(
                    v.id,
                    first.dts.saturating_sub(origin),
                    &video_samples,
                    video_offset,
                ));
            }
            if let (Some(a), Some(first)) = (&self.audio, audio.first()) {
                trafs.extend(traf(a.id, audio_time(first), &audio_samples, audio_offset));
            }
            let mfhd = full(b"mfhd", 0, 0, &self.sequence.to_be_bytes());
            bx(b"moof", &cat(&[mfhd, trafs]))
        };
        let moof_len = build(0, 0).len() as u32;
        let video_len: usize = video_data.iter().map(Vec::len).sum();
        let video_offset = moof_len + 8;
        let audio_offset = video_offset + video_len as u32;
        let moof = build(video_offset, audio_offset);
        let mut mdat_body = Vec::with_capacity(video_len + audio.iter().map(|u| u.data.len()).sum::<usize>());
        for d in &video_data {
            mdat_body.extend_from_slice(d);
        }
        for u in &audio {
            mdat_body.extend_from_slice(&u.data);
        }
        Some(Bytes::from(cat(&[moof, bx(b"mdat", &mdat_body)])))
    }
}

struct TrunSample {
    duration: u32,
    size: u32,
    flags: Option<u32>,
    composition_offset: Option<i32>,
}

fn traf(track: u32, base_time: u64, samples: &[TrunSample], data_offset: u32) -> Vec<u8> {
    // default-base-is-moof: data offsets count from the start of moof.
    let tfhd = full(b"tfhd", 0, 0x02_0000, &track.to_be_bytes());
    let tfdt = full(b"tfdt", 1, 0, &base_time.to_be_bytes());
    let with_flags = samples.iter().any(|s| s.flags.is_some());
    let with_offsets = samples.iter().any(|s| s.composition_offset.is_some());
    let mut flags = 0x000001 | 0x000100 | 0x000200; // data-offset, duration, size
    if with_flags {
        flags |= 0x000400;
    }
    if with_offsets {
        flags |= 0x000800;
    }
    let mut body = Vec::new();
    body.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    body.extend_from_slice(&data_offset.to_be_bytes());
    for s in samples {
        body.extend_from_slice(&s.duration.to_be_bytes());
        body.extend_from_slice(&s.size.to_be_bytes());
        if with_flags {
            body.extend_from_slice(&s.flags.unwrap_or(FLAGS_SYNC).to_be_bytes());
        }
        if with_offsets {
            body.extend_from_slice(&s.composition_offset.unwrap_or(0).to_be_bytes());
        }
    }
    // Version 1: signed composition offsets.
    let trun = full(b"trun", 1, flags, &body);
    bx(b"traf", &cat(&[tfhd, tfdt, trun]))
}

fn trex(track: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&track.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes()); // default_sample_description_index
    body.extend_from_slice(&[0; 12]); // duration, size, flags
    full(b"trex", 0, 0, &body)
}

fn tkhd(track: u32, duration_ms: u64, volume: u16, width: u32, height: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(&track.to_be_bytes());
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&duration_ms.to_be_bytes());
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&0u16.to_be_bytes()); // layer
    body.extend_from_slice(&0u16.to_be_bytes()); // alternate_group
    body.extend_from_slice(&volume.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes());
    for m in MATRIX {
        body.extend_from_slice(&m.to_be_bytes());
    }
    body.extend_from_slice(&(width << 16).to_be_bytes());
    body.extend_from_slice(&(height << 16).to_be_bytes());
    full(b"tkhd", 1, 0x3, &body) // enabled, in movie
}

/// `duration` in `timescale`; 0 for fragmented files (the fragments say).
fn mdhd(timescale: u32, duration: u64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(&timescale.to_be_bytes());
    body.extend_from_slice(&duration.to_be_bytes());
    body.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
    body.extend_from_slice(&0u16.to_be_bytes());
    full(b"mdhd", 1, 0, &body)
}

fn hdlr(kind: &[u8; 4], name: &str) -> Vec<u8> {
    let mut body = vec![0; 4];
    body.extend_from_slice(kind);
    body.extend_from_slice(&[0; 12]);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    full(b"hdlr", 0, 0, &body)
}

fn dinf() -> Vec<u8> {
    let url = full(b"url ", 0, 1, &[]);
    let mut dref = 1u32.to_be_bytes().to_vec();
    dref.extend(url);
    bx(b"dinf", &full(b"dref", 0, 0, &dref))
}

/// `ftyp`: ISO base media, with the brands of H.264 in MP4.
fn ftyp() -> Vec<u8> {
    bx(
        b"ftyp",
        &cat(&[
            b"isom".to_vec(),
            0x200u32.to_be_bytes().to_vec(),
            b"isomiso6avc1mp41".to_vec(),
        ]),
    )
}

/// The sample tables of one track of a progressive file, all its samples in one chunk; empty
/// for fragmented files (the samples are in the fragments).
#[derive(Debug, Default)]
struct Tables {
    /// Per sample, in the track's timescale.
    durations: Vec<u32>,
    sizes: Vec<u32>,
    /// pts − dts per sample; `ctts` only when one is not 0.
    composition: Vec<i32>,
    /// Sample numbers (from 1) of the sync samples; `stss` only when some sample is not one.
    sync: Vec<u32>,
    /// File offset of the track's one chunk.
    chunk_offset: u64,
}

impl Tables {
    fn duration(&self) -> u64 {
        self.durations.iter().map(|&d| u64::from(d)).sum()
    }
}

/// `stbl` with one sample description and `tables`.
fn stbl(entry: Vec<u8>, tables: &Tables) -> Vec<u8> {
    let count = tables.sizes.len() as u32;
    let mut stsd = 1u32.to_be_bytes().to_vec();
    stsd.extend(entry);
    // stts: runs of equal durations.
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &d in &tables.durations {
        match runs.last_mut() {
            Some((n, last)) if *last == d => *n += 1,
            _ => runs.push((1, d)),
        }
    }
    let mut stts = (runs.len() as u32).to_be_bytes().to_vec();
    for (n, d) in runs {
        stts.extend_from_slice(&n.to_be_bytes());
        stts.extend_from_slice(&d.to_be_bytes());
    }
    let mut boxes = vec![full(b"stsd", 0, 0, &stsd), full(b"stts", 0, 0, &stts)];
    if tables.composition.iter().any(|&c| c != 0) {
        // Version 1: signed offsets; one entry per sample (the pattern's clips have none).
        let mut ctts = count.to_be_bytes().to_vec();
        for &c in &tables.composition {
            ctts.extend_from_slice(&1u32.to_be_bytes());
            ctts.extend_from_slice(&c.to_be_bytes());
        }
        boxes.push(full(b"ctts", 1, 0, &ctts));
    }
    if (tables.sync.len() as u32) < count {
        let mut stss = (tables.sync.len() as u32).to_be_bytes().to_vec();
        for n in &tables.sync {
            stss.extend_from_slice(&n.to_be_bytes());
        }
        boxes.push(full(b"stss", 0, 0, &stss));
    }
    let chunks = u32::from(count > 0);
    let mut stsc = chunks.to_be_bytes().to_vec();
    if count > 0 {
        // first_chunk, samples_per_chunk, sample_description_index
        for v in [1, count, 1] {
            stsc.extend_from_slice(&v.to_be_bytes());
        }
    }
    let mut stsz = 0u32.to_be_bytes().to_vec(); // sample_size 0: one size per sample
    stsz.extend_from_slice(&count.to_be_bytes());
    for s in &tables.sizes {
        stsz.extend_from_slice(&s.to_be_bytes());
    }
    boxes.push(full(b"stsc", 0, 0, &stsc));
    boxes.push(full(b"stsz", 0, 0, &stsz));
    let mut offsets = chunks.to_be_bytes().to_vec();
    match u32::try_from(tables.chunk_offset) {
        Ok(offset) => {
            if count > 0 {
                offsets.extend_from_slice(&offset.to_be_bytes());
            }
            boxes.push(full(b"stco", 0, 0, &offsets));
        }
        Err(_) => {
            offsets.extend_from_slice(&tables.chunk_offset.to_be_bytes());
            boxes.push(full(b"co64", 0, 0, &offsets));
        }
    }
    bx(b"stbl", &cat(&boxes))
}

/// A progressive MP4 file of `units` (decoding order, 90 kHz): `ftyp`, `moov` with the sample
/// tables, then one `mdat` holding the video samples and then the audio samples. Each track
/// starts at its first unit; a unit of a track without parameters is left out. `None` when
/// neither track is known or no unit is left.
pub fn progressive(video: Option<AvcParams>, audio: Option<AacConfig>, units: &[AccessUnit]) -> Option<Bytes> {
    let writer = Fmp4Writer::new(video, audio)?;
    let pick = |track: Track, present: bool| -> Vec<&AccessUnit> {
        units.iter().filter(|u| u.track == track && present).collect()
    };
    let video = pick(Track::Video, writer.video.is_some());
    let audio = pick(Track::Audio, writer.audio.is_some());
    if video.is_empty() && audio.is_empty() {
        return None;
    }
    let video_data: Vec<Bytes> = video
        .iter()
        .map(|u| avc::annex_b_to_avcc(&avc::strip_parameter_sets(&u.data)))
        .collect();
    let mut video_tables = Tables::default();
    for (i, u) in video.iter().enumerate() {
        let delta = match video.get(i + 1) {
            Some(next) => next.dts.saturating_sub(u.dts),
            None => i
                .checked_sub(1)
                .map_or(u64::from(DEFAULT_VIDEO_DELTA), |p| u.dts - video[p].dts),
        };
        video_tables.durations.push(u32::try_from(delta).unwrap_or(u32::MAX));
        video_tables.sizes.push(video_data[i].len() as u32);
        video_tables
            .composition
            .push(i32::try_from(i128::from(u.pts) - i128::from(u.dts)).unwrap_or(0));
        if u.keyframe {
            video_tables.sync.push(i as u32 + 1);
        }
    }
    let rate = writer.audio.as_ref().map_or(1, |a| u64::from(a.sample_rate));
    let audio_origin = audio.first().map_or(0, |u| u.dts);
    let audio_time = |u: &AccessUnit| u.dts.saturating_sub(audio_origin) * rate / CLOCK_HZ;
    let mut audio_tables = Tables::default();
    for (i, u) in audio.iter().enumerate() {
        let duration = match audio.get(i + 1) {
            Some(next) => u32::try_from(audio_time(next).saturating_sub(audio_time(u))).unwrap_or(AAC_FRAME_SAMPLES),
            None => AAC_FRAME_SAMPLES,
        };
        audio_tables.durations.push(duration);
        audio_tables.sizes.push(u.data.len() as u32);
        audio_tables.sync.push(i as u32 + 1);
    }
    let duration_ms = (video_tables.duration() * u64::from(MOVIE_TIMESCALE) / CLOCK_HZ)
        .max(audio_tables.duration() * u64::from(MOVIE_TIMESCALE) / rate);
    let video_len: u64 = video_data.iter().map(|d| d.len() as u64).sum();
    let audio_len: u64 = audio.iter().map(|u| u.data.len() as u64).sum();
    let large = video_len + audio_len > u64::from(u32::MAX) / 2;
    let ftyp = ftyp();
    // Two passes: the chunk offsets depend on the size of `moov` itself (not on the values,
    // as long as `stco` or `co64` stays the same).
    let moov = |video_tables: &Tables, audio_tables: &Tables| -> Vec<u8> {
        let mut traks = Vec::new();
        if let Some(v) = &writer.video {
            traks.extend(writer.video_trak(v, duration_ms, video_tables));
        }
        if let Some(a) = &writer.audio {
            traks.extend(writer.audio_trak(a, duration_ms, audio_tables));
        }
        bx(b"moov", &cat(&[writer.mvhd(duration_ms), traks]))
    };
    let placeholder = if large { u64::MAX } else { 0 };
    video_tables.chunk_offset = placeholder;
    audio_tables.chunk_offset = placeholder;
    let mdat_header = if large { 16 } else { 8 };
    let data_start = (ftyp.len() + moov(&video_tables, &audio_tables).len()) as u64 + mdat_header;
    video_tables.chunk_offset = data_start;
    audio_tables.chunk_offset = data_start + video_len;
    let moov = moov(&video_tables, &audio_tables);
    let mut out = Vec::with_capacity(data_start as usize + (video_len + audio_len) as usize);
    out.extend(ftyp);
    out.extend(moov);
    let mdat_len = mdat_header + video_len + audio_len;
    if large {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&mdat_len.to_be_bytes());
    } else {
        out.extend_from_slice(&(mdat_len as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
    }
    for d in &video_data {
        out.extend_from_slice(d);
    }
    for u in &audio {
        out.extend_from_slice(&u.data);
    }
    Some(Bytes::from(out))
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3) with a one-byte length (all here are short).
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, body.len().min(127) as u8];
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mp4::looks_like_mp4;

    fn boxes(data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
            assert!(len >= 8 && at + len <= data.len(), "box length in range");
            at += len;
        }
        assert_eq!(at, data.len(), "boxes fill the buffer");
        out
    }

    #[test]
    fn init_and_fragments_are_well_formed_boxes() {
        let params = AvcParams {
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84]),
            pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        };
        let mut w = Fmp4Writer::new(Some(params), Some(AacConfig::LC_48K_MONO)).unwrap();
        let init = w.init(4000);
        assert!(looks_like_mp4(&init));
        assert_eq!(boxes(&init), ["ftyp", "moov"]);
        let units = vec![
            AccessUnit {
                track: Track::Video,
                pts: 9000,
                dts: 9000,
                keyframe: true,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 1, 2, 3]),
            },
            AccessUnit {
                track: Track::Audio,
                pts: 9000,
                dts: 9000,
                keyframe: true,
                data: Bytes::from_static(&[1, 0x18, 0x20, 7]),
            },
            AccessUnit {
                track: Track::Video,
                pts: 18000,
                dts: 18000,
                keyframe: false,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41, 4, 5]),
            },
        ];
        let fragment = w.fragment(&units).unwrap();
        assert_eq!(boxes(&fragment), ["moof", "mdat"]);
        assert!(w.fragment(&[]).is_none());
    }

    #[test]
    fn a_progressive_file_reads_back_as_the_units_written() {
        use crate::media::pattern::Pattern;
        let pattern = Pattern::new(160, 120).unwrap();
        let units = pattern.units(10, 0..2 * CLOCK_HZ);
        let codecs = pattern.codecs();
        let file = progressive(codecs.video.clone(), codecs.audio, &units).expect("a file");
        assert_eq!(boxes(&file), ["ftyp", "moov", "mdat"]);
        let read = crate::media::mp4::read(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.codecs, codecs);
        assert_eq!(
            read.units, units,
            "same timestamps, flags and bytes (parameter sets put back)"
        );
        assert_eq!(read.presentation_start, 0);
        assert_eq!(read.end, 2 * CLOCK_HZ);
    }

    #[test]
    fn a_progressive_file_keeps_inter_frames_and_composition_offsets() {
        let params = AvcParams {
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84]),
            pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        };
        let unit = |dts: u64, pts: u64, keyframe: bool, nal: u8| AccessUnit {
            track: Track::Video,
            pts,
            dts,
            keyframe,
            data: Bytes::from(vec![0, 0, 0, 1, nal, 7, 7]),
        };
        let units = vec![
            unit(0, 3600, true, 0x65),
            unit(3600, 10800, false, 0x41),
            unit(7200, 7200, false, 0x41),
        ];
        let file = progressive(Some(params.clone()), None, &units).expect("a file");
        let movie = crate::media::mp4::parse(&file).unwrap();
        let samples = movie.video.expect("a video track").samples;
        assert_eq!(samples.iter().map(|s| s.sync).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(
            samples.iter().map(|s| s.composition_offset).collect::<Vec<_>>(),
            [3600, 7200, 0]
        );
        assert!(progressive(Some(params), None, &[]).is_none(), "no units, no file");
        assert!(progressive(None, None, &units).is_none(), "no known track, no file");
    }
}
