//! Script backends (SCR, AMB-19): `on_play /path/auth.lua` runs the file in an embedded Lua 5.4
//! with the vendor's contract.
//!
//! The script sees a global `req` table (the T1 fields: `name`, `ip`, `proto`, `token`,
//! `request_type`, `request_number`, `session_id`, `stream_clients`, `total_clients`,
//! `duration`, `bytes`, `qs`, `dvr`, `user_agent`, `referer`, `host`, plus the `extra` options)
//! and answers with `return true, {user_id=…, max_sessions=…, auth_time=…, unique=…}` or
//! `return false, {code=N, auth_time=…}` (SCR-03). `http.get(url)` returns
//! `{code=…, headers={…lower-case names…}, body=…}` (or `nil, message`) and `http.qs_encode(t)`
//! builds a query string, so a script can ask HTTP backends itself (SCR-02, SCR-04).
//!
//! Containment: every call gets a fresh Lua state (no state leaks between viewers) with only
//! the `string`, `table`, `math`, `utf8` libraries and `os.time/clock/date/difftime`; no file,
//! process, module or bytecode access. Memory is capped ([`MEMORY_LIMIT`]). The caller's 3 s
//! budget is the core's one timer, as for every backend kind; the runner's own deadline (the
//! same length, from the call's start) is there to give the blocking thread back: an
//! instruction hook raises an error once it has passed (and `pcall`/`xpcall` re-raise it, so a
//! script cannot swallow it), and `http.get` gets only what is left of it. Scripts run on
//! Tokio's blocking pool, at most [`MAX_CONCURRENT`] at once, never on the async workers. An error, a timeout, an exhausted memory cap or a return value
//! of the wrong shape is "no decision" (T11), logged with the script path and Lua's message
//! (which carries the line). The source is cached by path and reloaded when the file's
//! modification time or length changes.
//!
//! Known limit: a single long-running C function (a pathological `string.find` pattern) cannot
//! be interrupted by the hook; the caller still gets "no decision" when the core's timer ends the
//! call, and the worker thread finishes the pattern on its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use tokio::sync::Semaphore;

use super::backend::{
    Answer, BACKEND_TIMEOUT, Backend, BackendRequest, DEFAULT_AUTH_DURATION, Grant, MAX_BODY_BYTES, encode_pairs,
    parse_auth_duration,
};

/// Memory one script call may allocate, Lua state included.
pub const MEMORY_LIMIT: usize = 16 * 1024 * 1024;
/// Scripts running at once; further calls wait (within their own budget) for a slot.
pub const MAX_CONCURRENT: usize = 16;
/// VM instructions between two deadline checks.
const HOOK_EVERY: u32 = 1000;

/// The message a script sees (and the log shows) when its time is up.
const OUT_OF_TIME: &str = "script exceeded its 3 s time budget";

/// A script's source as last read, with what identifies that version of the file.
#[derive(Debug)]
struct Source {
    modified: Option<SystemTime>,
    len: u64,
    text: Arc<[u8]>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    cache: Mutex<HashMap<PathBuf, Source>>,
    slots: Arc<Semaphore>,
    memory_limit: usize,
    budget: Duration,
}

/// The script backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ScriptBackend {
    inner: Arc<Inner>,
}

impl ScriptBackend {
    pub fn new() -> Result<ScriptBackend, reqwest::Error> {
        Self::with_limits(BACKEND_TIMEOUT, MEMORY_LIMIT)
    }

    /// A backend with another time budget or memory cap (tests).
    pub fn with_limits(budget: Duration, memory_limit: usize) -> Result<ScriptBackend, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(budget)
            .connect_timeout(budget)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("usher/", env!("CARGO_PKG_VERSION"), " (lua)"))
            .build()?;
        Ok(ScriptBackend {
            inner: Arc::new(Inner {
                http,
                cache: Mutex::new(HashMap::new()),
                slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
                memory_limit,
                budget,
            }),
        })
    }
}

