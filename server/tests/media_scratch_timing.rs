use usher_server::media::MediaSource;
#[tokio::test(start_paused = true)]
async fn timing() {
    let t = std::time::Instant::now();
    let source = MediaSource::start("fake://x").unwrap();
    let first = source.segment(0).unwrap();
    println!("first segment (incl. encoding the cycle): {:?}, {} bytes", t.elapsed(), first.len());
    let t = std::time::Instant::now();
    let n = 200;
    let mut bytes = 0;
    for _ in 0..n {
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let newest = source.segments().last().unwrap().sequence;
        bytes += source.segment(newest).unwrap().len();
    }
    let cpu = t.elapsed();
    println!("{n} segments: {:?} total, {:?} each, {} bytes each", cpu, cpu / n, bytes / n as usize);
}
