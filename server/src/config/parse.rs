//! Parser of the Flussonic-style configuration file: the lexer's tokens to the model.
//!
//! Grammar (statements end with `;`, blocks are `{ … }`, `#` comments to end of line):
//!
//! ```text
//! file      = { top } ;
//! top       = ("http" | "rtmp" | "rtsp" | "mysql") LISTEN [ "max_connections=" N ] [ "max_connections_per_ip=" N ] ";"
//!           | "auth_token" NAME ";" | "no_auto_token" ";" | "edit_auth" LOGIN PASSWORD ";"
//!           | "server_secret" TEXT ";" | "admin_token_ttl" SECONDS ";"
//!           | "http_session_idle" SECONDS ";" | "media_root" PATH ";"
//!           | "template_stream_idle" SECONDS ";" | "template_stream_limit" N ";"
//!           | "stream" NAME "{" { body } "}" | "template" NAME "{" { body | "prefix" P ";" } "}"
//!           | "vod" NAME "{" "storage" ROOT ";" [ "on_play" TARGET { KEY "=" VALUE } ";" ] "}"
//!           | "auth_backend" NAME "{" { rule } "}" | "geoip_db" PATH ";"    (see auth_backend.rs)
//!           | "session_history" (PATH | ":memory:") [ "retention=" DAYS ] [ "max_rows=" N ] ";"
//!           | "session_store" REDIS_URL [ "node=" NAME ] [ "on_loss=" ("open" | "closed") ] ";" ;
//! body      = "input" URL ";" | ("on_play" | "on_publish") TARGET { KEY "=" VALUE } ";"
//!           | "password" SECRET ";" | "protocols" PROTO { PROTO } ";" | "dvr" ROOT DEPTH ";" ;
//! ```
//!
//! Tokens are read by [`lex`](super::lex); the printer that writes a `Config` back as this
//! grammar is [`print`](super::print).
//!
//! Errors stop at the first problem and name `file:line:column` (1-based, in characters) of the
//! token that is wrong, what was expected there and what was found.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

#[path = "auth_backend.rs"]
pub(super) mod auth_backend;

use super::lex::{Tok, Token, lex};
use super::model::{
    AuthSpec, AuthTarget, Config, Credential, DEFAULT_LISTEN_IP, Protocols, SessionKeys, StreamConfig, TemplateConfig,
    VodConfig,
};

/// A configuration error naming the file, line, column and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Largest value accepted by the `SECONDS` directives: one year. Bigger values would overflow
/// `Instant` arithmetic elsewhere and are certainly typos.
pub const MAX_CONFIG_SECONDS: u64 = 365 * 24 * 3600;

/// Parses a whole configuration file. `file` is only used in error messages.
pub fn parse_config(text: &str, file: &str) -> Result<Config, ConfigError> {
    let tokens = lex(text).map_err(|e| ConfigError {
        file: file.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    Parser {
        file,
        tokens,
        pos: 0,
        auth: auth_backend::AuthBlocks::default(),
    }
    .config()
}

impl AuthTarget {
    /// Reads a backend target as written after `on_play` / `on_publish` or in the API's
    /// `on_play.url` (CFG-01): `http(s)://…`, `true`, an absolute script path, or `auth://NAME`.
    /// The error names the text and lists what is accepted.
    pub fn parse(text: &str) -> Result<AuthTarget, String> {
        if text == "true" {
            return Ok(AuthTarget::AllowAll);
        }
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match url::Url::parse(text) {
                Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(AuthTarget::Http(text.to_string())),
                Ok(_) => Err(format!("backend URL '{}' has no host", shorten(text))),
                Err(e) => Err(format!("bad backend URL '{}': {e}", shorten(text))),
            };
        }
        if let Some(name) = text.strip_prefix("auth://") {
            if name.is_empty() {
                return Err("'auth://' needs a configurator name: auth://NAME".into());
            }
            return Ok(AuthTarget::Configurator(name.to_string()));
        }
        if text.starts_with('/') {
            return Ok(AuthTarget::Script(text.to_string()));
        }
        Err(format!(
            "unknown target '{}' (expected http://…, https://…, true, an absolute script path /…, \
             or auth://NAME)",
            shorten(text)
        ))
    }
}

/// Checks a `session_store` address: `redis://[:PASSWORD@]HOST:PORT[/DB]`, nothing else. The
/// message never repeats the address (it may hold a password).
fn check_store_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a redis:// address ({e})"))?;
    if url.scheme() != "redis" {
        return Err(format!(
            "unsupported scheme '{}' (expected redis://HOST:PORT[/DB])",
            shorten(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the address has no host (expected redis://HOST:PORT[/DB])".into());
    }
    if url.port().is_none() {
        return Err("the address has no port (expected redis://HOST:PORT[/DB])".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the address may not carry a query or a fragment".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && (db.parse::<u16>().is_err() || !db.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "bad database '{}' (expected a number after the port)",
            shorten(db)
        ));
    }
    Ok(())
}

/// Cuts long text for error messages (by characters, never inside one).
fn shorten(text: &str) -> String {
    const MAX: usize = 48;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) if w.is_empty() => "an empty string \"\"".into(),
        Tok::Word(w) => format!("'{}'", shorten(w)),
        Tok::Semi => "';'".into(),
        Tok::Open => "'{'".into(),
        Tok::Close => "'}'".into(),
        Tok::Eof => "end of file".into(),
    }
}

const TOP_DIRECTIVES: &str = "http, rtmp, rtsp, auth_token, no_auto_token, edit_auth, \
                              server_secret, admin_token_ttl, http_session_idle, media_root, \
                              template_stream_idle, template_stream_limit, soft_limitation_delay, \
                              stream, template, vod, auth_backend, geoip_db, session_store, mysql, \
                              session_history";
const VOD_DIRECTIVES: &str = "storage, on_play";
const STREAM_DIRECTIVES: &str = "input, on_play (or the older auth), on_publish, password, protocols, dvr";
const TEMPLATE_DIRECTIVES: &str = "prefix, input, on_play (or the older auth), on_publish, password, protocols, dvr";
/// Top-level directives, refused inside a block as belonging to the top level (see
/// [`Parser::misplaced`]). `auth_backend.rs` uses all but the last two.
const TOP_ONLY_DIRECTIVES: [&str; 21] = [
    "http",
    "rtmp",
    "rtsp",
    "auth_token",
    "no_auto_token",
    "edit_auth",
    "server_secret",
    "admin_token_ttl",
    "http_session_idle",
    "media_root",
    "template_stream_idle",
    "template_stream_limit",
    "soft_limitation_delay",
    "stream",
    "template",
    "vod",
    "auth_backend",
    "geoip_db",
    "session_store",
    "mysql",
    "session_history",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Stream,
    Template,
}

impl BlockKind {
    fn word(self) -> &'static str {
        match self {
            BlockKind::Stream => "stream",
            BlockKind::Template => "template",
        }
    }
}