impl Backend for ScriptBackend {
    fn call(&self, target: &str, request: &BackendRequest) -> BoxFuture<'static, Answer> {
        let inner = self.inner.clone();
        let path = PathBuf::from(target);
        let request = request.clone();
        let deadline = Instant::now() + inner.budget;
        Box::pin(async move {
            let shown = path.display().to_string();
            let answer = async {
                let Ok(slot) = inner.slots.clone().acquire_owned().await else {
                    return Answer::NoDecision {
                        reason: "script runner closed".into(),
                    };
                };
                let runtime = tokio::runtime::Handle::current();
                let task = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    run(&inner, &path, &request, deadline, &runtime)
                });
                match task.await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(reason)) => Answer::NoDecision { reason },
                    Err(e) => Answer::NoDecision {
                        reason: format!("script runner failed: {e}"),
                    },
                }
            }
            .await;
            if let Answer::NoDecision { reason } = &answer {
                tracing::warn!(script = %shown, error = %reason, "script backend gave no decision");
            }
            answer
        })
    }
}

/// Runs one call on the current (blocking) thread. `Err` is "no decision" with its reason.
fn run(
    inner: &Inner,
    path: &Path,
    request: &BackendRequest,
    deadline: Instant,
    runtime: &tokio::runtime::Handle,
) -> Result<Answer, String> {
    let source = load_source(inner, path)?;
    let lua = sandbox(inner.memory_limit).map_err(|e| format!("cannot set up Lua: {e}"))?;
    let expired = Arc::new(AtomicBool::new(false));
    install_deadline(&lua, deadline, expired.clone()).map_err(|e| format!("cannot set up Lua: {e}"))?;
    install_request(&lua, request).map_err(|e| lua_error(path, &e))?;
    install_http(&lua, inner.http.clone(), deadline, runtime.clone()).map_err(|e| lua_error(path, &e))?;
    let values: MultiValue = lua
        .load(&*source)
        .set_name(format!("@{}", path.display()))
        .set_mode(ChunkMode::Text)
        .call(())
        .map_err(|e| {
            if expired.load(Ordering::Relaxed) {
                format!("{}: {OUT_OF_TIME}", path.display())
            } else {
                lua_error(path, &e)
            }
        })?;
    read_return(values).map_err(|m| format!("{}: wrong return value: {m}", path.display()))
}

fn lua_error(path: &Path, e: &mlua::Error) -> String {
    // Lua's own message names `path:line:`; the traceback after it is noise in a log line.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    if first.contains(&path.display().to_string()) {
        first.to_string()
    } else {
        format!("{}: {first}", path.display())
    }
}

/// The script's text, from the cache while the file's length and modification time stand.
fn load_source(inner: &Inner, path: &Path) -> Result<Arc<[u8]>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("script file {} does not exist", path.display()),
        _ => format!("script file {} cannot be read: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("script {} is not a regular file", path.display()));
    }
    let modified = meta.modified().ok();
    let mut cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cached) = cache.get(path)
        && cached.modified == modified
        && cached.len == meta.len()
    {
        return Ok(cached.text.clone());
    }
    let text: Arc<[u8]> = std::fs::read(path)
        .map_err(|e| format!("script file {} cannot be read: {e}", path.display()))?
        .into();
    tracing::info!(script = %path.display(), bytes = text.len(), "script (re)loaded");
    cache.insert(
        path.to_path_buf(),
        Source {
            modified,
            len: text.len() as u64,
            text: text.clone(),
        },
    );
    Ok(text)
}

