use usher_server::media::MediaSource;
#[tokio::test(start_paused = true)]
async fn dump() {
    let source = MediaSource::start("fake://x").unwrap();
    std::fs::write("/tmp/usher-media/seg.ts", source.segment(2).unwrap()).unwrap();
    let mut v = source.live_ts();
    let mut feed = Vec::new();
    for _ in 0..5 { feed.extend_from_slice(&v.next_chunk().await.unwrap()); }
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    for _ in 0..3 { feed.extend_from_slice(&v.next_chunk().await.unwrap()); }
    std::fs::write("/tmp/usher-media/live.ts", feed).unwrap();
    std::fs::write("/tmp/usher-media/p.m3u8", source.playlist("?token=abc")).unwrap();
}
