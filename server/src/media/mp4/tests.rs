//! The MP4 reader against files built box by box here: the sample tables in their variants,
//! edit lists, and damaged or hostile files, which must give errors and never panic.

use proptest::prelude::*;

use super::*;
use crate::media::access_unit::CLOCK_HZ;
use crate::media::{aac, fake};

// ---- A small MP4 writer, just enough to build test files. ----

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&u32::try_from(body.len() + 8).unwrap().to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0, 0, 0];
    b.extend_from_slice(body);
    bx(kind, &b)
}

fn u16b(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
fn u32b(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

#[derive(Clone)]
struct TestSample {
    data: Vec<u8>,
    duration: u32,
    cts: i32,
    sync: bool,
}

#[derive(Clone)]
enum Sizes {
    Stsz,
    /// stsz with one size for all (every sample must have it).
    Constant,
    Stz2(u8),
}

#[derive(Clone)]
struct TestTrack {
    handler: [u8; 4],
    timescale: u32,
    entry: Vec<u8>,
    samples: Vec<TestSample>,
    /// Samples per chunk.
    per_chunk: usize,
    sizes: Sizes,
    co64: bool,
    /// (empty edit in movie ticks, media_time)
    elst: Option<(u32, i32)>,
    stss: bool,
}

fn avc_entry(params: &AvcParams) -> Vec<u8> {
    let mut b = vec![0u8; 6];
    b.extend_from_slice(&u16b(1));
    b.extend_from_slice(&[0u8; 16]);
    b.extend_from_slice(&u16b(64));
    b.extend_from_slice(&u16b(48));
    b.extend_from_slice(&u32b(0x0048_0000));
    b.extend_from_slice(&u32b(0x0048_0000));
    b.extend_from_slice(&u32b(0));
    b.extend_from_slice(&u16b(1));
    b.extend_from_slice(&[0u8; 32]);
    b.extend_from_slice(&u16b(0x18));
    b.extend_from_slice(&u16b(0xFFFF));
    assert_eq!(b.len(), 78);
    b.extend(bx(b"avcC", &avc::avc_decoder_configuration_record(params)));
    bx(b"avc1", &b)
}

fn esds(asc: &[u8]) -> Vec<u8> {
    let mut dsi = vec![0x05, asc.len() as u8];
    dsi.extend_from_slice(asc);
    let mut dcd = vec![0x40, 0x15, 0, 0, 0];
    dcd.extend_from_slice(&u32b(128_000));
    dcd.extend_from_slice(&u32b(128_000));
    dcd.extend(dsi);
    let mut dcd_full = vec![0x04, dcd.len() as u8];
    dcd_full.extend(dcd);
    // ES_ID, flags, then the DecoderConfigDescriptor and an SLConfigDescriptor; the ES length
    // in the four-byte expandable form ffmpeg writes.
    let mut es = vec![0, 1, 0];
    es.extend(dcd_full);
    es.extend_from_slice(&[0x06, 0x01, 0x02]);
    let mut body = vec![0x03, 0x80, 0x80, 0x80, es.len() as u8];
    body.extend(es);
    full(b"esds", 0, &body)
}

fn mp4a_entry(asc: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 6];
    b.extend_from_slice(&u16b(1));
    b.extend_from_slice(&[0u8; 8]);
    b.extend_from_slice(&u16b(1));
    b.extend_from_slice(&u16b(16));
    b.extend_from_slice(&[0u8; 4]);
    b.extend_from_slice(&u32b(48_000 << 16));
    assert_eq!(b.len(), 28);
    b.extend(esds(asc));
    bx(b"mp4a", &b)
}

const MOVIE_TIMESCALE: u32 = 1000;

fn trak(track: &TestTrack, chunk_offsets: &[u64]) -> Vec<u8> {
    let n = track.samples.len();
    let mut stsd = u32b(1).to_vec();
    stsd.extend_from_slice(&track.entry);
    let mut stts = u32b(n as u32).to_vec();
    for s in &track.samples {
        stts.extend_from_slice(&u32b(1));
        stts.extend_from_slice(&u32b(s.duration));
    }
    let mut ctts = u32b(n as u32).to_vec();
    for s in &track.samples {
        ctts.extend_from_slice(&u32b(1));
        ctts.extend_from_slice(&s.cts.to_be_bytes());
    }
    let mut stsc = u32b(1).to_vec();
    stsc.extend_from_slice(&u32b(1));
    stsc.extend_from_slice(&u32b(track.per_chunk as u32));
    stsc.extend_from_slice(&u32b(1));
    // A second run that changes nothing but must be walked past.
    if chunk_offsets.len() > 2 {
        stsc[..4].copy_from_slice(&u32b(2));
        stsc.extend_from_slice(&u32b(3));
        stsc.extend_from_slice(&u32b(track.per_chunk as u32));
        stsc.extend_from_slice(&u32b(1));
    }
    let sizes = match track.sizes {
        Sizes::Stsz => {
            let mut b = u32b(0).to_vec();
            b.extend_from_slice(&u32b(n as u32));
            for s in &track.samples {
                b.extend_from_slice(&u32b(s.data.len() as u32));
            }
            full(b"stsz", 0, &b)
        }
        Sizes::Constant => {
            let size = track.samples.first().map_or(0, |s| s.data.len() as u32);
            let mut b = u32b(size).to_vec();
            b.extend_from_slice(&u32b(n as u32));
            full(b"stsz", 0, &b)
        }
        Sizes::Stz2(field) => {
            let mut b = vec![0, 0, 0, field];
            b.extend_from_slice(&u32b(n as u32));
            let sizes: Vec<u32> = track.samples.iter().map(|s| s.data.len() as u32).collect();
            match field {
                4 => {
                    for pair in sizes.chunks(2) {
                        b.push(((pair[0] as u8) << 4) | pair.get(1).map_or(0, |&s| s as u8));
                    }
                }
                8 => b.extend(sizes.iter().map(|&s| s as u8)),
                _ => {
                    for s in sizes {
                        b.extend_from_slice(&u16b(s as u16));
                    }
                }
            }
            full(b"stz2", 0, &b)
        }
    };
    let offsets = if track.co64 {
        let mut b = u32b(chunk_offsets.len() as u32).to_vec();
        for &o in chunk_offsets {
            b.extend_from_slice(&o.to_be_bytes());
        }
        full(b"co64", 0, &b)
    } else {
        let mut b = u32b(chunk_offsets.len() as u32).to_vec();
        for &o in chunk_offsets {
            b.extend_from_slice(&u32b(o as u32));
        }
        full(b"stco", 0, &b)
    };
    let mut stbl = full(b"stsd", 0, &stsd);
    stbl.extend(full(b"stts", 0, &stts));
    stbl.extend(full(b"ctts", 1, &ctts));
    stbl.extend(full(b"stsc", 0, &stsc));
    stbl.extend(sizes);
    stbl.extend(offsets);
    if track.stss {
        let sync: Vec<u32> = (0..n)
            .filter(|&i| track.samples[i].sync)
            .map(|i| i as u32 + 1)
            .collect();
        let mut b = u32b(sync.len() as u32).to_vec();
        for s in sync {
            b.extend_from_slice(&u32b(s));
        }
        stbl.extend(full(b"stss", 0, &b));
    }
    let minf = bx(b"minf", &bx(b"stbl", &stbl));
    let mut mdhd = u32b(0).to_vec();
    mdhd.extend_from_slice(&u32b(0));
    mdhd.extend_from_slice(&u32b(track.timescale));
    mdhd.extend_from_slice(&u32b(0));
    mdhd.extend_from_slice(&[0x55, 0xC4, 0, 0]);
    let mut hdlr = u32b(0).to_vec();
    hdlr.extend_from_slice(&track.handler);
    hdlr.extend_from_slice(&[0u8; 13]);
    let mut mdia = full(b"mdhd", 0, &mdhd);
    mdia.extend(full(b"hdlr", 0, &hdlr));
    mdia.extend(minf);
    let mut body = full(b"tkhd", 0, &[0u8; 80]);
    if let Some((empty, media_time)) = track.elst {
        let mut elst = Vec::new();
        let mut entries = 0u32;
        if empty > 0 {
            elst.extend_from_slice(&u32b(empty));
            elst.extend_from_slice(&(-1i32).to_be_bytes());
            elst.extend_from_slice(&u32b(0x0001_0000));
            entries += 1;
        }
        elst.extend_from_slice(&u32b(0));
        elst.extend_from_slice(&media_time.to_be_bytes());
        elst.extend_from_slice(&u32b(0x0001_0000));
        entries += 1;
        let mut b = u32b(entries).to_vec();
        b.extend(elst);
        body.extend(bx(b"edts", &full(b"elst", 0, &b)));
    }
    body.extend(bx(b"mdia", &mdia));
    bx(b"trak", &body)
}

/// ftyp, moov, then one mdat holding every track's chunks one after the other.
fn movie(tracks: &[TestTrack]) -> Vec<u8> {
    let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isomavc1mp41");
    let build = |mdat_start: u64| {
        let mut mvhd = u32b(0).to_vec();
        mvhd.extend_from_slice(&u32b(0));
        mvhd.extend_from_slice(&u32b(MOVIE_TIMESCALE));
        mvhd.extend_from_slice(&u32b(0));
        mvhd.extend_from_slice(&[0u8; 80]);
        let mut moov = full(b"mvhd", 0, &mvhd);
        let mut mdat = Vec::new();
        for track in tracks {
            let mut offsets = Vec::new();
            for chunk in track.samples.chunks(track.per_chunk.max(1)) {
                offsets.push(mdat_start + mdat.len() as u64);
                for s in chunk {
                    mdat.extend_from_slice(&s.data);
                }
            }
            moov.extend(trak(track, &offsets));
        }
        (bx(b"moov", &moov), bx(b"mdat", &mdat))
    };
    let (moov, _) = build(0);
    let start = (ftyp.len() + moov.len() + 8) as u64;
    let (moov, mdat) = build(start);
    [ftyp, moov, mdat].concat()
}

fn fake_video() -> (AvcParams, Vec<TestSample>) {
    let units: Vec<_> = fake::access_units(0..CLOCK_HZ)
        .into_iter()
        .filter(|u| u.track == Track::Video)
        .collect();
    let params = AvcParams::from_annex_b(&units[0].data).expect("fake frames carry SPS/PPS");
    let samples = units
        .iter()
        .enumerate()
        .map(|(i, u)| TestSample {
            // Samples without the parameter sets, as MP4 writers store them.
            data: avc::annex_b_to_avcc(&avc::strip_parameter_sets(&u.data)).to_vec(),
            duration: 100,
            cts: 0,
            sync: i % 5 == 0,
        })
        .collect();
    (params, samples)
}

fn video_track() -> TestTrack {
    let (params, samples) = fake_video();
    TestTrack {
        handler: *b"vide",
        timescale: 1000,
        entry: avc_entry(&params),
        samples,
        per_chunk: 3,
        sizes: Sizes::Stsz,
        co64: false,
        elst: None,
        stss: true,
    }
}

fn audio_track(frames: usize) -> TestTrack {
    TestTrack {
        handler: *b"soun",
        timescale: 48_000,
        entry: mp4a_entry(&aac::AacConfig::LC_48K_MONO.audio_specific_config()),
        samples: (0..frames)
            .map(|_| TestSample {
                data: aac::SILENT_MONO_FRAME.to_vec(),
                duration: 1024,
                cts: 0,
                sync: true,
            })
            .collect(),
        per_chunk: 4,
        sizes: Sizes::Constant,
        co64: true,
        elst: None,
        stss: false,
    }
}

// ---- Reading good files ----

#[test]
fn a_file_with_video_and_audio_reads_back_as_access_units() {
    let video = video_track();
    let audio = audio_track(47);
    let data = movie(&[video.clone(), audio]);
    assert!(looks_like_mp4(&data));

    let movie = parse(&data).expect("parses");
    let v = movie.video.as_ref().expect("video track");
    assert_eq!(v.samples.len(), 10);
    assert_eq!(v.timescale, 1000);
    assert_eq!(v.samples.iter().filter(|s| s.sync).count(), 2);
    assert_eq!(movie.audio.as_ref().expect("audio track").samples.len(), 47);

    let file = read(&data).expect("reads");
    let params = AvcParams::from_annex_b(&fake::access_units(0..1)[0].data).unwrap();
    assert_eq!(file.codecs.video, Some(params.clone()));
    assert_eq!(file.codecs.audio, Some(aac::AacConfig::LC_48K_MONO));
    let videos: Vec<_> = file.units.iter().filter(|u| u.track == Track::Video).collect();
    let audios: Vec<_> = file.units.iter().filter(|u| u.track == Track::Audio).collect();
    assert_eq!((videos.len(), audios.len()), (10, 47));
    // 100 ms per frame at timescale 1000 is 9000 ticks; 1024 samples at 48 kHz is 1920.
    assert!(
        videos
            .iter()
            .enumerate()
            .all(|(i, u)| u.dts == i as u64 * 9_000 && u.pts == u.dts)
    );
    assert!(audios.iter().enumerate().all(|(i, u)| u.dts == i as u64 * 1_920));
    assert_eq!(file.end, 10 * 9_000, "the video track's end");
    assert_eq!(file.presentation_start, 0);
    // Keyframes get the parameter sets in front; the others stay as they were.
    assert!(videos[0].keyframe && videos[0].data.starts_with(&params.to_annex_b()));
    assert!(!videos[1].keyframe && !videos[1].data.starts_with(&params.to_annex_b()));
    assert_eq!(
        &videos[1].data[..],
        &avc::strip_parameter_sets(&fake::access_units(9_000..9_001)[0].data)[..]
    );
    assert!(audios.iter().all(|u| u.data[..] == aac::SILENT_MONO_FRAME));
    assert!(file.units.windows(2).all(|w| w[0].dts <= w[1].dts), "decoding order");
}

#[test]
fn every_size_and_offset_table_variant_reads_the_same() {
    let base = read(&movie(&[video_track(), audio_track(10)])).expect("reads");
    let mut constant_video = video_track();
    // Constant sizes need equal samples: one 12-byte non-IDR slice NAL unit each.
    for s in &mut constant_video.samples {
        s.data = [&[0, 0, 0, 12, 0x41][..], &[0x9A; 11][..]].concat();
    }
    for (name, video, audio) in [
        (
            "co64 video",
            TestTrack {
                co64: true,
                ..video_track()
            },
            audio_track(10),
        ),
        (
            "one sample per chunk",
            TestTrack {
                per_chunk: 1,
                ..video_track()
            },
            audio_track(10),
        ),
        (
            "everything in one chunk",
            TestTrack {
                per_chunk: 100,
                ..video_track()
            },
            audio_track(10),
        ),
        (
            "stz2 audio 8",
            video_track(),
            TestTrack {
                sizes: Sizes::Stz2(8),
                ..audio_track(10)
            },
        ),
        (
            "stz2 audio 4",
            video_track(),
            TestTrack {
                sizes: Sizes::Stz2(4),
                ..audio_track(10)
            },
        ),
        (
            "stz2 audio 16",
            video_track(),
            TestTrack {
                sizes: Sizes::Stz2(16),
                ..audio_track(10)
            },
        ),
        (
            "stsz audio",
            video_track(),
            TestTrack {
                sizes: Sizes::Stsz,
                co64: false,
                ..audio_track(10)
            },
        ),
    ] {
        let file = read(&movie(&[video, audio])).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file, base, "{name}");
    }
    let file = read(&movie(&[constant_video, audio_track(10)])).expect("constant sizes");
    assert!(file.units.iter().filter(|u| u.track == Track::Video).count() == 10);
}