/// A fresh state with the safe libraries only and the memory cap set.
fn sandbox(memory_limit: usize) -> mlua::Result<Lua> {
    let lua = Lua::new_with(
        StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS,
        LuaOptions::default(),
    )?;
    let globals = lua.globals();
    for name in ["dofile", "loadfile", "load", "require", "collectgarbage"] {
        globals.set(name, Value::Nil)?;
    }
    let string: Table = globals.get("string")?;
    string.set("dump", Value::Nil)?;
    // `os` keeps only the clock functions: no exit, execute, remove, rename, getenv, tmpname.
    let os: Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "clock", "date", "difftime"] {
        safe_os.set(name, os.get::<Value>(name)?)?;
    }
    globals.set("os", safe_os)?;
    // `print` goes to the log, not to the server's stdout.
    let print = lua.create_function(|lua, args: MultiValue| {
        let tostring: mlua::Function = lua.globals().get("tostring")?;
        let mut parts = Vec::new();
        for v in args {
            parts.push(tostring.call::<String>(v).unwrap_or_else(|_| "?".into()));
        }
        tracing::info!(output = %parts.join("\t"), "script print");
        Ok(())
    })?;
    globals.set("print", print)?;
    lua.set_memory_limit(memory_limit)?;
    Ok(lua)
}

/// The time budget: an instruction hook that fails once `deadline` has passed, and `pcall` /
/// `xpcall` wrappers that re-raise that failure so a script cannot catch it and go on.
fn install_deadline(lua: &Lua, deadline: Instant, expired: Arc<AtomicBool>) -> mlua::Result<()> {
    let flag = expired.clone();
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_lua, _debug| {
            if flag.load(Ordering::Relaxed) || Instant::now() >= deadline {
                flag.store(true, Ordering::Relaxed);
                return Err(mlua::Error::runtime(OUT_OF_TIME));
            }
            Ok(VmState::Continue)
        },
    )?;
    let globals = lua.globals();
    for name in ["pcall", "xpcall"] {
        let original: mlua::Function = globals.get(name)?;
        let flag = expired.clone();
        let wrapped = lua.create_function(move |_, args: MultiValue| {
            let out: MultiValue = original.call(args)?;
            if flag.load(Ordering::Relaxed) {
                return Err(mlua::Error::runtime(OUT_OF_TIME));
            }
            Ok(out)
        })?;
        globals.set(name, wrapped)?;
    }
    Ok(())
}

/// The global `req` table (SCR-02): T1 fields with Lua types (integers, a boolean `dvr`),
/// absent optional fields left `nil`, the `extra` options as further string fields.
fn install_request(lua: &Lua, request: &BackendRequest) -> mlua::Result<()> {
    let req = lua.create_table()?;
    req.set("name", request.name.as_str())?;
    req.set("proto", request.proto.as_str())?;
    req.set("ip", request.ip.to_string())?;
    req.set("request_type", request.request_type.as_str())?;
    req.set("request_number", request.request_number)?;
    req.set("session_id", request.session_id.to_string())?;
    req.set("stream_clients", request.stream_clients)?;
    req.set("total_clients", request.total_clients)?;
    req.set("dvr", request.dvr)?;
    for (key, value) in [
        ("token", &request.token),
        ("qs", &request.qs),
        ("user_agent", &request.user_agent),
        ("referer", &request.referer),
        ("host", &request.host),
    ] {
        if let Some(v) = value {
            req.set(key, v.as_str())?;
        }
    }
    if let Some(d) = request.duration {
        req.set("duration", d)?;
    }
    if let Some(b) = request.bytes {
        req.set("bytes", b)?;
    }
    for (k, v) in &request.extra {
        if req.get::<Value>(k.as_str())?.is_nil() {
            req.set(k.as_str(), v.as_str())?;
        }
    }
    lua.globals().set("req", req)
}

