//! In-process tests of the auth core under paused Tokio time: the default recheck (TIME-01),
//! X-AuthDuration (TIME-02), the T11 table, bans, limits, X-Unique and single flight. The
//! backend is scripted (it is the one external party); everything else is the real core.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::time::{Instant, advance};
use tokio_util::sync::CancellationToken;
use usher_server::auth::admin::AdminTokens;
use usher_server::auth::backend::DEFAULT_AUTH_DURATION;
use usher_server::auth::{
    Answer, AuthCore, AuthSettings, Backend, BackendRequest, CallKind, Grant, PlayRequest, Proto, RequestType, Verdict,
};
use usher_server::config::{AuthSpec, AuthTarget, SessionKeys};

/// What the scripted backend does for one call.
#[derive(Clone, Debug)]
enum Script {
    Answer(Answer),
    /// Answers after a delay (the core gives up at 3 s: a longer delay is no decision).
    Slow(Duration, Answer),
}

#[derive(Default)]
struct Scripted {
    /// Per token: answers in order; the last one repeats.
    scripts: Mutex<Vec<(String, VecDeque<Script>)>>,
    log: Mutex<Vec<(Instant, BackendRequest)>>,
}

impl Scripted {
    fn on(&self, token: &str, script: Script) {
        let mut scripts = self.scripts.lock().unwrap();
        match scripts.iter_mut().find(|(t, _)| t == token) {
            Some((_, q)) => q.push_back(script),
            None => scripts.push((token.to_string(), VecDeque::from([script]))),
        }
    }

    fn calls(&self) -> Vec<BackendRequest> {
        self.log.lock().unwrap().iter().map(|(_, r)| r.clone()).collect()
    }

    fn calls_for(&self, token: &str) -> Vec<BackendRequest> {
        self.calls()
            .into_iter()
            .filter(|r| r.token.as_deref() == Some(token))
            .collect()
    }
}

impl Backend for Scripted {
    fn call(&self, _url: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        self.log.lock().unwrap().push((Instant::now(), request.clone()));
        let token = request.token.clone().unwrap_or_default();
        let script = {
            let mut scripts = self.scripts.lock().unwrap();
            match scripts.iter_mut().find(|(t, _)| *t == token) {
                Some((_, q)) if q.len() > 1 => q.pop_front().unwrap(),
                Some((_, q)) => q.front().cloned().unwrap(),
                None => Script::Answer(Answer::Deny {
                    status: 403,
                    duration: DEFAULT_AUTH_DURATION,
                }),
            }
        };
        Box::pin(async move {
            match script {
                Script::Answer(a) => a,
                Script::Slow(delay, a) => {
                    // Past 3 s the core's own timer drops this call: no decision (TIME-03).
                    tokio::time::sleep(delay).await;
                    a
                }
            }
        })
    }
}

fn allow(secs: Option<u64>) -> Answer {
    Answer::Allow(Grant {
        duration: secs.map_or(DEFAULT_AUTH_DURATION, Duration::from_secs),
        ..Grant::default()
    })
}

fn allow_user(user: &str, secs: u64, max: Option<u32>, unique: bool) -> Answer {
    Answer::Allow(Grant {
        duration: Duration::from_secs(secs),
        user_id: Some(user.into()),
        max_sessions: max,
        unique,
        ..Grant::default()
    })
}

fn deny(secs: u64) -> Answer {
    Answer::Deny {
        status: 403,
        duration: Duration::from_secs(secs),
    }
}

fn no_decision() -> Answer {
    Answer::NoDecision { reason: "500".into() }
}

struct Fixture {
    core: AuthCore,
    backend: Arc<Scripted>,
    spec: AuthSpec,
    stop: CancellationToken,
}

impl Fixture {
    fn new() -> Fixture {
        let backend = Arc::new(Scripted::default());
        let core = AuthCore::new(
            backend.clone(),
            AdminTokens::new("k", Duration::from_secs(3600), false),
            AuthSettings {
                no_auto_token: AtomicBool::new(false),
                http_session_idle: Duration::from_secs(30),
                soft_limitation_delay: Duration::from_secs(30),
            },
        );
        let mut spec = AuthSpec::new(AuthTarget::Http("http://backend.invalid/on_play".into()));
        spec.session_keys = SessionKeys::parse("ip,name,proto,token").unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(core.clone().run_sweeper(stop.clone()));
        Fixture {
            core,
            backend,
            spec,
            stop,
        }
    }