#[test]
fn without_stss_every_sample_is_a_keyframe() {
    let file = read(&movie(&[TestTrack {
        stss: false,
        ..video_track()
    }]))
    .expect("reads");
    assert!(file.units.iter().all(|u| u.keyframe));
    assert_eq!(file.codecs.audio, None);
}

#[test]
fn composition_offsets_and_edit_lists_shape_the_timeline() {
    let mut video = video_track();
    // B-frame-like reordering: ffmpeg writes +2 frames of offset and an edit that skips them.
    for (i, s) in video.samples.iter_mut().enumerate() {
        s.cts = if i % 2 == 0 { 200 } else { 0 };
    }
    video.elst = Some((0, 200));
    let mut audio = audio_track(10);
    // AAC priming: presentation starts 1024 samples in.
    audio.elst = Some((0, 1024));
    let file = read(&movie(&[video, audio])).expect("reads");
    // The earliest timestamp (the first video dts, at -200 ms) is 0; the presentation starts
    // 200 ms (18 000 ticks) later.
    assert_eq!(file.presentation_start, 18_000);
    let first_video = file.units.iter().find(|u| u.track == Track::Video).unwrap();
    assert_eq!((first_video.dts, first_video.pts), (0, 18_000));
    let first_audio = file.units.iter().find(|u| u.track == Track::Audio).unwrap();
    assert_eq!(
        first_audio.dts,
        18_000 - 1_920,
        "the priming frame comes before the start"
    );
    assert!(file.units.iter().all(|u| u.pts >= u.dts));

    // A leading empty edit delays the track.
    let mut audio = audio_track(3);
    audio.elst = Some((500, 0));
    let file = read(&movie(&[video_track(), audio])).expect("reads");
    let first_audio = file.units.iter().find(|u| u.track == Track::Audio).unwrap();
    assert_eq!(first_audio.dts, 45_000, "500 ms of empty edit");
}