/// The `http` table: `get(url)` within the call's remaining budget, and `qs_encode(t)`.
fn install_http(
    lua: &Lua,
    client: reqwest::Client,
    deadline: Instant,
    runtime: tokio::runtime::Handle,
) -> mlua::Result<()> {
    let http = lua.create_table()?;
    let get = lua.create_function(move |lua, url: String| {
        let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Ok((
                Value::Nil,
                // Handed to the script and maybe logged with its error: redacted.
                Some(format!(
                    "http.get: '{}' is not an http:// or https:// URL",
                    crate::redact::Url(&url)
                )),
            ));
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return Err(mlua::Error::runtime(OUT_OF_TIME));
        };
        let fetch = async {
            // Errors without the URL: it may carry the viewer's token (logs never hold it whole).
            let mut response = client
                .get(&url)
                .timeout(left)
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            let status = response.status().as_u16();
            let headers: Vec<(String, Vec<u8>)> = response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY_BYTES {
                    return Err("answer body over 1 MiB".to_string());
                }
            }
            Ok::<_, String>((status, headers, body))
        };
        let outcome = match runtime.block_on(async { tokio::time::timeout(left, fetch).await }) {
            Ok(result) => result,
            Err(_) => Err("timeout".to_string()),
        };
        match outcome {
            Ok((status, headers, body)) => {
                let answer = lua.create_table()?;
                answer.set("code", status)?;
                let table = lua.create_table()?;
                for (k, v) in headers {
                    // Repeated headers join with ", " as HTTP allows.
                    let joined = match table.get::<Option<mlua::LuaString>>(k.as_str())? {
                        Some(prev) => [prev.as_bytes().as_ref(), b", ", &v].concat(),
                        None => v,
                    };
                    table.set(k, lua.create_string(&joined)?)?;
                }
                answer.set("headers", table)?;
                answer.set("body", lua.create_string(&body)?)?;
                Ok((Value::Table(answer), None))
            }
            Err(e) => {
                // Redacted: the query may carry the viewer's token, the authority a password.
                let shown = crate::redact::url(&url);
                tracing::debug!(url = %shown, error = %e, "script http.get failed");
                Ok((Value::Nil, Some(format!("http.get {shown}: {e}"))))
            }
        }
    })?;
    http.set("get", get)?;
    let qs_encode = lua.create_function(|_, table: Table| {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in table.pairs::<Value, Value>() {
            let (k, v) = pair?;
            let key = scalar_text(&k)
                .ok_or_else(|| mlua::Error::runtime("http.qs_encode: keys must be strings or numbers"))?;
            let value = scalar_text(&v).ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "http.qs_encode: the value of '{key}' is a {}, not a string, number or boolean",
                    v.type_name()
                ))
            })?;
            pairs.push((key, value));
        }
        // Lua tables have no order; sorting keeps the query stable.
        pairs.sort();
        Ok(encode_pairs(&pairs))
    })?;
    http.set("qs_encode", qs_encode)?;
    lua.globals().set("http", http)
}

/// A string, number or boolean as query text (integral floats without `.0`).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Number(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 => Some(format!("{}", *n as i64)),
        Value::Number(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads `return true|false [, table]` (SCR-03). `Err` names what is wrong.
pub(crate) fn read_return(values: MultiValue) -> Result<Answer, String> {
    let mut values = values.into_iter();
    let verdict = match values.next() {
        Some(Value::Boolean(b)) => b,
        Some(other) => {
            return Err(format!(
                "expected `return true, {{…}}` or `return false, {{…}}`; the first value is a {}",
                other.type_name()
            ));
        }
        None => return Err("the script returned nothing; expected `return true, {…}` or `return false, {…}`".into()),
    };
    let table = match values.next() {
        None | Some(Value::Nil) => None,
        Some(Value::Table(t)) => Some(t),
        Some(other) => {
            return Err(format!("the second value must be a table, not a {}", other.type_name()));
        }
    };
    let field = |name: &str| -> Result<Value, String> {
        match &table {
            Some(t) => t.get::<Value>(name).map_err(|e| format!("{name}: {e}")),
            None => Ok(Value::Nil),
        }
    };
    let auth_time = match field("auth_time")? {
        Value::Nil => None,
        v => Some(
            whole_number(&v)
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("auth_time must be a whole number of seconds ≥ 0, not {}", describe(&v)))?,
        ),
    };
    let duration = match auth_time {
        Some(n) => parse_auth_duration(Some(&n.to_string())),
        None => DEFAULT_AUTH_DURATION,
    };
    if !verdict {
        let status = match field("code")? {
            Value::Nil => 403,
            v => whole_number(&v)
                .filter(|n| (400..=499).contains(n))
                .ok_or_else(|| format!("code must be a 4xx status, not {}", describe(&v)))? as u16,
        };
        return Ok(Answer::Deny { status, duration });
    }
    let user_id = match field("user_id")? {
        Value::Nil => None,
        Value::String(s) => Some(s.to_string_lossy()),
        v @ (Value::Integer(_) | Value::Number(_)) => scalar_text(&v),
        v => return Err(format!("user_id must be a string or a number, not {}", describe(&v))),
    }
    .filter(|u| !u.is_empty());
    let max_sessions = match field("max_sessions")? {
        Value::Nil => None,
        v => Some(
            whole_number(&v)
                .filter(|n| (1..=i64::from(u32::MAX)).contains(n))
                .ok_or_else(|| format!("max_sessions must be a positive whole number, not {}", describe(&v)))?
                as u32,
        ),
    };
    let unique = match field("unique")? {
        Value::Nil => false,
        Value::Boolean(b) => b,
        v => return Err(format!("unique must be a boolean, not {}", describe(&v))),
    };
    Ok(Answer::Allow(Grant {
        duration,
        user_id,
        max_sessions,
        unique,
        ..Grant::default()
    }))
}

