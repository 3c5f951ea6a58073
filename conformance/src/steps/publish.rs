//! Publishers: who pushes media into a publishing point, over which protocol, with which token
//! and password — and what they see (publishing, refused) and what the stream then delivers.
//!
//! The accept/refuse answer of an RTMP publish comes from the suite's `rml_rtmp` driver
//! (`NetStream.Publish.Start` or a refusal). Media is the suite's own test pattern (see
//! [`crate::media`]): pushed live over RTMP by the same driver, or uploaded over HTTP MPEG-TS
//! (`PUT /NAME/mpegts`) as a clip made once for the run. No outside program is involved.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cucumber::{given, then, when};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::{Proto, UsherWorld, opt, seconds};
use crate::clients::hls::HlsClient;
use crate::clients::rtmp::{RtmpClient, RtmpPublisher, stream_key};
use crate::clients::rtsp::RtspClient;
use crate::clients::tshttp::TsClient;
use crate::clients::{Attempt, Outcome, ViewerProfile};
use crate::source::SOURCE_PARAM;

/// Seconds of test pattern pushed live at most (it is stopped with the scenario).
const PATTERN_SECONDS: u32 = 30;
/// Seconds of test stream uploaded over HTTP MPEG-TS.
const UPLOAD_SECONDS: u32 = 3;
/// Where the media probe plays from.
const PROBE_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// How a publisher pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishProto {
    /// The suite's RTMP driver: the publish request only.
    Rtmp,
    /// `PUT /NAME/mpegts` with a test stream as the body.
    MpegTs,
    /// The suite's RTMP driver publishing, then pushing the live test pattern.
    RtmpPattern,
}

impl fmt::Display for PublishProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishProto::Rtmp => "RTMP",
            PublishProto::MpegTs => "HTTP MPEG-TS",
            PublishProto::RtmpPattern => "RTMP (test pattern)",
        })
    }
}

/// A publisher of the scenario.
#[derive(Debug)]
pub struct Publisher {
    pub ip: IpAddr,
    pub stream: String,
    pub proto: PublishProto,
    pub query: Vec<(String, String)>,
    /// The answer to the publish request.
    pub attempt: Attempt,
    /// An accepted RTMP publisher keeps its connection (and so its session) open.
    _connection: Option<RtmpPublisher>,
    /// The live test pattern, pushed until it ends or the scenario does.
    _pattern: Option<PatternPush>,
}

/// The task pushing a live test pattern; stopped (and its connection closed) when dropped.
#[derive(Debug)]
struct PatternPush(JoinHandle<()>);

impl Drop for PatternPush {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Display for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {} to \"{}\" with {:?}: ",
            self.proto, self.ip, self.stream, self.query
        )?;
        write!(f, "{}", self.attempt)
    }
}

/// Reads ` with token "T"`, ` without a token`, ` and password "P"` / ` with password "P"`.
fn publish_query(world: &UsherWorld, how: &str) -> Vec<(String, String)> {
    let re = regex::Regex::new(r#"^(?:with token "([^"]*)"|without a token)?(?: ?(?:and|with) password "([^"]*)")?$"#)
        .expect("a valid regex");
    let caps = re.captures(how.trim()).unwrap_or_else(|| {
        panic!("cannot read `{how}`: expected `with token \"T\"` or `without a token`, then optionally `and password \"P\"`")
    });
    let mut query = Vec::new();
    if let Some(t) = caps.get(1) {
        query.push((world.token_param().to_string(), t.as_str().to_string()));
    }
    if let Some(p) = caps.get(2) {
        query.push(("password".to_string(), p.as_str().to_string()));
    }
    query
}

fn parse_ip(ip: String) -> IpAddr {
    opt(ip)
        .map(|ip| ip.parse().unwrap_or_else(|_| panic!("`{ip}` is not an IP address")))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 5)))
}

