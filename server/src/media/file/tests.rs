//! Cutting files into loopable segments, reading MP4/TS files, and the media root's confinement.

use std::time::Duration;

use super::*;
use crate::media::CLOCK_HZ;
use crate::media::testing::{TempDir, clip, clip_ts};

const SECOND: u64 = CLOCK_HZ;

#[test]
fn a_file_is_cut_at_the_first_keyframe_after_the_target() {
    // 25 fps, a keyframe every 10 frames (0.4 s), 4 s: cuts at 1.2, 2.4 and 3.6 s.
    let file = FileMedia::new(clip(32, 32, 25, 100, 10), SECOND).expect("cuts");
    assert_eq!(file.segment_count(), 4);
    assert_eq!(file.period(), 4 * SECOND);
    let lengths: Vec<_> = (0..4).map(|i| file.length(i).unwrap()).collect();
    assert_eq!(lengths, [108_000, 108_000, 108_000, 36_000]);
    for n in 0..4 {
        let units = file.units(n);
        assert!(
            units[0].keyframe && units[0].track == Track::Video,
            "segment {n} starts with a keyframe"
        );
    }
}

#[test]
fn passes_continue_each_other() {
    let file = FileMedia::new(clip(32, 32, 25, 50, 25), SECOND).expect("cuts");
    assert_eq!(file.segment_count(), 2);
    let schedule = file.schedule();
    let units: Vec<AccessUnit> = (0..6).flat_map(|n| file.units(n)).collect();
    for track in [Track::Video, Track::Audio] {
        let dts: Vec<u64> = units.iter().filter(|u| u.track == track).map(|u| u.dts).collect();
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "{track:?} timestamps only go forward"
        );
    }
    let video: Vec<u64> = units
        .iter()
        .filter(|u| u.track == Track::Video)
        .map(|u| u.dts)
        .collect();
    assert_eq!(video.len(), 150, "three passes of 50 frames");
    assert!(
        video.windows(2).all(|w| w[1] - w[0] == 3_600),
        "25 fps straight across the loop points"
    );
    assert_eq!(video[0], fake::PTS_OFFSET);
    // Every segment's units lie in the range the schedule gives it.
    for n in 0..6 {
        let range = schedule.segment_range(n);
        assert!(
            file.units(n)
                .iter()
                .all(|u| range.contains(&(u.dts - fake::PTS_OFFSET)))
        );
    }
}

#[test]
fn audio_only_and_broken_files() {
    let mut audio_only = clip(32, 32, 25, 50, 25);
    audio_only.units.retain(|u| u.track == Track::Audio);
    let file = FileMedia::new(audio_only, SECOND).expect("audio-only cuts anywhere");
    assert!(file.codecs().video.is_none());
    assert!(file.segment_count() >= 1);

    let mut no_keyframe = clip(32, 32, 25, 50, 25);
    for unit in &mut no_keyframe.units {
        unit.keyframe = unit.track == Track::Audio;
    }
    assert!(FileMedia::new(no_keyframe, SECOND).unwrap_err().contains("no keyframe"));

    let mut no_sps = clip(32, 32, 25, 50, 25);
    no_sps.codecs.video = None;
    assert!(FileMedia::new(no_sps, SECOND).unwrap_err().contains("SPS"));

    let mut empty = clip(32, 32, 25, 50, 25);
    empty.units.clear();
    assert!(FileMedia::new(empty, SECOND).is_err());

    let mut timeless = clip(32, 32, 25, 50, 25);
    timeless.end = 0;
    assert!(FileMedia::new(timeless, SECOND).is_err());
}

#[test]
fn a_ts_file_reads_back_into_the_same_pictures() {
    let ts = clip_ts(32, 32, 25, 50);
    let units = read_units(&ts).expect("our own TS reads back");
    assert_eq!(
        units.codecs.video.as_ref().and_then(AvcParams::dimensions),
        Some((32, 32))
    );
    assert_eq!(units.units.iter().filter(|u| u.track == Track::Video).count(), 50);
    assert_eq!(units.units[0].dts, 0, "rebased to 0");
    assert_eq!(units.end, 2 * SECOND);
    let file = FileMedia::new(units, SECOND).expect("cuts");
    assert_eq!(file.segment_count(), 2);
}

