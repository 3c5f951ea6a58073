//! The decision machine's side of the shared session store, driven directly (no runtime, no
//! Redis): what an answer asks the driver to share, the ban a store reports, a kick from
//! another server, and what a resync hands back. `cluster_store.rs` runs the same paths with
//! a real redis-server and two servers.

mod common;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use common::hls_play;
use usher_server::auth::identity::RequestFacts;
use usher_server::auth::machine::{Call, Claim, Effects, Key, Machine, Now, Step, Tick};
use usher_server::auth::{Answer, CallKind, DenyReason, Grant, Identity, PlayRequest, Verdict};
use usher_server::config::{AuthSpec, AuthTarget};

fn spec() -> AuthSpec {
    AuthSpec::new(AuthTarget::Http("http://backend.invalid/".into()))
}

fn request(client: u8) -> PlayRequest {
    hls_play("s1", IpAddr::from([127, 0, 0, client]), &format!("t{client}"))
}

fn key(client: u8) -> Key {
    let req = request(client);
    let identity = Identity::compute(
        &spec().session_keys,
        &RequestFacts {
            name: &req.name,
            ip: req.ip,
            proto: req.proto,
            token: req.token.as_deref(),
            headers: &usher_server::auth::NO_HEADERS,
            query: &[],
        },
    );
    (CallKind::Play, identity)
}

fn at(secs: u64) -> Now {
    let d = Duration::from_secs(secs);
    Now::new(
        Tick::from_start(d),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000) + d,
    )
}

fn shared_machine() -> Machine {
    let mut m = Machine::new(Duration::from_secs(30), Duration::from_secs(30));
    m.share();
    m
}

fn call(m: &mut Machine, now: Now, client: u8) -> Call {
    let token = format!("t{client}");
    match m.on_request(now, &key(client), &request(client), &token, &spec()) {
        Step::Call(call) => *call,
        other => panic!("expected a call, got {other:?}"),
    }
}

fn step(m: &mut Machine, now: Now, client: u8) -> Step {
    let token = format!("t{client}");
    m.on_request(now, &key(client), &request(client), &token, &spec())
}

fn grant(user: Option<&str>, max: Option<u32>, unique: bool, secs: u64) -> Answer {
    Answer::Allow(Grant {
        duration: Duration::from_secs(secs),
        user_id: user.map(str::to_string),
        max_sessions: max,
        unique,
        ..Grant::default()
    })
}

fn answer(m: &mut Machine, now: Now, client: u8, answer: Answer) -> Effects {
    let call = call(m, now, client);
    m.on_answer(now, &call.ticket, answer)
}

#[test]
fn without_a_store_nothing_is_shared() {
    let mut m = Machine::new(Duration::from_secs(30), Duration::from_secs(30));
    let fx = answer(&mut m, at(0), 1, grant(Some("u"), Some(2), false, 60));
    assert_eq!(fx.claim, None);
    let fx = answer(
        &mut m,
        at(0),
        2,
        Answer::Deny {
            status: 403,
            duration: Duration::from_secs(60),
        },
    );
    assert_eq!(fx.ban, None);
}

#[test]
fn an_allow_of_a_user_claims_its_session_and_a_deny_shares_its_ban() {
    let mut m = shared_machine();
    let fx = answer(&mut m, at(5), 1, grant(Some("u"), Some(2), false, 60));
    assert!(matches!(fx.verdict, Verdict::Allow(_)));
    assert_eq!(
        fx.claim,
        Some(Claim {
            key: key(1),
            user: "u".into(),
            max: 2,
            ttl: Duration::from_secs(60),
            ban: Duration::from_secs(60),
            unique: false,
            opened_unix_ms: 1_005_000,
            resync: false,
        })
    );
    let fx = answer(&mut m, at(5), 2, grant(Some("u"), None, true, 0));
    let claim = fx.claim.expect("X-Unique claims");
    assert_eq!((claim.max, claim.unique), (1, true));
    assert_eq!(
        claim.ttl,
        Duration::from_secs(1),
        "an auth duration of 0 still counts for 1 s"
    );
    let fx = answer(&mut m, at(5), 3, grant(Some("v"), None, false, 60));
    assert_eq!(
        fx.claim.map(|c| c.max),
        Some(u32::MAX),
        "a user without a limit is counted"
    );
    let fx = answer(&mut m, at(5), 4, grant(None, Some(2), false, 60));
    assert_eq!(fx.claim, None, "no user id, nothing to count");
    let fx = answer(
        &mut m,
        at(5),
        5,
        Answer::Deny {
            status: 403,
            duration: Duration::from_secs(90),
        },
    );
    assert_eq!(fx.ban, Some(Duration::from_secs(90)));
    assert_eq!(fx.claim, None);
}