fn whole_number(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Number(n) if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 => Some(*n as i64),
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string \"{}\"", s.to_string_lossy()),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use uuid::Uuid;

    use super::*;
    use crate::auth::backend::{CallKind, RequestType};
    use crate::auth::proto::Proto;

    fn request(token: &str) -> BackendRequest {
        BackendRequest {
            kind: CallKind::Play,
            name: "live/cam".into(),
            proto: Proto::Hls,
            ip: "127.0.0.7".parse().expect("ip literal"),
            request_type: RequestType::NewSession,
            request_number: 1,
            session_id: Uuid::nil(),
            stream_clients: 2,
            total_clients: 5,
            token: Some(token.into()),
            duration: None,
            bytes: None,
            qs: Some(format!("token={token}")),
            dvr: false,
            user_agent: Some("VLC/3.0".into()),
            referer: None,
            host: Some("localhost".into()),
            extra: [("client".to_string(), "usher".to_string())].into(),
            sign_key: None,
        }
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let dir = std::env::temp_dir().join(format!("usher-lua-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Dir(dir)
        }

        fn script(&self, name: &str, text: &str) -> String {
            let path = self.0.join(name);
            let mut f = std::fs::File::create(&path).expect("create script");
            f.write_all(text.as_bytes()).expect("write script");
            path.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn call(script: &str, token: &str) -> Answer {
        let backend = ScriptBackend::new().expect("client");
        backend.call(script, &request(token)).await
    }

    fn no_decision(a: &Answer) -> String {
        match a {
            Answer::NoDecision { reason } => reason.clone(),
            other => panic!("expected no decision, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_vendor_contract_allows_and_denies() {
        let dir = Dir::new();
        let script = dir.script(
            "auth.lua",
            r#"
            if req.token == "good" then
              return true, {user_id = "u-" .. req.token, max_sessions = 2, auth_time = 60}
            end
            if req.token == "bare" then return true end
            if req.token == "empty" then return true, {} end
            if req.token == "unique" then return true, {unique = true, user_id = 42} end
            if req.token == "teapot" then return false, {code = 418, auth_time = 9} end
            return false
            "#,
        );
        assert_eq!(
            call(&script, "good").await,
            Answer::Allow(Grant {
                duration: Duration::from_secs(60),
                user_id: Some("u-good".into()),
                max_sessions: Some(2),
                ..Grant::default()
            })
        );
        for token in ["bare", "empty"] {
            assert_eq!(
                call(&script, token).await,
                Answer::Allow(Grant {
                    duration: DEFAULT_AUTH_DURATION,
                    ..Grant::default()
                })
            );
        }
        let Answer::Allow(g) = call(&script, "unique").await else {
            panic!("allow")
        };
        assert!(g.unique);
        assert_eq!(g.user_id.as_deref(), Some("42"));
        assert_eq!(
            call(&script, "teapot").await,
            Answer::Deny {
                status: 418,
                duration: Duration::from_secs(9)
            }
        );
        assert_eq!(
            call(&script, "other").await,
            Answer::Deny {
                status: 403,
                duration: DEFAULT_AUTH_DURATION
            }
        );
    }

    #[tokio::test]
    async fn req_has_the_request_fields_with_lua_types() {
        let dir = Dir::new();
        let script = dir.script(
            "fields.lua",
            r#"
            local want = {
              name = "live/cam", ip = "127.0.0.7", proto = "hls", token = "t", request_type = "new_session",
              request_number = 1, session_id = "00000000-0000-0000-0000-000000000000", stream_clients = 2,
              total_clients = 5, qs = "token=t", dvr = false, user_agent = "VLC/3.0", host = "localhost",
              client = "usher",
            }
            for k, v in pairs(want) do
              if req[k] ~= v then return false, {code = 400 + #k} end
            end
            if math.type(req.request_number) ~= "integer" then return false, {code = 499} end
            if req.referer ~= nil or req.duration ~= nil then return false, {code = 498} end
            return true
            "#,
        );
        assert!(
            matches!(call(&script, "t").await, Answer::Allow(_)),
            "{:?}",
            call(&script, "t").await
        );
    }

    #[tokio::test]
    async fn wrong_shapes_errors_and_missing_files_are_no_decision() {
        let dir = Dir::new();
        for (name, text, needle) in [
            ("nothing.lua", "local x = 1", "returned nothing"),
            ("string.lua", "return 'yes'", "first value is a string"),
            ("second.lua", "return true, 5", "second value must be a table"),
            (
                "auth_time.lua",
                "return true, {auth_time = 'soon'}",
                "auth_time must be a whole number",
            ),
            (
                "negative.lua",
                "return true, {auth_time = -1}",
                "auth_time must be a whole number",
            ),
            ("code.lua", "return false, {code = 200}", "code must be a 4xx status"),
            (
                "max.lua",
                "return true, {max_sessions = 0}",
                "max_sessions must be a positive",
            ),
            (
                "user.lua",
                "return true, {user_id = {}}",
                "user_id must be a string or a number",
            ),
            (
                "throws.lua",
                "local a = 1\nerror('backend table missing')",
                "throws.lua:2: backend table missing",
            ),
            ("nil_index.lua", "\n\nreturn req.nothing.field", "nil_index.lua:3:"),
            ("syntax.lua", "return true,, {}", "syntax.lua:1:"),
            ("io.lua", "return io.open('/etc/passwd') ~= nil", "global 'io'"),
            ("exit.lua", "os.exit(1)", "field 'exit'"),
            ("load.lua", "return load('return true')()", "global 'load'"),
        ] {
            let script = dir.script(name, text);
            let reason = no_decision(&call(&script, "t").await);
            assert!(reason.contains(needle), "{name}: {reason}");
            assert!(reason.contains(name), "{name}: the reason names the script: {reason}");
        }
        let missing = dir.0.join("missing.lua").display().to_string();
        let reason = no_decision(&call(&missing, "t").await);
        assert!(reason.contains("does not exist"), "{reason}");
    }

    #[tokio::test]
    async fn runaway_scripts_are_stopped_within_the_budget() {
        let dir = Dir::new();
        // A short time budget for the loops; the memory cases get the real budget and a small
        // cap, so that on a loaded machine they run out of memory before they run out of time.
        let fast = ScriptBackend::with_limits(Duration::from_millis(300), MEMORY_LIMIT).expect("client");
        let small = ScriptBackend::with_limits(BACKEND_TIMEOUT, 2 * 1024 * 1024).expect("client");
        let cases: [(&ScriptBackend, &str, &str, &str); 5] = [
            (&fast, "loop.lua", "while true do end", "time budget"),
            (
                &fast,
                "pcall_loop.lua",
                "while true do pcall(function() while true do end end) end",
                "time budget",
            ),
            (
                &fast,
                "xpcall_loop.lua",
                "while true do xpcall(function() while true do end end, function(e) return e end) end",
                "time budget",
            ),
            (
                &small,
                "alloc.lua",
                "local t = {} local i = 0 while true do i = i + 1 t[i] = string.rep('x', 1024) .. i end",
                "memory",
            ),
            (
                &small,
                "bigstring.lua",
                "local s = 'x' while true do s = s .. s end",
                "memory",
            ),
        ];
        for (backend, name, text, needle) in cases {
            let script = dir.script(name, text);
            let started = Instant::now();
            let reason = no_decision(&backend.call(&script, &request("t")).await);
            let took = started.elapsed();
            assert!(reason.contains(needle), "{name}: {reason}");
            assert!(
                took < BACKEND_TIMEOUT + Duration::from_millis(500),
                "{name} took {took:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_edited_script_is_reloaded() {
        let dir = Dir::new();
        let script = dir.script("edit.lua", "return false");
        let backend = ScriptBackend::new().expect("client");
        assert!(matches!(
            backend.call(&script, &request("t")).await,
            Answer::Deny { .. }
        ));
        dir.script("edit.lua", "return true, {user_id = 'after edit'}");
        let Answer::Allow(g) = backend.call(&script, &request("t")).await else {
            panic!("allow after edit")
        };
        assert_eq!(g.user_id.as_deref(), Some("after edit"));
    }

    /// The cost of one call: `cargo test -p usher-server --release --lib -- --ignored
    /// measure_call_cost --nocapture`. Reported in docs/spec.md.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn measure_call_cost() {
        let dir = Dir::new();
        let script = dir.script(
            "bench.lua",
            "if req.token == 'good' then return true, {user_id = 'u', auth_time = 60} end return false",
        );
        let backend = ScriptBackend::new().expect("client");
        let inner = backend.inner.clone();
        let runtime = tokio::runtime::Handle::current();
        let n = 2000;
        let (path, req) = (PathBuf::from(&script), request("good"));
        let direct = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            for _ in 0..n {
                let deadline = Instant::now() + BACKEND_TIMEOUT;
                assert!(matches!(
                    run(&inner, &path, &req, deadline, &runtime),
                    Ok(Answer::Allow(_))
                ));
            }
            started.elapsed() / n
        })
        .await
        .expect("bench thread");
        let state_only = {
            let started = Instant::now();
            for _ in 0..n {
                let lua = sandbox(MEMORY_LIMIT).expect("state");
                drop(lua);
            }
            started.elapsed() / n
        };
        let started = Instant::now();
        for _ in 0..n {
            assert!(matches!(
                backend.call(&script, &request("good")).await,
                Answer::Allow(_)
            ));
        }
        let through_call = started.elapsed() / n;
        eprintln!(
            "lua state alone: {state_only:?}/call; run on one thread: {direct:?}/call; \
             Backend::call (slot + spawn_blocking): {through_call:?}/call"
        );
    }

    #[tokio::test]
    async fn qs_encode_is_sorted_and_percent_encoded() {
        let dir = Dir::new();
        let script = dir.script(
            "qs.lua",
            r#"
            local q = http.qs_encode({token = "a&b c", n = 3, f = 1.0, ok = true, name = "é"})
            return true, {user_id = q}
            "#,
        );
        let Answer::Allow(g) = call(&script, "t").await else {
            panic!("allow")
        };
        assert_eq!(
            g.user_id.as_deref(),
            Some("f=1&n=3&name=%C3%A9&ok=true&token=a%26b%20c")
        );
        let bad = dir.script("qs_bad.lua", "return true, {user_id = http.qs_encode({t = {}})}");
        assert!(no_decision(&call(&bad, "t").await).contains("value of 't' is a table"));
    }
}
