//! The authorization configurator block (T7, CZR) and the `geoip_db` directive: the model, the
//! block parser, the printer and the management API's JSON shape.
//!
//! ```text
//! top          = "auth_backend" NAME "{" { rule } "}" | "geoip_db" PATH ";" ;
//! rule         = ("allow" | "deny") ("token" | "ip" | "country" | "ua") ITEM { ITEM } ";"
//!              | "backend" URL { KEY "=" VALUE } ";"
//!              | "allow" "default" ";" ;
//! ```
//!
//! Rules accumulate (two `allow token` lines make one list); their order in the block does not
//! matter, since evaluation follows the fixed order of CZR-01. The block parser lives in this
//! child module of the file parser so that it reads the same tokens and reports errors the same
//! way (`file:line:column: message`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{ConfigError, Parser, TOP_ONLY_DIRECTIVES, define_once, shorten};
use crate::config::lex::{Tok, Token};
use crate::config::print::quoted;
use crate::config::{AuthTarget, Config};

/// `auth_backend NAME { … }`: rules and backends that decide for streams whose `on_play` (or
/// `on_publish`) is `auth://NAME`. Field names follow the vendor's `auth_backend_config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthBackendConfig {
    pub name: String,
    /// `allow token T…;` — exact match on the client's token.
    pub allow_tokens: Vec<String>,
    pub deny_tokens: Vec<String>,
    /// `allow ip A…;` — addresses or CIDR prefixes, abbreviated IPv4 prefixes allowed (CZR-06).
    pub allow_ips: Vec<IpPrefix>,
    pub deny_ips: Vec<IpPrefix>,
    /// `allow country CC…;` — ISO 3166-1 alpha-2 codes, kept upper-case (CZR-07).
    pub allow_countries: Vec<String>,
    pub deny_countries: Vec<String>,
    /// `allow ua TEXT…;` — case-sensitive substrings of the user agent (AMB-22).
    pub allow_uas: Vec<String>,
    pub deny_uas: Vec<String>,
    /// `backend URL key=value…;` — HTTP backends asked in parallel (CZR-04, AMB-20).
    pub backends: Vec<BackendUrl>,
    /// `allow default;` — admit when no backend gives a decision (CZR-03).
    pub allow_default: bool,
}

impl AuthBackendConfig {
    pub fn new(name: impl Into<String>) -> AuthBackendConfig {
        AuthBackendConfig {
            name: name.into(),
            ..AuthBackendConfig::default()
        }
    }

    /// Whether any country rule is set (they need a `geoip_db` to ever match).
    pub fn has_country_rules(&self) -> bool {
        !self.allow_countries.is_empty() || !self.deny_countries.is_empty()
    }
}

/// One `backend` line of a configurator block: the URL and its static extras, which are sent
/// as additional query parameters like the extras of an `on_play` line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// An address prefix: the network address (host bits cleared) and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A prefix from an address and a length; host bits of `addr` are cleared. `None` when the
    /// length is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpPrefix> {
        let network = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
            _ => return None,
        };
        Some(IpPrefix { network, len })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Reads `ADDR`, `ADDR/LEN` or an abbreviated IPv4 prefix (`172.16/24`, `192.168.0/24`,
    /// `10/8`): missing octets are zero and the length is then required. Host bits are cleared
    /// (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<IpPrefix, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        if addr_text.is_empty() {
            return Err(format!("'{}' has no address before '/'", shorten(text)));
        }
        let len = match len_text {
            None => None,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => Some(
                l.parse::<u8>()
                    .map_err(|_| format!("bad prefix length '/{l}' in '{}'", shorten(text)))?,
            ),
            Some(l) => {
                return Err(format!(
                    "bad prefix length '/{}' in '{}' (expected a number of bits)",
                    shorten(l),
                    shorten(text)
                ));
            }
        };
        let addr = if addr_text.contains(':') {
            IpAddr::V6(
                addr_text
                    .parse::<Ipv6Addr>()
                    .map_err(|_| format!("'{}' is not an IPv6 address", shorten(addr_text)))?,
            )
        } else {
            let octets: Vec<&str> = addr_text.split('.').collect();
            if octets.len() > 4 {
                return Err(format!("'{}' has more than four octets", shorten(addr_text)));
            }
            let mut bytes = [0u8; 4];
            for (i, octet) in octets.iter().enumerate() {
                if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "'{}' is not an IPv4 address or prefix (octet {} is '{}')",
                        shorten(addr_text),
                        i + 1,
                        shorten(octet)
                    ));
                }
                bytes[i] = octet
                    .parse::<u8>()
                    .map_err(|_| format!("'{}': octet {} is {octet}, above 255", shorten(addr_text), i + 1))?;
            }
            if octets.len() < 4 && len.is_none() {
                return Err(format!(
                    "'{}' is an abbreviated address: give the prefix length, as in {}/{}",
                    shorten(addr_text),
                    addr_text,
                    octets.len() * 8
                ));
            }
            IpAddr::V4(Ipv4Addr::from(bytes))
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        IpPrefix::new(addr, len).ok_or_else(|| {
            format!(
                "prefix length /{len} is longer than the {max} bits of '{}'",
                shorten(addr_text)
            )
        })
    }

    /// Whether `ip` is inside the prefix. An IPv4-mapped IPv6 client (`::ffff:a.b.c.d`) is
    /// matched as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.len) == u128::from(net),
            _ => false,
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IpPrefix, D::Error> {
        let text = String::deserialize(d)?;
        IpPrefix::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// A country code of a `country` rule: two ASCII letters, returned upper-case.
pub fn parse_country(text: &str) -> Result<String, String> {
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(format!(
            "'{}' is not a two-letter ISO 3166-1 country code (such as US, DE, RU)",
            shorten(text)
        ))
    }
}

