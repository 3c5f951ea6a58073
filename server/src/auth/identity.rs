//! Session identity: the hash over the configured session keys (SESS-01..04, AMB-9, AMB-11).

use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use axum::http::HeaderMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::proto::Proto;
use crate::config::{SessionKey, SessionKeys};

/// Value contributed by a listed key that has no value in the request (AMB-9).
pub const UNDEFINED: &str = "undefined";

/// The headers of a request that has none (RTMP, RTSP as the core sees them).
pub static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// What a request offers to the identity computation.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub name: &'a str,
    pub ip: IpAddr,
    pub proto: Proto,
    pub token: Option<&'a str>,
    /// The request's headers (names compare without case); [`NO_HEADERS`] for protocols
    /// without any.
    pub headers: &'a HeaderMap,
    /// Decoded query parameters of the client URL.
    pub query: &'a [(String, String)],
}

/// The identity of a session: SHA-256 over the values of the session keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity([u8; 32]);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", &hex::encode(self.0)[..12])
    }
}

impl Identity {
    /// Keys are taken in canonical (sorted) order so the order of the configured list does not
    /// matter; each value is length-prefixed so no choice of values can collide with another
    /// split; a duplicated key contributes twice (SESS-03).
    ///
    /// Every request computes this, so it allocates nothing: the hashed bytes are exactly
    /// `len(label) label len(value) value` per key, as they always were.
    pub fn compute(keys: &SessionKeys, facts: &RequestFacts<'_>) -> Identity {
        let keys = keys.keys();
        let mut hasher = Sha256::new();
        if keys.is_sorted() {
            for key in keys {
                hash_key(&mut hasher, key, facts);
            }
        } else {
            let mut sorted: Vec<&SessionKey> = keys.iter().collect();
            sorted.sort();
            for key in sorted {
                hash_key(&mut hasher, key, facts);
            }
        }
        Identity(hasher.finalize().into())
    }

    /// The `session_id` sent to the backend: a UUID (version 8 layout) derived from the
    /// identity, so one identity always has the same id (SESS-05, AMB-11).
    pub fn session_id(&self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The identity whose digest is `bytes` (as another server computed it: the shared
    /// session store names sessions by their digest).
    pub fn from_bytes(bytes: [u8; 32]) -> Identity {
        Identity(bytes)
    }

    /// The identity of an archive session (DVR-01/02) of a client whose live identity is
    /// `self`: archive playback over `proto` is never the live session, and each archive
    /// protocol (HLS index, MP4 export, TS export) is a session of its own, whatever the
    /// session keys list.
    pub fn for_archive(&self, proto: Proto) -> Identity {
        let mut hasher = Sha256::new();
        hasher.update(b"dvr");
        hasher.update(self.0);
        hasher.update(proto.as_str().as_bytes());
        Identity(hasher.finalize().into())
    }
}

/// One key's part of the identity: its label and its value (or `undefined`), each
/// length-prefixed.
fn hash_key(hasher: &mut Sha256, key: &SessionKey, facts: &RequestFacts<'_>) {
    let (label, label_tail) = match key {
        SessionKey::Name => ("name", ""),
        SessionKey::Ip => ("ip", ""),
        SessionKey::Proto => ("proto", ""),
        SessionKey::Token => ("token", ""),
        SessionKey::Header(h) => ("header.", h.as_str()),
        SessionKey::Query(q) => ("query.", q.as_str()),
    };
    hasher.update(((label.len() + label_tail.len()) as u64).to_be_bytes());
    hasher.update(label.as_bytes());
    hasher.update(label_tail.as_bytes());
    let mut ip = IpText::default();
    let value = match key {
        SessionKey::Name => Some(facts.name),
        SessionKey::Ip => {
            ip.write_ip(facts.ip);
            Some(ip.as_str())
        }
        SessionKey::Proto => Some(facts.proto.as_str()),
        SessionKey::Token => facts.token,
        // The first value that is text: a value that is not (bytes outside visible ASCII)
        // counts as absent, as it did when requests kept only their text headers.
        SessionKey::Header(h) => facts.headers.get_all(h.as_str()).iter().find_map(|v| v.to_str().ok()),
        SessionKey::Query(q) => facts.query.iter().find(|(name, _)| name == q).map(|(_, v)| v.as_str()),
    };
    let value = value.unwrap_or(UNDEFINED);
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value.as_bytes());
}

/// An IP address's text form, on the stack (an IPv6 address with a scope fits in 46 bytes).
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText { buf: [0; 64], len: 0 }
    }
}

