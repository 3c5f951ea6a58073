//! Server bootstrap: binds the listeners of a [`Config`], wires the auth core to the stream
//! table and runs every front end until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::admin::AdminTokens;
use crate::auth::backend::Router;
use crate::auth::configurator::Configurator;
use crate::auth::geoip::GeoIp;
use crate::auth::script::ScriptBackend;
use crate::auth::{AuthCore, AuthSettings, HttpBackend};
use crate::config::Config;
use crate::context::Context;
use crate::dvr::Dvr;
use crate::history::History;
use crate::http::{self, HttpState};
use crate::listener::{Caps, ConnectionCaps, Listener, Listening, Protocol};
use crate::media::MediaRoot;
use crate::streams::{Streams, TemplateLimits};

/// How long shutdown waits for open responses before cutting them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Environment switch that disables admin view tokens (ADM-03).
pub const ADMIN_VIEW_DISABLED_ENV: &str = "STREAMER_ADMIN_VIEW_DISABLED";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the configuration has no `http` listener")]
    NoHttp,
    /// An HTTP client could not be built (its TLS setup failed).
    #[error("cannot build the HTTP client of the {which}: {source}")]
    Client {
        /// Whose client: the backend calls, or the Lua scripts' `http.get`.
        which: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// `session_history` names a store that cannot be opened (the error names the store).
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    /// `geoip_db` names a file that is not a readable MaxMind database (the error names it).
    #[error(transparent)]
    GeoIp(#[from] crate::auth::geoip::GeoIpError),
    /// `session_store` names an address the Redis client refuses.
    #[error(transparent)]
    Store(#[from] crate::auth::store::StoreError),
}

/// Binds `addr` for `protocol` with `caps`: the listener and the address it got.
async fn bind(protocol: Protocol, addr: SocketAddr, caps: Caps) -> Result<(Listener, SocketAddr), ServerError> {
    let what = protocol.name();
    let listener = Listener::bind(addr, protocol, caps)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { what, addr, source })?;
    Ok((listener, bound))
}

async fn bind_optional(
    protocol: Protocol,
    addr: Option<SocketAddr>,
    caps: Caps,
) -> Result<Option<(Listener, SocketAddr)>, ServerError> {
    match addr {
        None => Ok(None),
        Some(addr) => bind(protocol, addr, caps).await.map(Some),
    }
}

/// The caps of `config`'s listeners: derived from the descriptor limit of this process, then
/// the configuration's overrides.
pub fn connection_caps(config: &crate::config::Config) -> ConnectionCaps {
    let listening = Listening {
        rtmp: config.rtmp.is_some(),
        rtsp: config.rtsp.is_some(),
        mysql: config.mysql.is_some(),
    };
    let derived = ConnectionCaps::derive(crate::listener::descriptor_limit(), listening);
    let set = &config.connection_limits;
    let caps = ConnectionCaps {
        http: derived.http.overridden(&set.http),
        rtmp: derived.rtmp.overridden(&set.rtmp),
        rtsp: derived.rtsp.overridden(&set.rtsp),
        mysql: derived.mysql.overridden(&set.mysql),
        ..derived
    };
    let total = caps.http.max_connections
        + usize::from(listening.rtmp) * caps.rtmp.max_connections
        + usize::from(listening.rtsp) * caps.rtsp.max_connections
        + usize::from(listening.mysql) * caps.mysql.max_connections;
    if u64::try_from(total).unwrap_or(u64::MAX) > caps.descriptors {
        tracing::warn!(
            descriptors = caps.descriptors,
            connections = total,
            "the configured connection caps add up to more than the descriptor limit; accepts will fail before the caps are reached"
        );
    }
    caps
}

/// What one client can make the front ends hold or wait for (docs/security.md, "Limits").
/// [`Server::start`] uses the defaults; tests shorten the timeouts.
#[derive(Debug, Clone, Default)]
pub struct ServerLimits {
    pub http: http::Limits,
    pub rtsp: crate::rtsp::Limits,
}

/// Entry point of the reference server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Binds every listener of `config` (port 0 allowed) and starts serving.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        Server::start_with_limits(config, ServerLimits::default()).await
    }

    /// [`start`](Self::start) with other limits for the front ends.
    pub async fn start_with_limits(config: Config, limits: ServerLimits) -> Result<RunningServer, ServerError> {
        let http_addr = config.http.ok_or(ServerError::NoHttp)?;
        let caps = connection_caps(&config);
        let (listener, bound) = bind(Protocol::Http, http_addr, caps.http).await?;

        let backend: Arc<HttpBackend> = Arc::new(HttpBackend::new().map_err(|source| ServerError::Client {
            which: "auth backend calls",
            source,
        })?);
        let script = ScriptBackend::new().map_err(|source| ServerError::Client {
            which: "Lua scripts",
            source,
        })?;
        let geoip = config.geoip_db.as_deref().map(GeoIp::open).transpose()?;
        let configurator = Arc::new(Configurator::new(config.auth_backends.clone(), backend.clone(), geoip));
        let secret = config.server_secret.clone().unwrap_or_else(|| {
            let bytes: [u8; 32] = rand::random();
            hex::encode(bytes)
        });
        let admin_disabled = std::env::var(ADMIN_VIEW_DISABLED_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let core = AuthCore::new(
            Arc::new(Router {
                http: backend,
                script: Some(Arc::new(script)),
                configurator: Some(configurator.clone()),
            }),
            AdminTokens::new(secret, config.admin_token_ttl, admin_disabled),
            AuthSettings {
                no_auto_token: AtomicBool::new(config.no_auto_token),
                http_session_idle: config.http_session_idle,
                soft_limitation_delay: config.soft_limitation_delay,
            },
        );
        if let Some(settings) = &config.session_store {
            let store = crate::auth::store::SessionStore::new(settings)?;
            tracing::info!(
                node = store.node(),
                url = %crate::redact::Url(&settings.url),
                on_loss = store.on_loss().as_str(),
                "sharing sessions through a session store"
            );
            core.set_store(Arc::new(store));
        }
        match configurator.geoip() {
            Some(db) => core.set_geoip(db),
            None => warn_gates_without_geoip(&config),
        }
        let media_root = config
            .media_root
            .as_deref()
            .map_or_else(MediaRoot::default, MediaRoot::new);
        let streams = Arc::new(
            Streams::with_media(
                config.streams_with_templates(),
                config.templates.clone(),
                media_root,
                config.vods.clone(),
            )
            .with_template_limits(TemplateLimits {
                idle: config.template_stream_idle,
                max: config.template_stream_limit as usize,
            }),
        );
        core.set_stream_control(streams.clone());
        let retention = std::time::Duration::from_secs(u64::from(config.session_history.retention_days) * 86_400);
        let history_path = config.session_history.path.as_deref().map(std::path::Path::new);
        let history = History::open_bounded(history_path, retention, config.session_history.max_rows())?;

        let rtmp = bind_optional(Protocol::Rtmp, config.rtmp, caps.rtmp).await?;
        let rtsp = bind_optional(Protocol::Rtsp, config.rtsp, caps.rtsp).await?;
        let mysql = bind_optional(Protocol::Mysql, config.mysql, caps.mysql).await?;

        let ctx = Arc::new(Context::new(core.clone(), streams.clone(), config.auth_token.clone()));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(core.clone().run_sweeper(shutdown.clone()));
        tasks.spawn(core.clone().run_store(shutdown.clone()));
        tasks.spawn(streams.clone().run_sweeper(shutdown.clone()));
        if let Some(closed) = core.closed_sessions() {
            tasks.spawn(history.clone().run_writer(closed, shutdown.clone()));
        }
        let dvr = Dvr::new(streams.clone());
        tasks.spawn(dvr.clone().run_recorder(shutdown.clone()));
        let state = Arc::new(HttpState {
            ctx: ctx.clone(),
            edit_auth: config.edit_auth.clone(),
            configurator,
            history: history.clone(),
            dvr,
        });
        let http_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = http::run_with_limits(listener, state, http_shutdown, limits.http).await {
                tracing::error!(error = %e, "http front end stopped");
            }
        });
        let rtmp_addr = rtmp.as_ref().map(|(_, a)| *a);
        if let Some((listener, _)) = rtmp {
            let (ctx, stop) = (ctx.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::rtmp::run(listener, ctx, stop).await {
                    tracing::error!(error = %e, "rtmp front end stopped");
                }
            });
        }
        let rtsp_addr = rtsp.as_ref().map(|(_, a)| *a);
        if let Some((listener, _)) = rtsp {
            let (ctx, stop, rtsp_limits) = (ctx.clone(), shutdown.clone(), limits.rtsp.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::rtsp::run_with_limits(listener, ctx, stop, rtsp_limits).await {
                    tracing::error!(error = %e, "rtsp front end stopped");
                }
            });
        }
        let mysql_addr = mysql.as_ref().map(|(_, a)| *a);
        if let Some((listener, _)) = mysql {
            let (history, credential, stop) = (history.clone(), config.edit_auth.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::mysql::run(listener, history, credential, stop).await {
                    tracing::error!(error = %e, "mysql front end stopped");
                }
            });
        }
        tracing::info!(http = %bound, rtmp = ?rtmp_addr, rtsp = ?rtsp_addr, mysql = ?mysql_addr, descriptors = caps.descriptors, "usher server started");
        Ok(RunningServer {
            caps,
            http_addr: bound,
            rtmp_addr,
            rtsp_addr,
            mysql_addr,
            core,
            streams,
            history,
            shutdown,
            tasks,
        })
    }
}