/// A `backend` URL: `http://` or `https://` with a host.
pub fn parse_backend_url(text: &str) -> Result<String, String> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "'{}' is not an HTTP backend (expected http://… or https://…)",
            shorten(text)
        ));
    }
    match AuthTarget::parse(text) {
        Ok(AuthTarget::Http(url)) => Ok(url),
        Ok(_) => Err(format!("'{}' is not an HTTP backend", shorten(text))),
        Err(e) => Err(e),
    }
}

/// A user-agent rule: any non-empty text.
fn check_ua(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("an empty user-agent text would match every client".into())
    } else {
        Ok(text.to_string())
    }
}

fn check_token(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("an empty token never matches; remove it".into())
    } else {
        Ok(text.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// File parser

/// What the file parser remembers about configurator blocks and `auth://` references while it
/// reads, to refuse repeats and dangling references with the position of the culprit.
#[derive(Debug, Default)]
pub(super) struct AuthBlocks {
    /// Block name → line of its definition.
    lines: HashMap<String, usize>,
    geoip_line: Option<usize>,
    /// Every `auth://NAME` target read, with the position of the target word.
    references: Vec<(String, usize, usize)>,
}

/// The `allow`/`deny` rule kinds, in the order of CZR-01.
const RULE_KINDS: &str = "token, ip, country, ua";
const BLOCK_DIRECTIVES: &str = "allow, deny, backend";
/// The top-level directives this block refuses as belonging to the top level: all but
/// `mysql` and `session_history`, which it reports as unknown directives.
const TOP_ONLY_HERE: &[&str] = TOP_ONLY_DIRECTIVES.split_at(TOP_ONLY_DIRECTIVES.len() - 2).0;

impl Parser<'_> {
    /// Reads a top-level `auth_backend NAME { … }` or `geoip_db PATH;`; `t` is the directive word.
    pub(super) fn auth_directive(&mut self, t: &Token, config: &mut Config) -> Result<(), ConfigError> {
        let Tok::Word(word) = &t.tok else {
            return Err(self.err(t, "expected auth_backend or geoip_db"));
        };
        if word == "geoip_db" {
            if let Some(first) = self.auth.geoip_line {
                return Err(self.err(t, format!("duplicate 'geoip_db' directive (first at line {first})")));
            }
            let (path, _) = self.expect_nonempty("the path of a MaxMind database file", "geoip_db")?;
            self.expect_semi("geoip_db PATH")?;
            self.auth.geoip_line = Some(t.line);
            config.geoip_db = Some(path);
            return Ok(());
        }
        let (name, at) = self.expect_nonempty("an auth_backend name", "auth_backend")?;
        define_once(&mut self.auth.lines, "auth_backend", &name, at.line).map_err(|m| self.err(&at, m))?;
        let block = self.auth_backend_block(name, t)?;
        config.auth_backends.push(block);
        Ok(())
    }

    /// Remembers an `auth://NAME` target so that [`Self::check_auth_references`] can refuse it
    /// when no block has that name.
    pub(super) fn note_auth_target(&mut self, target: &AuthTarget, at: &Token) {
        if let AuthTarget::Configurator(name) = target {
            self.auth.references.push((name.clone(), at.line, at.column));
        }
    }

    /// Refuses the first `auth://NAME` that names no `auth_backend` block of the file.
    pub(super) fn check_auth_references(&self) -> Result<(), ConfigError> {
        for (name, line, column) in &self.auth.references {
            if !self.auth.lines.contains_key(name) {
                let known: Vec<&str> = {
                    let mut k: Vec<&str> = self.auth.lines.keys().map(String::as_str).collect();
                    k.sort_unstable();
                    k
                };
                let hint = if known.is_empty() {
                    "the file has no auth_backend block".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(ConfigError {
                    file: self.file.to_string(),
                    line: *line,
                    column: *column,
                    message: format!(
                        "auth://{} names no auth_backend block ({hint}); add 'auth_backend {} {{ … }}'",
                        shorten(name),
                        quoted(name)
                    ),
                });
            }
        }
        Ok(())
    }

    fn auth_backend_block(&mut self, name: String, opener: &Token) -> Result<AuthBackendConfig, ConfigError> {
        let here = format!("auth_backend '{}'", shorten(&name));
        self.open_block("auth_backend", &name)?;
        let mut block = AuthBackendConfig::new(name);
        let mut default_line: Option<usize> = None;
        while let Some((word, t)) = self.block_entry(&here, opener, "a rule")? {
            match word.as_str() {
                "allow" | "deny" => {
                    let allow = word == "allow";
                    let (kind, at) = self.expect_word(&format!("a rule kind ({RULE_KINDS} or default)"), &word)?;
                    match kind.as_str() {
                        "default" if allow => {
                            if let Some(first) = default_line {
                                return Err(self.err(
                                    &at,
                                    format!("duplicate 'allow default' in {here} (first at line {first})"),
                                ));
                            }
                            self.expect_semi("allow default")?;
                            default_line = Some(t.line);
                            block.allow_default = true;
                        }
                        "default" => {
                            return Err(self.err(
                                &at,
                                "'deny default' is not a rule: refusing is already what happens when no rule \
                                 or backend admits a client; write 'allow default;' to admit instead",
                            ));
                        }
                        "token" | "ip" | "country" | "ua" => {
                            let what = format!("{word} {kind}");
                            let items = self.words_to_semi(
                                &format!("expected at least one value after '{what}', found ';'"),
                                &format!("{what} values"),
                            )?;
                            for (item, at) in items {
                                let bad = |m: String| self.err(&at, format!("{what}: {m}"));
                                match (kind.as_str(), allow) {
                                    ("token", true) => block.allow_tokens.push(check_token(&item).map_err(bad)?),
                                    ("token", false) => block.deny_tokens.push(check_token(&item).map_err(bad)?),
                                    ("ip", true) => block.allow_ips.push(IpPrefix::parse(&item).map_err(bad)?),
                                    ("ip", false) => block.deny_ips.push(IpPrefix::parse(&item).map_err(bad)?),
                                    ("country", true) => block.allow_countries.push(parse_country(&item).map_err(bad)?),
                                    ("country", false) => block.deny_countries.push(parse_country(&item).map_err(bad)?),
                                    (_, true) => block.allow_uas.push(check_ua(&item).map_err(bad)?),
                                    (_, false) => block.deny_uas.push(check_ua(&item).map_err(bad)?),
                                }
                            }
                        }
                        other => {
                            return Err(self.err(
                                &at,
                                format!(
                                    "unknown rule kind '{}' after '{word}' (expected {RULE_KINDS}{})",
                                    shorten(other),
                                    if allow { " or default" } else { "" }
                                ),
                            ));
                        }
                    }
                }
                "backend" => {
                    let (url_text, at) = self.expect_word("an http:// or https:// URL", "backend")?;
                    let url = parse_backend_url(&url_text).map_err(|m| self.err(&at, format!("backend: {m}")))?;
                    let mut extra = BTreeMap::new();
                    self.key_value_options("the backend URL", "backend", |_, _, key, value| {
                        extra.insert(key.to_string(), value.to_string());
                        Ok(())
                    })?;
                    self.expect_semi("backend URL options")?;
                    block.backends.push(BackendUrl { url, extra });
                }
                other => return Err(self.misplaced(&t, other, &here, TOP_ONLY_HERE, BLOCK_DIRECTIVES)),
            }
        }
        Ok(block)
    }
}

// ---------------------------------------------------------------------------------------------
// Printer

/// Prints one block as the parser reads it back (rules in the CZR-01 order).
pub(in crate::config) fn write_auth_backend(f: &mut fmt::Formatter<'_>, b: &AuthBackendConfig) -> fmt::Result {
    writeln!(f, "\nauth_backend {} {{", quoted(&b.name))?;
    let lists: [(&str, Vec<String>); 8] = [
        ("allow token", b.allow_tokens.iter().map(|t| quoted(t)).collect()),
        ("deny token", b.deny_tokens.iter().map(|t| quoted(t)).collect()),
        ("allow ip", b.allow_ips.iter().map(ToString::to_string).collect()),
        ("deny ip", b.deny_ips.iter().map(ToString::to_string).collect()),
        ("allow country", b.allow_countries.clone()),
        ("deny country", b.deny_countries.clone()),
        ("allow ua", b.allow_uas.iter().map(|t| quoted(t)).collect()),
        ("deny ua", b.deny_uas.iter().map(|t| quoted(t)).collect()),
    ];
    for (rule, items) in lists {
        if !items.is_empty() {
            writeln!(f, "  {rule} {};", items.join(" "))?;
        }
    }
    for backend in &b.backends {
        write!(f, "  backend {}", quoted(&backend.url))?;
        for (k, v) in &backend.extra {
            write!(f, " {}", quoted(&format!("{k}={v}")))?;
        }
        writeln!(f, ";")?;
    }
    if b.allow_default {
        writeln!(f, "  allow default;")?;
    }
    writeln!(f, "}}")
}

// ---------------------------------------------------------------------------------------------
// Management API JSON

/// The vendor's `auth_backend_config` JSON fields (T7).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiAuthBackend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    allow_tokens: Vec<String>,
    #[serde(default)]
    deny_tokens: Vec<String>,
    #[serde(default)]
    allow_ips: Vec<String>,
    #[serde(default)]
    deny_ips: Vec<String>,
    #[serde(default)]
    allow_countries: Vec<String>,
    #[serde(default)]
    deny_countries: Vec<String>,
    #[serde(default)]
    allow_uas: Vec<String>,
    #[serde(default)]
    deny_uas: Vec<String>,
    #[serde(default)]
    backends: Vec<BackendUrl>,
    #[serde(default)]
    allow_default: bool,
}

impl AuthBackendConfig {
    /// Reads the body of `PUT /streamer/api/v3/auth_backends/NAME`. Every list is checked
    /// like the file's rules; the error names the field and the item (`allow_ips[1]: …`).
    pub fn from_api_json(name: &str, body: &[u8]) -> Result<AuthBackendConfig, String> {
        let api: ApiAuthBackend = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if let Some(given) = &api.name
            && given != name
        {
            return Err(format!(
                "name: '{}' differs from the name in the path '{}'",
                shorten(given),
                shorten(name)
            ));
        }
        fn each<T>(field: &str, items: &[String], check: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| check(item).map_err(|m| format!("{field}[{i}]: {m}")))
                .collect()
        }
        let mut backends = Vec::new();
        for (i, b) in api.backends.into_iter().enumerate() {
            let url = parse_backend_url(&b.url).map_err(|m| format!("backends[{i}].url: {m}"))?;
            if b.extra.keys().any(String::is_empty) {
                return Err(format!("backends[{i}].extra: an option has an empty name"));
            }
            backends.push(BackendUrl { url, extra: b.extra });
        }
        Ok(AuthBackendConfig {
            name: name.to_string(),
            allow_tokens: each("allow_tokens", &api.allow_tokens, check_token)?,
            deny_tokens: each("deny_tokens", &api.deny_tokens, check_token)?,
            allow_ips: each("allow_ips", &api.allow_ips, IpPrefix::parse)?,
            deny_ips: each("deny_ips", &api.deny_ips, IpPrefix::parse)?,
            allow_countries: each("allow_countries", &api.allow_countries, parse_country)?,
            deny_countries: each("deny_countries", &api.deny_countries, parse_country)?,
            allow_uas: each("allow_uas", &api.allow_uas, check_ua)?,
            deny_uas: each("deny_uas", &api.deny_uas, check_ua)?,
            backends,
            allow_default: api.allow_default,
        })
    }

    /// The block in the API's JSON shape (with `name`).
    pub fn to_api_json(&self) -> serde_json::Value {
        let strings = |v: &[IpPrefix]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let api = ApiAuthBackend {
            name: Some(self.name.clone()),
            allow_tokens: self.allow_tokens.clone(),
            deny_tokens: self.deny_tokens.clone(),
            allow_ips: strings(&self.allow_ips),
            deny_ips: strings(&self.deny_ips),
            allow_countries: self.allow_countries.clone(),
            deny_countries: self.deny_countries.clone(),
            allow_uas: self.allow_uas.clone(),
            deny_uas: self.deny_uas.clone(),
            backends: self.backends.clone(),
            allow_default: self.allow_default,
        };
        serde_json::to_value(api).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> String {
        match IpPrefix::parse(text) {
            Ok(p) => p.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn ip_rules_accept_addresses_cidr_and_abbreviated_prefixes() {
        assert_eq!(prefix("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(prefix("172.16/24"), "172.16.0.0/24");
        assert_eq!(prefix("192.168.0/24"), "192.168.0.0/24");
        assert_eq!(prefix("10/8"), "10.0.0.0/8");
        assert_eq!(prefix("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(prefix("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(prefix("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(prefix("::1"), "::1/128");
        assert_eq!(prefix("2001:db8::1/48"), "2001:db8::/48");
    }

    #[test]
    fn bad_ip_rules_say_what_is_wrong() {
        for (text, needle) in [
            ("172.16", "abbreviated address: give the prefix length, as in 172.16/16"),
            ("300.1.1.1", "octet 1 is 300, above 255"),
            ("1.2.3.4.5", "more than four octets"),
            ("1..2/16", "octet 2 is ''"),
            ("10.0.0.0/33", "/33 is longer than the 32 bits"),
            ("::/129", "/129 is longer than the 128 bits"),
            ("10.0.0.0/", "bad prefix length '/'"),
            ("10.0.0.0/x", "bad prefix length '/x'"),
            ("/8", "no address before '/'"),
            ("gggg::1", "not an IPv6 address"),
            ("example.com", "not an IPv4 address or prefix"),
        ] {
            let got = prefix(text);
            assert!(got.contains(needle), "{text}: {got}");
        }
    }

    #[test]
    fn prefixes_match_inside_and_not_outside() {
        let p = IpPrefix::parse("172.16/24").expect("valid");
        assert!(p.contains("172.16.0.1".parse().expect("ip")));
        assert!(p.contains("172.16.0.255".parse().expect("ip")));
        assert!(!p.contains("172.16.1.0".parse().expect("ip")));
        assert!(
            p.contains("::ffff:172.16.0.9".parse().expect("ip")),
            "IPv4-mapped client"
        );
        assert!(!p.contains("2001:db8::1".parse().expect("ip")));
        let any = IpPrefix::parse("0.0.0.0/0").expect("valid");
        assert!(any.contains("8.8.8.8".parse().expect("ip")));
        let v6 = IpPrefix::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn countries_are_two_letters_upper_cased() {
        assert_eq!(parse_country("ru"), Ok("RU".into()));
        assert_eq!(parse_country("US"), Ok("US".into()));
        for bad in ["", "R", "RUS", "R1", "é"] {
            assert!(parse_country(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_json_checks_every_item_and_names_it() {
        let ok = AuthBackendConfig::from_api_json(
            "office",
            br#"{"allow_ips":["172.16/24"],"deny_tokens":["bad"],"backends":[{"url":"http://b/x","extra":{"k":"v"}}],"allow_default":true}"#,
        )
        .expect("valid body");
        assert_eq!(ok.allow_ips, [IpPrefix::parse("172.16.0.0/24").expect("valid")]);
        assert_eq!(ok.backends[0].extra.get("k").map(String::as_str), Some("v"));
        assert!(ok.allow_default);
        let back = AuthBackendConfig::from_api_json("office", ok.to_api_json().to_string().as_bytes());
        assert_eq!(back, Ok(ok));
        for (body, needle) in [
            (
                r#"{"allow_ips":["10.0.0.1","300.0.0.1"]}"#,
                "allow_ips[1]: '300.0.0.1': octet 1 is 300",
            ),
            (r#"{"deny_countries":["RUS"]}"#, "deny_countries[0]"),
            (r#"{"backends":[{"url":"ftp://x"}]}"#, "backends[0].url"),
            (r#"{"allow_ua":["x"]}"#, "unknown field `allow_ua`"),
            (r#"{"name":"other"}"#, "differs from the name in the path"),
        ] {
            match AuthBackendConfig::from_api_json("office", body.as_bytes()) {
                Ok(c) => panic!("{body} accepted as {c:?}"),
                Err(e) => assert!(e.contains(needle), "{body}: {e}"),
            }
        }
    }
}