    async fn play(&self, stream: &str, ip: &str, proto: Proto, token: &str) -> Verdict {
        self.core
            .authorize(Some(&self.spec), request(stream, ip, proto, token))
            .await
    }

    async fn hls(&self, token: &str) -> Verdict {
        self.play("s1", "127.0.0.2", Proto::Hls, token).await
    }
}

fn request(stream: &str, ip: &str, proto: Proto, token: &str) -> PlayRequest {
    let ip: IpAddr = ip.parse().unwrap();
    PlayRequest {
        kind: CallKind::Play,
        name: stream.into(),
        proto,
        ip,
        token: Some(token.into()),
        qs: Some(format!("token={token}")),
        query: vec![("token".into(), token.into())],
        headers: Default::default(),
        referer: None,
        user_agent: None,
        host: None,
        dvr: false,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(_))
}

/// TIME-01: with no X-AuthDuration the decision stays fresh for 180 s; the first request
/// after that makes exactly one update_session call.
#[tokio::test(start_paused = true)]
async fn time_01_default_recheck_is_180_seconds() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(None)));
    assert!(allowed(&f.hls("t").await));
    // Requests every 10 s keep the HLS session open; none of them reaches the backend.
    for _ in 0..17 {
        advance(Duration::from_secs(10)).await;
        assert!(allowed(&f.hls("t").await));
    }
    assert_eq!(f.backend.calls().len(), 1, "no call while fresh (170 s in)");
    advance(Duration::from_secs(9)).await; // 179 s
    assert!(allowed(&f.hls("t").await));
    assert_eq!(f.backend.calls().len(), 1, "no call at 179 s");
    advance(Duration::from_secs(2)).await; // 181 s
    assert!(allowed(&f.hls("t").await));
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2, "one recheck after 180 s");
    assert_eq!(calls[1].request_type, RequestType::UpdateSession);
    assert_eq!(calls[1].request_number, calls[0].request_number + 1);
    assert_eq!(calls[1].session_id, calls[0].session_id);
    assert_eq!(calls[1].duration, Some(181));
}

/// TIME-02 + TIME-05: a persistent session is re-checked in the background when its
/// X-AuthDuration ends; a deny ends the connection.
#[tokio::test(start_paused = true)]
async fn time_05_persistent_session_recheck_in_background_and_deny_ends_it() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(Some(5))));
    f.backend.on("t", Script::Answer(deny(60)));
    let Verdict::Allow(handle) = f.play("s1", "127.0.0.2", Proto::Tshttp, "t").await else {
        panic!("expected allow");
    };
    let guard = f.core.attach(&handle);
    advance(Duration::from_secs(4)).await;
    assert_eq!(f.backend.calls().len(), 1);
    assert!(!handle.is_ended());
    advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    // The background recheck ran without any client request.
    tokio::time::timeout(Duration::from_secs(1), handle.ended())
        .await
        .expect("deny ends the session within 1 s");
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].request_type, RequestType::UpdateSession);
    drop(guard);
    // Banned: a new connection with the same identity is refused locally.
    assert!(!allowed(&f.play("s1", "127.0.0.2", Proto::Tshttp, "t").await));
    assert_eq!(f.backend.calls().len(), 2);
}

/// T11, RESP-04, TIME-04: every (state before × no-decision kind) row.
#[tokio::test(start_paused = true)]
async fn t11_table() {
    let outcomes: [(&str, Script); 3] = [
        ("500", Script::Answer(no_decision())),
        ("timeout", Script::Slow(Duration::from_secs(5), allow(None))),
        (
            "refused",
            Script::Answer(Answer::NoDecision {
                reason: "connect: refused".into(),
            }),
        ),
    ];
    for (label, failure) in outcomes {
        let f = Fixture::new();
        // Not yet open ⇒ refused.
        f.backend.on("new", failure.clone());
        assert!(!allowed(&f.hls("new").await), "{label}: a new session must be refused");
        // Allowed ⇒ stays allowed.
        f.backend.on("ok", Script::Answer(allow(Some(1))));
        f.backend.on("ok", failure.clone());
        assert!(allowed(&f.hls("ok").await));
        advance(Duration::from_secs(2)).await;
        assert!(
            allowed(&f.hls("ok").await),
            "{label}: an allowed session must stay allowed"
        );
        assert_eq!(f.backend.calls_for("ok").len(), 2, "{label}: the recheck was attempted");
        // Denied ⇒ stays denied (the ban ends, the backend fails, the client is still refused).
        f.backend.on("no", Script::Answer(deny(1)));
        f.backend.on("no", failure.clone());
        assert!(!allowed(&f.hls("no").await));
        advance(Duration::from_secs(2)).await;
        assert!(
            !allowed(&f.hls("no").await),
            "{label}: a denied session must stay denied"
        );
    }
}