/// A started server. Dropping it without [`shutdown`](Self::shutdown) stops it too.
#[derive(Debug)]
pub struct RunningServer {
    caps: ConnectionCaps,
    http_addr: SocketAddr,
    rtmp_addr: Option<SocketAddr>,
    rtsp_addr: Option<SocketAddr>,
    mysql_addr: Option<SocketAddr>,
    core: AuthCore,
    streams: Arc<Streams>,
    history: History,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The connection caps of each listener, as derived and configured at start.
    pub fn connection_caps(&self) -> ConnectionCaps {
        self.caps
    }

    /// The RTMP address, when the config has `rtmp`.
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp_addr
    }

    /// The RTSP address, when the config has `rtsp`.
    pub fn rtsp_addr(&self) -> Option<SocketAddr> {
        self.rtsp_addr
    }

    /// The MySQL-protocol address of the session history, when the config has `mysql`.
    pub fn mysql_addr(&self) -> Option<SocketAddr> {
        self.mysql_addr
    }

    /// The session history store.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The auth core, for in-process tests of the server itself.
    pub fn core(&self) -> &AuthCore {
        &self.core
    }

    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    /// Stops accepting and waits for open responses to end; long-lived ones (an HTTP MPEG-TS
    /// viewer) are cut after [`SHUTDOWN_GRACE`].
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("shutdown grace ended; cutting remaining connections");
            self.tasks.shutdown().await;
        }
    }

    /// Resolves when the server has been asked to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Country gates on `on_play`/`on_publish` lines match nobody without `geoip_db`: say so once
/// per line at start, as the configurator does for its country rules.
fn warn_gates_without_geoip(config: &Config) {
    let specs = config
        .streams
        .iter()
        .flat_map(|s| [("stream", &s.name, &s.on_play), ("stream", &s.name, &s.on_publish)])
        .chain(
            config
                .templates
                .iter()
                .map(|t| &t.stream)
                .flat_map(|t| [("template", &t.name, &t.on_play), ("template", &t.name, &t.on_publish)]),
        )
        .chain(config.vods.iter().map(|v| ("vod", &v.name, &v.on_play)));
    for (kind, name, spec) in specs {
        if spec.as_ref().is_some_and(crate::auth::geo_gate::has_gates) {
            tracing::warn!(
                %kind,
                name = %name,
                "allowed_countries/disallowed_countries never match: no geoip_db is configured"
            );
        }
    }
}
