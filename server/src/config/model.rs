//! The configuration model shared by the file parser, the management API and the running server.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use super::parse::auth_backend::{AuthBackendConfig, BackendUrl, IpPrefix, parse_country};

/// Default name of the query parameter carrying the viewer token (CFG-07).
pub const DEFAULT_AUTH_TOKEN_PARAM: &str = "token";
/// Default idle time after which an HTTP-delivered session closes (AMB-13).
pub const DEFAULT_HTTP_SESSION_IDLE: Duration = Duration::from_secs(30);
/// Default lifetime of an admin view token (AMB-17).
pub const DEFAULT_ADMIN_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Default time a stream made from a template is kept with nobody using it.
pub const DEFAULT_TEMPLATE_STREAM_IDLE: Duration = Duration::from_secs(60);
/// Default most streams made from templates at once.
pub const DEFAULT_TEMPLATE_STREAM_LIMIT: u32 = 1000;
/// Default grace of `soft_limitation` (AMB-3); the same value as the auth core's default.
pub const DEFAULT_SOFT_LIMITATION_DELAY: Duration = Duration::from_secs(30);
/// Largest `template_stream_limit` accepted.
pub const MAX_TEMPLATE_STREAM_LIMIT: u32 = 1_000_000;

/// A whole server configuration, as read from a Flussonic-style file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `http PORT;` or `http ADDR:PORT;`
    pub http: Option<SocketAddr>,
    /// `rtmp PORT;`
    pub rtmp: Option<SocketAddr>,
    /// `rtsp PORT;`
    pub rtsp: Option<SocketAddr>,
    /// `auth_token NAME;` — the query parameter that carries the token (CFG-07).
    pub auth_token: String,
    /// `no_auto_token;` — refuse token-less requests instead of generating a token (TOK-03).
    pub no_auto_token: bool,
    /// `edit_auth LOGIN PASSWORD;` — the management API credential (HTTP Basic).
    pub edit_auth: Option<Credential>,
    /// `server_secret TEXT;` — key of admin view tokens; random per start when absent.
    pub server_secret: Option<String>,
    /// `admin_token_ttl SECONDS;`
    pub admin_token_ttl: Duration,
    /// `http_session_idle SECONDS;`
    pub http_session_idle: Duration,
    /// `media_root PATH;` — the directory `file://` inputs (and relative VOD storages) are
    /// resolved under; `None` means `media` under the server's working directory.
    pub media_root: Option<String>,
    /// `template_stream_idle SECONDS;` — how long a stream made from a template stays with no
    /// viewer and no publisher before it is removed (configured streams stay).
    pub template_stream_idle: Duration,
    /// `template_stream_limit N;` — the most streams made from templates at once; a granted
    /// client beyond it is refused as unavailable (HTTP 503).
    pub template_stream_limit: u32,
    /// `soft_limitation_delay SECONDS;` — the grace before an excess session of a stream with
    /// `soft_limitation=true` is closed (LIM-05, AMB-3; the vendor documents 30 or 90 s).
    pub soft_limitation_delay: Duration,
    pub streams: Vec<StreamConfig>,
    pub templates: Vec<TemplateConfig>,
    /// `vod NAME { storage ROOT; on_play …; }` locations.
    pub vods: Vec<VodConfig>,
    /// `geoip_db PATH;` — a MaxMind-format country database for `country` rules (CZR-07).
    pub geoip_db: Option<String>,
    /// `auth_backend NAME { … }` configurator blocks, named by `auth://NAME` targets (T7).
    pub auth_backends: Vec<AuthBackendConfig>,
    /// `mysql PORT;` — the MySQL-protocol listener on the session history (credential:
    /// `edit_auth`).
    pub mysql: Option<SocketAddr>,
    /// `session_history PATH [retention=DAYS] [max_rows=N];`
    pub session_history: SessionHistoryConfig,
    /// `session_store redis://HOST:PORT[/DB] [node=NAME] [on_loss=open|closed];` — sessions of
    /// user ids and bans shared with other servers through Redis; `None` keeps them in this
    /// server's memory only.
    pub session_store: Option<SessionStoreConfig>,
    /// `max_connections=N max_connections_per_ip=M` on the listen directives.
    pub connection_limits: ConnectionLimits,
}

