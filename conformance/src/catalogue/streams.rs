//! Static mode: the streams a case declares, read from its steps, so a server without a management
//! API can load them from its configuration file before the run (`usher check --print-config`).
//!
//! Only the stream declarations `a stream "s" with on_play auth [and …]`, `a stream "s" without
//! authorization` and `a publishing point "p" [with on_publish auth] [and on_play auth] [and
//! password "…"]`, and `the backend is unreachable`, shape a stream. A case whose streams cannot
//! be read this way (streams put by the operator) needs the `api` feature. At run time the static
//! target compares every stream a case puts in place with what was printed, so a mismatch fails
//! with a message instead of testing something else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use url::Url;

use super::{Case, StepText};
use crate::target::{AuthSettings, StreamSpec};

/// The port of the backend URL that stands for "unreachable" in static mode: nothing listens on
/// TCP port 1 (tcpmux) on any ordinary host, so a connection is refused.
pub const STATIC_UNREACHABLE_PORT: u16 = 1;

/// The input line printed for every stream, unless `--input` says otherwise.
pub const DEFAULT_INPUT: &str = "fake://fake";

/// A stream as a case declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticStream {
    /// The scenario's name for it (`s`); the server's name is `<case key>-<alias>`.
    pub alias: String,
    /// `without authorization`: no `on_play` at all.
    pub no_auth: bool,
    pub session_keys: Option<Vec<String>>,
    pub domains: Vec<String>,
    pub max_sessions: Option<u32>,
    pub soft_limitation: bool,
    pub require_referer: bool,
    /// `a backend URL with query "site=1"`.
    pub backend_query: Option<String>,
    /// The case says `the backend is unreachable`.
    pub unreachable: bool,
    /// `a publishing point`: the stream takes publishers (`input publish://`).
    pub publish: bool,
    /// A publishing point checks its publishers (`on_publish auth`).
    pub on_publish: bool,
    /// A publishing point's `password "…"`.
    pub password: Option<String>,
}

impl StaticStream {
    /// A stream with no option set: a plain viewer stream with `on_play` unless `no_auth`.
    fn plain(alias: &str, no_auth: bool, unreachable: bool) -> Self {
        StaticStream {
            alias: alias.to_string(),
            no_auth,
            session_keys: None,
            domains: Vec::new(),
            max_sessions: None,
            soft_limitation: false,
            require_referer: false,
            backend_query: None,
            unreachable,
            publish: false,
            on_publish: false,
            password: None,
        }
    }
}

static DECLARE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^a stream "([^"]+)" (?:with on_play auth(?: and (.+))?|(without authorization))$"#)
        .expect("a valid regex")
});
static OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:session_keys "([^"]*)"|domains "([^"]*)"|max_sessions (\d+)|a backend URL with query "([^"]*)"|(soft_limitation)|(require_referer))$"#,
    )
    .expect("a valid regex")
});
static PUBLISHING_POINT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^a publishing point "([^"]+)"(?: with (.+))?$"#).expect("a valid regex"));
static PUBLISHING_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:(on_publish auth)|(on_play auth)|password "([^"]+)")$"#).expect("a valid regex")
});
/// Steps that put a stream in place some other way: the case is not static.
static OTHER_STREAM_SETUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:a stream "|a publishing point "|the operator puts stream ")"#).expect("a valid regex")
});

/// `a publishing point "p" with on_publish auth and password "secret"`, as the step reads it.
fn publishing_point(text: &str, unreachable: bool) -> Option<Option<StaticStream>> {
    let caps = PUBLISHING_POINT.captures(text)?;
    let mut stream = StaticStream {
        publish: true,
        ..StaticStream::plain(&caps[1], true, unreachable)
    };
    for item in caps
        .get(2)
        .map_or("", |m| m.as_str())
        .split(" and ")
        .filter(|s| !s.is_empty())
    {
        let Some(c) = PUBLISHING_OPTION.captures(item.trim()) else {
            return Some(None);
        };
        if c.get(1).is_some() {
            stream.on_publish = true;
        } else if c.get(2).is_some() {
            stream.no_auth = false;
        } else if let Some(p) = c.get(3) {
            stream.password = Some(p.as_str().to_string());
        }
    }
    Some(Some(stream))
}

