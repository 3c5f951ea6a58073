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

/// Bytes of the segment files in `dir`, read from the filesystem (not from the archive's count).
fn ts_bytes_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "ts"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The largest segment of a few seconds of `fake://`, recorded into a throwaway archive.
async fn typical_segment_bytes(media: &Arc<MediaSource>, now_ms: &mut i64) -> u64 {
    let dir = temp_dir();
    let archive = Archive::open(dir.clone(), Duration::from_secs(3600)).await.unwrap();
    run(&archive, media, now_ms, 4).await;
    let max = archive.segments().iter().map(|s| s.bytes).max().unwrap();
    assert!(max > 0);
    let _ = std::fs::remove_dir_all(&dir);
    max
}

fn limited(storage_limit: Option<u64>, disk_usage_limit: Option<u8>) -> Limits {
    Limits {
        depth: Duration::from_secs(3600),
        storage_limit,
        disk_usage_limit,
    }
}

#[tokio::test(start_paused = true)]
async fn the_storage_limit_bounds_the_bytes_on_disk_after_every_segment() {
    let media = MediaSource::start("fake://fake").unwrap();
    let mut now_ms = unix_millis_now();
    let segment = typical_segment_bytes(&media, &mut now_ms).await;
    // Room for three and a half typical segments.
    let limit = segment * 7 / 2;
    let dir = temp_dir();
    let archive = Archive::open_limited(dir.clone(), limited(Some(limit), None), Arc::new(disk::Statvfs))
        .await
        .unwrap();
    let mut written = 0;
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(1)).await;
        now_ms += 1000;
        written += archive.record(&media, now_ms).await;
        let on_disk = ts_bytes_on_disk(&dir);
        assert!(on_disk <= limit, "{on_disk} bytes on disk over the limit of {limit}");
        assert_eq!(archive.bytes(), on_disk, "the archive's count is the files'");
    }
    let kept = archive.segments();
    assert!(written >= 38, "{written} segments written in 40 s");
    assert!(
        (2..=4).contains(&kept.len()),
        "{} segments kept under a limit of 3.5 segments",
        kept.len()
    );
    assert!(
        (now_ms - (kept.last().unwrap().start_ms + kept.last().unwrap().duration_ms)).abs() <= 1000,
        "the newest stays"
    );
    // The depth (an hour) cut nothing: the oldest segments went for the size.
    assert!(kept[0].start_ms > now_ms - 10_000, "{kept:?}");

    // The index agrees: a reopen (with a larger limit) finds exactly what is kept.
    let reopened = Archive::open_limited(dir.clone(), limited(Some(limit * 10), None), Arc::new(disk::Statvfs))
        .await
        .unwrap();
    assert_eq!(reopened.segments(), kept);
    drop(reopened);

    // Reopened with a lower limit, the archive sheds its oldest at once, keeping the newest even
    // when it alone is over the limit.
    let tiny = Archive::open_limited(dir.clone(), limited(Some(1), None), Arc::new(disk::Statvfs))
        .await
        .unwrap();
    assert_eq!(tiny.segments(), [kept.last().unwrap().clone()]);
    assert_eq!(ts_bytes_on_disk(&dir), kept.last().unwrap().bytes);
    // And recording into it keeps one segment, the newest: limit plus at most one segment.
    run(&tiny, &media, &mut now_ms, 5).await;
    let one = tiny.segments();
    assert_eq!(one.len(), 1, "{one:?}");
    assert!(one[0].start_ms > kept.last().unwrap().start_ms);
    assert_eq!(ts_bytes_on_disk(&dir), one[0].bytes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A filesystem of `size` bytes where everything but the archive's segment files takes
/// `others` bytes.
#[derive(Debug)]
struct FakeDisk {
    dir: std::path::PathBuf,
    size: u64,
    others: std::sync::Mutex<u64>,
}

impl FakeDisk {
    fn now(&self) -> DiskUsage {
        let used = *self.others.lock().unwrap() + ts_bytes_on_disk(&self.dir);
        DiskUsage {
            used,
            available: self.size.saturating_sub(used),
        }
    }
}

impl DiskProbe for FakeDisk {
    fn usage(&self, dir: &std::path::Path) -> std::io::Result<DiskUsage> {
        assert_eq!(dir, self.dir, "the probe is asked about the archive's folder");
        Ok(self.now())
    }
}

#[tokio::test(start_paused = true)]
async fn the_disk_usage_limit_deletes_the_oldest_until_the_disk_is_under_it() {
    let media = MediaSource::start("fake://fake").unwrap();
    let mut now_ms = unix_millis_now();
    let segment = typical_segment_bytes(&media, &mut now_ms).await;
    let dir = temp_dir();
    // 50% of the disk leaves the archive room for about four segments.
    let disk = Arc::new(FakeDisk {
        dir: dir.clone(),
        size: 29 * segment,
        others: std::sync::Mutex::new(10 * segment),
    });
    let archive = Archive::open_limited(dir.clone(), limited(None, Some(50)), disk.clone())
        .await
        .unwrap();
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(1)).await;
        now_ms += 1000;
        archive.record(&media, now_ms).await;
        let usage = disk.now();
        assert_eq!(
            usage.excess_over(50),
            0,
            "the disk is left at {}% with a 50% limit",
            usage.percent()
        );
    }
    let kept = archive.segments();
    assert!((3..=5).contains(&kept.len()), "{} segments kept", kept.len());
    assert!(kept[0].start_ms > now_ms - 10_000, "the oldest went: {kept:?}");

    // Something else fills the disk: the archive gives up all but its newest segment, and
    // keeps recording (one segment at a time).
    *disk.others.lock().unwrap() = disk.size;
    run(&archive, &media, &mut now_ms, 3).await;
    let left = archive.segments();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].start_ms > kept.last().unwrap().start_ms, "and it is a new one");
    assert_eq!(ts_bytes_on_disk(&dir), left[0].bytes);

    // Room again: the archive grows back.
    *disk.others.lock().unwrap() = 0;
    run(&archive, &media, &mut now_ms, 5).await;
    assert!(archive.segments().len() >= 5);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Over HTTP, a range whose segments the storage limit dropped reads like a range past the
