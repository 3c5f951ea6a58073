use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::media::{MediaSource, TsIngest};

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("usher-dvr-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Advances the media clock by `secs` one second at a time, recording after each step with a
/// wall clock that moves the same way.
async fn run(archive: &Archive, media: &Arc<MediaSource>, now_ms: &mut i64, secs: u64) {
    for _ in 0..secs {
        tokio::time::advance(Duration::from_secs(1)).await;
        *now_ms += 1000;
        archive.record(media, *now_ms).await;
    }
}

#[tokio::test(start_paused = true)]
async fn recording_is_contiguous_bounded_by_depth_and_survives_a_reopen() {
    let dir = temp_dir();
    let media = MediaSource::start("fake://fake").unwrap();
    let archive = Archive::open(dir.clone(), Duration::from_secs(10)).await.unwrap();
    let mut now_ms = unix_millis_now();
    run(&archive, &media, &mut now_ms, 30).await;

    let segments = archive.segments();
    assert!(
        (9..=12).contains(&segments.len()),
        "{} segments kept for a 10 s depth",
        segments.len()
    );
    for pair in segments.windows(2) {
        assert_eq!(pair[0].start_ms + pair[0].duration_ms, pair[1].start_ms, "contiguous");
        assert!(!pair[1].discontinuity);
    }
    let last = segments.last().unwrap();
    assert!(
        (now_ms - (last.start_ms + last.duration_ms)).abs() <= 1000,
        "the newest ends about now"
    );
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ts"));
    assert_eq!(files.count(), segments.len(), "old files are deleted");

    // Every file is a TS segment the demuxer reads.
    let bytes = std::fs::read(&last.path).unwrap();
    let mut ingest = TsIngest::new();
    let mut units = ingest.push(&bytes).unwrap();
    units.extend(ingest.finish());
    assert!(units.iter().any(|u| u.keyframe));

    let reopened = Archive::open(dir.clone(), Duration::from_secs(3600)).await.unwrap();
    assert_eq!(reopened.segments(), segments);

    // Range queries.
    let range = TimeRange {
        from: segments[2].start_ms,
        to: segments[5].start_ms,
    };
    assert_eq!(archive.centred_in(&range), segments[2..5].to_vec());
    let range = TimeRange {
        from: segments[2].start_ms + 100,
        to: segments[5].start_ms,
    };
    assert_eq!(archive.overlapping(&range), segments[2..5].to_vec());
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn exports_read_back_as_ts_and_mp4() {
    let dir = temp_dir();
    let media = MediaSource::start("fake://fake").unwrap();
    let archive = Archive::open(dir.clone(), Duration::from_secs(3600)).await.unwrap();
    let mut now_ms = unix_millis_now();
    run(&archive, &media, &mut now_ms, 6).await;
    let segments = archive.segments();
    assert!(segments.len() >= 6);

    let mut ts = export::TsExport::new(segments.clone());
    let mut all = Vec::new();
    while let Some(chunk) = ts.next_chunk().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let mut ingest = TsIngest::new();
    let units = ingest.push(&all).unwrap();
    assert!(units.len() > 50, "{} units", units.len());

    let mut mp4 = export::Mp4Export::new(segments.clone());
    let mut file = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = mp4.next_chunk().await {
        file.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks >= segments.len() - 1, "{chunks} chunks");
    assert!(crate::media::mp4::looks_like_mp4(&file));
    let _ = std::fs::remove_dir_all(&dir);
}
