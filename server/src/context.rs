//! What every front end shares: the stream table, the server-wide token settings, the one
//! admission path (play, VOD, publish) that all protocols go through, and the management view
//! of the sessions for the API.
//!
//! The auth core itself is not reachable from a front end: [`Context`] keeps it private and
//! hands out only [`Admission`] (admit, hold a connection's session open, read a session's
//! archive ranges) and [`Management`] (list, close, re-check sessions). So a front end cannot
//! ask the core directly, skip the stream checks around it, or touch the registry:
//!
//! ```compile_fail
//! fn misuse(ctx: &usher_server::context::Context) {
//!     let _ = &ctx.core; // private: front ends go through `ctx.admission()`
//! }
//! ```

use std::sync::{Arc, RwLock};

use serde_json::Value;
use uuid::Uuid;

use crate::auth::admin::AdminTokens;
use crate::auth::{
    AuthCore, AuthSettings, CallKind, ConnectionGuard, DenyReason, PlayRequest, Proto, SessionHandle, SessionInfo,
    Verdict,
};
use crate::config::AuthSpec;
use crate::media::{FileError, FileProblem, MediaError, MediaSource, PublishError, Publisher, VodMedia};
use crate::streams::{MaterialiseError, Stream, Streams, VodRequest};

/// Why a play or publish request was not admitted, sorted by what the client should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such stream (HTTP 404, RTSP 404, RTMP rejected).
    NotFound(String),
    /// Denied (HTTP/RTSP 403, RTMP rejected); the reason is for logs and error bodies.
    Denied(DenyReason),
    /// The backend redirected (HTTP 302; other protocols treat it as a deny).
    Redirect(String),
    /// The stream cannot serve: no media, or a publish point that already has a publisher.
    Unavailable(String),
}

impl Refusal {
    pub fn describe(&self) -> String {
        match self {
            Refusal::NotFound(name) => format!("no stream `{name}`"),
            Refusal::Denied(reason) => deny_text(*reason).to_string(),
            Refusal::Redirect(location) => format!("redirected to {location}"),
            Refusal::Unavailable(why) => why.clone(),
        }
    }
}

// The texts below name the limits.
const _: () = assert!(crate::auth::MAX_TOKEN_LEN == 4096 && crate::auth::MAX_NAME_LEN == 1024);

pub fn deny_text(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::Backend => "refused by the authorization backend",
        DenyReason::Banned => "refused: a recent denial is cached",
        DenyReason::Kicked => "refused: closed by a per-user session limit",
        DenyReason::NoToken => "refused: a token is required",
        DenyReason::DomainLock => "refused: the referring site is not allowed",
        DenyReason::CountryGate => "refused: the client's country is in the stream's disallowed_countries",
        DenyReason::NoDecision => "refused: the authorization backend gave no decision",
        DenyReason::ProtocolOff => "refused: this protocol is switched off for the stream",
        DenyReason::Gone => "refused: the session was closed",
        DenyReason::BadPassword => "refused: wrong or missing publish password",
        DenyReason::TokenTooLong => "refused: the token is longer than 4096 bytes",
        DenyReason::NameTooLong => "refused: the stream name is longer than 1024 bytes",
    }
}

/// An admitted viewer: the stream, its media and the session.
#[derive(Debug)]
pub struct Admitted {
    pub stream: Arc<Stream>,
    pub media: Arc<MediaSource>,
    pub session: SessionHandle,
}

/// An admitted viewer of a VOD file.
#[derive(Debug)]
pub struct AdmittedVod {
    pub media: Arc<VodMedia>,
    pub session: SessionHandle,
}

/// An admitted publisher.
#[derive(Debug)]
pub struct AdmittedPublisher {
    pub stream: Arc<Stream>,
    pub publisher: Publisher,
    pub session: SessionHandle,
}

#[derive(Debug)]
pub struct Context {
    core: AuthCore,
    admission: Admission,
    pub streams: Arc<Streams>,
    /// The query parameter that carries the token (CFG-07); the API may change it.
    auth_token_param: RwLock<String>,
}

