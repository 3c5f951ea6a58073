//! The shared session store of a cluster of edge servers (`session_store redis://…`): the
//! Redis side of per-user limits, X-Unique and bans across servers. This is driver-side I/O:
//! [`super::AuthCore`] calls it around the decision machine, which never sees Redis; what the
//! machine wants shared comes out of it as a [`Claim`] or a ban (see `machine.rs`).
//!
//! What lives in Redis (docs/spec.md, "Shared session store", has the whole picture):
//!
//! * `usher:{KIND:u:USER}:open` — a sorted set of the user's sessions (member: the identity in
//!   hex), scored by when each opened (unix ms): the order of AMB-1's oldest-out rule.
//! * `usher:{KIND:u:USER}:exp` — the same members scored by when their auth duration ends (on
//!   Redis's clock): a member not renewed by then is gone, so the sessions of a server that
//!   stopped free their slots within their auth duration.
//! * `usher:{KIND:u:USER}:node` — a hash, member → the server holding it (for operators).
//! * `usher:KIND:ban:IDENTITY` — a ban (BAN-01/02), with its length as the key's TTL.
//! * channel `usher:kicks` — `KIND IDENTITY BAN_MS REASON`, for the server holding a session
//!   that another server's admission closed.
//!
//! Count-and-admit is one script ([`ADMIT_SCRIPT`]), so two servers admitting at once are
//! ordered by Redis and never both keep the (N+1)th session.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client, RedisError};

use super::backend::CallKind;
use super::identity::Identity;
use super::machine::Claim;
use super::registry::Key;
use crate::config::{OnStoreLoss, SessionStoreConfig};

/// Longest wait for Redis to accept a connection or answer a command. Past it the store counts
/// as lost (the request is decided as `on_loss` says) and the driver reconnects.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// The channel kicks are published on.
pub const KICK_CHANNEL: &str = "usher:kicks";

/// Count-and-admit, in one step on the Redis server:
///
/// 1. forget the user's members whose auth duration ended (`exp` score ≤ now);
/// 2. add or renew the admitted member (expiry now + TTL; opening time kept if known);
/// 3. while the user has more than `max` members, take the one opened first other than the
///    admitted one: remove it, set its ban key for the ban length, publish the kick;
/// 4. let the user's keys expire with their last member.
///
/// KEYS: open, exp, node. ARGV: member, opened (unix ms), ttl (ms), max, ban (ms), reason,
/// node, ban key prefix, kind, channel, resync (`1`: a server handing its sessions back after
/// Redis returned; then the admitted member is not spared, the oldest go whoever they are).
/// Returns the members it kicked. Time is Redis's own (`TIME`),
/// so the servers' clocks do not decide expiry.
pub const ADMIT_SCRIPT: &str = r#"
local open_key, exp_key, node_key = KEYS[1], KEYS[2], KEYS[3]
local member, opened, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max, ban, reason, node = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local ban_prefix, kind, channel, resync = ARGV[8], ARGV[9], ARGV[10], ARGV[11] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', exp_key, '-inf', now)
for _, m in ipairs(gone) do
  redis.call('ZREM', open_key, m)
  redis.call('HDEL', node_key, m)
end
redis.call('ZREMRANGEBYSCORE', exp_key, '-inf', now)
redis.call('ZADD', exp_key, now + ttl, member)
redis.call('ZADD', open_key, 'NX', opened, member)
redis.call('HSET', node_key, member, node)
local kicked = {}
local n = redis.call('ZCARD', open_key)
if n > max then
  for _, m in ipairs(redis.call('ZRANGE', open_key, 0, -1)) do
    if n <= max then break end
    if resync or m ~= member then
      redis.call('ZREM', open_key, m)
      redis.call('ZREM', exp_key, m)
      redis.call('HDEL', node_key, m)
      if ban > 0 then
        redis.call('SET', ban_prefix .. m, reason, 'PX', ban)
      end
      redis.call('PUBLISH', channel, kind .. ' ' .. m .. ' ' .. ban .. ' ' .. reason)
      kicked[#kicked + 1] = m
      n = n - 1
    end
  end
end
local last = redis.call('ZRANGE', exp_key, -1, -1, 'WITHSCORES')
local keep = math.max(tonumber(last[2]) - now, 1)
redis.call('PEXPIRE', open_key, keep)
redis.call('PEXPIRE', exp_key, keep)
redis.call('PEXPIRE', node_key, keep)
return kicked
"#;

/// Live members of a user (expiry after Redis's now). KEYS: exp.
const COUNT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"#;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection at the moment (lost earlier, not yet back): no round trip was tried.
    #[error("the session store is unreachable")]
    Down,
    #[error("session store: {0}")]
    Redis(#[from] RedisError),
    #[error("session store: no answer within {0:?}")]
    Timeout(Duration),
    #[error("session store: unexpected answer: {0}")]
    Answer(String),
}

/// A kick published by the server whose admission closed a session (see [`KICK_CHANNEL`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub key: Key,
    pub ban: Duration,
    /// X-Unique (rather than a per-user limit) caused it.
    pub unique: bool,
}

