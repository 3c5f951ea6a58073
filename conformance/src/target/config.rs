//! `--target-config FILE`: a TOML manifest of a third-party target — where it is, how the suite's
//! backend is reached from it, and what it supports (its **capabilities**). Cases that need what
//! the target lacks are SKIP, not FAIL.
//!
//! ```toml
//! target = "http://10.0.0.5:8080/"   # the HTTP port: HLS, MPEG-TS, management API
//! rtmp = "10.0.0.5:1935"             # optional
//! rtsp = "10.0.0.5:8554"             # optional
//! api_auth = "admin:secret"          # management API credential (or --api-auth)
//! static = false                     # true: streams come from `usher check --print-config`
//! rtmp_app = "static"                # the application in RTMP URLs (default `static`)
//!
//! [backend]
//! listen = "0.0.0.0:9099"            # where the suite's auth backend listens
//! url = "http://10.0.0.1:9099"       # how the target reaches it
//! dialect = "flussonic"              # or "nginx-rtmp", "nginx-auth-request", "srs", "mediamtx"
//!
//! [source]                           # the suite publishes each case's stream itself
//! publish = "rtmp://10.0.0.5:1935/static/{name}"   # or "http://10.0.0.5:8080/{name}/mpegts"
//! ready = "http://10.0.0.5:8080/ready/{name}"     # optional: polled until 2xx before viewers play
//!
//! [capabilities]
//! protocols = ["hls", "mpegts", "rtmp"]
//! features = ["api", "sessions_api", "admin_tokens", "server_config"]
//! default_protocol = "rtmp"          # what protocol-neutral cases play over (default: hls)
//! ```
//!
//! Command-line options override the file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::catalogue::needs::PROTOCOLS;
use crate::dialect::Dialect;
use crate::source::SourceSpec;

/// A problem in the manifest, naming its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TargetConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub listen: Option<SocketAddr>,
    pub url: Option<Url>,
    /// How the target calls its backend; omitted: `flussonic`.
    pub dialect: Option<Dialect>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `rtmp://HOST:PORT/APP/{name}` or `[PUT |POST ]http://HOST:PORT/PATH/{name}` (MPEG-TS):
    /// where the suite publishes each case's stream.
    pub publish: Option<Spanned<String>>,
    /// `http://…/{name}…`: answers 2xx once a published stream can be played.
    pub ready: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesSection {
    /// Omitted: the protocols whose addresses are given (HLS and MPEG-TS always, RTMP and RTSP
    /// when `rtmp`/`rtsp` are set).
    pub protocols: Option<BTreeSet<String>>,
    /// Omitted: every feature (or, in static mode, every feature but the management API ones).
    pub features: Option<BTreeSet<String>>,
    /// The protocol of the cases that play `over the target's protocol`; omitted: HLS when
    /// the target serves it, else the first protocol it serves (hls, mpegts, rtmp, rtsp).
    pub default_protocol: Option<Spanned<String>>,
}

/// `[cluster]`: the target is several servers sharing a session store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Every node's HTTP base URL, node A (the target) first; each is managed with the
    /// target's credential.
    #[serde(default)]
    pub members: Vec<Url>,
}

/// The manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub target: Option<Url>,
    pub rtmp: Option<String>,
    pub rtsp: Option<String>,
    pub api_auth: Option<String>,
    #[serde(default, rename = "static")]
    pub static_mode: bool,
    /// The application in viewers' and publishers' RTMP URLs; omitted: `static`.
    pub rtmp_app: Option<String>,
    #[serde(default)]
    pub backend: BackendSection,
    #[serde(default)]
    pub source: SourceSection,
    #[serde(default)]
    pub capabilities: CapabilitiesSection,
    #[serde(default)]
    pub cluster: ClusterSection,
}

impl TargetConfig {
    pub fn load(path: &Path) -> Result<TargetConfig, TargetConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TargetConfigError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        TargetConfig::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<TargetConfig, TargetConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let config: TargetConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(s.start));
            let mut message = e.message().to_string();
            // Name the key of the line when the parser's message does not (`unknown variant`).
            if let Some(key) = text
                .lines()
                .nth(line.wrapping_sub(1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !message.contains(&format!("`{k}`")))
            {
                message = format!("`{key}`: {message}");
            }
            TargetConfigError {
                file: file.to_string(),
                line,
                message,
            }
        })?;
        match (&config.source.publish, &config.source.ready) {
            (Some(publish), ready) => {
                let spec = SourceSpec::parse(publish.get_ref()).map_err(|problem| TargetConfigError {
                    file: file.to_string(),
                    line: line_of(publish.span().start),
                    message: format!("`publish`: {problem}"),
                })?;
                if let Some(ready) = ready
                    && let Err(problem) = spec.with_ready(ready.get_ref())
                {
                    return Err(TargetConfigError {
                        file: file.to_string(),
                        line: line_of(ready.span().start),
                        message: format!("`ready`: {problem}"),
                    });
                }
            }
            (None, Some(ready)) => {
                return Err(TargetConfigError {
                    file: file.to_string(),
                    line: line_of(ready.span().start),
                    message: "`ready`: without `publish` there is no source to wait for".to_string(),
                });
            }
            (None, None) => {}
        }
        if let Some(app) = &config.rtmp_app
            && (app.is_empty() || app.contains(['/', '?', '#']) || app.contains(char::is_whitespace))
        {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("rtmp_app"))
                .map_or(0, |i| i + 1);
            return Err(TargetConfigError {
                file: file.to_string(),
                line,
                message: format!("`rtmp_app`: `{app}` is not one RTMP application name"),
            });
        }
        if let Some(protocols) = &config.capabilities.protocols
            && let Some(unknown) = protocols.iter().find(|p| !PROTOCOLS.contains(&p.as_str()))
        {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("protocols"))
                .map_or(0, |i| i + 1);
            return Err(TargetConfigError {
                file: file.to_string(),
                line,
                message: format!("unknown protocol `{unknown}` (known: {})", PROTOCOLS.join(", ")),
            });
        }
        if let Some(default) = &config.capabilities.default_protocol {
            let name = default.get_ref();
            let problem = if !PROTOCOLS.contains(&name.as_str()) {
                Some(format!("unknown protocol `{name}` (known: {})", PROTOCOLS.join(", ")))
            } else {
                config
                    .capabilities
                    .protocols
                    .as_ref()
                    .filter(|declared| !declared.contains(name))
                    .map(|declared| {
                        let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
                        format!("`{name}` is not among the declared protocols [{}]", declared.join(", "))
                    })
            };
            if let Some(problem) = problem {
                return Err(TargetConfigError {
                    file: file.to_string(),
                    line: line_of(default.span().start),
                    message: format!("`default_protocol`: {problem}"),
                });
            }
        }
        Ok(config)
    }
}

