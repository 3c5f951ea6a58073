//! Country gates of an `on_play`/`on_publish` line (`allowed_countries=`,
//! `disallowed_countries=`, the vendor's auth_spec fields): decided locally, before the
//! backend is asked, like the domain lock next door.
//!
//! A viewer whose address the GeoIP database places in a disallowed country is refused; one in
//! an allowed country is admitted without a backend call; everyone else (another country, an
//! address the database does not know, no database at all) goes to the backend as usual. The
//! lists are never sent to the backend.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use super::geoip::GeoIp;
use crate::config::AuthSpec;

/// What the gates say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoGate {
    /// In `allowed_countries`: admitted without asking the backend.
    Admit { country: String },
    /// In `disallowed_countries`: refused without asking the backend.
    Refuse { country: String },
    /// No gate applies: the backend decides.
    Ask,
}

/// The server's country database for the gates (the `geoip_db` the configurator reads), set
/// once at start. Without one every request is [`GeoGate::Ask`].
#[derive(Debug, Default)]
pub struct GeoGates(OnceLock<Arc<GeoIp>>);

impl GeoGates {
    /// Gives the gates a database. Only the first call has an effect.
    pub fn set(&self, db: Arc<GeoIp>) {
        let _ = self.0.set(db);
    }

    /// Judges `ip` against the gates of `spec`, logging a gate's decision.
    pub fn check(&self, spec: &AuthSpec, stream: &str, ip: IpAddr) -> GeoGate {
        let gate = geo_gate(spec, ip, self.0.get().map(Arc::as_ref));
        match &gate {
            GeoGate::Admit { country } => {
                tracing::info!(stream, %ip, country, "admitted by allowed_countries without a backend call")
            }
            GeoGate::Refuse { country } => {
                tracing::info!(stream, %ip, country, "refused by disallowed_countries")
            }
            GeoGate::Ask => {}
        }
        gate
    }
}

/// The decision of the gates of `spec` for `ip`. The database is consulted only when the
/// spec has a gate. A country in both lists is refused (the parsers refuse such a spec).
pub fn geo_gate(spec: &AuthSpec, ip: IpAddr, db: Option<&GeoIp>) -> GeoGate {
    if spec.allowed_countries.is_empty() && spec.disallowed_countries.is_empty() {
        return GeoGate::Ask;
    }
    let Some(country) = db.and_then(|db| db.country(ip)) else {
        return GeoGate::Ask;
    };
    if spec.disallowed_countries.contains(&country) {
        GeoGate::Refuse { country }
    } else if spec.allowed_countries.contains(&country) {
        GeoGate::Admit { country }
    } else {
        GeoGate::Ask
    }
}