/// What a `stream` or `template` block holds; the two differ only by `prefix`.
#[derive(Default)]
struct Block {
    prefixes: Vec<String>,
    /// (line, column) of each entry of `prefixes`, for the cross-template duplicate check.
    prefix_positions: Vec<(usize, usize)>,
    /// Everything else, named once the block is read.
    stream: StreamConfig,
}

struct Parser<'a> {
    file: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Configurator blocks and `auth://` references seen so far.
    auth: auth_backend::AuthBlocks,
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        // The lexer always ends the list with Eof; stay on it.
        let tok = self.tokens.get(self.pos).cloned().unwrap_or(Token {
            tok: Tok::Eof,
            line: 1,
            column: 1,
        });
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn err(&self, at: &Token, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    fn expect_semi(&mut self, after: &str) -> Result<(), ConfigError> {
        let t = self.next();
        match t.tok {
            Tok::Semi => Ok(()),
            ref other => Err(self.err(&t, format!("expected ';' after {after}, found {}", describe(other)))),
        }
    }

    /// The next token, which must be a word (`what` is used in the error).
    fn expect_word(&mut self, what: &str, after: &str) -> Result<(String, Token), ConfigError> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) => Ok((w.clone(), t.clone())),
            other => Err(self.err(&t, format!("expected {what} after {after}, found {}", describe(other)))),
        }
    }

    /// The next token as a non-empty word.
    fn expect_nonempty(&mut self, what: &str, after: &str) -> Result<(String, Token), ConfigError> {
        let (w, t) = self.expect_word(what, after)?;
        if w.is_empty() {
            return Err(self.err(&t, format!("expected {what} after {after}, found an empty string \"\"")));
        }
        Ok((w, t))
    }

    /// The `{` after the name of a `kind` block (`stream`, `template`, `vod`, `auth_backend`).
    fn open_block(&mut self, kind: &str, name: &str) -> Result<(), ConfigError> {
        let t = self.next();
        if t.tok != Tok::Open {
            return Err(self.err(
                &t,
                format!(
                    "expected '{{' after {kind} name '{}', found {}",
                    shorten(name),
                    describe(&t.tok)
                ),
            ));
        }
        Ok(())
    }

    /// The first word of the next entry of the block `here` that `opener` opened, with its
    /// token; `None` at the block's `}`. `entry` says what an entry starts with ("a directive").
    fn block_entry(&mut self, here: &str, opener: &Token, entry: &str) -> Result<Option<(String, Token)>, ConfigError> {
        let t = self.next();
        match &t.tok {
            Tok::Close => Ok(None),
            Tok::Eof => Err(self.err(
                &t,
                format!(
                    "unexpected end of file: {here} opened at line {} is not closed (expected '}}')",
                    opener.line
                ),
            )),
            Tok::Word(w) => Ok(Some((w.clone(), t.clone()))),
            other => Err(self.err(
                &t,
                format!("expected {entry} or '}}' in {here}, found {}", describe(other)),
            )),
        }
    }

    /// The error for `word` (the token `t`) that starts no entry of the block `here`: a word of
    /// `top_only` belongs to the top level, anything else is unknown (`allowed` lists the block's).
    fn misplaced(&self, t: &Token, word: &str, here: &str, top_only: &[&str], allowed: &str) -> ConfigError {
        if top_only.contains(&word) {
            self.err(
                t,
                format!("'{word}' is only allowed at the top level, not inside {here}"),
            )
        } else {
            self.err(
                t,
                format!(
                    "unknown directive '{}' in {here} (allowed here: {allowed})",
                    shorten(word)
                ),
            )
        }
    }

    /// Refuses a second `name` entry (the token `t`) in the block `here`; `seen` maps the
    /// entries read so far to their line.
    fn once_in_block(
        &self,
        seen: &mut HashMap<&'static str, usize>,
        name: &'static str,
        here: &str,
        t: &Token,
    ) -> Result<(), ConfigError> {
        if let Some(first) = seen.get(name) {
            return Err(self.err(t, format!("duplicate '{name}' in {here} (first at line {first})")));
        }
        seen.insert(name, t.line);
        Ok(())
    }

    /// The words up to the next `;`, at least one. `empty` is the error when `;` comes first;
    /// `after` names the line in the error for a token that is neither a word nor `;`.
    fn words_to_semi(&mut self, empty: &str, after: &str) -> Result<Vec<(String, Token)>, ConfigError> {
        let mut items = Vec::new();
        loop {
            let t = self.next();
            match &t.tok {
                Tok::Word(w) => items.push((w.clone(), t.clone())),
                Tok::Semi if items.is_empty() => return Err(self.err(&t, empty)),
                Tok::Semi => return Ok(items),
                other => {
                    return Err(self.err(&t, format!("expected ';' after {after}, found {}", describe(other))));
                }
            }
        }
    }

    /// The `KEY=VALUE` words after a target, up to the first token that is not a word (the
    /// caller expects the `;`). Each option is checked (has `=`, a non-empty key, not given
    /// before) and handed to `each` before the next one is read. `after` names the target in
    /// the error for a word without `=` ("the on_play target"); `what` starts the other errors.
    fn key_value_options(
        &mut self,
        after: &str,
        what: &str,
        mut each: impl FnMut(&Self, &Token, &str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let mut given: Vec<String> = Vec::new();
        while let Tok::Word(option) = self.peek().clone() {
            let at = self.next();
            let Some((key, value)) = option.split_once('=') else {
                return Err(self.err(
                    &at,
                    format!("expected key=value option after {after}, found '{}'", shorten(&option)),
                ));
            };
            if key.is_empty() {
                return Err(self.err(&at, format!("{what} option '{}' has an empty name", shorten(&option))));
            }
            if given.iter().any(|k| k == key) {
                return Err(self.err(&at, format!("duplicate {what} option '{}'", shorten(key))));
            }
            given.push(key.to_string());
            each(self, &at, key, value)?;
        }
        Ok(())
    }

    fn config(mut self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        // Directive → line of its first occurrence, to refuse repeats.
        let mut seen: HashMap<&'static str, usize> = HashMap::new();
        let mut stream_lines: HashMap<String, usize> = HashMap::new();
        let mut template_lines: HashMap<String, usize> = HashMap::new();
        let mut vod_lines: HashMap<String, usize> = HashMap::new();
        // Prefix → (template, line), a prefix must lead to one template.
        let mut prefix_owner: HashMap<String, (String, usize)> = HashMap::new();
        loop {
            let t = self.next();
            let word = match &t.tok {
                Tok::Eof => break,
                Tok::Word(w) => w.clone(),
                Tok::Close => return Err(self.err(&t, "unexpected '}': no block is open")),
                other => {
                    return Err(self.err(&t, format!("expected a directive, found {}", describe(other))));
                }
            };
            let once = |seen: &mut HashMap<&'static str, usize>, name: &'static str, this: &Self| {
                if let Some(first) = seen.get(name) {
                    return Err(this.err(&t, format!("duplicate '{name}' directive (first at line {first})")));
                }
                seen.insert(name, t.line);
                Ok(())
            };
            match word.as_str() {
                "http" | "rtmp" | "rtsp" | "mysql" => {
                    let name: &'static str = match word.as_str() {
                        "http" => "http",
                        "rtmp" => "rtmp",
                        "rtsp" => "rtsp",
                        _ => "mysql",
                    };
                    once(&mut seen, name, &self)?;
                    let (text, at) = self.expect_word("a port or ADDR:PORT", name)?;
                    let addr = parse_listen(&text).map_err(|m| self.err(&at, format!("{name}: {m}")))?;
                    let limits = self.listen_limits(name)?;
                    self.expect_semi("port")?;
                    let (listen, caps) = match name {
                        "http" => (&mut config.http, &mut config.connection_limits.http),
                        "rtmp" => (&mut config.rtmp, &mut config.connection_limits.rtmp),
                        "rtsp" => (&mut config.rtsp, &mut config.connection_limits.rtsp),
                        _ => (&mut config.mysql, &mut config.connection_limits.mysql),
                    };
                    *listen = Some(addr);
                    *caps = limits;
                }
                "auth_token" => {
                    once(&mut seen, "auth_token", &self)?;
                    let (name, _) = self.expect_nonempty("a query parameter name", "auth_token")?;
                    self.expect_semi("auth_token NAME")?;
                    config.auth_token = name;
                }
                "no_auto_token" => {
                    once(&mut seen, "no_auto_token", &self)?;
                    self.expect_semi("no_auto_token")?;
                    config.no_auto_token = true;
                }
                "edit_auth" => {
                    once(&mut seen, "edit_auth", &self)?;
                    let (login, at) = self.expect_nonempty("a login", "edit_auth")?;
                    if login.contains(':') {
                        return Err(self.err(
                            &at,
                            format!(
                                "edit_auth login '{}' must not contain ':' (HTTP Basic uses it as the separator)",
                                shorten(&login)
                            ),
                        ));
                    }
                    let (password, _) = self.expect_nonempty("a password", "edit_auth LOGIN")?;
                    self.expect_semi("edit_auth LOGIN PASSWORD")?;
                    config.edit_auth = Some(Credential { login, password });
                }
                "server_secret" => {
                    once(&mut seen, "server_secret", &self)?;
                    let (secret, _) = self.expect_nonempty("a secret", "server_secret")?;
                    self.expect_semi("server_secret TEXT")?;
                    config.server_secret = Some(secret);
                }
                "admin_token_ttl" | "http_session_idle" | "template_stream_idle" | "soft_limitation_delay" => {
                    let name: &'static str = match word.as_str() {
                        "admin_token_ttl" => "admin_token_ttl",
                        "http_session_idle" => "http_session_idle",
                        "soft_limitation_delay" => "soft_limitation_delay",
                        _ => "template_stream_idle",
                    };
                    once(&mut seen, name, &self)?;
                    let (text, at) = self.expect_word("a number of seconds", name)?;
                    let secs = parse_seconds(&text).map_err(|m| self.err(&at, format!("{name}: {m}")))?;
                    self.expect_semi(&format!("{name} SECONDS"))?;
                    let d = Duration::from_secs(secs);
                    match name {
                        "admin_token_ttl" => config.admin_token_ttl = d,
                        "http_session_idle" => config.http_session_idle = d,
                        "soft_limitation_delay" => config.soft_limitation_delay = d,
                        _ => config.template_stream_idle = d,
                    }
                }
                "template_stream_limit" => {
                    once(&mut seen, "template_stream_limit", &self)?;
                    let (text, at) = self.expect_word("a number of streams", "template_stream_limit")?;
                    let max = super::model::MAX_TEMPLATE_STREAM_LIMIT;
                    let limit = text
                        .parse::<u32>()
                        .ok()
                        .filter(|n| text.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(n))
                        .ok_or_else(|| {
                            self.err(
                                &at,
                                format!(
                                    "template_stream_limit: bad number '{}' (expected a whole number of streams, 1..{max})",
                                    shorten(&text)
                                ),
                            )
                        })?;
                    self.expect_semi("template_stream_limit N")?;
                    config.template_stream_limit = limit;
                }
                "auth_backend" | "geoip_db" => self.auth_directive(&t, &mut config)?,
                "session_store" => {
                    once(&mut seen, "session_store", &self)?;
                    config.session_store = Some(self.session_store()?);
                }
                "session_history" => {
                    once(&mut seen, "session_history", &self)?;
                    config.session_history = self.session_history()?;
                }
                "media_root" => {
                    once(&mut seen, "media_root", &self)?;
                    let (root, _) = self.expect_nonempty("a directory", "media_root")?;
                    self.expect_semi("media_root PATH")?;
                    config.media_root = Some(root);
                }
                "vod" => {
                    let (name, at) = self.expect_word("a vod name", "vod")?;
                    VodConfig::check_name(&name).map_err(|m| self.err(&at, m))?;
                    define_once(&mut vod_lines, "vod", &name, at.line).map_err(|m| self.err(&at, m))?;
                    let vod = self.vod_block(name, &t)?;
                    config.vods.push(vod);
                }
                "stream" | "template" => {
                    let kind = if word == "stream" {
                        BlockKind::Stream
                    } else {
                        BlockKind::Template
                    };
                    let (name, at) = self.expect_word(&format!("a {} name", kind.word()), kind.word())?;
                    if name.is_empty() {
                        return Err(self.err(&at, format!("empty {} name", kind.word())));
                    }
                    let lines = if kind == BlockKind::Stream {
                        &mut stream_lines
                    } else {
                        &mut template_lines
                    };
                    define_once(lines, kind.word(), &name, at.line).map_err(|m| self.err(&at, m))?;
                    let block = self.block(kind, &name, &t)?;
                    match kind {
                        BlockKind::Stream => config.streams.push(StreamConfig { name, ..block.stream }),
                        BlockKind::Template => {
                            for (p, (line, column)) in block.prefixes.iter().zip(&block.prefix_positions) {
                                if let Some((owner, first)) = prefix_owner.get(p) {
                                    return Err(ConfigError {
                                        file: self.file.to_string(),
                                        line: *line,
                                        column: *column,
                                        message: format!(
                                            "prefix '{}' is already used by template '{}' (line {first})",
                                            shorten(p),
                                            shorten(owner)
                                        ),
                                    });
                                }
                                prefix_owner.insert(p.clone(), (name.clone(), *line));
                            }
                            config
                                .templates
                                .push(TemplateConfig::new(name, block.prefixes, block.stream));
                        }
                    }
                }
                "input" | "on_play" | "on_publish" | "auth" | "password" | "protocols" | "dvr" => {
                    return Err(self.err(
                        &t,
                        format!("'{word}' is only allowed inside a stream or template block, not at the top level"),
                    ));
                }
                "storage" => {
                    return Err(self.err(&t, "'storage' is only allowed inside a vod block, not at the top level"));
                }
                "prefix" => {
                    return Err(self.err(
                        &t,
                        "'prefix' is only allowed inside a template block, not at the top level",
                    ));
                }
                other => {
                    return Err(self.err(
                        &t,
                        format!(
                            "unknown directive '{}' at the top level (allowed here: {TOP_DIRECTIVES})",
                            shorten(other)
                        ),
                    ));
                }
            }
        }
        self.check_auth_references()?;
        Ok(config)
    }

    /// Reads `{ … }` after a stream or template name. `opener` is the `stream`/`template` word.
    fn block(&mut self, kind: BlockKind, name: &str, opener: &Token) -> Result<Block, ConfigError> {
        self.open_block(kind.word(), name)?;
        let mut block = Block::default();
        let mut seen: HashMap<&'static str, usize> = HashMap::new();
        let here = format!("{} '{}'", kind.word(), shorten(name));
        while let Some((word, t)) = self.block_entry(&here, opener, "a directive")? {
            match word.as_str() {
                "input" => {
                    let (url, at) = self.expect_word("a URL", "input")?;
                    if url.is_empty() {
                        return Err(self.err(&at, "input URL is empty"));
                    }
                    self.expect_semi("input URL")?;
                    block.stream.inputs.push(url);
                }
                "auth" => {
                    // The older name of the play backend (CFG-04): read as `on_play`, so the two
                    // cannot both be set.
                    if let Some(first) = seen.get("on_play") {
                        return Err(self.err(
                            &t,
                            format!(
                                "'auth' is the older name of 'on_play', which {here} already sets (line {first}); keep one"
                            ),
                        ));
                    }
                    self.once_in_block(&mut seen, "auth", &here, &t)?;
                    seen.insert("on_play", t.line);
                    block.stream.on_play = Some(self.auth_spec("auth")?);
                }
                "on_play" | "on_publish" => {
                    let which: &'static str = if word == "on_play" { "on_play" } else { "on_publish" };
                    if which == "on_play"
                        && let Some(first) = seen.get("auth")
                    {
                        return Err(self.err(
                            &t,
                            format!(
                                "'on_play' and the older 'auth' (line {first}) both set the play backend of {here}; keep one"
                            ),
                        ));
                    }
                    self.once_in_block(&mut seen, which, &here, &t)?;
                    let spec = self.auth_spec(which)?;
                    if which == "on_play" {
                        block.stream.on_play = Some(spec);
                    } else {
                        block.stream.on_publish = Some(spec);
                    }
                }
                "password" => {
                    self.once_in_block(&mut seen, "password", &here, &t)?;
                    let (p, _) = self.expect_nonempty("a secret", "password")?;
                    self.expect_semi("password")?;
                    block.stream.password = Some(p);
                }
                "protocols" => {
                    self.once_in_block(&mut seen, "protocols", &here, &t)?;
                    block.stream.protocols = self.protocols()?;
                }
                "dvr" => {
                    self.once_in_block(&mut seen, "dvr", &here, &t)?;
                    block.stream.dvr = Some(self.dvr(&t)?);
                }
                "prefix" if kind == BlockKind::Template => {
                    let (p, at) = self.expect_word("a prefix", "prefix")?;
                    if p.is_empty() {
                        return Err(self.err(&at, "prefix is empty"));
                    }
                    if block.prefixes.contains(&p) {
                        return Err(self.err(&at, format!("prefix '{}' is listed twice in {here}", shorten(&p))));
                    }
                    self.expect_semi("prefix P")?;
                    block.prefix_positions.push((at.line, at.column));
                    block.prefixes.push(p);
                }
                "prefix" => {
                    return Err(self.err(
                        &t,
                        format!("'prefix' is only allowed inside a template block, not in {here}"),
                    ));
                }
                "storage" => {
                    return Err(self.err(
                        &t,
                        format!("'storage' is only allowed inside a vod block, not in {here}"),
                    ));
                }
                other => {
                    let allowed = if kind == BlockKind::Stream {
                        STREAM_DIRECTIVES
                    } else {
                        TEMPLATE_DIRECTIVES
                    };
                    return Err(self.misplaced(&t, other, &here, &TOP_ONLY_DIRECTIVES, allowed));
                }
            }
        }
        Ok(block)
    }

    /// Reads `[max_connections=N] [max_connections_per_ip=M]` after a listen address.
    fn listen_limits(&mut self, directive: &str) -> Result<super::model::ListenLimits, ConfigError> {
        let mut limits = super::model::ListenLimits::default();
        let mut last = None;
        // Options are KEY=VALUE words; any other word is left for the `;` check (a missing `;`
        // before the next directive reads best as such).
        while let Tok::Word(option) = self.peek().clone()
            && (option.contains('=') || option.starts_with("max_connections"))
        {
            let at = self.next();
            let (key, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
            let slot = match key {
                "max_connections" => &mut limits.max_connections,
                "max_connections_per_ip" => &mut limits.max_connections_per_ip,
                _ => {
                    return Err(self.err(
                        &at,
                        format!(
                            "unknown {directive} option '{}' (expected max_connections=N or max_connections_per_ip=N)",
                            shorten(&option)
                        ),
                    ));
                }
            };
            if slot.is_some() {
                return Err(self.err(&at, format!("duplicate {key}= option in {directive}")));
            }
            let max = super::model::MAX_LISTEN_CONNECTIONS;
            *slot = Some(
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        self.err(
                            &at,
                            format!("bad {key} '{}' (expected a whole number, 1..{max})", shorten(value)),
                        )
                    })?,
            );
            last = Some(at);
        }
        if let (Some(all), Some(per_ip), Some(at)) = (limits.max_connections, limits.max_connections_per_ip, &last)
            && per_ip > all
        {
            return Err(self.err(
                at,
                format!("{directive}: max_connections_per_ip={per_ip} is above max_connections={all}"),
            ));
        }
        Ok(limits)
    }

    /// Reads `redis://HOST:PORT[/DB] [node=NAME] [on_loss=open|closed];` after `session_store`.
    fn session_store(&mut self) -> Result<super::model::SessionStoreConfig, ConfigError> {
        use super::model::{MAX_NODE_NAME_LEN, OnStoreLoss, SessionStoreConfig};
        const FORM: &str = "session_store redis://HOST:PORT[/DB] [node=NAME] [on_loss=open|closed]";
        let (url, at) = self.expect_nonempty("a redis://HOST:PORT[/DB] address", "session_store")?;
        check_store_url(&url).map_err(|m| self.err(&at, format!("session_store: {m}")))?;
        let mut store = SessionStoreConfig {
            url,
            node: None,
            on_loss: OnStoreLoss::default(),
        };
        let mut loss_seen = false;
        while let Tok::Word(option) = self.peek().clone() {
            let at = self.next();
            if let Some(name) = option.strip_prefix("node=") {
                if store.node.is_some() {
                    return Err(self.err(&at, "duplicate node= option in session_store"));
                }
                let fine = !name.is_empty()
                    && name.len() <= MAX_NODE_NAME_LEN
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !fine {
                    return Err(self.err(
                        &at,
                        format!(
                            "session_store: bad node name '{}' (expected 1..{MAX_NODE_NAME_LEN} letters, digits, '.', '_' or '-')",
                            shorten(name)
                        ),
                    ));
                }
                store.node = Some(name.to_string());
            } else if let Some(loss) = option.strip_prefix("on_loss=") {
                if loss_seen {
                    return Err(self.err(&at, "duplicate on_loss= option in session_store"));
                }
                loss_seen = true;
                store.on_loss = match loss {
                    "open" => OnStoreLoss::Open,
                    "closed" => OnStoreLoss::Closed,
                    other => {
                        return Err(self.err(
                            &at,
                            format!(
                                "session_store: bad on_loss '{}' (expected open or closed)",
                                shorten(other)
                            ),
                        ));
                    }
                };
            } else {
                return Err(self.err(
                    &at,
                    format!(
                        "unknown session_store option '{}' (expected node=NAME or on_loss=open|closed)",
                        shorten(&option)
                    ),
                ));
            }
        }
        self.expect_semi(FORM)?;
        Ok(store)
    }

    /// Reads `PATH [retention=DAYS] [max_rows=N];` after `session_history`.
    fn session_history(&mut self) -> Result<super::model::SessionHistoryConfig, ConfigError> {
        let (path, _) = self.expect_nonempty("a file path or :memory:", "session_history")?;
        let mut history = super::model::SessionHistoryConfig {
            path: (path != ":memory:").then_some(path),
            ..Default::default()
        };
        let mut retention_seen = false;
        while let Tok::Word(option) = self.peek().clone() {
            let at = self.next();
            if let Some(rows) = option.strip_prefix("max_rows=") {
                if history.max_rows.is_some() {
                    return Err(self.err(&at, "duplicate max_rows= option in session_history"));
                }
                let max = super::model::MAX_HISTORY_MAX_ROWS;
                history.max_rows = Some(rows.parse::<u64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(
                    || {
                        self.err(
                            &at,
                            format!(
                                "bad max_rows '{}' (expected a whole number of records, 1..{max})",
                                shorten(rows)
                            ),
                        )
                    },
                )?);
                continue;
            }
            let Some(days) = option.strip_prefix("retention=") else {
                return Err(self.err(
                    &at,
                    format!(
                        "unknown session_history option '{}' (expected retention=DAYS or max_rows=N)",
                        shorten(&option)
                    ),
                ));
            };
            if retention_seen {
                return Err(self.err(&at, "duplicate retention= option in session_history"));
            }
            retention_seen = true;
            history.retention_days = days
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=super::model::MAX_HISTORY_RETENTION_DAYS).contains(d))
                .ok_or_else(|| {
                    self.err(
                        &at,
                        format!(
                            "bad retention '{}' (expected whole days, 1..{})",
                            shorten(days),
                            super::model::MAX_HISTORY_RETENTION_DAYS
                        ),
                    )
                })?;
        }
        self.expect_semi("session_history PATH [retention=DAYS] [max_rows=N]")?;
        Ok(history)
    }

    /// Reads `{ storage ROOT; [on_play …;] }` after a vod name. `opener` is the `vod` word.
    fn vod_block(&mut self, name: String, opener: &Token) -> Result<VodConfig, ConfigError> {
        let here = format!("vod '{}'", shorten(&name));
        self.open_block("vod", &name)?;
        let mut storage: Option<String> = None;
        let mut on_play: Option<AuthSpec> = None;
        let mut seen: HashMap<&'static str, usize> = HashMap::new();
        while let Some((word, t)) = self.block_entry(&here, opener, "a directive")? {
            match word.as_str() {
                "storage" => {
                    self.once_in_block(&mut seen, "storage", &here, &t)?;
                    let (root, _) = self.expect_nonempty("a directory", "storage")?;
                    self.expect_semi("storage ROOT")?;
                    storage = Some(root);
                }
                "on_play" => {
                    self.once_in_block(&mut seen, "on_play", &here, &t)?;
                    on_play = Some(self.auth_spec("on_play")?);
                }
                other => return Err(self.misplaced(&t, other, &here, &TOP_ONLY_DIRECTIVES, VOD_DIRECTIVES)),
            }
        }
        let Some(storage) = storage else {
            return Err(self.err(
                opener,
                format!("{here} has no storage: add 'storage DIRECTORY;' naming where its files are"),
            ));
        };
        Ok(VodConfig { name, storage, on_play })
    }

    /// `on_play TARGET key=value… ;` after the directive word.
    fn auth_spec(&mut self, which: &'static str) -> Result<AuthSpec, ConfigError> {
        let (target_text, at) = self.expect_word("a target (URL, true, /script or auth://NAME)", which)?;
        let target = AuthTarget::parse(&target_text).map_err(|m| self.err(&at, format!("{which}: {m}")))?;
        self.note_auth_target(&target, &at);
        let mut spec = AuthSpec::new(target);
        self.key_value_options(&format!("the {which} target"), which, |this, at, key, value| {
            match key {
                "session_keys" => {
                    spec.session_keys =
                        SessionKeys::parse(value).map_err(|m| this.err(at, format!("{which} session_keys: {m}")))?;
                }
                "domains" => {
                    spec.domains = parse_domains(value).map_err(|m| this.err(at, format!("{which} domains: {m}")))?;
                }
                "require_referer" => {
                    spec.require_referer = match value {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(this.err(
                                at,
                                format!(
                                    "{which} require_referer: expected true or false, found '{}'",
                                    shorten(other)
                                ),
                            ));
                        }
                    };
                }
                "max_sessions" => {
                    spec.max_sessions = Some(
                        parse_positive_u32(value).map_err(|m| this.err(at, format!("{which} max_sessions: {m}")))?,
                    );
                }
                "soft_limitation" => {
                    spec.soft_limitation = match value {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(this.err(
                                at,
                                format!(
                                    "{which} soft_limitation: expected true or false, found '{}'",
                                    shorten(other)
                                ),
                            ));
                        }
                    };
                }
                "sign_key" => {
                    if value.is_empty() {
                        return Err(this.err(at, format!("{which} sign_key: the key is empty")));
                    }
                    spec.sign_key = Some(value.to_string());
                }
                "allowed_countries" | "disallowed_countries" => {
                    let list = parse_countries(value).map_err(|m| this.err(at, format!("{which} {key}: {m}")))?;
                    if key == "allowed_countries" {
                        spec.allowed_countries = list;
                    } else {
                        spec.disallowed_countries = list;
                    }
                }
                _ => {
                    if let Some(known) = near_miss(key) {
                        tracing::warn!(
                            file = this.file,
                            line = at.line,
                            option = key,
                            resembles = known,
                            "{which} option '{key}' is sent to the backend as an extra parameter; did you mean '{known}'?"
                        );
                    }
                    spec.extra.insert(key.to_string(), value.to_string());
                }
            }
            Ok(())
        })?;
        if spec.require_referer && spec.domains.is_empty() {
            return Err(self.err(
                &at,
                format!("{which}: require_referer=true needs a domain lock: add domains=… (or drop require_referer)"),
            ));
        }
        if let Some(both) = countries_in_both(&spec) {
            return Err(self.err(
                &at,
                format!("{which}: country {both} is both in allowed_countries and in disallowed_countries"),
            ));
        }
        self.expect_semi(&format!("{which} options"))?;
        Ok(spec)
    }

    /// `dvr ROOT DEPTH [SIZE] [PERCENT%];` after the directive word (`t`): the vendor's form,
    /// `dvr /storage 2d 10G 95%;`. DEPTH is whole seconds or a number with `s`, `m`, `h`, `d`
    /// or `w`; SIZE a number with `K`, `M`, `G` or `T` (binary multiples; note `m` is minutes
    /// and `M` mebibytes); PERCENT a whole percentage of the disk. The words after ROOT may
    /// come in any order. Remote storages and the vendor's `key=value` options are refused by
    /// name: this server records to a local directory only.
    fn dvr(&mut self, t: &Token) -> Result<super::model::DvrConfig, ConfigError> {
        let (root, root_at) = self.expect_nonempty("a directory", "dvr")?;
        if let Some((scheme, _)) = root.split_once("://") {
            return Err(self.err(
                &root_at,
                format!(
                    "dvr: archives on {scheme}:// storage are not supported; this server records to a local directory"
                ),
            ));
        }
        let mut depth = None;
        let mut storage_limit = None;
        let mut disk_usage_limit = None;
        loop {
            let next = self.next();
            let word = match &next.tok {
                Tok::Semi => break,
                Tok::Word(w) => w.clone(),
                other => {
                    return Err(self.err(
                        &next,
                        format!(
                            "expected ';' after dvr ROOT DEPTH [SIZE] [PERCENT%], found {}",
                            describe(other)
                        ),
                    ));
                }
            };
            if let Some((key, _)) = word.split_once('=') {
                return Err(self.err(
                    &next,
                    format!(
                        "dvr option '{}' is not supported (this server takes dvr ROOT DEPTH [SIZE] [PERCENT%])",
                        shorten(key)
                    ),
                ));
            }
            let (slot, value) = match dvr_word(&word) {
                Ok(DvrWord::Depth(secs)) => ("depth", DvrWord::Depth(secs)),
                Ok(DvrWord::Size(bytes)) => ("size limit", DvrWord::Size(bytes)),
                Ok(DvrWord::Percent(p)) => ("disk usage limit", DvrWord::Percent(p)),
                Err(m) => return Err(self.err(&next, format!("dvr: {m}"))),
            };
            let taken = match value {
                DvrWord::Depth(secs) => depth.replace(secs).is_some(),
                DvrWord::Size(bytes) => storage_limit.replace(bytes).is_some(),
                DvrWord::Percent(p) => disk_usage_limit.replace(p).is_some(),
            };
            if taken {
                return Err(self.err(&next, format!("dvr: a second {slot} '{}'", shorten(&word))));
            }
        }
        let Some(depth) = depth else {
            return Err(self.err(
                t,
                "dvr needs a depth (such as 'dvr /storage 7d;'): this server trims an archive by its depth",
            ));
        };
        Ok(super::model::DvrConfig {
            root,
            depth: Duration::from_secs(depth),
            storage_limit,
            disk_usage_limit,
        })
    }

    /// `protocols NAME…;` or `protocols -NAME…;` after the directive word.
    fn protocols(&mut self) -> Result<Protocols, ConfigError> {
        let empty = format!(
            "expected protocol names after protocols ({}), found ';'",
            Protocols::NAMES.join(", ")
        );
        let items = self.words_to_semi(&empty, "protocols")?;
        // `words_to_semi` returns at least one word.
        let negative = items.first().is_some_and(|(w, _)| w.starts_with('-'));
        let mut protocols = if negative {
            Protocols::default()
        } else {
            Protocols {
                hls: false,
                mpegts: false,
                rtmp: false,
                rtsp: false,
                dash: false,
            }
        };
        for (item, at) in &items {
            let (is_negative, name) = match item.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, item.as_str()),
            };
            if is_negative != negative {
                return Err(self.err(
                    at,
                    format!(
                        "cannot mix '{}' with the other form in one protocols line: list the protocols \
                     to enable (hls rtmp) or the ones to disable (-hls -rtmp)",
                        shorten(item)
                    ),
                ));
            }
            if !protocols.set(name, !negative) {
                return Err(self.err(
                    at,
                    format!(
                        "unknown protocol '{}' (known: {})",
                        shorten(name),
                        Protocols::NAMES.join(", ")
                    ),
                ));
            }
        }
        Ok(protocols)
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if text.is_empty() {
        return Err("expected a port or ADDR:PORT, found an empty string \"\"".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u16>()
            .map(|port| SocketAddr::new(DEFAULT_LISTEN_IP, port))
            .map_err(|_| format!("bad port '{}' (expected 0..65535)", shorten(text)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some((host, port)) = text.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_err() {
            return Err(format!("bad port '{}' (expected 0..65535)", shorten(port)));
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "bad port '{}' in '{}' (expected 0..65535)",
                shorten(port),
                shorten(text)
            ));
        }
        return Err(format!(
            "bad address '{}' (expected an IP address such as 127.0.0.1 or [::1]; host names are not resolved)",
            shorten(host)
        ));
    }
    Err(format!("expected a port or ADDR:PORT, found '{}'", shorten(text)))
}

