//! Sessions as the server's management API lists them.

use cucumber::then;

use super::UsherWorld;

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

#[then(regex = r#"^the server lists (\d+) open sessions? of stream "([^"]+)"$"#)]
async fn lists_sessions(world: &mut UsherWorld, n: usize, stream: String) {
    let name = world.stream_name(&stream);
    let sessions = world
        .ctx
        .target
        .api()
        .sessions(Some(&name))
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let open: Vec<_> = sessions
        .iter()
        .filter(|s| s.name.as_deref() == Some(name.as_str()))
        .collect();
    if open.len() != n {
        panic!(
            "{}",
            world.explain(format!(
                "expected {n} open session(s) of stream \"{stream}\", the server lists {}: {open:#?}",
                open.len()
            ))
        );
    }
}