/// `max_connections=N` and `max_connections_per_ip=M` after a listen directive's address
/// (`rtmp 1935 max_connections=2000;`): overrides of the caps the server derives from its
/// descriptor limit (`crate::listener::ConnectionCaps::derive`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenLimits {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

/// The [`ListenLimits`] of each listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub http: ListenLimits,
    pub rtmp: ListenLimits,
    pub rtsp: ListenLimits,
    pub mysql: ListenLimits,
}

/// Largest `max_connections=` / `max_connections_per_ip=` accepted.
pub const MAX_LISTEN_CONNECTIONS: usize = 1 << 24;

/// `session_store redis://HOST:PORT[/DB] [node=NAME] [on_loss=open|closed];` — the shared
/// session store of a cluster of edge servers (docs/spec.md, "Shared session store").
#[derive(Clone, PartialEq, Eq)]
pub struct SessionStoreConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, checked by the parser; may hold a password, so it
    /// is never logged whole ([`crate::redact::url`]).
    pub url: String,
    /// `node=NAME`: how this server is named in the store; `None` lets the server pick one.
    pub node: Option<String>,
    /// `on_loss=`: what a request that needs the store gets while Redis is unreachable.
    pub on_loss: OnStoreLoss,
}

impl fmt::Debug for SessionStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStoreConfig")
            .field("url", &crate::redact::Url(&self.url))
            .field("node", &self.node)
            .field("on_loss", &self.on_loss)
            .finish()
    }
}

/// What a server does while its session store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnStoreLoss {
    /// `on_loss=open` (the default): decide locally, as a server without a store does (limits
    /// and bans then hold per server only), and share again when Redis is back.
    #[default]
    Open,
    /// `on_loss=closed`: refuse every request that would open a new session (no backend call);
    /// sessions already admitted go on.
    Closed,
}

impl OnStoreLoss {
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreLoss::Open => "open",
            OnStoreLoss::Closed => "closed",
        }
    }
}

/// Longest `node=NAME` accepted, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 64;

/// Default retention of the session history, in days.
pub const DEFAULT_HISTORY_RETENTION_DAYS: u32 = 7;
/// Largest `retention=DAYS` accepted (100 years).
pub const MAX_HISTORY_RETENTION_DAYS: u32 = 36_500;

/// Default bound of an in-memory session history, in records (`max_rows=N`).
pub const DEFAULT_HISTORY_MAX_ROWS_MEMORY: u64 = 100_000;
/// Default bound of a session history kept in a file, in records.
pub const DEFAULT_HISTORY_MAX_ROWS_FILE: u64 = 1_000_000;
/// Largest `max_rows=N` accepted.
pub const MAX_HISTORY_MAX_ROWS: u64 = 1_000_000_000;

/// `session_history PATH [retention=DAYS] [max_rows=N];` — where closed sessions are kept, for
/// how long, and how many at most (the oldest go first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHistoryConfig {
    /// An SQLite file (relative paths from the working directory); `None` (written `:memory:`)
    /// keeps the history in memory only.
    pub path: Option<String>,
    pub retention_days: u32,
    /// `None`: [`DEFAULT_HISTORY_MAX_ROWS_MEMORY`] or [`DEFAULT_HISTORY_MAX_ROWS_FILE`].
    pub max_rows: Option<u64>,
}

impl SessionHistoryConfig {
    /// The bound on records in effect.
    pub fn max_rows(&self) -> u64 {
        self.max_rows.unwrap_or(if self.path.is_some() {
            DEFAULT_HISTORY_MAX_ROWS_FILE
        } else {
            DEFAULT_HISTORY_MAX_ROWS_MEMORY
        })
    }
}