fn parse_seconds(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad number '{}' (expected whole seconds, 1..{MAX_CONFIG_SECONDS})",
            shorten(text)
        )
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u64>() {
        Ok(n) if (1..=MAX_CONFIG_SECONDS).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// One word after `dvr ROOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DvrWord {
    /// Seconds.
    Depth(u64),
    /// Bytes.
    Size(u64),
    /// Percent of the disk, 1..100.
    Percent(u8),
}

fn dvr_word(word: &str) -> Result<DvrWord, String> {
    let split = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let (digits, unit) = word.split_at(split);
    let number = (!digits.is_empty())
        .then(|| digits.parse::<u64>().ok())
        .flatten()
        .filter(|n| *n > 0);
    let Some(n) = number else {
        return Err(format!(
            "'{}' is neither a depth (7d, 12h, 3600), a size (10G) nor a disk percentage (95%)",
            shorten(word)
        ));
    };
    let depth = |unit_secs: u64| {
        n.checked_mul(unit_secs)
            .filter(|s| *s <= MAX_CONFIG_SECONDS)
            .map(DvrWord::Depth)
            .ok_or_else(|| format!("depth '{}' is above one year", shorten(word)))
    };
    let size = |shift: u32| {
        n.checked_mul(1u64 << shift)
            .map(DvrWord::Size)
            .ok_or_else(|| format!("size '{}' is too large", shorten(word)))
    };
    match unit {
        "" | "s" => depth(1),
        "m" => depth(60),
        "h" => depth(3600),
        "d" => depth(86_400),
        "w" => depth(7 * 86_400),
        "K" | "k" => size(10),
        "M" => size(20),
        "G" | "g" => size(30),
        "T" | "t" => size(40),
        "%" if n <= 100 => Ok(DvrWord::Percent(n as u8)),
        "%" => Err(format!("disk usage '{}' is above 100%", shorten(word))),
        other => Err(format!(
            "unknown unit '{}' in '{}' (depth: s, m, h, d, w; size: K, M, G, T; disk usage: %)",
            shorten(other),
            shorten(word)
        )),
    }
}