#[when(
    regex = r#"^publisher "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? publishes to "([^"]+)" over (RTMP|HTTP MPEG-TS) ?(.*)$"#
)]
async fn publishes(world: &mut UsherWorld, name: String, ip: String, stream: String, proto: String, how: String) {
    let ip = parse_ip(ip);
    let query = publish_query(world, &how);
    world.ensure_stream(&stream).await;
    let server_name = world.streams[&stream].server_name.clone();
    let profile = ViewerProfile::new(ip);
    let (proto, attempt, rtmp) = if proto == "RTMP" {
        let addr = world.ctx.target.rtmp_addr().unwrap_or_else(|| {
            panic!("the target has no RTMP address (a scenario that publishes over RTMP is tagged @needs-rtmp)")
        });
        let (attempt, publisher) = RtmpClient::new(addr, profile)
            .publish_key(&world.ctx.rtmp_app, &stream_key(&server_name, &query))
            .await;
        (PublishProto::Rtmp, attempt, publisher)
    } else {
        let body = test_ts().await;
        let attempt = upload_ts(world.ctx.target.http_base(), &profile, &server_name, &query, body).await;
        (PublishProto::MpegTs, attempt, None)
    };
    world.publishers.insert(
        name,
        Publisher {
            ip,
            stream,
            proto,
            query,
            attempt,
            _connection: rtmp,
            _pattern: None,
        },
    );
}

#[given(
    regex = r#"^publisher "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? streams a test pattern to "([^"]+)" over RTMP ?(.*)$"#
)]
#[when(
    regex = r#"^publisher "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? streams a test pattern to "([^"]+)" over RTMP ?(.*)$"#
)]
async fn streams_pattern(world: &mut UsherWorld, name: String, ip: String, stream: String, how: String) {
    let ip = parse_ip(ip);
    let query = publish_query(world, &how);
    world.ensure_stream(&stream).await;
    let server_name = world.streams[&stream].server_name.clone();
    let addr = world.ctx.target.rtmp_addr().unwrap_or_else(|| {
        panic!("the target has no RTMP address (a scenario that publishes over RTMP is tagged @needs-rtmp)")
    });
    let (attempt, publisher) = RtmpClient::new(addr, ViewerProfile::new(ip))
        .publish_key(&world.ctx.rtmp_app, &stream_key(&server_name, &query))
        .await;
    let pattern = publisher.map(|publisher| {
        PatternPush(tokio::spawn(async move {
            if let Err(e) = crate::media::push_rtmp(publisher, crate::media::PUBLISH_SIZE, PATTERN_SECONDS).await {
                tracing::debug!(error = %e, "the test pattern's RTMP push ended early");
            }
        }))
    });
    world.publishers.insert(
        name,
        Publisher {
            ip,
            stream,
            proto: PublishProto::RtmpPattern,
            query,
            attempt,
            _connection: None,
            _pattern: pattern,
        },
    );
}

fn publisher<'a>(world: &'a UsherWorld, name: &str) -> &'a Publisher {
    world
        .publishers
        .get(name)
        .unwrap_or_else(|| panic!("publisher \"{name}\" has not published yet"))
}

#[then(regex = r#"^publisher "([^"]+)" is (refused|publishing)$"#)]
async fn publisher_is(world: &mut UsherWorld, name: String, what: String) {
    let attempt = &publisher(world, &name).attempt;
    let ok = match what.as_str() {
        "refused" => attempt.outcome.is_refused(),
        _ => attempt.outcome == Outcome::Playing,
    };
    if !ok {
        panic!(
            "{}",
            world.explain(format!(
                "publisher \"{name}\" should be {what}, but is {}",
                attempt.outcome
            ))
        );
    }
}

/// A viewer of a stream without `on_play` that takes whatever the stream delivers, over the
/// target's protocol (an RTMP-only server has no HLS to probe). It carries the run's source
/// marker: a server that checks every play of an application (nginx-rtmp's `on_play`) asks the
/// suite's backend, which allows it and keeps it out of the case's calls.
struct Probe {
    proto: Proto,
    profile: ViewerProfile,
    query: Vec<(String, String)>,
}

impl Probe {
    fn new(world: &UsherWorld) -> Probe {
        let mut profile = ViewerProfile::new(PROBE_IP);
        profile.request_timeout = Duration::from_secs(3);
        Probe {
            proto: world.ctx.default_proto,
            profile,
            query: vec![(SOURCE_PARAM.to_string(), world.ctx.backend.source_secret().to_string())],
        }
    }

