//! The directives of the session history, its MySQL listener and the DVR archive: what they
//! read to, and errors that name the place and what was expected.

use std::time::Duration;

use usher_server::config::{DvrConfig, SessionHistoryConfig, parse_config, stream_from_api_json};

fn error(text: &str) -> String {
    match parse_config(text, "u.conf") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn session_history_mysql_and_dvr_read() {
    let c = parse_config(
        "mysql 3306;\nsession_history :memory: retention=2;\nstream s { input fake://fake; dvr dvr 60; }\n\
         template t { prefix live; dvr /var/dvr 3600; }\n",
        "u.conf",
    )
    .unwrap();
    assert_eq!(c.mysql.map(|a| a.port()), Some(3306));
    assert_eq!(
        c.session_history,
        SessionHistoryConfig {
            path: None,
            retention_days: 2,
            max_rows: None,
        }
    );
    assert_eq!(c.streams[0].dvr, Some(DvrConfig::new("dvr", Duration::from_secs(60))));
    assert_eq!(
        c.templates[0].stream.dvr.as_ref().map(|d| d.root.as_str()),
        Some("/var/dvr")
    );
    let default = parse_config("", "u.conf").unwrap();
    assert_eq!(
        default.session_history,
        SessionHistoryConfig {
            path: None,
            retention_days: 7,
            max_rows: None,
        }
    );
    assert_eq!(default.mysql, None);
    let file = parse_config("session_history /var/lib/usher/h.sqlite;", "u.conf").unwrap();
    assert_eq!(file.session_history.path.as_deref(), Some("/var/lib/usher/h.sqlite"));
    // The bound: the default of its kind of store, or max_rows=N (issue 15 item 7).
    assert_eq!(file.session_history.max_rows(), 1_000_000);
    assert_eq!(default.session_history.max_rows(), 100_000);
    let bounded = parse_config("session_history :memory: max_rows=500 retention=3;", "u.conf").unwrap();
    assert_eq!(bounded.session_history.max_rows, Some(500));
    assert_eq!(bounded.session_history.retention_days, 3);
    // Connection caps on the listen directives (issue 15 item 6).
    let caps = parse_config(
        "http 8080 max_connections=100;
mysql 3306 max_connections_per_ip=2 max_connections=8;",
        "u.conf",
    )
    .unwrap();
    assert_eq!(caps.connection_limits.http.max_connections, Some(100));
    assert_eq!(caps.connection_limits.http.max_connections_per_ip, None);
    assert_eq!(caps.connection_limits.mysql.max_connections, Some(8));
    assert_eq!(caps.connection_limits.mysql.max_connections_per_ip, Some(2));
    assert_eq!(caps.connection_limits.rtmp, Default::default());
}

#[test]
fn bad_directives_name_what_was_expected() {
    for (text, expected) in [
        ("session_history;", "u.conf:1:16: expected a file path or :memory:"),
        ("session_history h.db retention=0;", "bad retention '0'"),
        ("session_history h.db retention=x;", "bad retention 'x'"),
        (
            "session_history h.db keep=3;",
            "unknown session_history option 'keep=3'",
        ),
        ("session_history h.db retention=1 retention=2;", "duplicate retention="),
        ("session_history h.db max_rows=0;", "u.conf:1:22: bad max_rows '0'"),
        ("session_history h.db max_rows=1 max_rows=2;", "duplicate max_rows="),
        ("http 80 max_connections=0;", "u.conf:1:9: bad max_connections '0'"),
        ("rtmp 1935 max_connections_per_ip=x;", "bad max_connections_per_ip 'x'"),
        (
            "mysql 3306 max_connections=1 max_connections=2;",
            "duplicate max_connections= option in mysql",
        ),
        ("http 80 max_conn=3;", "unknown http option 'max_conn=3'"),
        (
            "rtsp 554 max_connections=5 max_connections_per_ip=9;",
            "u.conf:1:28: rtsp: max_connections_per_ip=9 is above max_connections=5",
        ),
        (
            "session_history a.db;\nsession_history b.db;",
            "u.conf:2:1: duplicate 'session_history'",
        ),
        ("mysql x;", "u.conf:1:7: mysql: expected a port or ADDR:PORT"),
        ("stream s { dvr dvr; }", "u.conf:1:12: dvr needs a depth"),
        ("stream s { dvr dvr 0; }", "u.conf:1:20: dvr: '0' is neither a depth"),
        ("stream s { dvr dvr 60; dvr dvr 60; }", "duplicate 'dvr'"),
        ("dvr dvr 60;", "'dvr' is only allowed inside a stream or template block"),
        ("stream s { dvr dvr 1d 2d; }", "u.conf:1:23: dvr: a second depth '2d'"),
        ("stream s { dvr dvr 1d 10G 5G; }", "dvr: a second size limit '5G'"),
        ("stream s { dvr dvr 1d 101%; }", "disk usage '101%' is above 100%"),
        ("stream s { dvr dvr 1d 10X; }", "unknown unit 'X' in '10X'"),
        (
            "stream s { dvr /storage 1d copy=/opt; }",
            "u.conf:1:28: dvr option 'copy' is not supported",
        ),
        (
            "stream s { dvr swift://u:p@host/c 10G; }",
            "u.conf:1:16: dvr: archives on swift:// storage are not supported",
        ),
        ("stream s { dvr dvr 1d }", "expected ';' after dvr ROOT DEPTH"),
        ("stream s { mysql 1; }", "'mysql' is only allowed at the top level"),
    ] {
        let e = error(text);
        assert!(e.contains(expected), "{text:?}: {e}");
    }
}

#[test]
fn the_api_reads_and_checks_the_dvr_object() {
    let s = stream_from_api_json("s", br#"{"dvr": {"root": "dvr", "depth": 60}}"#).unwrap();
    assert_eq!(s.dvr, Some(DvrConfig::new("dvr", Duration::from_secs(60))));
    // The vendor's names: `expiration` for the depth, and the two limits (issue 18).
    let s = stream_from_api_json(
        "s",
        br#"{"dvr": {"root": "dvr", "expiration": 60, "storage_limit": 1073741824, "disk_usage_limit": 95}}"#,
    )
    .unwrap();
    let dvr = s.dvr.expect("dvr");
    assert_eq!(dvr.depth, Duration::from_secs(60));
    assert_eq!((dvr.storage_limit, dvr.disk_usage_limit), (Some(1 << 30), Some(95)));
    for (body, path) in [
        (
            r#"{"dvr": {"root": "d", "depth": 60, "expiration": 61}}"#,
            "dvr.expiration",
        ),
        (
            r#"{"dvr": {"root": "d", "depth": 60, "disk_usage_limit": 101}}"#,
            "dvr.disk_usage_limit",
        ),
        (
            r#"{"dvr": {"root": "d", "depth": 60, "storage_limit": 0}}"#,
            "dvr.storage_limit",
        ),
        (r#"{"dvr": {"root": "", "depth": 60}}"#, "dvr.root"),
        (r#"{"dvr": {"root": "d", "depth": 0}}"#, "dvr.depth"),
        (r#"{"dvr": {"root": "d"}}"#, "dvr.depth"),
        (r#"{"dvr": {"root": "d", "depth": 1, "x": 1}}"#, "dvr"),
        (r#"{"dvr": []}"#, "dvr"),
    ] {
        let e = stream_from_api_json("s", body.as_bytes()).unwrap_err();
        assert!(e.path.starts_with(path), "{body}: {e}");
    }
}