fn parse_positive_u32(text: &str) -> Result<u32, String> {
    let bad = || format!("bad number '{}' (expected a positive integer)", shorten(text));
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

/// `a.com,b.com` → the list; no empty items, no whitespace.
pub(crate) fn parse_domains(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err("the list is empty (omit domains for no domain lock)".into());
    }
    text.split(',').map(check_domain).collect()
}

/// One domain of a domain lock (DOM-01): non-empty, no commas, no whitespace.
pub(crate) fn check_domain(domain: &str) -> Result<String, String> {
    if domain.is_empty() {
        return Err("empty domain (two commas, or a trailing comma)".into());
    }
    if domain.contains(',') || domain.chars().any(char::is_whitespace) {
        return Err(format!(
            "domain '{}' must not contain commas or whitespace",
            shorten(domain)
        ));
    }
    Ok(domain.to_string())
}

/// Records the definition of the `kind` block `name` (stream, template, vod, auth_backend) on
/// `line`, refusing a second block of that kind and name.
fn define_once(lines: &mut HashMap<String, usize>, kind: &str, name: &str, line: usize) -> Result<(), String> {
    if let Some(first) = lines.get(name) {
        return Err(format!(
            "duplicate {kind} '{}': first defined at line {first}, again at line {line}",
            shorten(name)
        ));
    }
    lines.insert(name.to_string(), line);
    Ok(())
}