#[test]
fn tracks_of_other_kinds_are_skipped() {
    let mut text = audio_track(2);
    text.handler = *b"text";
    let mut hevc = video_track();
    hevc.entry = bx(b"hvc1", &[0u8; 78]);
    let file = read(&movie(&[text, hevc, audio_track(2)])).expect("the AAC track reads");
    assert!(file.units.iter().all(|u| u.track == Track::Audio));
    let only_others = {
        let mut text = audio_track(2);
        text.handler = *b"sbtl";
        movie(&[text])
    };
    let error = parse(&only_others).unwrap_err();
    assert!(error.message.contains("no H.264 or AAC track"), "{error}");
}

// ---- Damaged and hostile files ----

fn error_of(data: &[u8]) -> String {
    match read(data) {
        Ok(file) => panic!("expected an error, read {} units", file.units.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_and_non_mp4_input_are_errors() {
    assert!(error_of(&[]).contains("empty"));
    assert!(error_of(b"\0\0\0\x08free").contains("no moov"));
    assert!(error_of(&[0x47; 376]).contains("MP4 byte 0"));
    assert!(!looks_like_mp4(&[0x47; 376]));
}

#[test]
fn every_truncation_is_an_error_or_a_shorter_read_never_a_panic() {
    let data = movie(&[video_track(), audio_track(20)]);
    let moov_end = {
        let moov = boxes(&data, 0).map(Result::unwrap).find(|b| b.is(b"moov")).unwrap();
        (moov.body_offset as usize) + moov.body.len()
    };
    for len in 0..data.len() {
        let result = read(&data[..len]);
        if len < moov_end {
            assert!(result.is_err(), "cut at {len} inside the index must fail");
        } else if len < data.len() {
            let error = result.expect_err("samples past the end");
            assert!(error.message.contains("truncated"), "cut at {len}: {error}");
        }
    }
}

/// Replaces the first box of type `kind` (searching the whole file, any depth) with `with`,
/// fixing the sizes of its ancestors.
fn replace_box(data: &[u8], kind: &[u8; 4], with: &[u8]) -> Vec<u8> {
    fn walk(data: &[u8], kind: &[u8; 4], with: &[u8]) -> Option<Vec<u8>> {
        const CONTAINERS: [&[u8; 4]; 6] = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"];
        let mut out = Vec::new();
        let mut found = false;
        for b in boxes(data, 0) {
            let b = b.ok()?;
            let whole = &data[b.offset as usize..b.body_offset as usize + b.body.len()];
            if !found && b.is(kind) {
                out.extend_from_slice(with);
                found = true;
            } else if !found && CONTAINERS.iter().any(|c| b.is(c)) {
                match walk(b.body, kind, with) {
                    Some(body) => {
                        out.extend(bx(&b.kind.0, &body));
                        found = true;
                    }
                    None => out.extend_from_slice(whole),
                }
            } else {
                out.extend_from_slice(whole);
            }
        }
        found.then_some(out)
    }
    walk(data, kind, with).expect("box present")
}

#[test]
fn lying_counts_and_sizes_are_errors() {
    let data = movie(&[video_track()]);
    let cases: Vec<(&str, [u8; 4], Vec<u8>, &str)> = vec![
        (
            "stsz count beyond its body",
            *b"stsz",
            full(b"stsz", 0, &[0, 0, 0, 0, 0, 0x10, 0, 0]),
            "sample sizes need",
        ),
        (
            "constant size, a count over the cap",
            *b"stsz",
            full(b"stsz", 0, &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]),
            "more than the",
        ),
        (
            "constant size, samples past the end",
            *b"stsz",
            full(b"stsz", 0, &[0, 0x10, 0, 0, 0, 0, 0, 10]),
            "truncated",
        ),
        (
            "stco count beyond its body",
            *b"stco",
            full(b"stco", 0, &[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]),
            "entries of 4 bytes",
        ),
        (
            "stts runs short",
            *b"stts",
            full(b"stts", 0, &[0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 100]),
            "stts gives times to 3 of 10",
        ),
        (
            "stts huge runs",
            *b"stts",
            full(
                b"stts",
                0,
                &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            "",
        ),
        (
            "stsc starts at chunk 0",
            *b"stsc",
            full(b"stsc", 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1]),
            "first_chunk 0",
        ),
        (
            "stsc places too few",
            *b"stsc",
            full(b"stsc", 0, &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]),
            "place only 4 of 10",
        ),
        (
            "stsc huge per-chunk",
            *b"stsc",
            full(
                b"stsc",
                0,
                &[0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1],
            ),
            "",
        ),
        (
            "stz2 bad field size",
            *b"stsz",
            full(b"stz2", 0, &[0, 0, 0, 7, 0, 0, 0, 10]),
            "field_size 7",
        ),
        ("mdhd timescale 0", *b"mdhd", full(b"mdhd", 0, &[0; 20]), "timescale 0"),
        (
            "avcC garbage",
            *b"stsd",
            full(
                b"stsd",
                0,
                &[
                    &u32b(1)[..],
                    &bx(b"avc1", &[&[0u8; 78][..], &bx(b"avcC", &[9, 9, 9])[..]].concat())[..],
                ]
                .concat(),
            ),
            "not a valid AVCDecoderConfigurationRecord",
        ),
        (
            "avc1 without avcC",
            *b"stsd",
            full(b"stsd", 0, &[&u32b(1)[..], &bx(b"avc1", &[0u8; 78])[..]].concat()),
            "has no avcC",
        ),
        (
            "avc1 cut short",
            *b"stsd",
            full(b"stsd", 0, &[&u32b(1)[..], &bx(b"avc1", &[0u8; 20])[..]].concat()),
            "needs 78 more bytes",
        ),
        (
            "no stsd entries",
            *b"stsd",
            full(b"stsd", 0, &[0, 0, 0, 0]),
            "no sample entries",
        ),
        (
            "box smaller than its header",
            *b"stss",
            vec![0, 0, 0, 4, b's', b't', b's', b's'],
            "less than its own",
        ),
        (
            "box larger than its parent",
            *b"stss",
            vec![0x7F, 0xFF, 0xFF, 0xFF, b's', b't', b's', b's'],
            "only",
        ),
        (
            "64-bit size cut off",
            *b"stss",
            vec![0, 0, 0, 1, b's', b't', b's', b's', 0, 0],
            "64-bit size",
        ),
    ];
    for (name, kind, replacement, expected) in cases {
        let damaged = replace_box(&data, &kind, &replacement);
        match read(&damaged) {
            Ok(file) => assert!(expected.is_empty(), "{name}: read {} units", file.units.len()),
            Err(error) => assert!(error.to_string().contains(expected), "{name}: {error}"),
        }
    }
}

#[test]
fn a_huge_64_bit_box_size_is_an_error() {
    let mut data = bx(b"ftyp", b"isom");
    data.extend_from_slice(&[0, 0, 0, 1, b'm', b'o', b'o', b'v']);
    data.extend_from_slice(&u64::MAX.to_be_bytes());
    let error = error_of(&data);
    assert!(error.contains("truncated"), "{error}");
}

#[test]
fn fragmented_files_are_refused() {
    let mut data = movie(&[video_track()]);
    data.extend(bx(b"moof", &[0; 8]));
    assert!(error_of(&data).contains("fragmented"));
}

#[test]
fn a_cut_off_mdat_after_a_complete_index_is_tolerated_until_a_sample_needs_it() {
    let mut data = movie(&[video_track()]);
    // A trailing box that claims more than is there: ignored, samples are all before it.
    data.extend_from_slice(&[0, 0, 1, 0, b'f', b'r', b'e', b'e']);
    assert!(read(&data).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read(&data);
        let _ = looks_like_mp4(&data);
    }

    /// Arbitrary bytes behind a plausible start (so the walk gets past the first box).
    #[test]
    fn arbitrary_boxes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut data = bx(b"ftyp", b"isom");
        data.extend(tail);
        let _ = read(&data);
    }

    /// A valid file with bytes overwritten anywhere never panics the reader.
    #[test]
    fn damaged_files_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut data = movie(&[video_track(), audio_track(6)]);
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        let _ = read(&data);
    }
}
