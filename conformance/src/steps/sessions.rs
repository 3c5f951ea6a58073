//! Sessions as the server's management API lists them.

use std::time::{Duration, Instant};

use cucumber::{then, when};

use super::{UsherWorld, opt, seconds};

#[then(regex = r#"^at most (\d+) sessions? of user "([^"]+)" (?:is|are) open$"#)]
async fn at_most_user_sessions(world: &mut UsherWorld, n: usize, user: String) {
    let user_id = world.user_id(&user);
    let sessions = world
        .ctx
        .target
        .api()
        .sessions(None)
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let open: Vec<_> = sessions
        .iter()
        .filter(|s| s.user_id.as_deref() == Some(user_id.as_str()))
        .collect();
    if open.len() > n {
        panic!(
            "{}",
            world.explain(format!(
                "expected at most {n} open session(s) of user \"{user}\" ({user_id}), the server lists {}: {open:#?}",
                open.len()
            ))
        );
    }
}

#[then(regex = r#"^the server lists (\d+) open sessions? of stream "([^"]+)"(?: within (\d+(?:\.\d+)?) seconds?)?$"#)]
async fn lists_sessions(world: &mut UsherWorld, n: usize, stream: String, within: String) {
    let name = world.stream_name(&stream);
    let within = opt(within).map(|w| world.ctx.bound(seconds(&w)));
    let deadline = Instant::now() + within.unwrap_or_default();
    loop {
        let sessions = world
            .ctx
            .target
            .api()
            .sessions(Some(&name))
            .await
            .unwrap_or_else(|e| panic!("listing sessions: {e}"));
        let open: Vec<_> = sessions
            .into_iter()
            .filter(|s| s.name.as_deref() == Some(name.as_str()))
            .collect();
        if open.len() == n {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{}",
                world.explain(format!(
                    "expected {n} open session(s) of stream \"{stream}\"{}, the server lists {}: {open:#?}",
                    within
                        .map(|w| format!(" within {} ms", w.as_millis()))
                        .unwrap_or_default(),
                    open.len()
                ))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[when(regex = r#"^the operator closes the session of viewer "([^"]+)" through the API$"#)]
async fn operator_closes(world: &mut UsherWorld, viewer: String) {
    let ip = world.viewer_ip(&viewer).to_string();
    let streams: Vec<String> = world
        .viewer(&viewer)
        .plays
        .iter()
        .map(|(p, _)| world.stream_name(&p.stream))
        .collect();
    let api = world.ctx.target.api();
    let sessions = api
        .sessions(None)
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let mine: Vec<_> = sessions
        .iter()
        .filter(|s| s.ip.as_deref() == Some(ip.as_str()))
        .filter(|s| s.name.as_ref().is_some_and(|n| streams.contains(n)))
        .collect();
    let [session] = mine.as_slice() else {
        panic!(
            "{}",
            world.explain(format!(
                "expected the server to list exactly one open session of viewer \"{viewer}\" ({ip} on {streams:?}), it lists {}: {mine:#?}",
                mine.len()
            ))
        );
    };
    api.close_session(&session.id)
        .await
        .unwrap_or_else(|e| panic!("closing session {}: {e}", session.id));
}