/// `auth_spec` option names that are fields of their own, so `extra` cannot carry them.
pub(crate) const RESERVED_OPTIONS: [&str; 8] = [
    "session_keys",
    "domains",
    "require_referer",
    "max_sessions",
    "soft_limitation",
    "sign_key",
    "allowed_countries",
    "disallowed_countries",
];

/// `US,de` → `["US", "DE"]`: two-letter ISO 3166-1 codes separated by commas, no empty item.
pub(crate) fn parse_countries(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err("the list is empty (omit the option for no country gate)".into());
    }
    let mut out: Vec<String> = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty country (two commas, or a trailing comma)".into());
        }
        let code = super::model::parse_country(item)?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

/// A country listed in both gates of `spec`, which would be contradictory.
pub(crate) fn countries_in_both(spec: &AuthSpec) -> Option<&str> {
    spec.allowed_countries
        .iter()
        .find(|c| spec.disallowed_countries.contains(c))
        .map(String::as_str)
}

/// The option an extra's key was probably meant to be: an extra is sent to the backend as it
/// is, so `session_key=` or `max_session=` silently does nothing on the server side. A key
/// resembles an option when it differs only by case, `-` for `_`, a missing or added plural
/// (`s`, `y` for `ies`), or by at most two edits (for keys of six characters and more).
pub(crate) fn near_miss(key: &str) -> Option<&'static str> {
    let folded = key.to_ascii_lowercase().replace('-', "_");
    RESERVED_OPTIONS.iter().copied().find(|known| {
        if key == *known {
            return false;
        }
        folded == *known
            || format!("{folded}s") == *known
            || folded.strip_suffix('s') == Some(known)
            || folded
                .strip_suffix('y')
                .is_some_and(|stem| format!("{stem}ies") == *known)
            || (folded.len() >= 6 && edit_distance(&folded, known) <= 2)
    })
}

