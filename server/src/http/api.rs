//! The management API subset that touches authorization (vendor API v3 paths and shapes):
//! streams, sessions, admin view tokens and the server-wide token settings. Every call needs
//! the `edit_auth` credential (HTTP Basic); without one configured the API refuses all calls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use serde::Deserialize;
use uuid::Uuid;

use super::{HttpState, error_response};
use crate::config::{AuthBackendConfig, stream_from_api_json, stream_to_api_json};
use crate::context::constant_time_eq;
use crate::history::HistoryFilter;

type AppState = State<Arc<HttpState>>;

pub(super) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/streams", get(list_streams))
        .route(
            "/streams/{*name}",
            put(put_stream).get(get_stream).delete(delete_stream),
        )
        .route("/sessions", get(list_sessions))
        .route("/sessions/reauth", post(reauth_sessions))
        .route("/sessions/{id}", axum::routing::delete(delete_session))
        .route("/admin_view_token", post(admin_view_token))
        .route("/config", get(get_config).put(put_config))
        .route("/auth_backends", get(list_auth_backends))
        .route(
            "/auth_backends/{name}",
            put(put_auth_backend).get(get_auth_backend).delete(delete_auth_backend),
        )
        .layer(middleware::from_fn_with_state(state.clone(), require_credential))
        .with_state(state)
}

async fn require_credential(State(state): AppState, request: Request, next: Next) -> Response {
    if credential_ok(&state, request.headers()) {
        return next.run(request).await;
    }
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        "the management API needs the edit_auth credential",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"usher\""),
    );
    response
}

fn credential_ok(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.edit_auth else { return false };
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((login, password)) = text.split_once(':') else {
        return false;
    };
    constant_time_eq(login.as_bytes(), expected.login.as_bytes())
        & constant_time_eq(password.as_bytes(), expected.password.as_bytes())
}

async fn list_streams(State(state): AppState) -> Response {
    let streams: Vec<_> = state
        .ctx
        .streams
        .list()
        .iter()
        .map(|s| stream_to_api_json(&s.effective()))
        .collect();
    axum::Json(serde_json::json!({ "streams": streams })).into_response()
}

async fn put_stream(State(state): AppState, Path(name): Path<String>, body: Bytes) -> Response {
    let name = name.trim_matches('/').to_string();
    if name.is_empty() || name.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return error_response(StatusCode::BAD_REQUEST, format!("`{name}` is not a valid stream name"));
    }
    match stream_from_api_json(&name, &body) {
        Ok(config) => {
            tracing::info!(stream = %name, "stream configured through the API");
            let stream = state.ctx.streams.put(config);
            let effective = stream.effective();
            // Sessions the stream admitted without a backend do not outlive one being added.
            state.ctx.management().stream_reconfigured(
                &name,
                effective.on_play.as_ref(),
                effective.on_publish.as_ref(),
            );
            axum::Json(stream_to_api_json(&effective)).into_response()
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, format!("stream `{name}`: {e}")),
    }
}

/// Which layer of a stream's configuration a call reads or clears (CONF-04).
#[derive(Debug, Deserialize)]
struct PartSelector {
    part: Option<String>,
}

async fn get_stream(State(state): AppState, Path(name): Path<String>, Query(sel): Query<PartSelector>) -> Response {
    let name = name.trim_matches('/');
    let Some(stream) = state.ctx.streams.get(name) else {
        return error_response(StatusCode::NOT_FOUND, format!("no stream `{name}`"));
    };
    let json = match sel.part.as_deref() {
        None => stream_to_api_json(&stream.effective()),
        Some("config_on_disk") => stream_to_api_json(stream.base()),
        Some("config_override") => stream.overlay().to_json(),
        Some(other) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("part: `{other}` is not one of config_on_disk, config_override"),
            );
        }
    };
    axum::Json(json).into_response()
}

/// Deletes the stream, or with `?part=config_override` only its runtime override.
async fn delete_stream(State(state): AppState, Path(name): Path<String>, Query(sel): Query<PartSelector>) -> Response {
    let name = name.trim_matches('/');
    let done = match sel.part.as_deref() {
        None => state.ctx.streams.remove(name),
        Some("config_override") => state.ctx.streams.get(name).map(|s| s.clear_overlay()).is_some(),
        Some(other) => {
            return error_response(StatusCode::BAD_REQUEST, format!("part: `{other}` cannot be deleted"));
        }
    };
    if done {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_response(StatusCode::NOT_FOUND, format!("no stream `{name}`"))
    }
}

#[derive(Debug, Deserialize)]
struct SessionFilter {
    name: Option<String>,
    user_id: Option<String>,
    /// `true`: closed sessions from the session history instead of the open ones.
    closed: Option<String>,
    limit: Option<String>,
}