impl Context {
    pub fn new(core: AuthCore, streams: Arc<Streams>, auth_token_param: String) -> Context {
        Context {
            admission: Admission {
                core: core.clone(),
                streams: streams.clone(),
            },
            core,
            streams,
            auth_token_param: RwLock::new(auth_token_param),
        }
    }

    /// The one admission path of every protocol.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The sessions as the management API sees them.
    pub fn management(&self) -> Management<'_> {
        Management { core: &self.core }
    }

    pub fn token_param(&self) -> String {
        self.auth_token_param.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_token_param(&self, name: String) {
        *self.auth_token_param.write().unwrap_or_else(|e| e.into_inner()) = name;
    }

    /// The token of a client URL's query (TOK-01): the parameter named by `auth_token`.
    pub fn token_from_query(&self, query: &[(String, String)]) -> Option<String> {
        let param = self.token_param();
        query.iter().find(|(k, _)| *k == param).map(|(_, v)| v.clone())
    }
}

/// The admission path: what a front end may ask of the auth core. Every play, VOD and
/// publish request of every protocol goes through [`admit_play`](Self::admit_play),
/// [`admit_vod`](Self::admit_vod) or [`admit_publish`](Self::admit_publish); a persistent
/// connection then holds its session open with [`attach`](Self::attach).
#[derive(Debug)]
pub struct Admission {
    core: AuthCore,
    streams: Arc<Streams>,
}

impl Admission {
    /// Admits a viewer of `req.name` over `req.proto`: the stream must exist and serve that
    /// protocol, and `on_play` must allow. Checked again after the decision, since the very
    /// answer that admitted the client may switch the protocol off (CONF-03). A name under a
    /// template is decided on with the template's settings and becomes a stream only once
    /// granted (see [`Streams::materialise`]).
    pub async fn admit_play(&self, req: PlayRequest) -> Result<Admitted, Refusal> {
        debug_assert_eq!(req.kind, CallKind::Play);
        refuse_oversized(&req)?;
        let name = req.name.clone();
        let stream = self
            .streams
            .lookup(&name)
            .ok_or_else(|| Refusal::NotFound(name.clone()))?;
        let proto = req.proto;
        if !serves(&stream, proto) {
            return Err(Refusal::Denied(DenyReason::ProtocolOff));
        }
        let config = stream.effective();
        let session = match self.core.authorize(config.on_play.as_ref(), req).await {
            Verdict::Allow(handle) => handle,
            Verdict::Deny { reason, .. } => return Err(Refusal::Denied(reason)),
            Verdict::Redirect { location } => return Err(Refusal::Redirect(location)),
        };
        let stream = self.streams.materialise(&name).map_err(materialise_refusal)?;
        if !serves(&stream, proto) {
            return Err(Refusal::Denied(DenyReason::ProtocolOff));
        }
        if session.is_ended() {
            return Err(Refusal::Denied(DenyReason::Gone));
        }
        let media = stream.media().map_err(|e| {
            tracing::warn!(stream = stream.name(), error = %e, "stream has no media");
            Refusal::Unavailable(format!("stream `{}` has no media: {e}", stream.name()))
        })?;
        Ok(Admitted { stream, media, session })
    }

    /// Admits a viewer of a VOD file (`req.name` is `LOCATION/FILE`): the location's
    /// `on_play` decides like a stream's (CFG-01), then the file is read. A missing file is
    /// `NotFound`, any other problem with it `Unavailable` naming the file.
    pub async fn admit_vod(&self, req: PlayRequest, vod: &VodRequest) -> Result<AdmittedVod, Refusal> {
        debug_assert_eq!(req.kind, CallKind::Play);
        refuse_oversized(&req)?;
        let name = req.name.clone();
        let session = match self.core.authorize(vod.location.on_play.as_ref(), req).await {
            Verdict::Allow(handle) => handle,
            Verdict::Deny { reason, .. } => return Err(Refusal::Denied(reason)),
            Verdict::Redirect { location } => return Err(Refusal::Redirect(location)),
        };
        if session.is_ended() {
            return Err(Refusal::Denied(DenyReason::Gone));
        }
        let media = self.streams.vod_media(vod).map_err(|e| {
            tracing::warn!(vod = name, error = %e, "VOD file cannot play");
            match e {
                MediaError::File(FileError {
                    reason: FileProblem::NotFound,
                    ..
                }) => Refusal::NotFound(name.clone()),
                e => Refusal::Unavailable(e.to_string()),
            }
        })?;
        Ok(AdmittedVod { media, session })
    }

