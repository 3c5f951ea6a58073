use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use uuid::Uuid;

use super::query::{Comparison, Condition};
use super::*;
use crate::auth::CloseReason;

fn closed(user: Option<&str>, name: &str, closed_at: SystemTime, bytes: u64) -> ClosedSession {
    ClosedSession {
        session_id: Uuid::new_v4(),
        kind: "play",
        name: name.into(),
        ip: "127.0.0.1".into(),
        proto: "hls",
        token: "t".into(),
        user_id: user.map(str::to_string),
        opened_at: closed_at - Duration::from_secs(10),
        closed_at,
        bytes,
        reason: CloseReason::Idle,
        dvr: false,
        ad_inject_ignored: false,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn closed_sessions_come_back_newest_first_and_filtered() {
    let h = History::open(None, 7 * DAY).unwrap();
    let now = SystemTime::now();
    h.insert(&[
        closed(Some("100"), "s1", now - Duration::from_secs(30), 1),
        closed(Some("100"), "s2", now - Duration::from_secs(10), 2),
        closed(Some("200"), "s1", now - Duration::from_secs(20), 3),
        closed(None, "s1", now, 4),
    ])
    .unwrap();
    let all = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(all.iter().map(|r| r.bytes).collect::<Vec<_>>(), [4, 2, 3, 1]);
    let user = h
        .closed(&HistoryFilter {
            user_id: Some("100".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(user.iter().map(|r| r.bytes).collect::<Vec<_>>(), [2, 1]);
    let limited = h
        .closed(&HistoryFilter {
            name: Some("s1".into()),
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.iter().map(|r| r.bytes).collect::<Vec<_>>(), [4, 3]);
    assert_eq!(limited[0].user_id, None);
    assert_eq!(limited[0].close_reason, "idle");
}

#[test]
fn retention_prunes_old_records_under_a_given_clock() {
    let h = History::open(None, 2 * DAY).unwrap();
    let now = SystemTime::now();
    h.insert(&[
        closed(Some("a"), "s", now - 3 * DAY, 1),
        closed(Some("a"), "s", now - DAY, 2),
        closed(Some("a"), "s", now, 3),
    ])
    .unwrap();
    assert_eq!(h.prune(now).unwrap(), 1);
    assert_eq!(h.closed(&HistoryFilter::default()).unwrap().len(), 2);
    // A day and a half later the second one is past the retention too.
    assert_eq!(h.prune(now + DAY + DAY / 2).unwrap(), 1);
    let left = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(left.iter().map(|r| r.bytes).collect::<Vec<_>>(), [3]);
}

#[test]
fn a_file_store_keeps_records_across_opens_and_prunes_on_open() {
    let dir = std::env::temp_dir().join(format!("usher-history-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.sqlite");
    let now = SystemTime::now();
    {
        let h = History::open(Some(&path), DAY).unwrap();
        h.insert(&[closed(Some("a"), "s", now - 2 * DAY, 1), closed(Some("a"), "s", now, 2)])
            .unwrap();
    }
    let h = History::open(Some(&path), DAY).unwrap();
    let left = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(left.iter().map(|r| r.bytes).collect::<Vec<_>>(), [2]);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_writer_drains_the_channel_in_batches() {
    let h = History::open(None, DAY).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let stop = CancellationToken::new();
    let writer = tokio::spawn(h.clone().run_writer(rx, stop.clone()));
    for i in 0..600 {
        tx.send(closed(Some("u"), "s", SystemTime::now(), i)).await.unwrap();
    }
    drop(tx);
    writer.await.unwrap();
    let all = h
        .closed(&HistoryFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 600);
}

/// Issue 18: a closed session keeps the ad_inject flag, in the API's records and in the table
/// the MySQL listener reads; a store written before the column existed gets it on open.
#[test]
fn the_ad_inject_flag_is_kept_and_an_older_store_gets_its_column() {
    let dir = std::env::temp_dir().join(format!("usher-history-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.sqlite");
    {
        // The table as the first servers wrote it: no dvr, no ad_inject_ignored.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions (session_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL, \
             ip TEXT NOT NULL, proto TEXT NOT NULL, token TEXT NOT NULL, user_id TEXT, opened_at INTEGER NOT NULL, \
             closed_at INTEGER NOT NULL, bytes INTEGER NOT NULL, close_reason TEXT NOT NULL);
             INSERT INTO sessions VALUES ('old', 'play', 'old', '127.0.0.1', 'hls', 't', NULL, 1, 2, 7, 'idle');",
        )
        .unwrap();
    }
    let h = History::open(Some(&path), 36_500 * DAY).unwrap();
    let now = SystemTime::now();
    let mut ads = closed(Some("ads"), "s1", now, 1);
    ads.ad_inject_ignored = true;
    h.insert(&[ads, closed(Some("plain"), "s1", now, 2)]).unwrap();

    let records = h.closed(&HistoryFilter::default()).unwrap();
    let flag = |user: Option<&str>| {
        records
            .iter()
            .find(|r| r.user_id.as_deref() == user)
            .map(|r| r.ad_inject_ignored)
    };
    assert_eq!(flag(Some("ads")), Some(true));
    assert_eq!(flag(Some("plain")), Some(false));
    assert_eq!(flag(None), Some(false), "the older record reads as the default");
    let json = serde_json::to_value(&records).unwrap();
    let shown: Vec<bool> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.get("ad_inject_ignored") == Some(&serde_json::json!(true)))
        .collect();
    assert_eq!(
        shown.iter().filter(|s| **s).count(),
        1,
        "shown on that record only: {json}"
    );
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ad_inject_ignored") != Some(&serde_json::json!(false))),
        "absent when false, as on open sessions: {json}"
    );

    let q = Select::parse("select user_id, ad_inject_ignored from sessions where ad_inject_ignored = 1").unwrap();
    assert_eq!(
        h.select(&q).unwrap().rows,
        [vec![Some("ads".to_string()), Some("1".to_string())]]
    );
    let q = Select::parse("select * from sessions where session_id = 'old'").unwrap();
    let rows = h.select(&q).unwrap();
    assert_eq!(rows.columns.last(), Some(&Column::AdInjectIgnored));
    assert_eq!(rows.rows[0].last(), Some(&Some("0".to_string())));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn select_runs_whitelisted_queries_with_bound_values() {
    let h = History::open(None, DAY).unwrap();
    let now = SystemTime::now();
    h.insert(&[
        closed(Some("100"), "s1", now - Duration::from_secs(5), 10),
        closed(Some("100"), "s2", now, 20),
        closed(Some("x' OR '1'='1"), "s3", now, 30),
    ])
    .unwrap();
    let q = Select::parse("select user_id, bytes from sessions where user_id='100' order by bytes desc").unwrap();
    let rows = h.select(&q).unwrap();
    assert_eq!(
        rows.rows,
        [
            vec![Some("100".to_string()), Some("20".to_string())],
            vec![Some("100".to_string()), Some("10".to_string())]
        ]
    );
    // An injection attempt is a value like any other.
    let q = Select::parse("select bytes from sessions where user_id = 'x'' OR ''1''=''1'").unwrap();
    assert_eq!(h.select(&q).unwrap().rows, [vec![Some("30".to_string())]]);
    let q = Select::parse("select bytes from sessions where user_id = '' or 1=1").unwrap_err();
    assert!(matches!(q, SelectError::Unsupported(_)), "{q:?}");
    let q = Select::parse("SELECT * FROM usher.sessions WHERE bytes >= 20 AND user_id IS NOT NULL LIMIT 1").unwrap();
    let rows = h.select(&q).unwrap();
    assert_eq!(rows.columns.len(), Column::ALL.len());
    assert_eq!(rows.rows.len(), 1);
}

#[test]
fn select_grammar() {
    let q = Select::parse(
        "SELECT `user_id`,bytes FROM sessions WHERE name = \"s\" AND bytes > -1 ORDER BY closed_at LIMIT 5, 10;",
    )
    .unwrap();
    assert_eq!(q.columns, [Column::UserId, Column::Bytes]);
    assert_eq!(
        q.conditions,
        [
            Condition {
                column: Column::Name,
                op: Comparison::Eq,
                value: Literal::Text("s".into())
            },
            Condition {
                column: Column::Bytes,
                op: Comparison::Gt,
                value: Literal::Integer(-1)
            },
        ]
    );
    assert_eq!(q.order, Some((Column::ClosedAt, false)));
    assert_eq!((q.limit, q.offset), (Some(10), Some(5)));
    for bad in [
        "",
        "select",
        "select from sessions",
        "select * sessions",
        "select * from",
        "select * from sessions where user_id",
        "select * from sessions where user_id = ",
        "select * from sessions where user_id = 'x",
        "select * from sessions limit x",
        "select * from sessions; drop table sessions",
        "select * from sessions where user_id = 1 or 1 = 1",
        "select * from sessions where user_id = NULL",
        "select * from other",
        "select password from sessions",
        "select * from sessions, other",
        "select 1e5 from sessions",
    ] {
        assert!(Select::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

/// Every word of the SQL text is a fixed word, a whitelisted column or a placeholder.
fn only_whitelisted(sql: &str, params: usize) -> Result<(), String> {
    const FIXED: [&str; 16] = [
        "SELECT", "FROM", "sessions", "WHERE", "AND", "ORDER", "BY", "ASC", "DESC", "LIMIT", "OFFSET", "IS", "NOT",
        "NULL", "=", "!=",
    ];
    const MORE: [&str; 4] = ["<", "<=", ">", ">="];
    let mut seen_params = 0;
    for word in sql.split(' ') {
        let word = word.strip_suffix(',').unwrap_or(word);
        if FIXED.contains(&word) || MORE.contains(&word) {
            continue;
        }
        if let Some(n) = word.strip_prefix('?') {
            let n: usize = n.parse().map_err(|_| format!("bad placeholder {word}"))?;
            seen_params = seen_params.max(n);
            continue;
        }
        let Some(name) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) else {
            return Err(format!("unexpected word {word:?} in {sql}"));
        };
        if Column::from_name(name).is_none_or(|c| c.name() != name) {
            return Err(format!("column {name:?} not in the whitelist: {sql}"));
        }
    }
    if seen_params != params {
        return Err(format!("{seen_params} placeholders for {params} parameters: {sql}"));
    }
    Ok(())
}

/// Query-like text: SQL words, column names, odd tokens and quotes in any order.
fn sqlish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("select".to_string()),
        Just("SELECT".to_string()),
        Just("*".to_string()),
        Just("from".to_string()),
        Just("sessions".to_string()),
        Just("usher.sessions".to_string()),
        Just("where".to_string()),
        Just("and".to_string()),
        Just("or".to_string()),
        Just("order by".to_string()),
        Just("desc".to_string()),
        Just("limit".to_string()),
        Just("offset".to_string()),
        Just("is not null".to_string()),
        Just(",".to_string()),
        Just(";".to_string()),
        Just("=".to_string()),
        Just("<=".to_string()),
        Just("-".to_string()),
        Just("'".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        prop::sample::select(Column::ALL.map(Column::name).to_vec()).prop_map(str::to_string),
        "'[^']{0,6}'",
        "[0-9]{1,25}",
        "[a-z_]{1,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(word, 0..16).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_on_any_text(text in any::<String>()) {
        let _ = Select::parse(&text);
    }

    #[test]
    fn accepted_queries_print_only_whitelisted_sql(text in sqlish()) {
        if let Ok(select) = Select::parse(&text) {
            let (sql, params) = select.to_sql();
            if let Err(e) = only_whitelisted(&sql, params.len()) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    #[test]
    fn generated_selects_parse_and_print_only_whitelisted_sql(
        columns in prop::collection::vec(prop::sample::select(Column::ALL.to_vec()), 1..5),
        conds in prop::collection::vec((prop::sample::select(Column::ALL.to_vec()), "(=|!=|<>|<|<=|>|>=)", "[^\\\\]{0,10}"), 0..4),
        order in prop::option::of((prop::sample::select(Column::ALL.to_vec()), any::<bool>())),
        limit in prop::option::of(0u64..1_000_000),
    ) {
        let mut sql = format!("select {} from sessions", columns.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "));
        for (i, (c, op, v)) in conds.iter().enumerate() {
            sql.push_str(if i == 0 { " where " } else { " and " });
            sql.push_str(&format!("{} {op} '{}'", c.name(), v.replace('\'', "''")));
        }
        if let Some((c, desc)) = order {
            sql.push_str(&format!(" order by {}{}", c.name(), if desc { " desc" } else { "" }));
        }
        if let Some(n) = limit {
            sql.push_str(&format!(" limit {n}"));
        }
        let select = Select::parse(&sql).map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        prop_assert_eq!(&select.columns, &columns);
        for (cond, (_, _, v)) in select.conditions.iter().zip(&conds) {
            prop_assert_eq!(&cond.value, &Literal::Text(v.clone()));
        }
        let (text, params) = select.to_sql();
        if let Err(e) = only_whitelisted(&text, params.len()) {
            return Err(TestCaseError::fail(e));
        }
        // And SQLite runs it.
        let h = History::open(None, DAY).unwrap();
        h.select(&select).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
    }
}

/// Issue 15 item 7: a history at its bound keeps the newest `max_rows` records, whatever is
/// written, and says how many it dropped.
#[test]
fn the_store_keeps_at_most_max_rows_and_drops_the_oldest() {
    let h = History::open_bounded(None, 7 * DAY, 100).unwrap();
    let start = SystemTime::now() - DAY;
    let mut dropped = 0;
    for batch in 0..10u64 {
        let records: Vec<_> = (0..25u64)
            .map(|i| {
                let n = batch * 25 + i;
                closed(Some("u"), "s", start + Duration::from_secs(n), n)
            })
            .collect();
        dropped += h.insert(&records).unwrap();
        assert!(h.rows_held() <= 100, "{} held", h.rows_held());
    }
    assert_eq!(dropped, 150);
    assert_eq!(h.rows_held(), 100);
    let all = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(
        all.last().map(|r| r.bytes),
        Some(150),
        "the oldest kept is the 151st written"
    );
    assert_eq!(all.first().map(|r| r.bytes), Some(249));
    // One batch larger than the bound keeps its newest part.
    let big: Vec<_> = (0..300u64)
        .map(|n| closed(None, "t", start + Duration::from_secs(1000 + n), 1000 + n))
        .collect();
    assert_eq!(h.insert(&big).unwrap(), 300);
    let all = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(all.last().map(|r| r.bytes), Some(1200));
    // Pruning keeps the count right.
    assert_eq!(h.prune(start + 7 * DAY + Duration::from_secs(1250)).unwrap(), 50);
    assert_eq!(h.rows_held(), 50);
}

#[test]
fn a_file_store_over_a_smaller_bound_is_cut_on_open() {
    let dir = std::env::temp_dir().join(format!("usher-history-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.sqlite");
    let now = SystemTime::now();
    {
        let h = History::open_bounded(Some(&path), DAY, 1000).unwrap();
        let records: Vec<_> = (0..40u64)
            .map(|n| closed(Some("a"), "s", now - Duration::from_secs(100 - n), n))
            .collect();
        assert_eq!(h.insert(&records).unwrap(), 0);
    }
    let h = History::open_bounded(Some(&path), DAY, 10).unwrap();
    assert_eq!(h.rows_held(), 10);
    let left = h.closed(&HistoryFilter::default()).unwrap();
    assert_eq!(
        left.iter().map(|r| r.bytes).collect::<Vec<_>>(),
        (30..40).rev().collect::<Vec<_>>()
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The log buffer of [`the_writer_logs_drops_once_per_window`].
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Drops are logged once per [`DROP_LOG_EVERY`], however many batches drop records.
#[tokio::test]
async fn the_writer_logs_drops_once_per_window() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = History::open_bounded(None, DAY, 10).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let stop = CancellationToken::new();
    let writer = tokio::spawn(h.clone().run_writer(rx, stop.clone()));
    for round in 0..20u64 {
        for i in 0..50 {
            tx.send(closed(Some("u"), "s", SystemTime::now(), round * 50 + i))
                .await
                .unwrap();
        }
        // Let the writer take this round as its own batch.
        let last = i64::try_from(round * 50 + 49).unwrap();
        let newest = HistoryFilter {
            limit: Some(1),
            ..Default::default()
        };
        while h.closed(&newest).unwrap().first().map(|r| r.bytes) != Some(last) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(tx);
    writer.await.unwrap();
    assert_eq!(h.rows_held(), 10);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines = text.lines().filter(|l| l.contains("at its bound")).count();
    assert_eq!(lines, 1, "{text}");
    assert!(text.contains("dropped=") && text.contains("max_rows=10"), "{text}");
}

/// The store's size in bytes (pages in use), what an in-memory history holds in the heap.
fn store_bytes(h: &History) -> u64 {
    let store = h.store();
    let pages: i64 = store.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let size: i64 = store.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    (pages * size) as u64
}

/// At its bound the store stops growing: another bound's worth of records written leaves its
/// size where it was (freed pages are reused), and a typical record costs under 300 bytes.
#[test]
fn memory_stays_put_at_the_bound() {
    const BOUND: u64 = 20_000;
    let h = History::open_bounded(None, 7 * DAY, BOUND).unwrap();
    let start = SystemTime::now() - DAY;
    let write = |from: u64| {
        for batch in 0..(BOUND / 250) {
            let records: Vec<_> = (0..250)
                .map(|i| {
                    let n = from + batch * 250 + i;
                    let mut r = closed(
                        Some("user-1234"),
                        "live/channel-07",
                        start + Duration::from_millis(n),
                        n,
                    );
                    r.token = format!("tok-{n:012}");
                    r.ip = format!("10.1.{}.{}", n % 250, n % 199);
                    r
                })
                .collect();
            h.insert(&records).unwrap();
        }
    };
    write(0);
    let at_bound = store_bytes(&h);
    let per_row = at_bound / BOUND;
    assert!(per_row < 300, "{per_row} bytes per record");
    write(BOUND);
    write(2 * BOUND);
    assert_eq!(h.rows_held(), BOUND);
    let after = store_bytes(&h);
    // The figure of docs/security.md (`-- --nocapture` shows it).
    eprintln!(
        "history at a bound of {BOUND}: {at_bound} bytes ({per_row} per record), {after} after 3 × the bound written"
    );
    assert!(
        after <= at_bound + at_bound / 10,
        "{at_bound} → {after} bytes at the bound"
    );
}