impl TargetConfig {
    /// The suite's own source, as `[source]` gives it (checked by [`TargetConfig::parse`]).
    pub fn source_spec(&self) -> Result<Option<SourceSpec>, String> {
        let Some(publish) = &self.source.publish else {
            return Ok(None);
        };
        let spec = SourceSpec::parse(publish.get_ref())?;
        match &self.source.ready {
            Some(ready) => spec.with_ready(ready.get_ref()).map(Some),
            None => Ok(Some(spec)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_manifest_parses() {
        let c = TargetConfig::parse(
            r#"
target = "http://10.0.0.5:8080/"
rtmp = "10.0.0.5:1935"
api_auth = "admin:secret"
static = true

[backend]
listen = "0.0.0.0:9099"
url = "http://10.0.0.1:9099"

[capabilities]
protocols = ["hls", "rtmp"]
features = ["sessions_api"]
"#,
            "t.toml",
        )
        .unwrap();
        assert!(c.static_mode);
        assert_eq!(c.rtmp.as_deref(), Some("10.0.0.5:1935"));
        assert_eq!(c.backend.listen, Some("0.0.0.0:9099".parse().unwrap()));
        assert_eq!(c.capabilities.protocols.unwrap().len(), 2);
    }

    #[test]
    fn dialect_source_and_rtmp_app_parse() {
        let c = TargetConfig::parse(
            r#"
target = "http://127.0.0.1:8080/"
rtmp = "127.0.0.1:1935"
static = true
rtmp_app = "live"

[backend]
listen = "127.0.0.1:9099"
dialect = "nginx-rtmp"

[source]
publish = "rtmp://127.0.0.1:1935/live/{name}"
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.backend.dialect, Some(Dialect::NginxRtmp));
        assert_eq!(c.rtmp_app.as_deref(), Some("live"));
        let source = c.source_spec().unwrap().expect("a source");
        assert!(matches!(source.form, crate::source::Form::Rtmp { ref app, .. } if app == "live"));
        assert_eq!(source.ready, None);
        assert_eq!(TargetConfig::parse("", "t.toml").unwrap().backend.dialect, None);
    }

    /// Bad input names the key and its line (the CLI exits 2 with it).
    #[test]
    fn bad_dialects_keys_and_publish_urls_name_key_and_line() {
        let e =
            TargetConfig::parse("[backend]\nlisten = \"127.0.0.1:9\"\ndialect = \"wowza\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("`dialect`") && e.message.contains("wowza"), "{e}");
        assert!(e.message.contains("nginx-rtmp"), "the known dialects are listed: {e}");
        let e = TargetConfig::parse("[source]\npublish = \"rtmp://h:1/live/x\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("`publish`") && e.message.contains("{name}"), "{e}");
        let e = TargetConfig::parse("[source]\n\npublsh = \"rtmp://h:1/live/{name}\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("publsh"), "{e}");
        let e = TargetConfig::parse("[source]\npublish = \"ftp://h/{name}\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("`publish`") && e.message.contains("`ftp`"), "{e}");
        let e = TargetConfig::parse(
            "[source]\npublish = \"http://h:1/{name}/mpegts\"\nready = \"http://h:1/ready\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("`ready`") && e.message.contains("{name}"), "{e}");
        let e = TargetConfig::parse("[source]\nready = \"http://h:1/{name}\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("`ready`"), "{e}");
        let e = TargetConfig::parse("target = \"http://a/\"\nrtmp_app = \"a/b\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("rtmp_app"), "{e}");
    }

    #[test]
    fn default_protocol_is_one_of_the_declared_protocols() {
        let c = TargetConfig::parse(
            "[capabilities]\nprotocols = [\"rtmp\", \"hls\"]\ndefault_protocol = \"rtmp\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.capabilities.default_protocol.unwrap().into_inner(), "rtmp");
        let e = TargetConfig::parse("[capabilities]\ndefault_protocol = \"dash\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(
            e.message.contains("`default_protocol`") && e.message.contains("dash"),
            "{e}"
        );
        let e = TargetConfig::parse(
            "[capabilities]\nprotocols = [\"rtmp\"]\n\ndefault_protocol = \"hls\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("not among the declared protocols [rtmp]"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = TargetConfig::parse("target = \"http://a/\"\nrtmpp = \"x\"\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = TargetConfig::parse("[capabilities]\nprotocols = [\"hls\", \"dash2\"]\n", "t.toml").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("dash2"), "{e}");
    }
}
