//! Properties of session identity (SESS-02/03/04, AMB-9/10/11): for random key lists and
//! request values, the identity ignores the order of the list, changes when any listed value
//! changes, ignores unlisted values, counts duplicates, and treats a missing value as
//! `undefined`; invalid lists are refused with a message naming the key.

use std::net::IpAddr;

use proptest::prelude::*;
use usher_server::auth::identity::{RequestFacts, UNDEFINED};
use usher_server::auth::{Identity, Proto};
use usher_server::config::SessionKeys;

#[derive(Debug, Clone)]
struct Values {
    name: String,
    ip: IpAddr,
    proto: Proto,
    token: Option<String>,
    headers: axum::http::HeaderMap,
    query: Vec<(String, String)>,
}

impl Values {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            name: &self.name,
            ip: self.ip,
            proto: self.proto,
            token: self.token.as_deref(),
            headers: &self.headers,
            query: &self.query,
        }
    }
}

const OPTIONAL: [&str; 4] = ["token", "header.x-playback-session-id", "header.x-device", "query.sid"];

fn proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Hls),
        Just(Proto::Tshttp),
        Just(Proto::Rtmp),
        Just(Proto::Rtsp),
        Just(Proto::Dash)
    ]
}

fn text() -> impl Strategy<Value = String> {
    // Separators, escapes and non-ASCII included: no value may imitate another split.
    "[a-z0-9&=%+ ,:é/]{0,12}"
}

fn values() -> impl Strategy<Value = Values> {
    (
        text(),
        any::<[u8; 3]>(),
        proto(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(name, ip, proto, token, header, sid)| Values {
            name,
            ip: IpAddr::from([127, ip[0], ip[1], ip[2]]),
            proto,
            token,
            // As hyper hands them over: raw bytes, non-ASCII included (such a value is not
            // text and counts as absent).
            headers: header
                .map(|h| {
                    let value = axum::http::HeaderValue::from_bytes(h.as_bytes()).expect("no control bytes");
                    [(axum::http::HeaderName::from_static("x-playback-session-id"), value)]
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            query: sid.map(|s| vec![("sid".to_string(), s)]).unwrap_or_default(),
        })
}

/// A valid key list: the three mandatory keys, some optional ones, some duplicates, shuffled.
fn key_list() -> impl Strategy<Value = Vec<String>> {
    (
        proptest::sample::subsequence(OPTIONAL.to_vec(), 0..=OPTIONAL.len()),
        proptest::collection::vec(0usize..7, 0..3),
    )
        .prop_flat_map(|(optional, dups)| {
            let mut keys: Vec<String> = ["ip", "name", "proto"].iter().map(|s| s.to_string()).collect();
            keys.extend(optional.iter().map(|s| s.to_string()));
            for d in dups {
                let k = keys[d % keys.len()].clone();
                keys.push(k);
            }
            Just(keys).prop_shuffle()
        })
}

fn keys(list: &[String]) -> SessionKeys {
    SessionKeys::parse(&list.join(",")).expect("generated lists are valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn order_of_the_list_does_not_matter(list in key_list(), v in values(), seed in any::<u64>()) {
        let mut shuffled = list.clone();
        let n = shuffled.len();
        shuffled.rotate_left((seed as usize) % n);
        shuffled.swap(0, (seed as usize / 7) % n);
        prop_assert_eq!(Identity::compute(&keys(&list), &v.facts()), Identity::compute(&keys(&shuffled), &v.facts()));
    }

    #[test]
    fn a_changed_listed_value_changes_the_identity(list in key_list(), v in values(), other in values()) {
        let k = keys(&list);
        let base = Identity::compute(&k, &v.facts());
        // Change one field at a time; the identity changes exactly when that key is listed
        // and the value it contributes differs.
        let contributes = |vals: &Values, key: &str| -> String {
            match key {
                "name" => vals.name.clone(),
                "ip" => vals.ip.to_string(),
                "proto" => vals.proto.as_str().to_string(),
                "token" => vals.token.clone().unwrap_or_else(|| UNDEFINED.to_string()),
                "header.x-playback-session-id" => vals
                    .headers
                    .get("x-playback-session-id")
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_else(|| UNDEFINED.to_string()),
                "header.x-device" => UNDEFINED.to_string(),
                "query.sid" => vals.query.first().map(|q| q.1.clone()).unwrap_or_else(|| UNDEFINED.to_string()),
                _ => unreachable!(),
            }
        };
        let variants: Vec<(&str, Values)> = vec![
            ("name", Values { name: other.name.clone(), ..v.clone() }),
            ("ip", Values { ip: other.ip, ..v.clone() }),
            ("proto", Values { proto: other.proto, ..v.clone() }),
            ("token", Values { token: other.token.clone(), ..v.clone() }),
            ("header.x-playback-session-id", Values { headers: other.headers.clone(), ..v.clone() }),
            ("query.sid", Values { query: other.query.clone(), ..v.clone() }),
        ];
        for (key, changed) in variants {
            let listed = list.iter().any(|l| l == key);
            let differs = contributes(&v, key) != contributes(&changed, key);
            let id = Identity::compute(&k, &changed.facts());
            if listed && differs {
                prop_assert_ne!(id, base, "changing listed key {} must change the identity", key);
            } else {
                prop_assert_eq!(id, base, "changing {} (listed: {}, differs: {}) must not", key, listed, differs);
            }
        }
    }

    #[test]
    fn a_duplicated_key_counts_again(list in key_list(), v in values(), pick in 0usize..7) {
        let mut doubled = list.clone();
        doubled.push(list[pick % list.len()].clone());
        prop_assert_ne!(Identity::compute(&keys(&list), &v.facts()), Identity::compute(&keys(&doubled), &v.facts()));
    }

    #[test]
    fn session_id_follows_the_identity(list in key_list(), a in values(), b in values()) {
        let k = keys(&list);
        let (ia, ib) = (Identity::compute(&k, &a.facts()), Identity::compute(&k, &b.facts()));
        prop_assert_eq!(ia == ib, ia.session_id() == ib.session_id());
    }

    #[test]
    fn lists_missing_a_mandatory_key_are_refused_naming_it(list in key_list(), drop in 0usize..3) {
        let mandatory = ["ip", "name", "proto"][drop];
        let without: Vec<String> = list.iter().filter(|k| *k != mandatory).cloned().collect();
        let err = SessionKeys::parse(&without.join(",")).expect_err("a mandatory key is missing");
        prop_assert!(err.contains(mandatory), "{err}");
    }
}

#[test]
fn malformed_lists_are_refused_with_the_offending_item() {
    for (list, needle) in [
        ("ip, name,proto", "whitespace"),
        ("ip,name,proto,cookie", "cookie"),
        ("ip,name,proto,", "empty"),
        ("ip,,name,proto", "empty"),
        ("ip,name,proto,header.X-Upper", "header.X-Upper"),
        ("ip,name,proto,query.", "query."),
        ("", "empty"),
        ("ip,name", "proto"),
    ] {
        let err = SessionKeys::parse(list).expect_err(list);
        assert!(err.contains(needle), "{list:?} ⇒ {err}");
    }
}