/// The streams of a case; `None` when a step sets one up in a way this reader does not know.
pub fn derive(steps: &[StepText]) -> Option<Vec<StaticStream>> {
    let unreachable = steps.iter().any(|s| s.text == "the backend is unreachable");
    let mut out: Vec<StaticStream> = Vec::new();
    for step in steps {
        if let Some(point) = publishing_point(&step.text, unreachable) {
            let point = point?;
            out.retain(|s| s.alias != point.alias);
            out.push(point);
            continue;
        }
        let Some(caps) = DECLARE.captures(&step.text) else {
            if OTHER_STREAM_SETUP.is_match(&step.text) {
                return None;
            }
            continue;
        };
        let mut stream = StaticStream::plain(&caps[1], caps.get(3).is_some(), unreachable);
        let options = caps.get(2).map_or("", |m| m.as_str());
        for item in options.split(" and ").filter(|s| !s.is_empty()) {
            let c = OPTION.captures(item.trim())?;
            if let Some(keys) = c.get(1) {
                stream.session_keys = Some(keys.as_str().split(',').map(str::to_string).collect());
            } else if let Some(domains) = c.get(2) {
                stream.domains = domains.as_str().split(',').map(str::to_string).collect();
            } else if let Some(n) = c.get(3) {
                stream.max_sessions = Some(n.as_str().parse().ok()?);
            } else if let Some(q) = c.get(4) {
                stream.backend_query = Some(q.as_str().to_string());
            } else if c.get(5).is_some() {
                stream.soft_limitation = true;
            } else if c.get(6).is_some() {
                stream.require_referer = true;
            }
        }
        // A later declaration of the same alias replaces the earlier one, as in the steps.
        out.retain(|s| s.alias != stream.alias);
        out.push(stream);
    }
    Some(out)
}

/// The backend URL of a case's scope: `<base>/<key>/on_play`, or the unreachable stand-in.
pub fn backend_url(base: &Url, key: &str, stream: &StaticStream) -> String {
    let mut url = base
        .join(&format!("/{key}/on_play"))
        .expect("a case key is a valid path segment");
    // As the steps do it: a URL with its own query is used as it is, even when unreachable.
    if stream.unreachable && stream.backend_query.is_none() {
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(STATIC_UNREACHABLE_PORT));
    }
    let mut text = url.to_string();
    if let Some(q) = &stream.backend_query {
        text.push('?');
        text.push_str(q);
    }
    text
}

impl StaticStream {
    /// The server's name of this stream in case `key`.
    pub fn server_name(&self, key: &str) -> String {
        format!("{key}-{}", self.alias)
    }

    /// The `on_publish` URL of a publishing point: beside the case's `on_play` path, as the
    /// steps put it (`/<case key>/on_publish`).
    pub fn publish_url(&self, base: &Url, key: &str) -> String {
        Url::parse(&backend_url(base, key, self))
            .and_then(|u| u.join("on_publish"))
            .map_or_else(|_| backend_url(base, key, self), |u| u.to_string())
    }

    /// What the steps will ask the target to serve (compared at run time).
    pub fn spec(&self, base: &Url, key: &str) -> StreamSpec {
        if self.publish {
            return StreamSpec {
                on_play: (!self.no_auth).then(|| AuthSettings {
                    url: backend_url(base, key, self),
                    ..AuthSettings::default()
                }),
                on_publish: self.on_publish.then(|| AuthSettings {
                    url: self.publish_url(base, key),
                    ..AuthSettings::default()
                }),
                publish: true,
                password: self.password.clone(),
                ..StreamSpec::default()
            };
        }
        StreamSpec {
            on_play: (!self.no_auth).then(|| AuthSettings {
                url: backend_url(base, key, self),
                session_keys: self.session_keys.clone(),
                domains: self.domains.clone(),
                max_sessions: self.max_sessions,
                soft_limitation: self.soft_limitation,
                require_referer: self.require_referer,
            }),
            ..StreamSpec::default()
        }
    }
}