    /// Admits a publisher: the stream must exist with a `publish://` input, the `password`
    /// must match when the stream has one (PUB-04), and `on_publish` must allow (PUB-01/02).
    /// `password` is what the client sent (`?password=` in the URL).
    pub async fn admit_publish(&self, req: PlayRequest, password: Option<&str>) -> Result<AdmittedPublisher, Refusal> {
        debug_assert_eq!(req.kind, CallKind::Publish);
        refuse_oversized(&req)?;
        let name = req.name.clone();
        let stream = self
            .streams
            .lookup(&name)
            .ok_or_else(|| Refusal::NotFound(name.clone()))?;
        let config = stream.effective();
        if let Some(expected) = &config.password
            && !password.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
        {
            tracing::info!(stream = stream.name(), ip = %req.ip, "publish refused: wrong or missing password");
            return Err(Refusal::Denied(DenyReason::BadPassword));
        }
        let session = match self.core.authorize(config.on_publish.as_ref(), req).await {
            Verdict::Allow(handle) => handle,
            Verdict::Deny { reason, .. } => return Err(Refusal::Denied(reason)),
            Verdict::Redirect { location } => return Err(Refusal::Redirect(location)),
        };
        let stream = self.streams.materialise(&name).map_err(materialise_refusal)?;
        let media = stream.media().map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let publisher = media.publisher().map_err(|e| match e {
            PublishError::NotPublishable(_) | PublishError::Busy => Refusal::Unavailable(e.to_string()),
        })?;
        Ok(AdmittedPublisher {
            stream,
            publisher,
            session,
        })
    }

    /// Binds a persistent connection to its admitted session: the session stays open while
    /// the guard lives (SESS-07).
    pub fn attach(&self, session: &SessionHandle) -> ConnectionGuard {
        self.core.attach(session)
    }

    /// The archive ranges the backend allowed this session (ADV-02); see
    /// [`AuthCore::allowed_dvr_ranges`].
    pub fn allowed_dvr_ranges(&self, session: &SessionHandle) -> Option<Option<Value>> {
        self.core.allowed_dvr_ranges(session)
    }
}

/// The sessions as the management API sees and changes them (API-01..03, REQ-07, ADM-01).
#[derive(Debug, Clone, Copy)]
pub struct Management<'a> {
    core: &'a AuthCore,
}

impl<'a> Management<'a> {
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.core.sessions()
    }

    pub fn close_session(&self, id: Uuid) -> bool {
        self.core.close_session(id)
    }

    pub fn reauth_stream(&self, stream: &str) -> usize {
        self.core.reauth_stream(stream)
    }

    pub fn stream_reconfigured(
        &self,
        stream: &str,
        on_play: Option<&AuthSpec>,
        on_publish: Option<&AuthSpec>,
    ) -> usize {
        self.core.stream_reconfigured(stream, on_play, on_publish)
    }

    pub fn admin_tokens(&self) -> &'a AdminTokens {
        self.core.admin_tokens()
    }

    pub fn settings(&self) -> &'a AuthSettings {
        self.core.settings()
    }
}

/// Over-long tokens and names are refused before a stream is looked up (a template would make
/// one) or a backend asked.
fn refuse_oversized(req: &PlayRequest) -> Result<(), Refusal> {
    match crate::auth::refuse_oversized(req) {
        Some(reason) => Err(Refusal::Denied(reason)),
        None => Ok(()),
    }
}

fn materialise_refusal(error: MaterialiseError) -> Refusal {
    match error {
        MaterialiseError::NotFound(name) => Refusal::NotFound(name),
        full @ MaterialiseError::Full(_) => Refusal::Unavailable(full.to_string()),
    }
}

fn serves(stream: &Stream, proto: Proto) -> bool {
    let switch = proto.switch_name().unwrap_or_default();
    stream.effective().protocols.get(switch) != Some(false)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
