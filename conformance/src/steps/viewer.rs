//! Viewers: who plays what, from which address, with which token and headers — and what they
//! see (playing, denied, refused, redirected, disconnected).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cucumber::{then, when};

use super::backend::last_decision;
use super::{Connection, Play, Proto, UsherWorld, Viewer, opt, seconds};
use crate::clients::hls::HlsClient;
use crate::clients::rtmp::{RtmpClient, stream_key};
use crate::clients::rtsp::RtspClient;
use crate::clients::tshttp::TsClient;
use crate::clients::{Attempt, Outcome, ViewerProfile};

/// Bytes of MPEG-TS that make an MPEG-TS viewer "playing" (20 packets).
const TS_PLAYING_BYTES: u64 = 188 * 20;
/// H.264 frames that make an RTSP viewer "playing".
const RTSP_PLAYING_FRAMES: u64 = 3;
/// Margin added after an auth duration before playing again, so "after" is unambiguous.
const AFTER_MARGIN: Duration = Duration::from_millis(300);
/// How long after the auth duration (plus [`AFTER_MARGIN`]) a server may take to start the
/// background re-check of a persistent connection (a periodic sweep).
const RECHECK_STARTS: Duration = Duration::from_millis(1500);
/// From a re-check's decision to the closed connection, when the decision closes it.
const RECHECK_SETTLES: Duration = Duration::from_millis(600);
/// The backend's whole budget per call (decisions.md, "Backend timeout").
const BACKEND_BUDGET: Duration = Duration::from_secs(3);

/// Which token a play sends.
enum TokenChoice {
    Given(String),
    None,
    Admin(AdminVariant),
}

#[derive(Clone, Copy)]
enum AdminVariant {
    Minted,
    Forged,
    AlteredSignature,
    AlteredTimestamp,
}

/// What a play step says about the request besides the stream and the protocol.
struct How {
    token: TokenChoice,
    referer: Option<String>,
    user_agent: Option<String>,
    /// ` and query "k=v&k2=v2"`: further query parameters.
    query: Vec<(String, String)>,
}

fn parse_how(how: &str) -> How {
    let re = regex::Regex::new(
        r#"^(?:with token "(?P<token>[^"]*)"|with a token of (?P<len>\d{1,6}) characters|(?P<none>without a token)|with (?:the |an? )?(?P<adm>minted |forged |altered-signature |altered-timestamp )?admin token)(?P<rest>.*)$"#,
    )
    .expect("a valid regex");
    let caps = re.captures(how).unwrap_or_else(|| {
        panic!(
            "cannot read `{how}`: expected `with token \"T\"`, `with a token of N characters`, `without a token`, or \
             `with the|a forged|an altered-signature|an altered-timestamp admin token`, \
             then optionally ` and Referer \"…\"` / ` and User-Agent \"…\"` / ` and query \"k=v\"`"
        )
    });
    let choice = if let Some(t) = caps.name("token") {
        TokenChoice::Given(t.as_str().to_string())
    } else if let Some(n) = caps.name("len") {
        // One ASCII letter repeated: nothing to escape, so the length on the wire is N.
        let n: usize = n.as_str().parse().expect("six digits at most");
        TokenChoice::Given("k".repeat(n))
    } else if caps.name("none").is_some() {
        TokenChoice::None
    } else {
        TokenChoice::Admin(match caps.name("adm").map(|m| m.as_str().trim()) {
            None | Some("minted") => AdminVariant::Minted,
            Some("forged") => AdminVariant::Forged,
            Some("altered-signature") => AdminVariant::AlteredSignature,
            Some(_) => AdminVariant::AlteredTimestamp,
        })
    };
    let header_re = regex::Regex::new(r#"^ and (Referer|User-Agent|query) "([^"]*)""#).expect("a valid regex");
    let mut rest = caps.name("rest").map_or("", |m| m.as_str());
    let mut how = How {
        token: choice,
        referer: None,
        user_agent: None,
        query: Vec::new(),
    };
    while !rest.is_empty() {
        let c = header_re.captures(rest).unwrap_or_else(|| {
            panic!(
                "cannot read `{rest}`: expected ` and Referer \"…\"`, ` and User-Agent \"…\"` or ` and query \"k=v\"`"
            )
        });
        let value = c[2].to_string();
        match &c[1] {
            "Referer" => how.referer = Some(value),
            "User-Agent" => how.user_agent = Some(value),
            _ => how
                .query
                .extend(url::form_urlencoded::parse(value.as_bytes()).into_owned()),
        }
        rest = &rest[c[0].len()..];
    }
    how
}

async fn admin_token(world: &mut UsherWorld, variant: AdminVariant) -> String {
    if world.admin_token.is_none() {
        let token = world
            .ctx
            .target
            .api()
            .mint_admin_token()
            .await
            .unwrap_or_else(|e| panic!("minting an admin view token: {e}"));
        world.admin_token = Some(token);
    }
    let minted = world.admin_token.clone().expect("minted above");
    match variant {
        AdminVariant::Minted => minted,
        AdminVariant::Forged => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let sig = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            format!("ADM1-{now}-{}", &sig[..40])
        }
        AdminVariant::AlteredSignature => {
            let mut chars: Vec<char> = minted.chars().collect();
            let last = chars.last_mut().expect("a minted token is not empty");
            *last = if *last == '0' { '1' } else { '0' };
            chars.into_iter().collect()
        }
        AdminVariant::AlteredTimestamp => {
            let parts: Vec<&str> = minted.splitn(3, '-').collect();
            let [prefix, ts, sig] = parts.as_slice() else {
                panic!("the minted admin token `{minted}` is not ADM1-<unix>-<hex>");
            };
            let ts: u64 = ts
                .parse()
                .unwrap_or_else(|_| panic!("the minted admin token `{minted}` has no unix time"));
            format!("{prefix}-{}-{sig}", ts.saturating_sub(1))
        }
    }
}