impl Kick {
    /// Reads a [`KICK_CHANNEL`] message; `None` for anything else (logged by the caller).
    pub fn parse(text: &str) -> Option<Kick> {
        let mut parts = text.split(' ');
        let kind = kind_of(parts.next()?)?;
        let identity = identity_of_hex(parts.next()?)?;
        let ban = Duration::from_millis(parts.next()?.parse().ok()?);
        let unique = match parts.next()? {
            "unique" => true,
            "limit" => false,
            _ => return None,
        };
        parts.next().is_none().then_some(Kick {
            key: (kind, identity),
            ban,
            unique,
        })
    }
}

fn kind_str(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Play => "play",
        CallKind::Publish => "publish",
    }
}

fn kind_of(text: &str) -> Option<CallKind> {
    match text {
        "play" => Some(CallKind::Play),
        "publish" => Some(CallKind::Publish),
        _ => None,
    }
}

fn identity_of_hex(text: &str) -> Option<Identity> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(Identity::from_bytes(bytes))
}

/// The Redis keys of a user's sessions: open, exp, node. The braces make them one hash slot
/// under Redis Cluster.
pub fn user_keys(kind: CallKind, user: &str) -> [String; 3] {
    let base = format!("usher:{{{}:u:{user}}}", kind_str(kind));
    [format!("{base}:open"), format!("{base}:exp"), format!("{base}:node")]
}

fn ban_prefix(kind: CallKind) -> String {
    format!("usher:{}:ban:", kind_str(kind))
}

/// The Redis key of an identity's ban.
pub fn ban_key(key: &Key) -> String {
    format!("{}{}", ban_prefix(key.0), hex::encode(key.1.bytes()))
}

/// The connection to the shared store, and what the driver needs to know of it.
pub struct SessionStore {
    client: Client,
    node: String,
    on_loss: OnStoreLoss,
    /// The command connection while Redis is reachable; `None` once lost, until the driver's
    /// supervisor connects again.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Set when a command found Redis gone: the supervisor reconnects.
    lost: tokio::sync::Notify,
    /// The loss has been logged (once per loss, not once per request).
    loss_logged: AtomicBool,
    round_trips: AtomicU64,
    admit: redis::Script,
    count: redis::Script,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("node", &self.node)
            .field("on_loss", &self.on_loss)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// A store for `config` (no connection yet: [`connect`](Self::connect) makes it).
    pub fn new(config: &SessionStoreConfig) -> Result<SessionStore, StoreError> {
        let node = config
            .node
            .clone()
            .unwrap_or_else(|| format!("usher-{:08x}", rand::random::<u32>()));
        Ok(SessionStore {
            client: Client::open(config.url.as_str())?,
            node,
            on_loss: config.on_loss,
            conn: Mutex::new(None),
            lost: tokio::sync::Notify::new(),
            loss_logged: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            admit: redis::Script::new(ADMIT_SCRIPT),
            count: redis::Script::new(COUNT_SCRIPT),
        })
    }