/// BAN-01, AMB-8: a deny is cached for its X-AuthDuration; no call while banned.
#[tokio::test(start_paused = true)]
async fn ban_01_cached_deny_makes_no_call_until_it_ends() {
    let f = Fixture::new();
    f.backend.on("bad", Script::Answer(deny(5)));
    f.backend.on("bad", Script::Answer(allow(None)));
    assert!(!allowed(&f.hls("bad").await));
    advance(Duration::from_secs(4)).await;
    assert!(!allowed(&f.hls("bad").await));
    assert_eq!(f.backend.calls().len(), 1);
    advance(Duration::from_secs(2)).await;
    assert!(allowed(&f.hls("bad").await));
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].request_type, RequestType::NewSession);
}

/// LIM-02, AMB-1, BAN-02: the oldest session of the user is closed and banned.
#[tokio::test(start_paused = true)]
async fn lim_02_oldest_session_is_kicked_and_banned() {
    let f = Fixture::new();
    for t in ["t1", "t2", "t3"] {
        f.backend.on(t, Script::Answer(allow_user("u1", 60, Some(2), false)));
    }
    let Verdict::Allow(first) = f.play("s1", "127.0.0.2", Proto::Hls, "t1").await else {
        panic!()
    };
    advance(Duration::from_secs(1)).await;
    assert!(allowed(&f.play("s2", "127.0.0.2", Proto::Hls, "t2").await));
    advance(Duration::from_secs(1)).await;
    assert!(allowed(&f.play("s3", "127.0.0.2", Proto::Hls, "t3").await));
    assert!(first.is_ended(), "the oldest session is closed");
    assert!(
        !allowed(&f.play("s1", "127.0.0.2", Proto::Hls, "t1").await),
        "and banned"
    );
    assert!(allowed(&f.play("s2", "127.0.0.2", Proto::Hls, "t2").await));
    assert!(allowed(&f.play("s3", "127.0.0.2", Proto::Hls, "t3").await));
    assert_eq!(
        f.backend.calls().len(),
        3,
        "no call for the banned or the fresh sessions"
    );
    let open_u1 = f
        .core
        .sessions()
        .into_iter()
        .filter(|s| s.user_id.as_deref() == Some("u1"))
        .count();
    assert_eq!(open_u1, 2);
    // The ban lasts the X-AuthDuration of the answer that caused the kick (60 s).
    advance(Duration::from_secs(59)).await;
    assert!(!allowed(&f.play("s1", "127.0.0.2", Proto::Hls, "t1").await));
}

/// UNIQ-01: X-Unique closes every other session of the user; the new one survives.
#[tokio::test(start_paused = true)]
async fn uniq_01_other_sessions_of_the_user_are_closed() {
    let f = Fixture::new();
    f.backend.on("a", Script::Answer(allow_user("u", 60, None, false)));
    f.backend.on("b", Script::Answer(allow_user("u", 60, None, false)));
    f.backend.on("c", Script::Answer(allow_user("u", 60, None, true)));
    let Verdict::Allow(a) = f.play("s1", "127.0.0.2", Proto::Hls, "a").await else {
        panic!()
    };
    let Verdict::Allow(b) = f.play("s2", "127.0.0.3", Proto::Tshttp, "b").await else {
        panic!()
    };
    let _guard = f.core.attach(&b);
    let Verdict::Allow(c) = f.play("s3", "127.0.0.4", Proto::Hls, "c").await else {
        panic!()
    };
    assert!(a.is_ended() && b.is_ended());
    assert!(!c.is_ended());
    assert!(
        !allowed(&f.play("s1", "127.0.0.2", Proto::Hls, "a").await),
        "same ip+name+token cannot come back"
    );
}

/// Single flight: concurrent first requests of one identity share one backend call.
#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_make_one_call() {
    let f = Arc::new(Fixture::new());
    f.backend.on("t", Script::Slow(Duration::from_millis(500), allow(None)));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move { allowed(&f.hls("t").await) }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(f.backend.calls().len(), 1);
}