/// Finds or creates viewer `name`; the first mention must say where it plays from.
fn viewer_entry<'a>(
    world: &'a mut UsherWorld,
    name: &str,
    ip: Option<IpAddr>,
    referer: Option<String>,
    user_agent: Option<String>,
) -> &'a mut Viewer {
    let viewer = match world.viewers.entry(name.to_string()) {
        std::collections::btree_map::Entry::Occupied(e) => {
            let v = e.into_mut();
            if let Some(ip) = ip
                && ip != v.profile.local_ip
            {
                panic!(
                    "viewer \"{name}\" already plays from {}; a viewer at another address is \
                     another viewer",
                    v.profile.local_ip
                );
            }
            v
        }
        std::collections::btree_map::Entry::Vacant(e) => {
            let ip = ip.unwrap_or_else(|| {
                panic!(
                    "say where viewer \"{name}\" plays from the first time (viewer \"{name}\" from 127.0.0.2 plays …)"
                )
            });
            e.insert(Viewer {
                profile: ViewerProfile::new(ip),
                hls: None,
                hls_node: None,
                plays: Vec::new(),
                live: None,
            })
        }
    };
    if referer.is_some() && referer != viewer.profile.referer {
        viewer.profile.referer = referer;
        viewer.hls = None;
    }
    if user_agent.is_some() && user_agent != viewer.profile.user_agent {
        viewer.profile.user_agent = user_agent;
        viewer.hls = None;
    }
    viewer
}

/// Plays `play` as viewer `name` and records the attempt.
async fn perform(world: &mut UsherWorld, name: &str, play: Play) -> Attempt {
    world.ensure_stream(&play.stream).await;
    let server_name = world.streams[&play.stream].server_name.clone();
    let query: Vec<(String, String)> = play
        .token
        .iter()
        .map(|t| (world.token_param().to_string(), t.clone()))
        .chain(play.query.iter().cloned())
        .collect();
    let (base, rtmp, rtsp) = match &play.node {
        None => (
            world.ctx.target.http_base().clone(),
            world.ctx.target.rtmp_addr(),
            world.ctx.target.rtsp_base(),
        ),
        Some(node) => {
            let found = world
                .ctx
                .target
                .cluster()
                .and_then(|c| c.node(node))
                .unwrap_or_else(|| panic!("the target has no node {node} (a cluster case is tagged @needs-cluster)"));
            (found.http.clone(), found.rtmp, found.rtsp.clone())
        }
    };
    let rtmp_app = world.ctx.rtmp_app.clone();
    let viewer = world.viewers.get_mut(name).expect("created by the caller");
    let attempt = match play.proto {
        Proto::Hls => {
            if viewer.hls_node != play.node {
                viewer.hls = None;
                viewer.hls_node = play.node.clone();
            }
            if viewer.hls.is_none() {
                viewer.hls = Some(
                    HlsClient::new(&base, viewer.profile.clone())
                        .unwrap_or_else(|e| panic!("building an HLS client: {e}")),
                );
            }
            let client = viewer.hls.as_ref().expect("built above");
            client.play(&server_name, &query).await
        }
        Proto::MpegTs => {
            viewer.live = None;
            let client = TsClient::new(&base, viewer.profile.clone())
                .unwrap_or_else(|e| panic!("building an MPEG-TS client: {e}"));
            let (attempt, session) = client.open(&server_name, &query, TS_PLAYING_BYTES).await;
            viewer.live = session.map(Connection::Ts);
            attempt
        }
        Proto::Rtmp => {
            viewer.live = None;
            let addr = rtmp.unwrap_or_else(|| {
                panic!("the target has no RTMP address (a scenario that plays over RTMP is tagged @needs-rtmp)")
            });
            let (attempt, player) = RtmpClient::new(addr, viewer.profile.clone())
                .play_key(&rtmp_app, &stream_key(&server_name, &query))
                .await;
            viewer.live = player.map(Connection::Rtmp);
            attempt
        }
        Proto::Rtsp => {
            viewer.live = None;
            let base = rtsp.unwrap_or_else(|| {
                panic!("the target has no RTSP address (a scenario that plays over RTSP is tagged @needs-rtsp)")
            });
            let (attempt, session) = RtspClient::new(&base, viewer.profile.clone())
                .open(&server_name, &query, RTSP_PLAYING_FRAMES)
                .await;
            viewer.live = session.map(Connection::Rtsp);
            attempt
        }
    };
    viewer.plays.push((play, attempt.clone()));
    attempt
}

