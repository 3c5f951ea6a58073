//! Session history: every closed session, kept in an embedded SQLite store for a retention
//! period, read back by the management API (`GET …/sessions?closed=true`) and by the
//! MySQL-protocol listener ([`crate::mysql`]).
//!
//! The auth core hands closed-session records to a bounded queue and never waits (a record
//! that finds it full is dropped, counted and logged: `auth::CLOSED_SESSIONS_QUEUE`). The
//! writer ([`History::run_writer`]) drains that channel in batches and does the SQLite work on
//! Tokio's blocking pool, so neither the core nor an async worker ever waits on the disk.
//! Records older than the retention are deleted by the writer (at most a minute late) and
//! whenever the store is opened.
//!
//! The store holds at most `max_rows` records (`session_history … max_rows=N`): every write
//! that would go past it deletes the oldest (by close time) in the same transaction, so a
//! stranger who opens and closes sessions at will cannot grow it further; one log line per
//! [`DROP_LOG_EVERY`] says how many went.

pub mod query;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, ToSql, params};
use serde::Serialize;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use crate::auth::ClosedSession;
use crate::log_throttle::LogThrottle;
pub use query::{Column, ColumnType, Comparison, Literal, Select, SelectError};

/// Default retention of closed sessions (`session_history … retention=DAYS`).
pub const DEFAULT_RETENTION_DAYS: u32 = 7;
/// Records written in one transaction at most.
const BATCH: usize = 256;
/// How often the writer deletes records past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows a single read returns at most (API and MySQL alike).
pub const MAX_ROWS: u64 = 10_000;
/// At most one "oldest records dropped" line in this window.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT NOT NULL,
    type         TEXT NOT NULL,
    name         TEXT NOT NULL,
    ip           TEXT NOT NULL,
    proto        TEXT NOT NULL,
    token        TEXT NOT NULL,
    user_id      TEXT,
    opened_at    INTEGER NOT NULL,
    closed_at    INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    close_reason TEXT NOT NULL,
    dvr          INTEGER NOT NULL DEFAULT 0,
    ad_inject_ignored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_closed_at ON sessions (closed_at);
CREATE INDEX IF NOT EXISTS sessions_user_id ON sessions (user_id, closed_at);
";

/// Columns added to the table after its first version, with their definitions: a store file
/// written by an older server gets them when it opens (its records read as the default).
const ADDED_COLUMNS: [(&str, &str); 2] = [
    ("dvr", "INTEGER NOT NULL DEFAULT 0"),
    ("ad_inject_ignored", "INTEGER NOT NULL DEFAULT 0"),
];

/// Adds the [`ADDED_COLUMNS`] a store lacks.
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let present: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('sessions')")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {name} {definition}"))?;
            tracing::info!(column = name, "session history: column added to an older store");
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("session history store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("session history: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("session history: the store task failed: {0}")]
    Task(String),
}

/// One closed session as stored and as the API lists it: the open-session shape plus
/// `closed_at` and `close_reason`. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub ip: String,
    pub proto: String,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub opened_at: i64,
    pub closed_at: i64,
    pub bytes: i64,
    pub dvr: bool,
    /// As on an open session: the backend asked for ads that were not inserted. Absent when
    /// false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ad_inject_ignored: bool,
    pub close_reason: String,
}

/// Filters of `GET …/sessions?closed=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub user_id: Option<String>,
    pub name: Option<String>,
    /// At most this many records (capped at [`MAX_ROWS`]).
    pub limit: Option<u64>,
}

/// The rows of a [`Select`]: column names and text values (`None` = SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// The session history store. Cheap to clone.
#[derive(Clone)]
pub struct History {
    store: Arc<Mutex<Store>>,
    retention: Duration,
    /// Records kept at most; the oldest go first.
    max_rows: u64,
    /// Where it lives, for logs.
    location: Arc<str>,
}

/// The database and how many records it holds (SQLite's `count(*)` reads the whole table, so
/// the number is kept here, changed with every write under the same lock).
struct Store {
    conn: Connection,
    rows: u64,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("location", &self.location)
            .field("retention", &self.retention)
            .field("max_rows", &self.max_rows)
            .finish()
    }
}

pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl History {
    /// [`open_bounded`](Self::open_bounded) with the default bound of its kind of store
    /// (`crate::config::SessionHistoryConfig::max_rows`).
    pub fn open(path: Option<&Path>, retention: Duration) -> Result<History, HistoryError> {
        let max_rows = if path.is_some() {
            crate::config::DEFAULT_HISTORY_MAX_ROWS_FILE
        } else {
            crate::config::DEFAULT_HISTORY_MAX_ROWS_MEMORY
        };
        History::open_bounded(path, retention, max_rows)
    }

    /// Opens (or creates) the store: a file at `path`, or a private in-memory database for
    /// `None`, keeping at most `max_rows` records. Records past `retention`, and the oldest
    /// beyond `max_rows`, are deleted at once.
    pub fn open_bounded(path: Option<&Path>, retention: Duration, max_rows: u64) -> Result<History, HistoryError> {
        let location = path.map_or_else(|| ":memory:".to_string(), |p| p.display().to_string());
        let opened = match path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        };
        let wrap = |source| HistoryError::Open {
            path: location.clone(),
            source,
        };
        let conn = opened.map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        if path.is_some() {
            // WAL keeps a reader from waiting on a batch being written; a store that cannot
            // switch (a read-only medium) still works in its default mode.
            if let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
                tracing::debug!(error = %e, "session history: WAL mode unavailable");
            }
        }
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        add_missing_columns(&conn).map_err(wrap)?;
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
            .map_err(wrap)?;
        let history = History {
            store: Arc::new(Mutex::new(Store {
                conn,
                rows: u64::try_from(rows).unwrap_or(0),
            })),
            retention,
            max_rows: max_rows.max(1),
            location: location.into(),
        };
        history.prune(SystemTime::now())?;
        let dropped = {
            let mut store = history.store();
            let held = store.rows;
            let tx = store.conn.transaction()?;
            let dropped = history.drop_oldest(&tx, held)?;
            tx.commit()?;
            store.rows -= dropped;
            dropped
        };
        if dropped > 0 {
            tracing::warn!(store = %history.location, dropped, max_rows = history.max_rows, "session history over its bound: the oldest records dropped");
        }
        tracing::info!(
            store = %history.location,
            retention_days = retention.as_secs() / 86_400,
            max_rows = history.max_rows,
            "session history opened"
        );
        Ok(history)
    }

    /// Records held now.
    pub fn rows_held(&self) -> u64 {
        self.store().rows
    }

    /// The bound on records held.
    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }

    /// Deletes the oldest records so that `held` of them become at most `max_rows`; returns
    /// how many went.
    fn drop_oldest(&self, tx: &rusqlite::Transaction<'_>, held: u64) -> Result<u64, HistoryError> {
        let excess = held.saturating_sub(self.max_rows);
        if excess == 0 {
            return Ok(0);
        }
        let n = tx.execute(
            "DELETE FROM sessions WHERE rowid IN \
             (SELECT rowid FROM sessions ORDER BY closed_at, rowid LIMIT ?1)",
            [i64::try_from(excess).unwrap_or(i64::MAX)],
        )?;
        Ok(n as u64)
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // Every write is one transaction, and the count changes only after its commit: a panic
        // while the lock was held leaves both consistent.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes closed sessions in one transaction, deleting the oldest records beyond the bound
    /// in the same one; returns how many were deleted so.
    pub fn insert(&self, records: &[ClosedSession]) -> Result<u64, HistoryError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut store = self.store();
        let held = store.rows + records.len() as u64;
        let tx = store.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO sessions (session_id, type, name, ip, proto, token, user_id, opened_at, closed_at, \
                 bytes, close_reason, dvr, ad_inject_ignored) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for r in records {
                stmt.execute(params![
                    r.session_id.to_string(),
                    r.kind,
                    r.name,
                    r.ip,
                    r.proto,
                    r.token,
                    r.user_id,
                    unix_millis(r.opened_at),
                    unix_millis(r.closed_at),
                    i64::try_from(r.bytes).unwrap_or(i64::MAX),
                    r.reason.as_str(),
                    r.dvr,
                    r.ad_inject_ignored,
                ])?;
            }
        }
        let dropped = self.drop_oldest(&tx, held)?;
        tx.commit()?;
        store.rows = held - dropped;
        Ok(dropped)
    }

    /// Deletes the records closed more than the retention before `now`; returns how many.
    pub fn prune(&self, now: SystemTime) -> Result<usize, HistoryError> {
        let cutoff = unix_millis(now.checked_sub(self.retention).unwrap_or(SystemTime::UNIX_EPOCH));
        let mut store = self.store();
        let n = store
            .conn
            .execute("DELETE FROM sessions WHERE closed_at < ?1", [cutoff])?;
        store.rows = store.rows.saturating_sub(n as u64);
        drop(store);
        if n > 0 {
            tracing::debug!(deleted = n, "session history: records past the retention deleted");
        }
        Ok(n)
    }

    /// Closed sessions, newest first, filtered (the API's `closed=true` list).
    pub fn closed(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRecord>, HistoryError> {
        let mut sql = String::from(
            "SELECT session_id, type, name, ip, proto, token, user_id, opened_at, closed_at, bytes, dvr, \
             close_reason, ad_inject_ignored FROM sessions",
        );
        let mut args: Vec<SqlValue> = Vec::new();
        let mut conditions = Vec::new();
        if let Some(user) = &filter.user_id {
            args.push(SqlValue::Text(user.clone()));
            conditions.push(format!("user_id = ?{}", args.len()));
        }
        if let Some(name) = &filter.name {
            args.push(SqlValue::Text(name.clone()));
            conditions.push(format!("name = ?{}", args.len()));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        let limit = filter.limit.unwrap_or(MAX_ROWS).min(MAX_ROWS);
        args.push(SqlValue::Integer(limit as i64));
        sql.push_str(&format!(" ORDER BY closed_at DESC, rowid DESC LIMIT ?{}", args.len()));
        let store = self.store();
        let mut stmt = store.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
            Ok(HistoryRecord {
                id: row.get(0)?,
                kind: row.get(1)?,
                name: row.get(2)?,
                ip: row.get(3)?,
                proto: row.get(4)?,
                token: row.get(5)?,
                user_id: row.get(6)?,
                opened_at: row.get(7)?,
                closed_at: row.get(8)?,
                bytes: row.get(9)?,
                dvr: row.get(10)?,
                close_reason: row.get(11)?,
                ad_inject_ignored: row.get(12)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Runs a parsed, whitelisted SELECT (see [`query`]); every value comes back as text.
    pub fn select(&self, select: &Select) -> Result<Rows, HistoryError> {
        let (sql, args) = select.to_sql();
        let store = self.store();
        let mut stmt = store.conn.prepare(&sql)?;
        let width = select.columns.len();
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
            (0..width)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(n) => Some(n.to_string()),
                        ValueRef::Real(x) => Some(x.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    })
                })
                .collect::<Result<Vec<_>, rusqlite::Error>>()
        })?;
        Ok(Rows {
            columns: select.columns.clone(),
            rows: rows.collect::<Result<Vec<_>, _>>()?,
        })
    }

    /// Runs `work` against the store on the blocking pool.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T, HistoryError>
    where
        T: Send + 'static,
        F: FnOnce(&History) -> Result<T, HistoryError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|e| HistoryError::Task(e.to_string()))?
    }

    /// Drains `closed` into the store until the channel closes or `shutdown` is cancelled
    /// (what is already queued is written first). Batches of up to [`BATCH`] records go in one
    /// transaction on the blocking pool; records past the retention are deleted every
    /// [`PRUNE_EVERY`].
    pub async fn run_writer(self, mut closed: Receiver<ClosedSession>, shutdown: CancellationToken) {
        let mut drops = LogThrottle::new(DROP_LOG_EVERY);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                record = closed.recv() => match record {
                    Some(r) => r,
                    None => return,
                },
                _ = prune.tick() => {
                    if let Err(e) = self.blocking(|h| h.prune(SystemTime::now())).await {
                        tracing::warn!(error = %e, "session history: pruning failed");
                    }
                    continue;
                }
                _ = shutdown.cancelled() => {
                    self.flush(&mut closed, &mut drops).await;
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match closed.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.write(batch, &mut drops).await;
        }
    }

    async fn flush(&self, closed: &mut Receiver<ClosedSession>, drops: &mut LogThrottle) {
        let mut batch = Vec::new();
        while let Ok(r) = closed.try_recv() {
            batch.push(r);
        }
        if !batch.is_empty() {
            self.write(batch, drops).await;
        }
    }

    async fn write(&self, batch: Vec<ClosedSession>, drops: &mut LogThrottle) {
        let n = batch.len();
        match self.blocking(move |h| h.insert(&batch)).await {
            Ok(dropped) => {
                tracing::debug!(records = n, dropped, "session history: closed sessions written");
                if let Some(dropped) = drops.hits(tokio::time::Instant::now(), dropped) {
                    tracing::warn!(
                        store = %self.location,
                        max_rows = self.max_rows,
                        dropped = dropped + 1,
                        "session history at its bound: the oldest records dropped (dropped: since the last such line)"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, records = n, "session history: closed sessions lost"),
        }
    }
}

impl ToSql for Literal {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Literal::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Literal::Integer(n) => ToSqlOutput::Owned(SqlValue::Integer(*n)),
            Literal::Null => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

#[cfg(test)]
mod tests;
