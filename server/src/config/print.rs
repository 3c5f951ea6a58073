//! Printer of the Flussonic-style configuration file: the model as config text that
//! [`parse_config`](super::parse_config) reads back to an equal `Config`.

use std::fmt;
use std::net::SocketAddr;

use super::lex::is_special;
use super::model::{
    AuthSpec, Config, DEFAULT_AUTH_TOKEN_PARAM, DEFAULT_LISTEN_IP, Protocols, SessionKeys, StreamConfig,
};

/// A token as the lexer reads it back: bare when it can be, else double-quoted.
pub(super) fn quoted(text: &str) -> String {
    if !text.is_empty() && !text.chars().any(|c| is_special(c) || c == '"' || c == '\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn write_listen(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    addr: Option<SocketAddr>,
    limits: &super::model::ListenLimits,
) -> fmt::Result {
    let Some(a) = addr else { return Ok(()) };
    if a.ip() == DEFAULT_LISTEN_IP {
        write!(f, "{name} {}", a.port())?;
    } else {
        write!(f, "{name} {a}")?;
    }
    if let Some(n) = limits.max_connections {
        write!(f, " max_connections={n}")?;
    }
    if let Some(n) = limits.max_connections_per_ip {
        write!(f, " max_connections_per_ip={n}")?;
    }
    writeln!(f, ";")
}

fn write_auth(f: &mut fmt::Formatter<'_>, which: &str, spec: &AuthSpec) -> fmt::Result {
    write!(f, "  {which} {}", quoted(&spec.target.to_string()))?;
    if spec.session_keys != SessionKeys::default() {
        write!(
            f,
            " {}",
            quoted(&format!("session_keys={}", spec.session_keys.to_items().join(",")))
        )?;
    }
    if !spec.domains.is_empty() {
        write!(f, " {}", quoted(&format!("domains={}", spec.domains.join(","))))?;
    }
    if spec.require_referer {
        write!(f, " require_referer=true")?;
    }
    if let Some(n) = spec.max_sessions {
        write!(f, " max_sessions={n}")?;
    }
    if spec.soft_limitation {
        write!(f, " soft_limitation=true")?;
    }
    if !spec.allowed_countries.is_empty() {
        write!(f, " allowed_countries={}", spec.allowed_countries.join(","))?;
    }
    if !spec.disallowed_countries.is_empty() {
        write!(f, " disallowed_countries={}", spec.disallowed_countries.join(","))?;
    }
    for (k, v) in &spec.extra {
        write!(f, " {}", quoted(&format!("{k}={v}")))?;
    }
    if let Some(key) = &spec.sign_key {
        write!(f, " {}", quoted(&format!("sign_key={key}")))?;
    }
    writeln!(f, ";")
}

#[allow(clippy::too_many_arguments)]
fn write_dvr(f: &mut fmt::Formatter<'_>, dvr: Option<&super::model::DvrConfig>) -> fmt::Result {
    match dvr {
        Some(d) => {
            write!(f, "  dvr {} {}", quoted(&d.root), d.depth.as_secs())?;
            if let Some(bytes) = d.storage_limit {
                write!(f, " {}", size_word(bytes))?;
            }
            if let Some(p) = d.disk_usage_limit {
                write!(f, " {p}%")?;
            }
            writeln!(f, ";")
        }
        None => Ok(()),
    }
}

/// The body of a `stream` or `template` block (`prefixes` is empty for a stream), closing brace
/// included.
fn write_block(f: &mut fmt::Formatter<'_>, prefixes: &[String], stream: &StreamConfig) -> fmt::Result {
    for p in prefixes {
        writeln!(f, "  prefix {};", quoted(p))?;
    }
    for i in &stream.inputs {
        writeln!(f, "  input {};", quoted(i))?;
    }
    if let Some(spec) = &stream.on_play {
        write_auth(f, "on_play", spec)?;
    }
    if let Some(spec) = &stream.on_publish {
        write_auth(f, "on_publish", spec)?;
    }
    if let Some(p) = &stream.password {
        writeln!(f, "  password {};", quoted(p))?;
    }
    let protocols = &stream.protocols;
    if *protocols != Protocols::default() {
        // Whichever form lists fewer names; with none on, only the `-NAME` form can say it.
        let (on, off): (Vec<&str>, Vec<&str>) = Protocols::NAMES
            .iter()
            .copied()
            .partition(|n| protocols.get(n) == Some(true));
        if on.is_empty() || off.len() <= on.len() {
            let off: Vec<String> = off.iter().map(|n| format!("-{n}")).collect();
            writeln!(f, "  protocols {};", off.join(" "))?;
        } else {
            writeln!(f, "  protocols {};", on.join(" "))?;
        }
    }
    write_dvr(f, stream.dvr.as_ref())?;
    writeln!(f, "}}")
}

/// Prints the configuration as a file that [`parse_config`] reads back to an equal `Config`
/// (for any `Config` the parser could have produced; durations print in whole seconds).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caps = &self.connection_limits;
        write_listen(f, "http", self.http, &caps.http)?;
        write_listen(f, "rtmp", self.rtmp, &caps.rtmp)?;
        write_listen(f, "rtsp", self.rtsp, &caps.rtsp)?;
        write_listen(f, "mysql", self.mysql, &caps.mysql)?;
        if self.session_history != super::model::SessionHistoryConfig::default() {
            let path = self.session_history.path.as_deref().unwrap_or(":memory:");
            write!(f, "session_history {}", quoted(path))?;
            if self.session_history.retention_days != super::model::DEFAULT_HISTORY_RETENTION_DAYS {
                write!(f, " retention={}", self.session_history.retention_days)?;
            }
            if let Some(rows) = self.session_history.max_rows {
                write!(f, " max_rows={rows}")?;
            }
            writeln!(f, ";")?;
        }
        if let Some(store) = &self.session_store {
            write!(f, "session_store {}", quoted(&store.url))?;
            if let Some(node) = &store.node {
                write!(f, " node={node}")?;
            }
            if store.on_loss != super::model::OnStoreLoss::default() {
                write!(f, " on_loss={}", store.on_loss.as_str())?;
            }
            writeln!(f, ";")?;
        }
        if self.auth_token != DEFAULT_AUTH_TOKEN_PARAM {
            writeln!(f, "auth_token {};", quoted(&self.auth_token))?;
        }
        if self.no_auto_token {
            writeln!(f, "no_auto_token;")?;
        }
        if let Some(c) = &self.edit_auth {
            writeln!(f, "edit_auth {} {};", quoted(&c.login), quoted(&c.password))?;
        }
        if let Some(s) = &self.server_secret {
            writeln!(f, "server_secret {};", quoted(s))?;
        }
        if self.admin_token_ttl != super::model::DEFAULT_ADMIN_TOKEN_TTL {
            writeln!(f, "admin_token_ttl {};", self.admin_token_ttl.as_secs())?;
        }
        if self.http_session_idle != super::model::DEFAULT_HTTP_SESSION_IDLE {
            writeln!(f, "http_session_idle {};", self.http_session_idle.as_secs())?;
        }
        if let Some(root) = &self.media_root {
            writeln!(f, "media_root {};", quoted(root))?;
        }
        if self.template_stream_idle != super::model::DEFAULT_TEMPLATE_STREAM_IDLE {
            writeln!(f, "template_stream_idle {};", self.template_stream_idle.as_secs())?;
        }
        if self.soft_limitation_delay != super::model::DEFAULT_SOFT_LIMITATION_DELAY {
            writeln!(f, "soft_limitation_delay {};", self.soft_limitation_delay.as_secs())?;
        }
        if self.template_stream_limit != super::model::DEFAULT_TEMPLATE_STREAM_LIMIT {
            writeln!(f, "template_stream_limit {};", self.template_stream_limit)?;
        }
        if let Some(db) = &self.geoip_db {
            writeln!(f, "geoip_db {};", quoted(db))?;
        }
        for b in &self.auth_backends {
            super::parse::auth_backend::write_auth_backend(f, b)?;
        }
        for t in &self.templates {
            writeln!(f, "\ntemplate {} {{", quoted(t.name()))?;
            write_block(f, &t.prefixes, &t.stream)?;
        }
        for s in &self.streams {
            writeln!(f, "\nstream {} {{", quoted(&s.name))?;
            write_block(f, &[], s)?;
        }
        for v in &self.vods {
            writeln!(f, "\nvod {} {{", quoted(&v.name))?;
            writeln!(f, "  storage {};", quoted(&v.storage))?;
            if let Some(spec) = &v.on_play {
                write_auth(f, "on_play", spec)?;
            }
            writeln!(f, "}}")?;
        }
        Ok(())
    }
}

/// A size in the largest binary unit that divides it (`10G`), as the parser's `dvr_word` reads it.
pub(super) fn size_word(bytes: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    // Sizes are read in K at least, so this is only reached for a hand-built value.
    format!("{}K", bytes.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lex::words;

    #[test]
    fn config_quoting_is_only_added_when_needed() {
        assert_eq!(quoted("fake://fake"), "fake://fake");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted("a;b"), "\"a;b\"");
        assert_eq!(quoted("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        for text in ["", "a b", "x#y", "{}", "\"", "\\", "é\n\t", "k=v"] {
            assert_eq!(words(&quoted(text)), [(text.to_string(), 1, 1)]);
        }
    }
}