/// `over the target's protocol` plays over the run's default protocol (the manifest's
/// `default_protocol`: HLS when the target serves it), for what does not depend on HTTP.
///
/// `on node B` plays on that node of a cluster target (node A is the target itself).
#[when(
    regex = r#"^viewer "([^"]+)"(?: from (\d+\.\d+\.\d+\.\d+))? plays "([^"]+)"(?: on node ([A-Z]))? over (HLS|MPEG-TS|RTMP|RTSP|the target's protocol) (.+)$"#
)]
async fn plays(
    world: &mut UsherWorld,
    name: String,
    ip: String,
    stream: String,
    node: String,
    proto: String,
    how: String,
) {
    let ip: Option<IpAddr> = opt(ip).map(|ip| ip.parse().unwrap_or_else(|_| panic!("`{ip}` is not an IP address")));
    let how = parse_how(&how);
    let token = match how.token {
        TokenChoice::Given(t) => Some(t),
        TokenChoice::None => None,
        TokenChoice::Admin(variant) => Some(admin_token(world, variant).await),
    };
    viewer_entry(world, &name, ip, how.referer, how.user_agent);
    let play = Play {
        stream,
        proto: world.proto(&proto),
        token,
        query: how.query,
        node: opt(node),
    };
    perform(world, &name, play).await;
}

/// "Plays again" means what a player of the protocol does next (decisions.md, "Persistent
/// connections"):
///
/// * HLS: one more request (playlist and segment); after the auth duration it is the request
///   that re-checks the session.
/// * MPEG-TS, RTMP, RTSP: a new connection, the running one hung up first. But `after the auth
///   duration has passed` or `N seconds later`, while the viewer's connection still runs, the
///   viewer keeps it: the server re-checks it in the background, and the suite records what the
///   server did with it once that re-check was decided (closed: refused with 403; kept open:
///   playing), then hangs up, so that the backend's log holds the one re-check an
///   HLS player's request would have made.
#[when(
    regex = r#"^viewer "([^"]+)" plays again(?:( after the auth duration has passed)| (\d+(?:\.\d+)?) seconds? later)?$"#
)]
async fn plays_again(world: &mut UsherWorld, name: String, after: String, later: String) {
    let play = world
        .viewer(&name)
        .last()
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
    let waits = !after.is_empty() || !later.is_empty();
    let keeps = waits && play.proto.is_persistent() && world.viewer(&name).live.is_some();
    let rechecks_before = rechecks_of(world, play.token.as_deref()).len();
    let started = Instant::now();
    let mut auth_duration = None;
    if let Some(later) = opt(later) {
        // Letting a time window pass is what this step is about; it is not a readiness wait.
        tokio::time::sleep(seconds(&later)).await;
    }
    if !after.is_empty() {
        let Some((at, duration)) = last_decision(world, play.token.as_deref()) else {
            panic!(
                "{}",
                world.explain(format!(
                    "the backend never decided on token {:?}, so there is no auth duration to wait for",
                    play.token
                ))
            );
        };
        assert!(
            duration <= Duration::from_secs(30),
            "waiting {duration:?} for an auth duration to pass is too long for the suite; give \
             the answer a short X-AuthDuration"
        );
        auth_duration = Some(duration);
        // Waiting for a time window to pass is what this step is about; it is not a readiness wait.
        tokio::time::sleep_until((at + duration + AFTER_MARGIN).into()).await;
    }
    if keeps {
        let attempt = keeps_playing(
            world,
            &name,
            play.token.as_deref(),
            rechecks_before,
            auth_duration,
            started,
        )
        .await;
        let viewer = world.viewers.get_mut(&name).expect("played before");
        viewer.live = None;
        viewer.plays.push((play, attempt));
        return;
    }
    perform(world, &name, play).await;
}