/// depth: 404, "no archive". The archive is written before the server starts (its index is
/// read at open) and the stream's input is `publish://` with no publisher, so nothing else is
/// recorded meanwhile.
#[tokio::test]
async fn a_range_dropped_for_size_is_404_like_one_past_the_depth() {
    let dir = temp_dir();
    let root = dir.join("dvr");
    let archive_dir = root.join("cam");
    std::fs::create_dir_all(&archive_dir).unwrap();
    let now_s = unix_millis_now() / 1000;
    // Ten 1 s segments of 1000 bytes ending 20 s ago, and one from two hours ago.
    let first_s = now_s - 30;
    let mut starts: Vec<i64> = (0..10).map(|i| (first_s + i) * 1000).collect();
    starts.insert(0, (now_s - 7200) * 1000);
    let mut index = String::new();
    for start in &starts {
        std::fs::write(archive_dir.join(format!("{start}.ts")), vec![0x47u8; 1000]).unwrap();
        index.push_str(&format!("{start} 1000 0 {start}.ts\n"));
    }
    std::fs::write(archive_dir.join("index.log"), index).unwrap();

    // 4K = 4096 bytes: the newest four segments.
    let text = format!(
        "http 127.0.0.1:0;\nstream cam {{\n  input publish://;\n  dvr {} 1h 4K;\n}}\n",
        root.display()
    );
    let config = crate::config::parse_config(&text, "dvr.conf").expect("the config parses");
    let server = crate::server::Server::start(config).await.expect("the server starts");
    let client = reqwest::Client::new();
    let get = |path: String| {
        let url = format!("http://{}{path}", server.http_addr());
        let client = client.clone();
        async move {
            let resp = client.get(url).send().await.expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };

    let (status, body) = get(format!("/cam/index-{}-4.m3u8", first_s + 6)).await;
    assert_eq!(status, 200, "the newest four are kept: {body}");
    assert_eq!(body.matches("#EXTINF").count(), 4, "{body}");
    for (what, from) in [("dropped for size", first_s), ("past the depth", now_s - 7200)] {
        for path in [
            format!("/cam/index-{from}-3.m3u8"),
            format!("/cam/archive-{from}-3.ts"),
            format!("/cam/archive-{from}-3.mp4"),
        ] {
            let (status, body) = get(path.clone()).await;
            assert_eq!(status, 404, "{what}: {path}: {body}");
            assert!(
                body.contains(&format!("no archive from {from}")),
                "{what}: {path}: {body}"
            );
        }
    }
    let files = std::fs::read_dir(&archive_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ts"))
        .count();
    assert_eq!(files, 4, "the dropped segments' files are deleted");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