/// Whether a spec has a country gate (to warn at start when there is no database).
pub fn has_gates(spec: &AuthSpec) -> bool {
    !spec.allowed_countries.is_empty() || !spec.disallowed_countries.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::geoip::mmdb_writer;
    use crate::config::AuthTarget;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip literal")
    }

    fn spec(allowed: &[&str], disallowed: &[&str]) -> AuthSpec {
        let mut spec = AuthSpec::new(AuthTarget::Http("http://b/auth".into()));
        spec.allowed_countries = allowed.iter().map(|c| c.to_string()).collect();
        spec.disallowed_countries = disallowed.iter().map(|c| c.to_string()).collect();
        spec
    }

    fn database() -> GeoIp {
        mmdb_writer::test_database()
    }

    #[test]
    fn allowed_countries_admit_disallowed_refuse_and_the_rest_ask() {
        let db = database();
        let s = spec(&["GB"], &["RU"]);
        assert_eq!(
            geo_gate(&s, ip("81.2.69.7"), Some(&db)),
            GeoGate::Admit { country: "GB".into() }
        );
        assert_eq!(
            geo_gate(&s, ip("5.255.255.9"), Some(&db)),
            GeoGate::Refuse { country: "RU".into() }
        );
        assert_eq!(
            geo_gate(&s, ip("::ffff:5.255.255.9"), Some(&db)),
            GeoGate::Refuse { country: "RU".into() },
            "an IPv4-mapped address is its IPv4 address"
        );
        assert_eq!(
            geo_gate(&s, ip("2001:db8::1"), Some(&db)),
            GeoGate::Ask,
            "DE: listed nowhere"
        );
        assert_eq!(geo_gate(&s, ip("127.0.0.1"), Some(&db)), GeoGate::Ask, "no country");
    }

    #[test]
    fn without_a_database_or_gates_the_backend_decides() {
        let db = database();
        assert_eq!(geo_gate(&spec(&["GB"], &["RU"]), ip("5.255.255.9"), None), GeoGate::Ask);
        assert_eq!(geo_gate(&spec(&[], &[]), ip("5.255.255.9"), Some(&db)), GeoGate::Ask);
        let gates = GeoGates::default();
        assert_eq!(gates.check(&spec(&[], &["RU"]), "s", ip("5.255.255.9")), GeoGate::Ask);
        gates.set(Arc::new(db));
        assert_eq!(
            gates.check(&spec(&[], &["RU"]), "s", ip("5.255.255.9")),
            GeoGate::Refuse { country: "RU".into() }
        );
    }

    #[test]
    fn a_country_in_both_lists_is_refused() {
        let db = database();
        assert_eq!(
            geo_gate(&spec(&["RU"], &["RU"]), ip("5.255.255.9"), Some(&db)),
            GeoGate::Refuse { country: "RU".into() }
        );
    }

    /// The whole path over real sockets: a server started from a config file with `geoip_db`
    /// (a database file this test writes), an HLS viewer from each of four loopback
    /// addresses, and a wiremock backend that records what it is asked. The gate's refusal
    /// names the gate; a ban by the backend still reads as a ban.
    #[tokio::test]
    async fn a_server_admits_gb_refuses_ru_and_asks_the_backend_about_the_rest() {
        use wiremock::matchers::{method, query_param};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let dir = std::env::temp_dir().join(format!("usher-geogate-srv-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db_path = dir.join("country.mmdb");
        let db = mmdb_writer::country_db(&[(ip("127.0.0.2"), 32, "GB"), (ip("127.0.0.3"), 32, "RU")]);
        std::fs::write(&db_path, db).expect("write db");
        let backend = MockServer::start().await;
        Mock::given(method("GET"))
            .and(query_param("token", "banned"))
            .respond_with(ResponseTemplate::new(403))
            .mount(&backend)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&backend)
            .await;
        let text = format!(
            "http 127.0.0.1:0;\ngeoip_db {};\nstream s {{\n  input fake://fake;\n  on_play {}/auth \
             allowed_countries=gb disallowed_countries=RU region=eu;\n}}\n",
            db_path.display(),
            backend.uri()
        );
        let config = crate::config::parse_config(&text, "geo.conf").expect("the config parses");
        let server = crate::server::Server::start(config).await.expect("the server starts");
        let play = |from: &'static str, token: &'static str| {
            let url = format!("http://{}/s/index.m3u8?token={token}", server.http_addr());
            async move {
                reqwest::Client::builder()
                    .local_address(Some(from.parse().expect("ip")))
                    .build()
                    .expect("client")
                    .get(url)
                    .send()
                    .await
                    .expect("the server answers")
            }
        };
        // The reason a refusal gives: the title of the JSON error body.
        let refused = |resp: reqwest::Response| async move {
            assert_eq!(resp.status().as_u16(), 403);
            let body: serde_json::Value = resp.json().await.expect("a JSON error body");
            body["errors"][0]["title"].as_str().expect("a title").to_string()
        };
        const COUNTRY: &str = "refused: the client's country is in the stream's disallowed_countries";
        assert_eq!(
            play("127.0.0.2", "gb").await.status().as_u16(),
            200,
            "GB is allowed without a backend call"
        );
        assert_eq!(
            refused(play("127.0.0.3", "ru").await).await,
            COUNTRY,
            "RU is refused by the gate"
        );
        assert_eq!(
            refused(play("127.0.0.3", "ru").await).await,
            COUNTRY,
            "and stays refused so"
        );
        assert_eq!(
            play("127.0.0.4", "other").await.status().as_u16(),
            200,
            "no country: the backend decides"
        );
        // A backend's 403, then the same viewer again: a ban, told as one (not as the gate).
        assert_eq!(
            refused(play("127.0.0.5", "banned").await).await,
            "refused by the authorization backend"
        );
        assert_eq!(
            refused(play("127.0.0.5", "banned").await).await,
            "refused: a recent denial is cached"
        );
        let asked = backend.received_requests().await.unwrap_or_default();
        let queries: Vec<String> = asked.iter().map(|r| r.url.query().unwrap_or("").to_string()).collect();
        assert_eq!(
            queries.len(),
            2,
            "only the viewers without a gated country were asked about, the banned one once: {queries:?}"
        );
        assert!(queries[1].contains("token=banned"), "{}", queries[1]);
        assert!(queries[0].contains("token=other"), "{}", queries[0]);
        assert!(
            queries[0].contains("region=eu"),
            "the extra is still sent: {}",
            queries[0]
        );
        assert!(
            !queries[0].contains("countries"),
            "the gates are never sent: {}",
            queries[0]
        );
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