    /// One play; only its outcome counts (the connection, if any, is hung up).
    async fn play(&self, world: &UsherWorld, server_name: &str) -> Attempt {
        let target = &world.ctx.target;
        match self.proto {
            Proto::Hls => {
                HlsClient::new(target.http_base(), self.profile.clone())
                    .unwrap_or_else(|e| panic!("building an HLS client: {e}"))
                    .play(server_name, &self.query)
                    .await
            }
            Proto::MpegTs => {
                TsClient::new(target.http_base(), self.profile.clone())
                    .unwrap_or_else(|e| panic!("building an MPEG-TS client: {e}"))
                    .open(server_name, &self.query, 188 * 20)
                    .await
                    .0
            }
            Proto::Rtmp => {
                let addr = target
                    .rtmp_addr()
                    .unwrap_or_else(|| panic!("the target's protocol is RTMP but it has no RTMP address"));
                RtmpClient::new(addr, self.profile.clone())
                    .play_key(&world.ctx.rtmp_app, &stream_key(server_name, &self.query))
                    .await
                    .0
            }
            Proto::Rtsp => {
                let base = target
                    .rtsp_base()
                    .unwrap_or_else(|| panic!("the target's protocol is RTSP but it has no RTSP address"));
                RtspClient::new(&base, self.profile.clone())
                    .open(server_name, &self.query, 3)
                    .await
                    .0
            }
        }
    }
}

#[then(regex = r#"^stream "([^"]+)" delivers no media$"#)]
async fn delivers_no_media(world: &mut UsherWorld, stream: String) {
    world.ensure_stream(&stream).await;
    let server_name = world.streams[&stream].server_name.clone();
    let probe = Probe::new(world);
    let attempt = probe.play(world, &server_name).await;
    if attempt.outcome == Outcome::Playing {
        panic!(
            "{}",
            world.explain(format!(
                "stream \"{stream}\" should deliver no media, but a {} viewer plays it: {attempt}",
                probe.proto
            ))
        );
    }
}

#[then(regex = r#"^stream "([^"]+)" delivers media within (\d+(?:\.\d+)?) seconds?$"#)]
async fn delivers_media(world: &mut UsherWorld, stream: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    world.ensure_stream(&stream).await;
    let server_name = world.streams[&stream].server_name.clone();
    let probe = Probe::new(world);
    let started = Instant::now();
    loop {
        let attempt = probe.play(world, &server_name).await;
        if attempt.outcome == Outcome::Playing {
            return;
        }
        if started.elapsed() >= within {
            panic!(
                "{}",
                world.explain(format!(
                    "stream \"{stream}\" delivered no media within {} ms; last {} attempt: {attempt}",
                    within.as_millis(),
                    probe.proto
                ))
            );
        }
        // A player polling for a stream that is about to start.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `PUT BASE/NAME/mpegts?QUERY` with `body`: 2xx is an accepted (and finished) publication.
async fn upload_ts(
    base: &url::Url,
    profile: &ViewerProfile,
    stream: &str,
    query: &[(String, String)],
    body: Bytes,
) -> Attempt {
    let started = Instant::now();
    let url = crate::clients::media_url(base, stream, "mpegts", query);
    let line = format!(
        "PUT {}{}",
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let len = body.len();
    let client = profile
        .client()
        .unwrap_or_else(|e| panic!("building an HTTP client: {e}"));
    let result = client.put(url).timeout(profile.request_timeout).body(body).send().await;
    let (outcome, trail) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let outcome = if (200..300).contains(&status) {
                Outcome::Playing
            } else {
                Outcome::from_status(status, None, "publish")
            };
            (outcome, format!("{line} ({len} bytes) -> {status} {text}"))
        }
        Err(e) => {
            let reason = format!("transport error: {}", crate::target::chain(&e));
            (
                Outcome::Failed {
                    status: None,
                    reason: reason.clone(),
                },
                format!("{line} ({len} bytes) -> {reason}"),
            )
        }
    };
    Attempt {
        outcome,
        elapsed: started.elapsed(),
        trail: vec![trail],
    }
}

/// A few seconds of the test pattern as MPEG-TS, made once per run.
async fn test_ts() -> Bytes {
    static TEST_TS: OnceCell<Result<Bytes, String>> = OnceCell::const_new();
    let made = TEST_TS
        .get_or_init(|| async { crate::media::ts_clip(crate::media::PUBLISH_SIZE, UPLOAD_SECONDS) })
        .await;
    made.clone().unwrap_or_else(|e| panic!("{e}"))
}
