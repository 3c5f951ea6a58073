//! Server-wide settings (`no_auto_token`, `auth_token`) and admin view tokens. Scenarios that
//! change server-wide settings are `@serial`; what they change is put back in the after-hook,
//! even when a step failed.

use cucumber::{given, then};
use serde_json::json;

use super::UsherWorld;

#[given(regex = r"^the server refuses requests without a token$")]
async fn no_auto_token(world: &mut UsherWorld) {
    let api = world.ctx.target.api();
    let before = api
        .server_config()
        .await
        .unwrap_or_else(|e| panic!("reading the server settings: {e}"));
    let previous = before
        .get("no_auto_token")
        .cloned()
        .unwrap_or_else(|| panic!("the server settings have no `no_auto_token`: {before}"));
    if world.restore_server_config.is_none() {
        world.restore_server_config = Some(json!({ "no_auto_token": previous }));
    }
    api.put_server_config(&json!({ "no_auto_token": true }))
        .await
        .unwrap_or_else(|e| panic!("setting no_auto_token: {e}"));
    let after = api
        .server_config()
        .await
        .unwrap_or_else(|e| panic!("reading the server settings: {e}"));
    assert_eq!(
        after.get("no_auto_token"),
        Some(&json!(true)),
        "PUT config {{\"no_auto_token\":true}} did not take: {after}"
    );
}

#[given(regex = r"^the operator has minted an admin view token$")]
async fn minted(world: &mut UsherWorld) {
    let token = world
        .ctx
        .target
        .api()
        .mint_admin_token()
        .await
        .unwrap_or_else(|e| panic!("minting an admin view token: {e}"));
    assert!(
        token.starts_with("ADM"),
        "an admin view token starts with ADM (ADM-02), got `{token}`"
    );
    world.admin_token = Some(token);
}

#[then(regex = r"^the admin view token has the shape ADM1-<unix seconds>-<40 hex digits>$")]
async fn admin_token_shape(world: &mut UsherWorld) {
    let token = world
        .admin_token
        .as_deref()
        .expect("no admin view token was minted in this scenario");
    let parts: Vec<&str> = token.split('-').collect();
    let ok = matches!(parts.as_slice(), ["ADM1", ts, sig]
        if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit())
            && sig.len() == 40 && sig.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        ok,
        "the admin view token `{token}` is not ADM1-<unix seconds>-<40 hex digits> (ADM-02)"
    );
}
