//! The country of a client address, read from a MaxMind-format database (`geoip_db PATH;`),
//! for the configurator's `country` rules (CZR-07). An address the database does not know
//! (private ranges, a miss, a record without a country) has no country, and country rules then
//! do not match (AMB-21).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// An opened country database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    path: String,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// A `geoip_db` that cannot be used, with the file it names.
#[derive(Debug, thiserror::Error)]
#[error("geoip_db {path}: not a readable MaxMind database: {source}")]
pub struct GeoIpError {
    pub path: PathBuf,
    #[source]
    pub source: maxminddb::MaxMindDbError,
}

impl GeoIp {
    /// Reads the whole database into memory. The error names the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoIp, GeoIpError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError {
            path: path.to_path_buf(),
            source,
        })?;
        tracing::info!(
            path = %shown,
            database_type = %reader.metadata().database_type,
            "GeoIP country database loaded"
        );
        Ok(GeoIp { reader, path: shown })
    }

    /// The ISO 3166-1 alpha-2 code (upper-case) of `ip`, when the database has one. The
    /// registered country stands in when the record has no `country` (as for some anycast
    /// ranges). IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        let found = match self.reader.lookup(ip) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "GeoIP lookup failed; no country");
                return None;
            }
        };
        let record = match found.decode::<maxminddb::geoip2::Country<'_>>() {
            Ok(record) => record?,
            Err(e) => {
                tracing::warn!(%ip, path = %self.path, error = %e, "GeoIP record does not decode; no country");
                return None;
            }
        };
        record
            .country
            .iso_code
            .or(record.registered_country.iso_code)
            .filter(|code| code.len() == 2)
            .map(str::to_ascii_uppercase)
    }
}

/// A minimal MaxMind DB writer for tests: an IPv6 tree (IPv4 networks under `::/96`), 24-bit
/// records, each network mapped to `{"country": {"iso_code": CC}}`.
#[cfg(test)]
pub(crate) mod mmdb_writer {
    use std::net::IpAddr;

    use super::GeoIp;

    /// A real database file with three networks (81.2.69.0/24 GB, 5.255.255.0/24 RU,
    /// 2001:db8::/32 DE), written to a temp folder and opened like `geoip_db`.
    pub(crate) fn test_database() -> GeoIp {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip literal");
        let dir = std::env::temp_dir().join(format!("usher-geoip-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("country.mmdb");
        let db = country_db(&[
            (ip("81.2.69.0"), 24, "GB"),
            (ip("5.255.255.0"), 24, "RU"),
            (ip("2001:db8::"), 32, "DE"),
        ]);
        std::fs::write(&path, db).expect("write db");
        let geo = GeoIp::open(&path).expect("the test database opens");
        let _ = std::fs::remove_dir_all(&dir);
        geo
    }

    #[derive(Clone, Copy)]
    enum Record {
        Empty,
        Node(usize),
        Data(usize),
    }

    /// Builds a database mapping each `(network, prefix length, country)`.
    pub(crate) fn country_db(networks: &[(IpAddr, u8, &str)]) -> Vec<u8> {
        let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
        let mut data = Vec::new();
        for (ip, len, country) in networks {
            let (bits, len) = match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(*v4)), 96 + usize::from(*len)),
                IpAddr::V6(v6) => (u128::from(*v6), usize::from(*len)),
            };
            let offset = data.len();
            encode_country(&mut data, country);
            let mut node = 0;
            for depth in 0..len {
                let bit = ((bits >> (127 - depth)) & 1) as usize;
                if depth + 1 == len {
                    nodes[node][bit] = Record::Data(offset);
                } else {
                    node = match nodes[node][bit] {
                        Record::Node(next) => next,
                        _ => {
                            nodes.push([Record::Empty; 2]);
                            let next = nodes.len() - 1;
                            nodes[node][bit] = Record::Node(next);
                            next
                        }
                    };
                }
            }
        }
        let count = nodes.len();
        let mut out = Vec::new();
        for node in &nodes {
            for record in node {
                let value = match *record {
                    Record::Empty => count,
                    Record::Node(n) => n,
                    Record::Data(offset) => count + 16 + offset,
                };
                out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        encode_map_header(&mut out, 9);
        for (key, value) in [
            ("binary_format_major_version", 2u64),
            ("binary_format_minor_version", 0),
            ("build_epoch", 1_700_000_000),
            ("ip_version", 6),
            ("node_count", count as u64),
            ("record_size", 24),
        ] {
            encode_string(&mut out, key);
            encode_uint(&mut out, key, value);
        }
        encode_string(&mut out, "database_type");
        encode_string(&mut out, "Usher-Test-Country");
        encode_string(&mut out, "languages");
        out.push(0x00); // extended type, size 0
        out.push(11 - 7); // array
        encode_string(&mut out, "description");
        encode_map_header(&mut out, 0);
        out
    }

    fn encode_country(out: &mut Vec<u8>, code: &str) {
        encode_map_header(out, 1);
        encode_string(out, "country");
        encode_map_header(out, 1);
        encode_string(out, "iso_code");
        encode_string(out, code);
    }

    fn encode_map_header(out: &mut Vec<u8>, size: u8) {
        out.push((7 << 5) | size);
    }

    fn encode_string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 29, "short strings only");
        out.push((2 << 5) | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }

    /// uint16 for the two version fields and sizes, uint32 for node_count, uint64 for the
    /// epoch, as the format's metadata section types them.
    fn encode_uint(out: &mut Vec<u8>, key: &str, value: u64) {
        let bytes = value.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(8);
        let payload = &bytes[first..];
        match key {
            "build_epoch" => {
                out.push(payload.len() as u8);
                out.push(9 - 7); // uint64
            }
            "node_count" => out.push((6 << 5) | payload.len() as u8),
            _ => out.push((5 << 5) | payload.len() as u8),
        }
        out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip literal")
    }

    #[test]
    fn countries_come_from_the_database_and_misses_have_none() {
        let geo = mmdb_writer::test_database();
        assert_eq!(geo.country(ip("81.2.69.160")).as_deref(), Some("GB"));
        assert_eq!(geo.country(ip("5.255.255.5")).as_deref(), Some("RU"));
        assert_eq!(geo.country(ip("::ffff:5.255.255.5")).as_deref(), Some("RU"));
        assert_eq!(geo.country(ip("2001:db8:1::1")).as_deref(), Some("DE"));
        assert_eq!(geo.country(ip("127.0.0.1")), None);
        assert_eq!(geo.country(ip("81.2.70.1")), None);
        assert_eq!(geo.country(ip("2001:db9::1")), None);
    }

    #[test]
    fn a_file_that_is_no_database_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("usher-geoip-{}.mmdb", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, b"not a database").expect("write");
        let err = GeoIp::open(&path).expect_err("garbage is refused");
        assert_eq!(err.path, path);
        assert!(err.to_string().contains("not a readable MaxMind database"), "{err}");
        let _ = std::fs::remove_file(&path);
        assert!(GeoIp::open("/nonexistent/usher.mmdb").is_err());
    }
}