impl IpText {
    /// Writes `ip` as `Display` does. An IPv4 address, by far the most common, is written
    /// digit by digit: through `core::fmt` it cost more instructions than the rest of a cached
    /// request's bookkeeping (docs/performance.md §4).
    fn write_ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(_) => {
                use std::fmt::Write as _;
                let _ = write!(self, "{ip}");
            }
        }
    }

    /// Appends one ASCII byte (an IPv4 text is at most 15 bytes, well inside the buffer).
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(token: Option<&'a str>, proto: Proto) -> RequestFacts<'a> {
        RequestFacts {
            name: "s1",
            ip: "127.0.0.2".parse().expect("ip literal"),
            proto,
            token,
            headers: &NO_HEADERS,
            query: &[],
        }
    }

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        let mut samples: Vec<std::net::IpAddr> = Vec::new();
        // Every octet value in every position.
        for a in 0..=255u8 {
            samples.push(std::net::Ipv4Addr::new(a, a.wrapping_mul(7), 255 - a, a.wrapping_add(100)).into());
        }
        for text in ["::1", "::ffff:127.0.0.2", "fe80::1", "2001:db8:0:0:1:0:0:1"] {
            samples.push(text.parse().expect("ip literal"));
        }
        for ip in samples {
            let mut text = IpText::default();
            text.write_ip(ip);
            assert_eq!(text.as_str(), ip.to_string(), "{ip:?}");
        }
    }

    #[test]
    fn order_of_keys_does_not_matter() {
        let a = SessionKeys::parse("ip,name,proto,token").expect("valid");
        let b = SessionKeys::parse("token,proto,name,ip").expect("valid");
        let f = facts(Some("t"), Proto::Hls);
        assert_eq!(Identity::compute(&a, &f), Identity::compute(&b, &f));
    }

    /// AMB-25: the default keys carry proto, so one protocol's grant never covers another.
    #[test]
    fn proto_is_part_of_identity_when_listed_and_by_default() {
        let with = SessionKeys::parse("ip,name,proto,token").expect("valid");
        assert_ne!(
            Identity::compute(&with, &facts(Some("t"), Proto::Hls)),
            Identity::compute(&with, &facts(Some("t"), Proto::Rtmp))
        );
        let default = SessionKeys::default();
        assert_ne!(
            Identity::compute(&default, &facts(Some("t"), Proto::Hls)),
            Identity::compute(&default, &facts(Some("t"), Proto::Rtmp))
        );
        assert_eq!(
            Identity::compute(&default, &facts(Some("t"), Proto::Hls)),
            Identity::compute(&with, &facts(Some("t"), Proto::Hls)),
            "the default is the list name, ip, proto, token"
        );
    }

    #[test]
    fn duplicates_count_and_missing_is_undefined() {
        let once = SessionKeys::parse("ip,name,proto,token").expect("valid");
        let twice = SessionKeys::parse("ip,name,proto,token,token").expect("valid");
        let f = facts(Some("t"), Proto::Hls);
        assert_ne!(Identity::compute(&once, &f), Identity::compute(&twice, &f));
        assert_eq!(
            Identity::compute(&once, &facts(None, Proto::Hls)),
            Identity::compute(&once, &facts(Some(UNDEFINED), Proto::Hls))
        );
    }

    /// The bytes hashed are those of the former construction (labels by `Display`, values as
    /// owned strings), so identities and session ids do not change.
    #[test]
    fn same_bytes_as_the_display_construction() {
        let keys = SessionKeys::parse("token,query.t,header.x-id,proto,name,ip,name").expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("x-id", axum::http::HeaderValue::from_static("h"));
        let query = vec![("t".to_string(), "q v".to_string())];
        for ip in ["127.0.0.2", "2001:db8::1"] {
            let f = RequestFacts {
                name: "live/s1",
                ip: ip.parse().expect("ip literal"),
                proto: Proto::Rtmp,
                token: Some("tok"),
                headers: &headers,
                query: &query,
            };
            let mut sorted: Vec<&SessionKey> = keys.keys().iter().collect();
            sorted.sort();
            let mut hasher = Sha256::new();
            for key in sorted {
                let label = key.to_string();
                let value = match key {
                    SessionKey::Name => f.name.to_string(),
                    SessionKey::Ip => f.ip.to_string(),
                    SessionKey::Proto => f.proto.as_str().to_string(),
                    SessionKey::Token => f.token.unwrap_or(UNDEFINED).to_string(),
                    SessionKey::Header(_) => "h".to_string(),
                    SessionKey::Query(_) => "q v".to_string(),
                };
                hasher.update((label.len() as u64).to_be_bytes());
                hasher.update(label.as_bytes());
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(value.as_bytes());
            }
            assert_eq!(Identity::compute(&keys, &f), Identity(hasher.finalize().into()));
        }
    }

    #[test]
    fn session_id_is_a_stable_v8_uuid() {
        let keys = SessionKeys::default();
        let id = Identity::compute(&keys, &facts(Some("t"), Proto::Hls));
        assert_eq!(id.session_id(), id.session_id());
        assert_eq!(id.session_id().get_version_num(), 8);
    }
}