/// AMB-13: an idle HLS session closes after 30 s, lingers while its decision is fresh, and
/// comes back without a backend call; records are forgotten afterwards.
#[tokio::test(start_paused = true)]
async fn idle_hls_session_closes_lingers_and_is_forgotten() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(Some(60))));
    assert!(allowed(&f.hls("t").await));
    advance(Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    assert!(f.core.sessions().is_empty(), "closed after 30 s idle");
    assert_eq!(f.core.record_count(), 1, "but its record lingers");
    assert!(allowed(&f.hls("t").await));
    assert_eq!(f.backend.calls().len(), 1, "resumed without a call");
    assert_eq!(f.core.sessions().len(), 1);
    // Idle close at 61 s, linger until max(expiry 60 s, close + 10 s) = 71 s.
    for _ in 0..39 {
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(f.core.record_count(), 1, "still lingering at 70 s");
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(f.core.record_count(), 0, "forgotten after the linger");
}

/// SESS-02 + REQ-06: a changed listed key is a new session with another session_id; a
/// new_session's counters do not include the session being checked (it is not open yet).
#[tokio::test(start_paused = true)]
async fn sess_02_changed_key_is_a_new_session() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(None)));
    assert!(allowed(&f.play("s1", "127.0.0.2", Proto::Hls, "t").await));
    assert!(allowed(&f.play("s1", "127.0.0.2", Proto::Tshttp, "t").await));
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].session_id, calls[1].session_id);
    assert_eq!(calls[1].request_type, RequestType::NewSession);
    assert_eq!((calls[0].stream_clients, calls[0].total_clients), (0, 0));
    assert_eq!((calls[1].stream_clients, calls[1].total_clients), (1, 1));
}

/// REQ-06, AMB-12: the counters of an update_session leave out the session being re-checked,
/// as those of its new_session do (decisions.md: "Counters do not include the session being
/// checked"), and count the other open sessions.
#[tokio::test(start_paused = true)]
async fn req_06_update_session_counts_leave_out_the_session_being_rechecked() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(Some(10))));
    f.backend.on("u", Script::Answer(allow(Some(600))));
    assert!(allowed(&f.hls("t").await));
    assert!(allowed(&f.play("s2", "127.0.0.3", Proto::Hls, "u").await));
    advance(Duration::from_secs(11)).await;
    assert!(allowed(&f.hls("t").await));
    let calls = f.backend.calls_for("t");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].request_type, RequestType::NewSession);
    assert_eq!((calls[0].stream_clients, calls[0].total_clients), (0, 0));
    assert_eq!(calls[1].request_type, RequestType::UpdateSession);
    assert_eq!(
        (calls[1].stream_clients, calls[1].total_clients),
        (0, 1),
        "not itself on s1; the viewer of s2 on the server"
    );
}

/// LIM-05, AMB-3: with soft limitation the excess session is closed only after the grace,
/// and not at all if the user dropped back under the limit meanwhile.
#[tokio::test(start_paused = true)]
async fn lim_05_soft_limitation_closes_after_the_grace() {
    let mut f = Fixture::new();
    f.spec.soft_limitation = true;
    for t in ["t1", "t2", "t3"] {
        f.backend.on(t, Script::Answer(allow_user("u1", 600, Some(1), false)));
    }
    let Verdict::Allow(first) = f.play("s1", "127.0.0.2", Proto::Tshttp, "t1").await else {
        panic!()
    };
    let _g1 = f.core.attach(&first);
    let Verdict::Allow(second) = f.play("s2", "127.0.0.2", Proto::Tshttp, "t2").await else {
        panic!()
    };
    let g2 = f.core.attach(&second);
    advance(Duration::from_secs(29)).await;
    assert!(!first.is_ended(), "still inside the 30 s grace");
    advance(Duration::from_secs(2)).await;
    assert!(first.is_ended(), "closed once the grace ended");
    assert!(!second.is_ended());

    // Over the limit again, but the older session leaves during the grace: nobody is kicked.
    let Verdict::Allow(third) = f.play("s3", "127.0.0.2", Proto::Tshttp, "t3").await else {
        panic!()
    };
    let g3 = f.core.attach(&third);
    drop(g2);
    advance(Duration::from_secs(31)).await;
    assert!(
        !third.is_ended(),
        "the user was back under the limit when the grace ended"
    );
    drop(g3);
}