#[test]
fn unknown_bytes_are_not_playable() {
    assert!(read_units(&[]).unwrap_err().contains("empty"));
    assert!(read_units(b"hello, world").unwrap_err().contains("neither MP4"));
    let mut bad_ts = vec![0x47u8; 10];
    bad_ts.extend([0u8; 400]);
    assert!(read_units(&bad_ts).is_err());
}

#[test]
fn the_media_root_confines_paths() {
    let dir = TempDir::new();
    let root_dir = dir.0.join("media");
    std::fs::create_dir_all(root_dir.join("vod")).unwrap();
    std::fs::write(root_dir.join("vod/clip.ts"), clip_ts(32, 32, 25, 25)).unwrap();
    std::fs::write(dir.0.join("secret.ts"), b"outside").unwrap();
    let root = MediaRoot::new(&root_dir);

    assert!(root.resolve("vod/clip.ts").is_ok());
    assert!(root.resolve("./vod/clip.ts").is_ok());
    // The path is taken as it is: escapes were decoded where it was read.
    assert_eq!(root.resolve("vod%2Fclip.ts"), Err(FileProblem::NotFound));
    assert!(root.resolve(&file_input_path("file://vod%2Fclip.ts")).is_ok());
    assert_eq!(file_input_path("file://a%2520b"), "a%20b", "decoded once");
    assert_eq!(root.resolve("vod/none.ts"), Err(FileProblem::NotFound));
    for outside in [
        "../secret.ts",
        "vod/../../secret.ts",
        &*file_input_path("%2E%2E/secret.ts"),
        "/etc/passwd",
        "\\\\server\\share",
        "c:/x",
        "",
        "a\0b",
    ] {
        assert!(
            matches!(root.resolve(outside), Err(FileProblem::OutsideRoot(_))),
            "{outside:?}: {:?}",
            root.resolve(outside)
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.0.join("secret.ts"), root_dir.join("link.ts")).unwrap();
        std::os::unix::fs::symlink(&dir.0, root_dir.join("up")).unwrap();
        std::os::unix::fs::symlink(root_dir.join("vod/clip.ts"), root_dir.join("inside.ts")).unwrap();
        assert!(matches!(root.resolve("link.ts"), Err(FileProblem::OutsideRoot(_))));
        assert!(matches!(root.resolve("up/secret.ts"), Err(FileProblem::OutsideRoot(_))));
        assert!(root.resolve("inside.ts").is_ok(), "a link that stays inside is fine");
    }
    let missing_root = MediaRoot::new(dir.0.join("nowhere"));
    assert!(matches!(missing_root.resolve("x.ts"), Err(FileProblem::Unreadable(_))));
}

#[test]
fn loading_names_the_input_and_the_problem() {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("clip.ts"), clip_ts(32, 32, 25, 25)).unwrap();
    std::fs::write(dir.0.join("junk.mp4"), b"\0\0\0\x10ftypisom\0\0\0\0").unwrap();
    std::fs::create_dir_all(dir.0.join("folder.mp4")).unwrap();
    let root = MediaRoot::new(&dir.0);
    let target = Duration::from_secs(1);

    let file = root.load("file://clip.ts", "clip.ts", target).expect("loads");
    assert_eq!(
        file.codecs().video.as_ref().and_then(AvcParams::dimensions),
        Some((32, 32))
    );

    let error = root.load("file://missing.mp4", "missing.mp4", target).unwrap_err();
    assert_eq!(
        error.to_string(),
        "file://missing.mp4: no such file under the media root"
    );
    let error = root.load("file://junk.mp4", "junk.mp4", target).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("file://junk.mp4: not a playable file: MP4 byte"),
        "{error}"
    );
    let error = root.load("file://folder.mp4", "folder.mp4", target).unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
    let error = root.load("file://../x", "../x", target).unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
}
