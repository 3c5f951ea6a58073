//! A MySQL-protocol front end to the session history (`mysql PORT;`), so that operators can
//! query closed sessions with a stock client:
//!
//! ```text
//! mariadb -h 127.0.0.1 -P PORT -u LOGIN -pPASSWORD -e "select user_id, bytes from sessions where user_id='100'"
//! ```
//!
//! The credential is the management API's `edit_auth LOGIN PASSWORD` (one secret for both
//! operator interfaces); without `edit_auth` every login is refused. Authentication is
//! `mysql_native_password`; a client that starts with another plugin is asked to switch.
//!
//! Connection states, in order: `ExpectHandshakeResponse` → (`ExpectAuthSwitchResponse`) →
//! `Ready` (commands) until COM_QUIT or the peer leaves. Commands: COM_QUERY, COM_PING,
//! COM_INIT_DB, COM_QUIT, COM_FIELD_LIST (empty); anything else gets an ERR packet. A query
//! that is malformed or unsupported gets an ERR packet and the connection stays usable.
//! Queries: `SELECT … FROM sessions …` (see [`crate::history::query`]) and what a stock client
//! asks on its own (`select @@version_comment limit 1`, `SELECT DATABASE()`, `SET NAMES …`,
//! `SHOW DATABASES`, `SHOW TABLES`, `DESCRIBE sessions`).

pub mod packet;
mod statement;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::Credential;
use crate::context::constant_time_eq;
use crate::history::History;
use crate::listener::{Listener, Refusal, Service};
use packet::{HandshakeResponse, NATIVE_PASSWORD, ReadError, Reply};
use statement::Outcome;

/// The version string of the greeting. A 5.x number keeps clients from assuming MySQL 8
/// features; the suffix says what answers.
pub const SERVER_VERSION: &str = "5.7.99-usher-history";
/// The one database.
pub const DATABASE: &str = "usher";
/// Time a client has to log in.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle this long between commands is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_PING: u8 = 0x0e;
const COM_RESET_CONNECTION: u8 = 0x1f;

/// MySQL error codes used here, with their SQLSTATE.
pub(crate) mod code {
    pub const ACCESS_DENIED: (u16, &str) = (1045, "28000");
    pub const BAD_DB: (u16, &str) = (1049, "42000");
    pub const UNKNOWN_COM: (u16, &str) = (1047, "08S01");
    pub const PARSE: (u16, &str) = (1064, "42000");
    pub const NO_SUCH_TABLE: (u16, &str) = (1146, "42S02");
    pub const BAD_FIELD: (u16, &str) = (1054, "42S22");
    pub const NOT_SUPPORTED: (u16, &str) = (1235, "42000");
    pub const READ_ONLY: (u16, &str) = (1290, "HY000");
    pub const UNKNOWN_VARIABLE: (u16, &str) = (1193, "HY000");
    pub const HANDSHAKE: (u16, &str) = (1043, "08S01");
    pub const TOO_MANY_CONNECTIONS: (u16, &str) = (1040, "08004");
    pub const PACKET_TOO_LARGE: (u16, &str) = (1153, "08S01");
    pub const UNKNOWN: (u16, &str) = (1105, "HY000");
}

/// Serves the MySQL protocol on `listener` until `shutdown` is cancelled, then waits for the
/// open connections, which see the same token and close. A connection over the listener's caps
/// gets `ERR 1040 Too many connections` (saying which cap) instead of a greeting.
pub async fn run(
    listener: Listener,
    history: History,
    credential: Option<Credential>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if credential.is_none() {
        tracing::warn!("mysql listener without edit_auth: every login will be refused");
    }
    let service = Arc::new(MysqlService {
        history,
        credential: Arc::new(credential),
        ids: AtomicU32::new(1),
    });
    listener.run(service, shutdown).await
}

/// The MySQL front end as the [`Listener`] runs it.
struct MysqlService {
    history: History,
    credential: Arc<Option<Credential>>,
    /// Connection ids of the greeting.
    ids: AtomicU32,
}

impl Service for MysqlService {
    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let handler = Handler {
            history: self.history.clone(),
            credential: self.credential.clone(),
            peer,
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            database: None,
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            result = handler.serve(stream) => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "mysql connection ended");
                }
            }
        }
    }

    fn refusal(&self, why: Refusal, peer: SocketAddr) -> Option<Vec<u8>> {
        let message = match why {
            Refusal::AddressFull { per_address } => {
                format!(
                    "Too many connections from {} (at most {per_address} per address)",
                    peer.ip()
                )
            }
            Refusal::Full { max_connections } => format!("Too many connections (at most {max_connections})"),
        };
        let mut reply = Reply::after(u8::MAX);
        let (c, s) = code::TOO_MANY_CONNECTIONS;
        reply.err(c, s, &message);
        Some(reply.into_bytes())
    }
}

/// One client connection.
struct Handler {
    history: History,
    credential: Arc<Option<Credential>>,
    peer: SocketAddr,
    id: u32,
    /// The database chosen by the client (`USE`, COM_INIT_DB or the handshake).
    database: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("login refused: {0}")]
    Refused(String),
}

fn random_scramble() -> [u8; 20] {
    // Printable, never NUL: some clients treat the scramble as a C string.
    let mut rng = rand::rng();
    std::array::from_fn(|_| rng.random_range(0x21u8..0x7f))
}