/// REQ-07: a forced re-check asks the backend again for every open session of the stream.
#[tokio::test(start_paused = true)]
async fn req_07_reauth_rechecks_open_sessions() {
    let f = Fixture::new();
    f.backend.on("a", Script::Answer(allow(None)));
    f.backend.on("a", Script::Answer(deny(60)));
    f.backend.on("b", Script::Answer(allow(None)));
    let Verdict::Allow(a) = f.play("s1", "127.0.0.2", Proto::Tshttp, "a").await else {
        panic!()
    };
    let _ga = f.core.attach(&a);
    assert!(allowed(&f.play("s1", "127.0.0.3", Proto::Hls, "b").await));
    assert!(allowed(&f.play("s2", "127.0.0.3", Proto::Hls, "b").await));
    assert_eq!(f.core.reauth_stream("s1"), 2);
    advance(Duration::from_millis(300)).await;
    tokio::task::yield_now().await;
    assert!(
        a.is_ended(),
        "the persistent session was re-checked in the background and denied"
    );
    assert!(allowed(&f.play("s1", "127.0.0.3", Proto::Hls, "b").await));
    let updates: Vec<_> = f
        .backend
        .calls()
        .into_iter()
        .filter(|c| c.request_type == RequestType::UpdateSession)
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(updates.iter().all(|c| c.name == "s1"));
}

/// A session kicked while its own re-check is in flight stays kicked whatever that answer
/// says; and a session ended by the server starts afresh with a new_session call.
#[tokio::test(start_paused = true)]
async fn kick_during_recheck_stands() {
    let f = Fixture::new();
    f.backend.on("a", Script::Answer(allow_user("u", 1, Some(1), false)));
    f.backend.on(
        "a",
        Script::Slow(Duration::from_secs(2), allow_user("u", 60, Some(1), false)),
    );
    f.backend.on("b", Script::Answer(allow_user("u", 60, Some(1), false)));
    let Verdict::Allow(a) = f.play("s1", "127.0.0.2", Proto::Tshttp, "a").await else {
        panic!()
    };
    let _ga = f.core.attach(&a);
    advance(Duration::from_millis(1300)).await; // the background re-check of `a` is in flight
    assert!(allowed(&f.play("s2", "127.0.0.3", Proto::Hls, "b").await));
    assert!(a.is_ended(), "kicked by b");
    advance(Duration::from_secs(3)).await; // a's re-check answers "allow"
    assert!(a.is_ended());
    assert!(
        !allowed(&f.play("s1", "127.0.0.2", Proto::Tshttp, "a").await),
        "the ban stands"
    );
}

/// CONF-03: sessions of a protocol switched off are ended; when the client returns (the
/// protocol back on) it is judged afresh with a new_session call.
#[tokio::test(start_paused = true)]
async fn conf_03_ended_sessions_start_afresh() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(allow(Some(60))));
    let Verdict::Allow(h) = f.hls("t").await else { panic!() };
    let off = usher_server::config::Protocols {
        hls: false,
        ..Default::default()
    };
    f.core.end_disabled("s1", &off);
    assert!(h.is_ended());
    assert!(f.core.sessions().is_empty());
    let Verdict::Allow(again) = f.hls("t").await else {
        panic!("the client may come back")
    };
    assert!(!again.is_ended());
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].request_type, RequestType::NewSession);
}