/// Open sessions, oldest first; with `closed=true` closed sessions from the history, newest
/// first. Both filter by `name` and `user_id`; `limit` caps the list.
async fn list_sessions(State(state): AppState, Query(filter): Query<SessionFilter>) -> Response {
    let limit = match filter.limit.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error_response(StatusCode::BAD_REQUEST, "limit: expected a whole number"),
    };
    let closed = match filter.closed.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("closed: `{other}` is not true or false"),
            );
        }
    };
    if closed {
        let query = HistoryFilter {
            user_id: filter.user_id,
            name: filter.name,
            limit,
        };
        return match state.history.blocking(move |h| h.closed(&query)).await {
            Ok(sessions) => axum::Json(serde_json::json!({ "sessions": sessions })).into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "session history read failed");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        };
    }
    let sessions: Vec<_> = state
        .ctx
        .management()
        .sessions()
        .into_iter()
        .filter(|s| filter.name.as_deref().is_none_or(|n| s.name == n))
        .filter(|s| filter.user_id.is_none() || s.user_id == filter.user_id)
        .take(limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)))
        .collect();
    axum::Json(serde_json::json!({ "sessions": sessions })).into_response()
}

/// `POST /sessions/reauth?name=STREAM` (REQ-07): re-check every open session of the stream.
async fn reauth_sessions(State(state): AppState, Query(filter): Query<SessionFilter>) -> Response {
    let Some(name) = filter.name else {
        return error_response(StatusCode::BAD_REQUEST, "reauth needs ?name=STREAM");
    };
    if state.ctx.streams.lookup(&name).is_none() {
        return error_response(StatusCode::NOT_FOUND, format!("no stream `{name}`"));
    }
    let count = state.ctx.management().reauth_stream(&name);
    axum::Json(serde_json::json!({ "estimated_count": count })).into_response()
}

async fn delete_session(State(state): AppState, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error_response(StatusCode::BAD_REQUEST, format!("`{id}` is not a session id (UUID)"));
    };
    if state.ctx.management().close_session(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_response(StatusCode::NOT_FOUND, format!("no open session {id}"))
    }
}

async fn admin_view_token(State(state): AppState) -> Response {
    match state.ctx.management().admin_tokens().mint(SystemTime::now()) {
        Some(token) => axum::Json(serde_json::json!({ "token": token })).into_response(),
        None => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin view tokens are disabled (STREAMER_ADMIN_VIEW_DISABLED=true)",
        ),
    }
}

fn config_json(state: &HttpState) -> serde_json::Value {
    serde_json::json!({
        "no_auto_token": state.ctx.management().settings().no_auto_token.load(Ordering::Relaxed),
        "auth_token": state.ctx.token_param(),
    })
}

async fn get_config(State(state): AppState) -> Response {
    axum::Json(config_json(&state)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigPatch {
    no_auto_token: Option<bool>,
    auth_token: Option<String>,
}

/// Changes only the server-wide settings given in the body.
async fn put_config(State(state): AppState, body: Bytes) -> Response {
    let patch: ConfigPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("server config: {e}")),
    };
    if let Some(param) = &patch.auth_token
        && (param.is_empty()
            || !param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("auth_token: `{param}` is not a query parameter name (letters, digits, _ and -)"),
        );
    }
    if let Some(on) = patch.no_auto_token {
        state
            .ctx
            .management()
            .settings()
            .no_auto_token
            .store(on, Ordering::Relaxed);
    }
    if let Some(param) = patch.auth_token {
        state.ctx.set_token_param(param);
    }
    tracing::info!(config = %config_json(&state), "server settings changed through the API");
    axum::Json(config_json(&state)).into_response()
}

/// `GET /auth_backends`: every configurator block in the vendor's JSON shape (T7).
async fn list_auth_backends(State(state): AppState) -> Response {
    let blocks: Vec<_> = state
        .configurator
        .names()
        .iter()
        .filter_map(|n| state.configurator.get(n))
        .map(|b| b.to_api_json())
        .collect();
    axum::Json(serde_json::json!({ "auth_backends": blocks })).into_response()
}

/// `PUT /auth_backends/NAME`: creates or replaces a configurator block; the next request on
/// an `auth://NAME` stream uses it (CZR-05).
async fn put_auth_backend(State(state): AppState, Path(name): Path<String>, body: Bytes) -> Response {
    if name.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "an auth_backend needs a name");
    }
    match AuthBackendConfig::from_api_json(&name, &body) {
        Ok(block) => {
            tracing::info!(auth_backend = %name, "auth_backend configured through the API");
            let json = block.to_api_json();
            state.configurator.put(block);
            axum::Json(json).into_response()
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, format!("auth_backend `{name}`: {e}")),
    }
}

async fn get_auth_backend(State(state): AppState, Path(name): Path<String>) -> Response {
    match state.configurator.get(&name) {
        Some(block) => axum::Json(block.to_api_json()).into_response(),
        None => error_response(StatusCode::NOT_FOUND, format!("no auth_backend `{name}`")),
    }
}

async fn delete_auth_backend(State(state): AppState, Path(name): Path<String>) -> Response {
    if state.configurator.remove(&name) {
        tracing::info!(auth_backend = %name, "auth_backend deleted through the API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_response(StatusCode::NOT_FOUND, format!("no auth_backend `{name}`"))
    }
}