#[test]
fn a_ban_from_the_store_refuses_without_a_call_until_it_ends() {
    let mut m = shared_machine();
    assert!(m.starts_afresh(at(0), &key(1)));
    m.ban_from_store(at(0), &key(1), &request(1), Duration::from_secs(10));
    assert!(
        !m.starts_afresh(at(9), &key(1)),
        "known here: the store is not asked again"
    );
    assert!(matches!(
        step(&mut m, at(9), 1),
        Step::Done(Verdict::Deny {
            reason: DenyReason::Banned,
            ..
        })
    ));
    assert!(
        m.starts_afresh(at(10), &key(1)),
        "the ban ended: a new session, the store asked again"
    );
    assert!(matches!(step(&mut m, at(10), 1), Step::Call(_)));
}

#[test]
fn only_a_new_session_asks_the_store() {
    let mut m = shared_machine();
    let first = call(&mut m, at(0), 1);
    assert!(!m.starts_afresh(at(0), &key(1)), "a call in flight: wait for it");
    m.on_answer(at(0), &first.ticket, grant(Some("u"), Some(1), false, 60));
    assert!(!m.starts_afresh(at(30), &key(1)), "fresh");
    assert!(
        !m.starts_afresh(at(61), &key(1)),
        "stale: a re-check of the same session"
    );
}

#[test]
fn a_kick_from_another_server_closes_and_bans_a_granted_session_once() {
    let mut m = shared_machine();
    let handle = match answer(&mut m, at(0), 1, grant(Some("u"), Some(1), false, 60)).verdict {
        Verdict::Allow(h) => h,
        other => panic!("{other:?}"),
    };
    assert!(
        !m.on_remote_kick(at(1), &key(2), Duration::from_secs(60), false),
        "not held here"
    );
    assert!(m.on_remote_kick(at(1), &key(1), Duration::from_secs(60), false));
    assert!(handle.is_ended(), "its connections end");
    assert!(
        !m.on_remote_kick(at(1), &key(1), Duration::from_secs(60), false),
        "already closed"
    );
    assert!(matches!(
        step(&mut m, at(2), 1),
        Step::Done(Verdict::Deny {
            reason: DenyReason::Banned,
            ..
        })
    ));
    assert!(m.sessions().is_empty());
}

#[test]
fn a_resync_hands_back_the_granted_sessions_of_users_oldest_first() {
    let mut m = shared_machine();
    answer(&mut m, at(0), 1, grant(Some("u"), Some(2), false, 60));
    answer(&mut m, at(10), 2, grant(Some("u"), Some(2), false, 60));
    answer(&mut m, at(10), 3, grant(None, None, false, 60));
    answer(
        &mut m,
        at(10),
        4,
        Answer::Deny {
            status: 403,
            duration: Duration::from_secs(60),
        },
    );
    let claims = m.shared_sessions(at(20));
    assert_eq!(claims.iter().map(|c| c.key).collect::<Vec<_>>(), [key(1), key(2)]);
    assert!(claims.iter().all(|c| c.resync && c.user == "u" && c.max == 2));
    assert_eq!(
        claims[0].ttl,
        Duration::from_secs(40),
        "what is left of its auth duration"
    );
    assert_eq!(claims[1].ttl, Duration::from_secs(50));
    assert!(
        m.shared_sessions(at(70)).is_empty(),
        "stale sessions are not handed back"
    );
}