    /// This server's name in the store.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn on_loss(&self) -> OnStoreLoss {
        self.on_loss
    }

    /// Commands sent to Redis so far (each one round trip): for the tests and the figures of
    /// docs/performance.md.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Whether a command connection is up now.
    pub fn is_up(&self) -> bool {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Connects the command connection and a subscription to [`KICK_CHANNEL`]; the
    /// subscription is the caller's to read (its end means Redis went away).
    pub async fn connect(&self) -> Result<PubSub, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(STORE_TIMEOUT))
            .set_response_timeout(Some(STORE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = tokio::time::timeout(STORE_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(KICK_CHANNEL).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await
        .map_err(|_| StoreError::Timeout(STORE_TIMEOUT))??;
        // The subscription is confirmed before the store counts as up, so no kick published
        // from now on is missed.
        let _: () = tokio::time::timeout(STORE_TIMEOUT, pubsub.ping())
            .await
            .map_err(|_| StoreError::Timeout(STORE_TIMEOUT))??;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        self.loss_logged.store(false, Ordering::Relaxed);
        Ok(pubsub)
    }

    /// Marks the store lost (the supervisor reconnects) and logs it once per loss.
    pub fn set_lost(&self, why: &dyn std::fmt::Display) {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.lost.notify_one();
        if !self.loss_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                node = %self.node,
                on_loss = self.on_loss.as_str(),
                error = %why,
                "SESSION STORE LOST: per-user limits, X-Unique and bans now hold on this server only; {}",
                match self.on_loss {
                    OnStoreLoss::Open => "new sessions are decided locally until Redis is back",
                    OnStoreLoss::Closed => "new sessions are refused until Redis is back (on_loss=closed)",
                }
            );
        }
    }

    /// Resolves when a command found the store gone.
    pub async fn lost(&self) {
        self.lost.notified().await
    }

    fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Down)
    }

    /// Sends one command, counting the round trip; a connection failure marks the store lost.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match cmd.query_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.set_lost(&e);
                }
                Err(e.into())
            }
        }
    }

    /// Runs `script` by its digest, loading it once when Redis does not know it yet.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        source: &str,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, StoreError> {
        let build = |verb: &str, body: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(body).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self.query(&build("EVALSHA", script.get_hash())).await {
            Err(StoreError::Redis(e)) if e.code() == Some("NOSCRIPT") => self.query(&build("EVAL", source)).await,
            other => other,
        }
    }

    /// Counts `claim`'s session and admits it, closing the user's oldest sessions beyond its
    /// limit on every server (one script, one round trip). Returns the kicked keys.
    pub async fn claim(&self, claim: &Claim) -> Result<Vec<Key>, StoreError> {
        let [open, exp, node] = user_keys(claim.key.0, &claim.user);
        let args = [
            hex::encode(claim.key.1.bytes()),
            claim.opened_unix_ms.to_string(),
            millis(claim.ttl).max(1).to_string(),
            claim.max.to_string(),
            millis(claim.ban).to_string(),
            if claim.unique { "unique" } else { "limit" }.to_string(),
            self.node.clone(),
            ban_prefix(claim.key.0),
            kind_str(claim.key.0).to_string(),
            KICK_CHANNEL.to_string(),
            if claim.resync { "1" } else { "0" }.to_string(),
        ];
        let kicked: Vec<String> = self
            .eval(&self.admit, ADMIT_SCRIPT, &[&open, &exp, &node], &args)
            .await?;
        kicked
            .iter()
            .map(|m| identity_of_hex(m).map(|id| (claim.key.0, id)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Answer(format!("the admit script returned a bad member in {kicked:?}")))
    }

    /// How long `key` stays banned on the store, if it is.
    pub async fn ban_of(&self, key: &Key) -> Result<Option<Duration>, StoreError> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(ban_key(key))).await?;
        // -2: no such key; -1: no TTL (never written by a server).
        Ok((ms > 0).then(|| Duration::from_millis(ms.unsigned_abs())))
    }

    /// Bans `key` on every server for `ban` (a backend's deny).
    pub async fn ban(&self, key: &Key, ban: Duration) -> Result<(), StoreError> {
        if ban.is_zero() {
            return Ok(());
        }
        self.query::<()>(
            redis::cmd("SET")
                .arg(ban_key(key))
                .arg("deny")
                .arg("PX")
                .arg(millis(ban)),
        )
        .await
    }

    /// Sessions of `user` the store counts now (those whose auth duration has not ended).
    pub async fn user_sessions(&self, kind: CallKind, user: &str) -> Result<u64, StoreError> {
        let [_, exp, _] = user_keys(kind, user);
        self.eval(&self.count, COUNT_SCRIPT, &[&exp], &[]).await
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_messages_read_back() {
        let id = Identity::from_bytes([7; 32]);
        let text = format!("publish {} 1500 unique", hex::encode([7u8; 32]));
        assert_eq!(
            Kick::parse(&text),
            Some(Kick {
                key: (CallKind::Publish, id),
                ban: Duration::from_millis(1500),
                unique: true,
            })
        );
        for bad in [
            "",
            "play",
            "view 0707 10 limit",
            &format!("play {} x limit", hex::encode([7u8; 32])),
            &format!("play {} 10 other", hex::encode([7u8; 32])),
            &format!("play {} 10 limit extra", hex::encode([7u8; 32])),
            "play abcd 10 limit",
        ] {
            assert_eq!(Kick::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_user_keys_share_one_hash_tag() {
        let keys = user_keys(CallKind::Play, "u:1");
        assert_eq!(keys[0], "usher:{play:u:u:1}:open");
        assert!(keys.iter().all(|k| k.starts_with("usher:{play:u:u:1}:")));
    }
}