/// Whether static mode can set up a case's streams: readable, and no stream management needed
/// (a case whose streams cannot be read needs `api`, see [`super::Catalogue::load`]).
pub fn is_static(case: &Case) -> bool {
    case.streams.is_some() && !case.needs.contains("api")
}

/// Every stream static mode expects, by server name.
pub fn expected_streams<'a>(cases: impl IntoIterator<Item = &'a Case>, base: &Url) -> BTreeMap<String, StreamSpec> {
    let mut out = BTreeMap::new();
    for case in cases.into_iter().filter(|c| is_static(c)) {
        for stream in case.streams.iter().flatten() {
            out.insert(stream.server_name(&case.key), stream.spec(base, &case.key));
        }
    }
    out
}

/// A token of the configuration file, quoted when it holds a character that ends a token.
fn token(text: &str) -> String {
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#' | '"')) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.to_string()
    }
}

/// The Flussonic-style stream blocks of every static case: one block per stream, grouped by
/// case, in catalogue order. Names and contents depend only on the catalogue, `base` and `input`.
pub fn print_config<'a>(cases: impl IntoIterator<Item = &'a Case>, base: &Url, input: &str) -> String {
    let cases: Vec<&Case> = cases.into_iter().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Streams for `usher check --static` (generated by `usher check --print-config`).\n\
         # Every case has its own streams, named <case key>-<alias>, and its own backend path\n\
         # {base}<case key>/on_play. Load these blocks into the server under test, start it, then run\n\
         # usher check --static --target http://HOST:PORT --backend-listen ADDR --backend-url {base}\n\
         # The backend URL must be reachable from the server; port {STATIC_UNREACHABLE_PORT} stands for a backend that is down."
    );
    let skipped: Vec<&&Case> = cases.iter().filter(|c| !is_static(c)).collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "# {} case(s) need the management API and have no streams here (they are SKIP in static mode).",
            skipped.len()
        );
    }
    for case in cases.iter().filter(|c| is_static(c)) {
        let streams = case.streams.as_deref().unwrap_or_default();
        if streams.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n# {}: {} ({})", case.key, case.title, case.location);
        for stream in streams {
            let _ = writeln!(out, "stream {} {{", token(&stream.server_name(&case.key)));
            if stream.publish {
                let _ = writeln!(out, "  input publish://;");
                if !stream.no_auth {
                    let _ = writeln!(out, "  on_play {};", token(&backend_url(base, &case.key, stream)));
                }
                if stream.on_publish {
                    let _ = writeln!(out, "  on_publish {};", token(&stream.publish_url(base, &case.key)));
                }
                if let Some(password) = &stream.password {
                    let _ = writeln!(out, "  password {};", token(password));
                }
                let _ = writeln!(out, "}}");
                continue;
            }
            let _ = writeln!(out, "  input {};", token(input));
            if stream.no_auth {
                let _ = writeln!(out, "}}");
                continue;
            }
            let mut line = format!("  on_play {}", token(&backend_url(base, &case.key, stream)));
            if let Some(keys) = &stream.session_keys {
                line.push_str(&format!(" {}", token(&format!("session_keys={}", keys.join(",")))));
            }
            if !stream.domains.is_empty() {
                line.push_str(&format!(" {}", token(&format!("domains={}", stream.domains.join(",")))));
            }
            if let Some(n) = stream.max_sessions {
                line.push_str(&format!(" max_sessions={n}"));
            }
            if stream.soft_limitation {
                line.push_str(" soft_limitation=true");
            }
            if stream.require_referer {
                line.push_str(" require_referer=true");
            }
            let _ = writeln!(out, "{line};");
            let _ = writeln!(out, "}}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(texts: &[&str]) -> Vec<StepText> {
        texts
            .iter()
            .map(|t| StepText {
                keyword: "Given".into(),
                text: (*t).into(),
                line: 1,
                background: false,
            })
            .collect()
    }

    #[test]
    fn declarations_are_read() {
        let s = derive(&steps(&[
            r#"a stream "s" with on_play auth and session_keys "ip,name,proto,token" and max_sessions 2"#,
            r#"a stream "d" with on_play auth and domains "a.com,b.com" and a backend URL with query "site=1""#,
            "the backend is unreachable",
            r#"viewer "A" from 127.0.0.2 plays "s" over HLS with token "t1""#,
        ]))
        .expect("static");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].session_keys.as_deref().map(<[String]>::len), Some(4));
        assert_eq!(s[0].max_sessions, Some(2));
        assert_eq!(s[1].domains, ["a.com", "b.com"]);
        assert_eq!(s[1].backend_query.as_deref(), Some("site=1"));
        assert!(s.iter().all(|s| s.unreachable));
    }

    #[test]
    fn unknown_setups_are_not_static() {
        assert!(derive(&steps(&[r#"a stream "s" with on_play auth and protocols "hls""#])).is_none());
        assert!(derive(&steps(&[r#"a stream "s" with on_publish auth"#])).is_none());
        assert!(
            derive(&steps(&[
                r#"a publishing point "p" with on_publish auth and protocols "rtmp""#
            ]))
            .is_none()
        );
        let s = derive(&steps(&[r#"a stream "s" without authorization"#])).unwrap();
        assert!(s[0].no_auth);
        assert_eq!(s[0].spec(&Url::parse("http://b/").unwrap(), "k").on_play, None);
        assert!(derive(&steps(&[r#"the operator puts stream "s" with on_play auth"#])).is_none());
        assert_eq!(derive(&steps(&["the backend allows every token"])), Some(vec![]));
    }

    #[test]
    fn publishing_points_are_read_and_printed() {
        let base = Url::parse("http://10.0.0.1:9099").unwrap();
        let s = derive(&steps(&[
            r#"a publishing point "p" with on_publish auth and password "secret""#,
        ]))
        .expect("static")
        .remove(0);
        assert!(s.publish && s.on_publish && s.no_auth);
        let spec = s.spec(&base, "k-1");
        assert!(spec.publish && spec.on_play.is_none());
        assert_eq!(spec.on_publish.unwrap().url, "http://10.0.0.1:9099/k-1/on_publish");
        assert_eq!(spec.password.as_deref(), Some("secret"));
        let bare = derive(&steps(&[r#"a publishing point "p""#]))
            .expect("static")
            .remove(0);
        assert!(bare.publish && !bare.on_publish && bare.password.is_none());
    }

    #[test]
    fn urls_and_tokens() {
        let base = Url::parse("http://10.0.0.1:9099").unwrap();
        let mut s = derive(&steps(&[
            r#"a stream "s" with on_play auth and a backend URL with query "a=1&b=2""#,
        ]))
        .unwrap()
        .remove(0);
        assert_eq!(
            backend_url(&base, "k-1", &s),
            "http://10.0.0.1:9099/k-1/on_play?a=1&b=2"
        );
        s.unreachable = true;
        assert_eq!(
            backend_url(&base, "k-1", &s),
            "http://10.0.0.1:9099/k-1/on_play?a=1&b=2"
        );
        s.backend_query = None;
        assert_eq!(backend_url(&base, "k-1", &s), "http://127.0.0.1:1/k-1/on_play");
        assert_eq!(token("a b"), "\"a b\"");
        assert_eq!(token("x=1,2"), "x=1,2");
    }
}