impl Handler {
    async fn serve(mut self, mut stream: TcpStream) -> Result<(), ConnError> {
        let _ = stream.set_nodelay(true);
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.login(&mut stream))
            .await
            .map_err(|_| ConnError::Timeout("waiting for the login"))??;
        tracing::debug!(peer = %self.peer, id = self.id, "mysql client logged in");
        loop {
            let read = tokio::time::timeout(IDLE_TIMEOUT, packet::read_packet(&mut stream)).await;
            let (seq, payload) = match read {
                Err(_) => return Err(ConnError::Timeout("between commands")),
                Ok(Err(ReadError::Closed)) => return Ok(()),
                Ok(Err(ReadError::TooLarge(n))) => {
                    let mut reply = Reply::after(0);
                    let (c, s) = code::PACKET_TOO_LARGE;
                    reply.err(
                        c,
                        s,
                        &format!("Got a packet bigger than 'max_allowed_packet' bytes ({n})"),
                    );
                    reply.send(&mut stream).await?;
                    return Err(ReadError::TooLarge(n).into());
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(p)) => p,
            };
            let mut reply = Reply::after(seq);
            let Some((&command, body)) = payload.split_first() else {
                let (c, s) = code::UNKNOWN_COM;
                reply.err(c, s, "empty command packet");
                reply.send(&mut stream).await?;
                continue;
            };
            match command {
                COM_QUIT => return Ok(()),
                COM_PING | COM_RESET_CONNECTION => reply.ok(),
                COM_INIT_DB => {
                    let name = String::from_utf8_lossy(body).into_owned();
                    self.use_database(&name, &mut reply);
                }
                COM_FIELD_LIST => reply.eof(),
                COM_QUERY => {
                    let sql = String::from_utf8_lossy(body).into_owned();
                    self.query(&sql, &mut reply).await;
                }
                other => {
                    let (c, s) = code::UNKNOWN_COM;
                    reply.err(
                        c,
                        s,
                        &format!("Unknown command 0x{other:02x} (this server answers queries only)"),
                    );
                }
            }
            reply.send(&mut stream).await?;
        }
    }

    /// Greeting, the client's response, an optional plugin switch, then OK or ERR.
    async fn login(&mut self, stream: &mut TcpStream) -> Result<(), ConnError> {
        let scramble = random_scramble();
        let mut greeting = Reply::after(u8::MAX);
        greeting.packet(&packet::handshake_v10(SERVER_VERSION, self.id, &scramble));
        greeting.send(stream).await?;
        let (seq, payload) = packet::read_packet(stream).await?;
        let response = match HandshakeResponse::parse(&payload) {
            Ok(r) => r,
            Err(why) => {
                let mut reply = Reply::after(seq);
                let (c, s) = code::HANDSHAKE;
                reply.err(c, s, &format!("Bad handshake: {why}"));
                reply.send(stream).await?;
                return Err(ConnError::Refused(why.to_string()));
            }
        };
        let (mut auth, mut seq) = (response.auth.clone(), seq);
        if response.plugin.as_deref().is_some_and(|p| p != NATIVE_PASSWORD) {
            let mut switch = Reply::after(seq);
            switch.packet(&packet::auth_switch(&scramble));
            switch.send(stream).await?;
            let (s, data) = packet::read_packet(stream).await?;
            (auth, seq) = (data, s);
        }
        let mut reply = Reply::after(seq);
        let accepted = self.credential.as_ref().as_ref().is_some_and(|cred| {
            constant_time_eq(response.user.as_bytes(), cred.login.as_bytes())
                & packet::native_password_ok(&scramble, &cred.password, &auth)
        });
        if !accepted {
            tracing::info!(peer = %self.peer, user = %response.user, "mysql login refused");
            let (c, s) = code::ACCESS_DENIED;
            let using = if auth.is_empty() { "NO" } else { "YES" };
            reply.err(
                c,
                s,
                &format!(
                    "Access denied for user '{}'@'{}' (using password: {using})",
                    response.user,
                    self.peer.ip()
                ),
            );
            reply.send(stream).await?;
            return Err(ConnError::Refused(format!("user `{}`", response.user)));
        }
        if let Some(db) = &response.database
            && !db.eq_ignore_ascii_case(DATABASE)
        {
            let (c, s) = code::BAD_DB;
            reply.err(c, s, &format!("Unknown database '{db}' (the only one is `{DATABASE}`)"));
            reply.send(stream).await?;
            return Err(ConnError::Refused(format!("database `{db}`")));
        }
        self.database = response.database.map(|_| DATABASE.to_string());
        reply.ok();
        reply.send(stream).await?;
        Ok(())
    }

    fn use_database(&mut self, name: &str, reply: &mut Reply) {
        let name = name.trim().trim_matches('`');
        if name.eq_ignore_ascii_case(DATABASE) {
            self.database = Some(DATABASE.to_string());
            reply.ok();
        } else {
            let (c, s) = code::BAD_DB;
            reply.err(
                c,
                s,
                &format!("Unknown database '{name}' (the only one is `{DATABASE}`)"),
            );
        }
    }

    async fn query(&mut self, sql: &str, reply: &mut Reply) {
        match statement::classify(sql, self.database.as_deref()) {
            Outcome::Ok => reply.ok(),
            Outcome::Use(name) => self.use_database(&name, reply),
            Outcome::Rows { columns, rows } => reply.result_set(&columns, &rows),
            Outcome::Error { code: (c, s), message } => {
                tracing::debug!(peer = %self.peer, code = c, %message, "mysql query refused");
                reply.err(c, s, &message);
            }
            Outcome::Select(select) => match self.history.blocking(move |h| h.select(&select)).await {
                Ok(rows) => {
                    let columns: Vec<_> = rows.columns.iter().map(|c| statement::column_def(*c)).collect();
                    reply.result_set(&columns, &rows.rows);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mysql: history query failed");
                    let (c, s) = code::UNKNOWN;
                    reply.err(c, s, &e.to_string());
                }
            },
        }
    }
}