impl Default for SessionHistoryConfig {
    fn default() -> Self {
        SessionHistoryConfig {
            path: None,
            retention_days: DEFAULT_HISTORY_RETENTION_DAYS,
            max_rows: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: None,
            rtmp: None,
            rtsp: None,
            auth_token: DEFAULT_AUTH_TOKEN_PARAM.to_string(),
            no_auto_token: false,
            edit_auth: None,
            server_secret: None,
            admin_token_ttl: DEFAULT_ADMIN_TOKEN_TTL,
            http_session_idle: DEFAULT_HTTP_SESSION_IDLE,
            media_root: None,
            template_stream_idle: DEFAULT_TEMPLATE_STREAM_IDLE,
            template_stream_limit: DEFAULT_TEMPLATE_STREAM_LIMIT,
            soft_limitation_delay: DEFAULT_SOFT_LIMITATION_DELAY,
            streams: Vec::new(),
            templates: Vec::new(),
            vods: Vec::new(),
            geoip_db: None,
            auth_backends: Vec::new(),
            mysql: None,
            session_history: SessionHistoryConfig::default(),
            session_store: None,
            connection_limits: ConnectionLimits::default(),
        }
    }
}

/// Address used when a listen directive gives only a port.
pub const DEFAULT_LISTEN_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub login: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `stream NAME { … }`, or a stream created through the management API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamConfig {
    pub name: String,
    /// `input URL;` lines in order (`fake://fake`, `publish://`, `file://…`).
    pub inputs: Vec<String>,
    pub on_play: Option<AuthSpec>,
    pub on_publish: Option<AuthSpec>,
    /// `password SECRET;` required from publishers (PUB-04).
    pub password: Option<String>,
    pub protocols: Protocols,
    /// `dvr ROOT DEPTH;` — record the stream's segments (DVR-01/02).
    pub dvr: Option<DvrConfig>,
}

/// `template NAME { prefix P; … }`: streams named `P/…` are created from it on first request.
///
/// A template is a stream block plus its prefixes: the body is a [`StreamConfig`] (whose name is
/// the template's), so what a stream block may hold and what a template may hold are one list,
/// read by one parser and written by one printer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateConfig {
    /// `prefix P;` lines, in file order.
    pub prefixes: Vec<String>,
    /// What every stream made from the template starts with; `stream.name` is the template's name.
    pub stream: StreamConfig,
}

impl TemplateConfig {
    /// A template named `name` for `prefixes` whose streams start as `stream` (its name is replaced).
    pub fn new(name: impl Into<String>, prefixes: Vec<String>, stream: StreamConfig) -> TemplateConfig {
        TemplateConfig {
            prefixes,
            stream: StreamConfig {
                name: name.into(),
                ..stream
            },
        }
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.stream.name
    }
}

/// `dvr ROOT DEPTH;` in a stream or template (the vendor's stream `dvr` object: `root`,
/// `depth`): the stream's segments are kept on disk under `ROOT/NAME/` for `DEPTH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvrConfig {
    /// Absolute, or relative to the media root.
    pub root: String,
    /// How far back the archive reaches; older segments are deleted.
    pub depth: Duration,
    /// `dvr ROOT DEPTH 10G;` (the vendor's `storage_limit`, bytes): the most the archive's
    /// segment files may take; the oldest go first (`crate::dvr::archive`).
    pub storage_limit: Option<u64>,
    /// `dvr ROOT DEPTH 95%;` (the vendor's `disk_usage_limit`): while the filesystem holding
    /// the archive is fuller than this, the archive gives up its oldest segments.
    pub disk_usage_limit: Option<u8>,
}

impl DvrConfig {
    /// An archive under `root` kept for `depth`, without size limits.
    pub fn new(root: impl Into<String>, depth: Duration) -> DvrConfig {
        DvrConfig {
            root: root.into(),
            depth,
            storage_limit: None,
            disk_usage_limit: None,
        }
    }
}

/// `vod NAME { storage ROOT; on_play …; }`: files under `ROOT` play as VOD HLS at
/// `/NAME/FILE/index.m3u8`, each authorized with the location's `on_play` under the name
/// `NAME/FILE` (CFG-01: a VOD location takes `on_play` like a stream).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VodConfig {
    /// One or more path segments (`vod`, `movies/hd`), none empty, `.` or `..`.
    pub name: String,
    /// The directory the files are in: absolute, or relative to the media root.
    pub storage: String,
    pub on_play: Option<AuthSpec>,
}