/// The update_session calls for `token`, oldest first.
fn rechecks_of(world: &UsherWorld, token: Option<&str>) -> Vec<(Instant, Duration)> {
    world
        .backend
        .log()
        .for_token(token)
        .into_iter()
        .filter(|c| c.request_type() == Some("update_session"))
        .map(|c| {
            // The server has its decision when the answer came, or when its budget ran out.
            let waited = match &c.answer {
                Some(answer) => answer.delay.unwrap_or_default().min(BACKEND_BUDGET),
                None => Duration::ZERO,
            };
            (c.at, waited)
        })
        .collect()
}

/// A viewer kept its persistent connection past a point where the server should re-check it:
/// waits for that re-check (the first one after the `before` already seen) and for its
/// decision, then reads the connection. A server that does not re-check in time leaves the
/// connection as it was: what it shows then is the outcome. The connection is watched for at
/// most a quarter of the auth duration after the decision, so that the next periodic re-check
/// (one auth duration later) does not fall inside it, however `--time-scale` stretches bounds.
async fn keeps_playing(
    world: &mut UsherWorld,
    name: &str,
    token: Option<&str>,
    before: usize,
    auth_duration: Option<Duration>,
    started: Instant,
) -> Attempt {
    let window = world.ctx.bound(RECHECK_STARTS);
    let recheck_by = Instant::now() + window;
    let decided = loop {
        if let Some((at, waited)) = rechecks_of(world, token).get(before).copied() {
            break Some(at + waited);
        }
        if Instant::now() >= recheck_by {
            break None;
        }
        // Polling the backend's log for a call that is due about now.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut settle = world.ctx.bound(RECHECK_SETTLES);
    if let Some(duration) = auth_duration {
        settle = settle.min(duration / 4);
    }
    let watch_until = decided.map_or_else(Instant::now, |d| d + settle).max(Instant::now());
    let viewer = world.viewers.get_mut(name).expect("played before");
    let connection = viewer
        .live
        .as_mut()
        .expect("a running connection, checked by the caller");
    let mut trail = vec![match decided {
        Some(_) => "kept the connection through the server's background re-check".to_string(),
        None => format!(
            "kept the connection; the server made no re-check within {} ms",
            window.as_millis()
        ),
    }];
    // A persistent session lives as long as the server keeps its connection: open after the
    // re-check is playing (media flow is the separate "is still receiving media" step).
    let closed = connection
        .wait_closed(watch_until.saturating_duration_since(Instant::now()))
        .await;
    let outcome = match closed {
        Some(reason) => {
            trail.push(format!("the server closed it: {reason}"));
            Outcome::Denied { status: 403 }
        }
        None => {
            trail.push(format!("the server kept it open ({})", connection.describe()));
            Outcome::Playing
        }
    };
    Attempt {
        outcome,
        elapsed: started.elapsed(),
        trail,
    }
}

/// Lets a few seconds pass with every viewer as it is, so the next steps read what the server
/// did meanwhile (a hang-up handled, a late answer applied).
#[when(regex = r"^(\d+(?:\.\d+)?) seconds? pass(?:es)?$")]
async fn time_passes(_world: &mut UsherWorld, secs: String) {
    let secs = seconds(&secs);
    assert!(
        secs <= Duration::from_secs(10),
        "`{secs:?} pass`: the suite waits at most 10 s this way"
    );
    // Letting a time window pass is what this step is about; it is not a readiness wait.
    tokio::time::sleep(secs).await;
}

#[when(regex = r#"^viewer "([^"]+)" leaves$"#)]
async fn leaves(world: &mut UsherWorld, name: String) {
    world
        .viewers
        .get_mut(&name)
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"))
        .live = None;
}

fn last_outcome(world: &UsherWorld, name: &str) -> Outcome {
    world
        .viewer(name)
        .last()
        .map(|(_, a)| a.outcome.clone())
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"))
}

fn expect_outcome(world: &UsherWorld, name: &str, what: &str, ok: impl Fn(&Outcome) -> bool) {
    let outcome = last_outcome(world, name);
    if !ok(&outcome) {
        panic!(
            "{}",
            world.explain(format!("viewer \"{name}\" should be {what}, but is {outcome}"))
        );
    }
}

#[then(regex = r#"^viewer "([^"]+)" is playing$"#)]
async fn is_playing(world: &mut UsherWorld, name: String) {
    expect_outcome(world, &name, "playing", |o| *o == Outcome::Playing);
}

#[then(regex = r#"^viewer "([^"]+)" is denied$"#)]
async fn is_denied(world: &mut UsherWorld, name: String) {
    expect_outcome(world, &name, "denied with 403", |o| {
        *o == Outcome::Denied { status: 403 }
    });
}

#[then(regex = r#"^viewer "([^"]+)" is refused$"#)]
async fn is_refused(world: &mut UsherWorld, name: String) {
    expect_outcome(world, &name, "refused (an HTTP error answer)", Outcome::is_refused);
}

#[then(regex = r#"^viewer "([^"]+)" is redirected to "([^"]+)"$"#)]
async fn is_redirected(world: &mut UsherWorld, name: String, location: String) {
    expect_outcome(world, &name, &format!("redirected to {location}"), |o| {
        *o == Outcome::Redirected {
            location: location.clone(),
        }
    });
}

#[then(regex = r#"^viewer "([^"]+)" got its answer within (\d+(?:\.\d+)?) seconds?$"#)]
async fn answered_within(world: &mut UsherWorld, name: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    let (_, attempt) = world
        .viewer(&name)
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
    if attempt.elapsed > within {
        panic!(
            "{}",
            world.explain(format!(
                "viewer \"{name}\" waited {} ms for its answer; expected at most {} ms",
                attempt.elapsed.as_millis(),
                within.as_millis()
            ))
        );
    }
}

/// HLS: the viewer keeps requesting until it is refused; MPEG-TS, RTMP, RTSP: the server must
/// end the running connection. Either within the bound.
#[then(regex = r#"^viewer "([^"]+)" is refused within (\d+(?:\.\d+)?) seconds?$"#)]
async fn refused_within(world: &mut UsherWorld, name: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    let started = Instant::now();
    let play = world
        .viewer(&name)
        .last()
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
    if play.proto.is_persistent() {
        return disconnected_within_inner(world, &name, within).await;
    }
    loop {
        let attempt = perform(world, &name, play.clone()).await;
        if attempt.outcome.is_refused() {
            return;
        }
        if started.elapsed() >= within {
            panic!(
                "{}",
                world.explain(format!(
                    "viewer \"{name}\" was still not refused {} ms later (last: {})",
                    started.elapsed().as_millis(),
                    attempt.outcome
                ))
            );
        }
        // Pace the retries like a player polling its playlist, only faster.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn disconnected_within_inner(world: &mut UsherWorld, name: &str, within: Duration) {
    let viewer = world
        .viewers
        .get_mut(name)
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
    let Some(connection) = viewer.live.as_mut() else {
        panic!("viewer \"{name}\" has no running MPEG-TS, RTMP or RTSP play");
    };
    let closed = connection.wait_closed(within).await;
    if closed.is_none() {
        let seen = connection.describe();
        panic!(
            "{}",
            world.explain(format!(
                "viewer \"{name}\"'s connection was still open; expected the server to close it within {} ms ({seen})",
                within.as_millis()
            ))
        );
    }
}

#[then(regex = r#"^viewer "([^"]+)" is disconnected within (\d+(?:\.\d+)?) seconds?$"#)]
async fn disconnected_within(world: &mut UsherWorld, name: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    disconnected_within_inner(world, &name, within).await;
}

#[then(regex = r#"^viewer "([^"]+)" is still receiving media$"#)]
async fn still_receiving(world: &mut UsherWorld, name: String) {
    let within = world.ctx.bound(Duration::from_secs(3));
    let viewer = world
        .viewers
        .get_mut(&name)
        .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
    let Some(connection) = viewer.live.as_mut() else {
        panic!("viewer \"{name}\" has no running MPEG-TS, RTMP or RTSP play");
    };
    if !connection.wait_more(within).await {
        let seen = connection.describe();
        panic!(
            "{}",
            world.explain(format!(
                "viewer \"{name}\" received no more media within {} ms ({seen})",
                within.as_millis()
            ))
        );
    }
}

/// The session_ids the backend saw for a viewer: calls from its address for the streams,
/// protocols and tokens it played.
fn session_ids_of(world: &UsherWorld, name: &str) -> BTreeSet<String> {
    let viewer = world.viewer(name);
    let ip = viewer.profile.local_ip.to_string();
    let plays: Vec<(String, &'static str, Option<String>)> = viewer
        .plays
        .iter()
        .map(|(p, _)| (world.stream_name(&p.stream), p.proto.wire_name(), p.token.clone()))
        .collect();
    world
        .backend
        .log()
        .calls()
        .iter()
        .filter(|c| c.param("ip") == Some(ip.as_str()))
        .filter(|c| {
            plays.iter().any(|(s, proto, t)| {
                c.param("name") == Some(s.as_str()) && c.param("proto") == Some(*proto) && c.token() == t.as_deref()
            })
        })
        .filter_map(|c| c.session_id().map(str::to_string))
        .collect()
}

#[then(regex = r#"^viewer "([^"]+)" and viewer "([^"]+)" had (different|the same) session_ids?$"#)]
async fn compare_session_ids(world: &mut UsherWorld, a: String, b: String, how: String) {
    let ids_a = session_ids_of(world, &a);
    let ids_b = session_ids_of(world, &b);
    let problem = if ids_a.len() != 1 || ids_b.len() != 1 {
        Some(format!(
            "expected one session_id per viewer in the backend log; viewer \"{a}\": {ids_a:?}, viewer \"{b}\": {ids_b:?}"
        ))
    } else if (how == "different") == (ids_a == ids_b) {
        Some(format!(
            "expected {how} session_ids; viewer \"{a}\": {ids_a:?}, viewer \"{b}\": {ids_b:?}"
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        panic!("{}", world.explain(p));
    }
}

#[then(regex = r#"^viewer "([^"]+)" had (\d+) different session_ids?$"#)]
async fn viewer_session_count(world: &mut UsherWorld, name: String, n: usize) {
    let ids = session_ids_of(world, &name);
    if ids.len() != n {
        panic!(
            "{}",
            world.explain(format!(
                "expected {n} different session_id(s) for viewer \"{name}\" in the backend log, saw {}: {ids:?}",
                ids.len()
            ))
        );
    }
}

/// `"A", "B" and "C"` → `[A, B, C]`
fn viewer_list(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r#""([^"]+)""#).expect("a valid regex");
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[then(regex = r#"^exactly (\d+) of viewers (.+) (?:is|are) playing$"#)]
async fn exactly_playing(world: &mut UsherWorld, n: usize, list: String) {
    let names = viewer_list(&list);
    assert!(!names.is_empty(), "name the viewers in quotes: \"A\", \"B\" and \"C\"");
    let playing: Vec<&String> = names
        .iter()
        .filter(|v| last_outcome(world, v) == Outcome::Playing)
        .collect();
    if playing.len() != n {
        panic!(
            "{}",
            world.explain(format!(
                "expected exactly {n} of {names:?} playing on their last request, saw {}: {playing:?}",
                playing.len()
            ))
        );
    }
}

/// Over persistent protocols the open sessions can be counted without a management API: they
/// are the connections the server has not closed. Gives the server `within` to close the
/// surplus (a kick is not instantaneous).
#[then(regex = r#"^at most (\d+) of viewers (.+) (?:is|are) still connected within (\d+(?:\.\d+)?) seconds?$"#)]
async fn at_most_connected(world: &mut UsherWorld, n: usize, list: String, within: String) {
    let names = viewer_list(&list);
    assert!(!names.is_empty(), "name the viewers in quotes: \"A\", \"B\" and \"C\"");
    let deadline = Instant::now() + world.ctx.bound(seconds(&within));
    loop {
        let mut connected = Vec::new();
        for name in &names {
            let viewer = world
                .viewers
                .get_mut(name)
                .unwrap_or_else(|| panic!("viewer \"{name}\" has not played yet"));
            if let Some(connection) = viewer.live.as_mut()
                && connection.wait_closed(Duration::ZERO).await.is_none()
            {
                connected.push(name.clone());
            }
        }
        if connected.len() <= n {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{}",
                world.explain(format!(
                    "expected at most {n} of {names:?} still connected, saw {} after {} s: {connected:?}",
                    connected.len(),
                    within
                ))
            );
        }
        // Polling connections the server is expected to close about now.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