/// T11, RESP-01..05, AMB-5 as one exhaustive table over (state before × backend outcome),
/// with the outcomes produced by the real answer reader from their status codes.
#[tokio::test(start_paused = true)]
async fn status_table_by_session_state() {
    use usher_server::auth::backend::interpret;
    #[derive(Clone, Copy, Debug)]
    enum Before {
        New,
        Allowed,
        Denied,
    }
    let location = vec![("Location".to_string(), "http://elsewhere/".to_string())];
    let mut outcomes: Vec<(String, Script)> = [200u16, 204, 302, 401, 403, 404, 429, 500, 502, 503, 504]
        .into_iter()
        .map(|status| {
            let headers = if status == 302 { location.clone() } else { vec![] };
            (status.to_string(), Script::Answer(interpret(status, &headers, b"")))
        })
        .collect();
    outcomes.push(("timeout".into(), Script::Slow(Duration::from_secs(5), allow(None))));
    outcomes.push((
        "refused".into(),
        Script::Answer(Answer::NoDecision {
            reason: "connect: refused".into(),
        }),
    ));
    for before in [Before::New, Before::Allowed, Before::Denied] {
        for (label, outcome) in &outcomes {
            let f = Fixture::new();
            match before {
                Before::New => {}
                Before::Allowed => f.backend.on("t", Script::Answer(allow(Some(1)))),
                Before::Denied => f.backend.on("t", Script::Answer(deny(1))),
            }
            f.backend.on("t", outcome.clone());
            if !matches!(before, Before::New) {
                f.hls("t").await;
                advance(Duration::from_secs(2)).await;
            }
            let verdict = f.hls("t").await;
            let ok = label.starts_with('2');
            let no_decision = label.starts_with('5') || label == "timeout" || label == "refused";
            let expected_allowed = match before {
                Before::New | Before::Denied => ok,
                Before::Allowed => ok || no_decision,
            };
            assert_eq!(allowed(&verdict), expected_allowed, "{before:?} × {label}: {verdict:?}");
            if label == "302" && !matches!(before, Before::Allowed) {
                assert!(
                    matches!(verdict, Verdict::Redirect { .. }),
                    "{before:?} × 302 redirects: {verdict:?}"
                );
            }
            let expected_calls = if matches!(before, Before::New) { 1 } else { 2 };
            assert_eq!(f.backend.calls().len(), expected_calls, "{before:?} × {label}");
        }
    }
}

/// Closed-session records (for the history): one per close, with the reason.
#[tokio::test(start_paused = true)]
async fn closed_sessions_are_reported_with_their_reason() {
    let f = Fixture::new();
    let mut closed = f.core.closed_sessions().expect("first subscriber");
    assert!(f.core.closed_sessions().is_none(), "one subscriber only");
    f.backend.on("idle", Script::Answer(allow_user("u9", 600, None, false)));
    f.backend.on("conn", Script::Answer(allow(Some(600))));
    f.backend.on("k1", Script::Answer(allow_user("k", 600, Some(1), false)));
    f.backend.on("k2", Script::Answer(allow_user("k", 600, Some(1), false)));
    assert!(allowed(&f.hls("idle").await));
    let Verdict::Allow(c) = f.play("s1", "127.0.0.2", Proto::Tshttp, "conn").await else {
        panic!()
    };
    drop(f.core.attach(&c));
    assert!(allowed(&f.play("s1", "127.0.0.3", Proto::Hls, "k1").await));
    assert!(allowed(&f.play("s2", "127.0.0.3", Proto::Hls, "k2").await));
    for _ in 0..31 {
        advance(Duration::from_secs(1)).await;
    }
    let mut reasons = Vec::new();
    while let Ok(record) = closed.try_recv() {
        reasons.push((record.token.clone(), record.reason, record.user_id.clone()));
    }
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    use usher_server::auth::CloseReason;
    assert_eq!(
        reasons,
        vec![
            ("conn".to_string(), CloseReason::Disconnected, None),
            ("idle".to_string(), CloseReason::Idle, Some("u9".to_string())),
            ("k1".to_string(), CloseReason::Kicked, Some("k".to_string())),
            ("k2".to_string(), CloseReason::Idle, Some("k".to_string())),
        ]
    );
}

/// The queue to the history writer is bounded: with nobody reading it, closes beyond its size
/// are dropped and counted, and the sessions still close (#15 leftover: it was unbounded, so a
/// stalled writer let a stranger's opens and closes grow the core's memory without end).
#[tokio::test(start_paused = true)]
async fn closed_session_records_beyond_the_queue_are_dropped_and_counted() {
    let f = Fixture::new();
    let mut closed = f.core.closed_sessions_queued(4).expect("first subscriber");
    for i in 0..10 {
        let token = format!("q{i}");
        f.backend.on(&token, Script::Answer(allow(Some(600))));
        assert!(allowed(&f.hls(&token).await));
    }
    assert_eq!(f.core.sessions().len(), 10);
    for _ in 0..31 {
        advance(Duration::from_secs(1)).await;
    }
    assert!(
        f.core.sessions().is_empty(),
        "every idle session closed, queue full or not"
    );
    let mut queued = 0;
    while closed.try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(queued, 4, "the queue held its size");
    assert_eq!(f.core.closed_sessions_dropped(), 6, "the rest were counted as dropped");
}