impl VodConfig {
    /// Checks a location name: non-empty path segments separated by `/`, none `.` or `..`.
    pub fn check_name(name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("empty vod name".into());
        }
        if name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err("a vod name is path segments separated by '/', none of them empty, '.' or '..'".into());
        }
        Ok(())
    }
}

/// Which play protocols a stream serves (`protocols` in the vendor's stream schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub hls: bool,
    pub mpegts: bool,
    pub rtmp: bool,
    pub rtsp: bool,
    pub dash: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols {
            hls: true,
            mpegts: true,
            rtmp: true,
            rtsp: true,
            dash: true,
        }
    }
}

impl Protocols {
    /// Names as used in config files and JSON, in a fixed order.
    pub const NAMES: [&'static str; 5] = ["hls", "mpegts", "rtmp", "rtsp", "dash"];

    /// The vendor's play protocol names (its `play_protocols_spec`) that this server serves,
    /// with the switch each one sets: the vendor calls HTTP MPEG-TS `tshttp`.
    pub const VENDOR_ALIASES: [(&'static str, &'static str); 1] = [("tshttp", "mpegts")];

    /// Play protocol names of the vendor's schema that this server does not serve (or serves
    /// without a switch of its own, like MP4 export): an override naming them is accepted and
    /// they are ignored.
    pub const VENDOR_UNSERVED: [&'static str; 11] = [
        "player",
        "mss",
        "m4f",
        "m4s",
        "mseld",
        "webrtc",
        "srt",
        "shoutcast",
        "mp4",
        "jpeg",
        "api",
    ];

    /// The switch a name sets: one of [`Protocols::NAMES`], or the vendor's alias of one.
    pub fn canonical(name: &str) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .copied()
            .find(|n| *n == name)
            .or_else(|| Self::VENDOR_ALIASES.iter().find(|(a, _)| *a == name).map(|(_, n)| *n))
    }

    pub fn get(&self, name: &str) -> Option<bool> {
        Some(match Self::canonical(name)? {
            "hls" => self.hls,
            "mpegts" => self.mpegts,
            "rtmp" => self.rtmp,
            "rtsp" => self.rtsp,
            "dash" => self.dash,
            _ => return None,
        })
    }

    /// Sets one protocol; `false` for an unknown name.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let slot = match Self::canonical(name).unwrap_or_default() {
            "hls" => &mut self.hls,
            "mpegts" => &mut self.mpegts,
            "rtmp" => &mut self.rtmp,
            "rtsp" => &mut self.rtsp,
            "dash" => &mut self.dash,
            _ => return false,
        };
        *slot = on;
        true
    }
}

/// Where a decision comes from (CFG-01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTarget {
    /// `http://…` or `https://…`
    Http(String),
    /// The literal `true`: everyone is allowed (used to override a template).
    AllowAll,
    /// An absolute path to a script on disk (SCR).
    Script(String),
    /// `auth://NAME`, a configurator block (CZR).
    Configurator(String),
}

impl fmt::Display for AuthTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthTarget::Http(url) => f.write_str(url),
            AuthTarget::AllowAll => f.write_str("true"),
            AuthTarget::Script(path) => f.write_str(path),
            AuthTarget::Configurator(name) => write!(f, "auth://{name}"),
        }
    }
}

/// `on_play TARGET key=value…;` — the vendor's `auth_spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSpec {
    pub target: AuthTarget,
    pub session_keys: SessionKeys,
    /// Domain lock (DOM-01); empty = no lock.
    pub domains: Vec<String>,
    /// `require_referer=true`: with a domain lock, a request that sends no Referer (RTMP: no
    /// `pageUrl`) is refused too, instead of passing (DOM-02). An extension: the vendor's
    /// `auth_spec` has no such field. Only meaningful with `domains`.
    pub require_referer: bool,
    /// Server-side per-user cap used when the backend gives a user id but no X-Max-Sessions (AMB-15).
    pub max_sessions: Option<u32>,
    pub soft_limitation: bool,
    /// `allowed_countries=US,DE`: viewers whose address the GeoIP database places in one of
    /// these countries are admitted without asking the backend (the vendor's auth_spec field;
    /// ISO 3166-1 alpha-2, upper-case). Never sent to the backend.
    pub allowed_countries: Vec<String>,
    /// `disallowed_countries=…`: viewers from these countries are refused without asking the
    /// backend. Never sent to the backend.
    pub disallowed_countries: Vec<String>,
    /// Static extras forwarded to the backend as query parameters.
    pub extra: BTreeMap<String, String>,
    /// `sign_key=SECRET`: HTTP calls carry an `X-Usher-Signature` header, an HMAC-SHA256 under
    /// this key over the request (docs/security.md). Never sent, never shown to scripts.
    pub sign_key: Option<String>,
}

