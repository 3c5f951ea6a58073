//! Persistent viewers (issue 23, item 4): N concurrent RTMP viewers of one stream on one
//! server, each from its own loopback address; prints what the server's processes hold and
//! spend per viewer. The same program measures Usher and nginx-rtmp (driven by
//! `server/benches/run.sh viewers`), with the same publisher: the suite's synthetic media
//! (in process, no encoder), published over RTMP.
//!
//! ```text
//! viewers --publish rtmp://127.0.0.1:PORT/APP/{name} --app APP --name s --pids PID[,PID…] \
//!         --viewers 10000 --hold 20 --label usher
//! ```
//!
//! Output, one line: `LABEL viewers=N playing=P receiving=R rss_idle_kib=… rss_kib=…
//! rss_per_viewer_b=… cpu_us_per_viewer_s=… open_s=…`, where `receiving` counts the viewers
//! that got more video during the last 3 s of the hold.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use usher_conformance::clients::ViewerProfile;
use usher_conformance::clients::rtmp::{RtmpClient, RtmpPlayer};
use usher_conformance::source::{self, SourceSpec};

/// Viewers that connect at once; the rest wait for a slot.
const CONCURRENT_OPENS: usize = 200;

struct Args {
    publish: String,
    app: String,
    name: String,
    pids: Vec<u32>,
    viewers: usize,
    hold: Duration,
    label: String,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut publish, mut app, mut name, mut pids) = (None, None, None, Vec::new());
    let (mut viewers, mut hold, mut label) = (1000usize, Duration::from_secs(20), "server".to_string());
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench`; nothing else is expected without a value.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--publish" => publish = Some(value),
            "--app" => app = Some(value),
            "--name" => name = Some(value),
            "--pids" => {
                pids = value
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("--pids {p}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--viewers" => viewers = value.parse().map_err(|e| format!("--viewers: {e}"))?,
            "--hold" => hold = Duration::from_secs(value.parse().map_err(|e| format!("--hold: {e}"))?),
            "--label" => label = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        publish: publish.ok_or("--publish is required")?,
        app: app.ok_or("--app is required")?,
        name: name.ok_or("--name is required")?,
        pids,
        viewers,
        hold,
        label,
    })
}

/// VmRSS of `pids`, summed, in KiB.
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// utime + stime of `pids` and their threads, in clock ticks (1/100 s).
fn cpu_ticks(pids: &[u32]) -> u64 {
    let mut total = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // Fields after the command (which may hold spaces) start at ") ".
            let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            total += field(11) + field(12);
        }
    }
    total
}

/// The `i`th viewer's own address: 127.1.0.1, 127.1.0.2, … (the whole 127/8 is loopback).
fn address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (i / 62_500) as u8,
        (i / 250 % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("viewers: {e}");
            std::process::exit(2);
        }
    };
    let spec = SourceSpec::parse(&args.publish).unwrap_or_else(|e| panic!("--publish: {e}"));
    let server: SocketAddr = tokio::net::lookup_host(&spec.addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("--publish: cannot resolve {}", spec.addr));
    let publisher = source::publish(
        &spec,
        server,
        ViewerProfile::new(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        &args.name,
        &[],
    )
    .await
    .unwrap_or_else(|attempt| panic!("the publisher was refused: {attempt}"));

    // Ready when a first viewer gets video (never a fixed sleep).
    let probe = RtmpClient::new(server, ViewerProfile::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))));
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        let (attempt, player) = probe.play_key(&args.app, &args.name).await;
        if player.is_some() {
            break;
        }
        assert!(Instant::now() < ready_by, "no viewer got video within 20 s: {attempt}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_idle = rss_kib(&args.pids);

    let opened = Instant::now();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_OPENS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.viewers {
        let (slots, app, name) = (slots.clone(), args.app.clone(), args.name.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let mut profile = ViewerProfile::new(address(i));
            profile.request_timeout = Duration::from_secs(30);
            RtmpClient::new(server, profile).play_key(&app, &name).await.1
        });
    }
    let mut players: Vec<RtmpPlayer> = Vec::with_capacity(args.viewers);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(player)) = done {
            players.push(player);
        }
    }
    let open_s = opened.elapsed().as_secs_f64();
    let playing = players.len();

    let (t0, started) = (cpu_ticks(&args.pids), Instant::now());
    // Letting the viewers watch is what this measures; not a readiness wait.
    tokio::time::sleep(args.hold.saturating_sub(Duration::from_secs(3))).await;
    let rss = rss_kib(&args.pids);
    let receiving = futures::future::join_all(players.iter_mut().map(|p| p.wait_more_video(1, Duration::from_secs(3))))
        .await
        .into_iter()
        .filter(|more| *more)
        .count();
    let (t1, held) = (cpu_ticks(&args.pids), started.elapsed().as_secs_f64());
    let per_viewer = |v: f64| if playing > 0 { v / playing as f64 } else { f64::NAN };
    println!(
        "{} viewers={} playing={playing} receiving={receiving} rss_idle_kib={rss_idle} rss_kib={rss} \
         rss_per_viewer_b={:.0} cpu_us_per_viewer_s={:.2} open_s={open_s:.1}",
        args.label,
        args.viewers,
        per_viewer((rss.saturating_sub(rss_idle) * 1024) as f64),
        per_viewer((t1 - t0) as f64 * 10_000.0 / held),
    );
    drop(players);
    drop(publisher);
}