/// With the default keys (name, ip, proto, token; AMB-25) an MPEG-TS response of the same
/// name, address and token as an HLS session is a session of its own: the backend is asked with
/// `proto=tshttp` and its refusal refuses it, while the HLS session goes on. (With the old
/// default, without proto, the MPEG-TS response joined the HLS session with no backend call;
/// this test asserted that.)
#[tokio::test(start_paused = true)]
async fn default_keys_keep_hls_and_mpegts_apart() {
    let mut f = Fixture::new();
    f.spec.session_keys = SessionKeys::default();
    f.backend.on("t", Script::Answer(allow(Some(40))));
    f.backend.on("t", Script::Answer(deny(60)));
    let Verdict::Allow(hls) = f.play("s1", "127.0.0.2", Proto::Hls, "t").await else {
        panic!("the first answer allows")
    };
    let ts = f.play("s1", "127.0.0.2", Proto::Tshttp, "t").await;
    assert!(!allowed(&ts), "a new session, asked about and denied: {ts:?}");
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 2, "the MPEG-TS play was asked about");
    assert_eq!(
        calls.iter().map(|c| c.proto).collect::<Vec<_>>(),
        [Proto::Hls, Proto::Tshttp]
    );
    assert!(!hls.is_ended(), "the HLS session is not touched");
    assert!(allowed(&f.play("s1", "127.0.0.2", Proto::Hls, "t").await));
    assert_eq!(f.backend.calls().len(), 2, "the HLS session resumes without a call");
}

/// ADM-04: a session admitted by an admin view token ends when the token does — a persistent
/// connection is ended by the sweeper, an HLS session is dropped — and the records go, with no
/// backend call. (Wall-clock validity is the token's; the core reads how long it has left
/// once, at admission, and keeps time on its own clock, which is paused here.)
#[tokio::test(start_paused = true)]
async fn adm_04_admin_session_ends_when_its_token_does() {
    let f = Fixture::new();
    let mut closed = f.core.closed_sessions().expect("first subscriber");
    // Minted so that 5 to 6 s of its hour are left.
    let token = AdminTokens::new("k", Duration::from_secs(3600), false)
        .mint(SystemTime::now() - Duration::from_secs(3595))
        .unwrap();
    let Verdict::Allow(ts) = f.play("s1", "127.0.0.2", Proto::Tshttp, &token).await else {
        panic!("the admin token plays")
    };
    let guard = f.core.attach(&ts);
    let Verdict::Allow(hls) = f.play("s1", "127.0.0.3", Proto::Hls, &token).await else {
        panic!("the admin token plays")
    };
    assert_eq!(f.core.sessions().len(), 2);
    advance(Duration::from_millis(4900)).await;
    assert!(!ts.is_ended() && !hls.is_ended(), "ended before the token did");
    assert_eq!(f.core.sessions().len(), 2);
    advance(Duration::from_millis(1600)).await; // 6.5 s: past the token's end and a sweep
    tokio::task::yield_now().await;
    assert!(ts.is_ended(), "the MPEG-TS connection is ended with the token");
    assert!(hls.is_ended(), "the HLS session is ended with the token");
    assert!(f.core.sessions().is_empty());
    assert_eq!(f.core.record_count(), 0, "nothing left to resume");
    assert!(f.backend.calls().is_empty());
    drop(guard);
    let mut reasons = Vec::new();
    while let Ok(record) = closed.try_recv() {
        reasons.push(record.reason.as_str());
    }
    assert_eq!(reasons, ["expired", "expired"]);
}

/// CFG-05 then CFG-01: a record made while the stream had no backend is never resumed by a
/// request that a backend decides (an admin token that stopped being valid leaves such a
/// record too); the request is a new session for the backend.
#[tokio::test(start_paused = true)]
async fn a_backendless_record_is_not_resumed_once_a_backend_decides() {
    let f = Fixture::new();
    f.backend.on("t", Script::Answer(deny(60)));
    let free = f
        .core
        .authorize(None, request("s1", "127.0.0.2", Proto::Hls, "t"))
        .await;
    assert!(allowed(&free), "no backend: everyone plays");
    assert!(f.backend.calls().is_empty());
    // The same identity (default keys on both sides), the stream now decided by a backend.
    let mut spec = f.spec.clone();
    spec.session_keys = SessionKeys::default();
    let decided = f
        .core
        .authorize(Some(&spec), request("s1", "127.0.0.2", Proto::Hls, "t"))
        .await;
    assert!(!allowed(&decided), "resumed without the backend: {decided:?}");
    let calls = f.backend.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request_type, RequestType::NewSession);
}