impl AuthSpec {
    pub fn new(target: AuthTarget) -> Self {
        AuthSpec {
            target,
            session_keys: SessionKeys::default(),
            domains: Vec::new(),
            require_referer: false,
            max_sessions: None,
            soft_limitation: false,
            allowed_countries: Vec::new(),
            disallowed_countries: Vec::new(),
            extra: BTreeMap::new(),
            sign_key: None,
        }
    }
}

/// One element of `session_keys` (SESS-04, AMB-10).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionKey {
    Name,
    Ip,
    Proto,
    Token,
    /// `header.<lowercase-name>`
    Header(String),
    /// `query.<param>`
    Query(String),
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionKey::Name => f.write_str("name"),
            SessionKey::Ip => f.write_str("ip"),
            SessionKey::Proto => f.write_str("proto"),
            SessionKey::Token => f.write_str("token"),
            SessionKey::Header(h) => write!(f, "header.{h}"),
            SessionKey::Query(q) => write!(f, "query.{q}"),
        }
    }
}

/// The validated list of session keys. The default is `name, ip, proto, token` (SESS-01,
/// decisions AMB-25: the seed's full formula and the vendor's schema both carry `proto`, so a
/// grant for one protocol never covers another); an explicit list must name `ip`, `name` and
/// `proto` (SESS-03).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys(Vec<SessionKey>);

impl Default for SessionKeys {
    fn default() -> Self {
        SessionKeys(vec![
            SessionKey::Name,
            SessionKey::Ip,
            SessionKey::Proto,
            SessionKey::Token,
        ])
    }
}

impl SessionKeys {
    pub fn keys(&self) -> &[SessionKey] {
        &self.0
    }

    /// Parses the comma-separated form `ip,name,proto,token` (SESS-03, SESS-04, AMB-10).
    /// The error names the offending item.
    pub fn parse(text: &str) -> Result<SessionKeys, String> {
        if text.is_empty() {
            return Err("session_keys is empty; it must list at least ip, name and proto".into());
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!(
                "session_keys `{text}` contains whitespace; separate keys with commas only"
            ));
        }
        Self::from_items(text.split(','))
    }

    /// Validates a list given item by item (the JSON array form).
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<SessionKeys, String> {
        let mut keys = Vec::new();
        for item in items {
            keys.push(parse_key(item)?);
        }
        for (required, name) in [
            (SessionKey::Ip, "ip"),
            (SessionKey::Name, "name"),
            (SessionKey::Proto, "proto"),
        ] {
            if !keys.contains(&required) {
                return Err(format!("session_keys must include `{name}`"));
            }
        }
        Ok(SessionKeys(keys))
    }

    /// The form a config file or the API prints.
    pub fn to_items(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

fn parse_key(item: &str) -> Result<SessionKey, String> {
    let key = match item {
        "" => return Err("session_keys has an empty item (two commas, or a trailing comma)".into()),
        "name" => SessionKey::Name,
        "ip" => SessionKey::Ip,
        "proto" => SessionKey::Proto,
        "token" => SessionKey::Token,
        other => {
            if let Some(h) = other.strip_prefix("header.") {
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "session key `{other}`: a header key is `header.<lowercase-name>`"
                    ));
                }
                SessionKey::Header(h.to_string())
            } else if let Some(q) = other.strip_prefix("query.") {
                if q.is_empty() {
                    return Err(format!("session key `{other}`: a query key is `query.<param>`"));
                }
                SessionKey::Query(q.to_string())
            } else {
                return Err(format!(
                    "unknown session key `{other}` (known: ip, name, proto, token, header.<name>, query.<param>)"
                ));
            }
        }
    };
    Ok(key)
}