/// Levenshtein distance over bytes (keys are ASCII words; a non-ASCII key simply differs).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::print::size_word;

    #[test]
    fn config_listen_forms() {
        assert_eq!(parse_listen("80"), Ok(SocketAddr::new(DEFAULT_LISTEN_IP, 80)));
        assert_eq!(parse_listen("127.0.0.1:0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(parse_listen("[::]:8080"), Ok("[::]:8080".parse().unwrap()));
        assert!(parse_listen("65536").is_err());
        assert!(parse_listen("1.2.3.4:").is_err());
        assert!(parse_listen("::1").is_err());
    }

    #[test]
    fn config_numbers_are_plain_digits_in_range() {
        assert_eq!(parse_seconds("1"), Ok(1));
        assert_eq!(parse_seconds(&MAX_CONFIG_SECONDS.to_string()), Ok(MAX_CONFIG_SECONDS));
        for bad in [
            "",
            "0",
            "+1",
            "-1",
            "1.5",
            "1s",
            " 1",
            &(MAX_CONFIG_SECONDS + 1).to_string(),
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_positive_u32("4294967295"), Ok(u32::MAX));
        assert!(parse_positive_u32("4294967296").is_err());
        assert!(parse_positive_u32("0").is_err());
    }

    #[test]
    fn config_dvr_words_read_the_vendors_units() {
        assert_eq!(dvr_word("3600"), Ok(DvrWord::Depth(3600)));
        assert_eq!(dvr_word("2d"), Ok(DvrWord::Depth(172_800)));
        assert_eq!(dvr_word("12h"), Ok(DvrWord::Depth(43_200)));
        assert_eq!(dvr_word("30m"), Ok(DvrWord::Depth(1800)), "lower-case m is minutes");
        assert_eq!(dvr_word("1w"), Ok(DvrWord::Depth(604_800)));
        assert_eq!(dvr_word("10G"), Ok(DvrWord::Size(10 << 30)));
        assert_eq!(
            dvr_word("500M"),
            Ok(DvrWord::Size(500 << 20)),
            "upper-case M is mebibytes"
        );
        assert_eq!(dvr_word("95%"), Ok(DvrWord::Percent(95)));
        for bad in [
            "",
            "d",
            "0d",
            "101%",
            "10x",
            "1.5d",
            "-1d",
            "400d",
            "99999999999999999999T",
        ] {
            assert!(dvr_word(bad).is_err(), "{bad:?}");
        }
        for bytes in [1u64 << 10, 3 << 20, 10 << 30, 2 << 40, 1536 << 10] {
            assert_eq!(dvr_word(&size_word(bytes)), Ok(DvrWord::Size(bytes)));
        }
    }

    #[test]
    fn config_near_misses_of_options_are_recognised() {
        assert_eq!(near_miss("session_key"), Some("session_keys"));
        assert_eq!(near_miss("max_session"), Some("max_sessions"));
        assert_eq!(near_miss("domain"), Some("domains"));
        assert_eq!(near_miss("Domains"), Some("domains"));
        assert_eq!(near_miss("soft-limitation"), Some("soft_limitation"));
        assert_eq!(near_miss("allowed_country"), Some("allowed_countries"));
        assert_eq!(near_miss("disallowed_countrys"), Some("disallowed_countries"));
        for fine in ["site", "region", "extra", "domains", "sig", "partner_id"] {
            assert_eq!(near_miss(fine), None, "{fine}");
        }
    }

    #[test]
    fn config_targets() {
        assert_eq!(
            AuthTarget::parse("HTTP://b/x"),
            Ok(AuthTarget::Http("HTTP://b/x".into()))
        );
        assert!(AuthTarget::parse("").is_err());
        assert!(AuthTarget::parse("True").is_err());
        assert!(AuthTarget::parse("securetoken://k").is_err());
    }
}
