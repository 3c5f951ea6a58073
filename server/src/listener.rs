//! The one accept loop of every front end (HTTP, RTMP, RTSP, MySQL), in the style of
//! mini-redis: a [`Listener`] takes connections, admits each against a per-address share and a
//! cap in all, and runs a [`Service`] for it in a task of its own; [`Listener::run`] returns once
//! shutdown was asked for and every handler has ended (dropping the future cuts them).
//!
//! A connection over either cap is refused right after accept: the service may write one short
//! message first (MySQL's `ERR 1040`, HTTP's 503), without waiting on the client, then it is
//! closed. Refusals are logged at most once per [`REFUSAL_LOG_EVERY`] with the number held
//! back, so a flood does not flood the log too.
//!
//! The caps come from the process's descriptor limit, read at start ([`ConnectionCaps::derive`],
//! the formula is written there and in docs/security.md, "Limits"); the configuration can
//! override them per listener (`http 8080 max_connections=N max_connections_per_ip=M;`).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ListenLimits;
use crate::log_throttle::LogThrottle;
use crate::peer_limit::PerIp;

/// Pause after a failed accept (such as too many open files) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one refusal line (and one accept-failure line) per listener in this window.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The front end a listener serves: names it in logs and weighs its part of the descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Rtmp,
    Rtsp,
    Mysql,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Rtmp => "rtmp",
            Protocol::Rtsp => "rtsp",
            Protocol::Mysql => "mysql",
        }
    }
}

/// How many connections one listener serves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// In all; a connection beyond it is refused.
    pub max_connections: usize,
    /// From one address (an IPv6 /64); a connection beyond it is refused, so that a few
    /// addresses cannot take the whole of `max_connections`.
    pub per_address: usize,
}

/// Part of a listener's cap that one address may hold: 1/16, so that five addresses at their
/// share leave more than two thirds of the cap to everyone else.
pub const PER_ADDRESS_DIVISOR: usize = 16;
/// The MySQL listener (operators reading the session history) never needs more than this.
pub const MYSQL_MAX_CONNECTIONS: usize = 64;
/// Used when the descriptor limit cannot be read.
pub const FALLBACK_DESCRIPTORS: u64 = 1024;
/// An unlimited (or larger) descriptor limit is taken as this many.
const UNLIMITED_DESCRIPTORS: u64 = 1 << 20;

impl Caps {
    /// A cap in all with the default share per address.
    pub fn of(max_connections: usize) -> Caps {
        let max_connections = max_connections.max(1);
        Caps {
            max_connections,
            per_address: (max_connections / PER_ADDRESS_DIVISOR).max(1),
        }
    }

    /// These caps with the configuration's overrides: a configured `max_connections` brings its
    /// own default share; a configured share above the cap is the cap.
    pub fn overridden(self, limits: &ListenLimits) -> Caps {
        let base = limits.max_connections.map_or(self, Caps::of);
        let max_connections = base.max_connections;
        let per_address = limits
            .max_connections_per_ip
            .map_or(base.per_address, |n| n.clamp(1, max_connections));
        Caps {
            max_connections,
            per_address,
        }
    }
}

/// The caps of every listener of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// The descriptor limit they were derived from.
    pub descriptors: u64,
    pub http: Caps,
    pub rtmp: Caps,
    pub rtsp: Caps,
    pub mysql: Caps,
}

/// Which listeners a server runs besides HTTP (those it does not run take no share).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listening {
    pub rtmp: bool,
    pub rtsp: bool,
    pub mysql: bool,
}

impl ConnectionCaps {
    /// The caps for a process allowed `descriptors` open files (`L`):
    ///
    /// * `reserve = 64 + L/8` descriptors are kept for what is not a client socket (backend
    ///   connections, media and DVR files, the history store, the runtime);
    /// * `budget = (L − reserve) / 2` client connections, since one may hold a second
    ///   descriptor while it is served (a file, a backend call made for it);
    /// * MySQL takes `min(64, budget/16)`; the rest is split HTTP 2 : RTMP 1 : RTSP 1 among the
    ///   listeners that run;
    /// * each address may hold 1/16 of a listener's cap (at least 1).
    ///
    /// The caps of all listeners add up to at most `budget`. With 20 000 descriptors and every
    /// listener: HTTP 4 326 (270 per address), RTMP and RTSP 2 163 (135), MySQL 64 (4).
    pub fn derive(descriptors: u64, listening: Listening) -> ConnectionCaps {
        let l = usize::try_from(descriptors).unwrap_or(usize::MAX);
        let reserve = 64 + l / 8;
        let budget = l.saturating_sub(reserve) / 2;
        let mysql = if listening.mysql {
            (budget / 16).clamp(1, MYSQL_MAX_CONNECTIONS)
        } else {
            0
        };
        let weights = 2 + usize::from(listening.rtmp) + usize::from(listening.rtsp);
        let part = budget.saturating_sub(mysql) / weights;
        ConnectionCaps {
            descriptors,
            http: Caps::of(2 * part),
            rtmp: Caps::of(part),
            rtsp: Caps::of(part),
            mysql: Caps::of(mysql),
        }
    }

    pub fn of(&self, protocol: Protocol) -> Caps {
        match protocol {
            Protocol::Http => self.http,
            Protocol::Rtmp => self.rtmp,
            Protocol::Rtsp => self.rtsp,
            Protocol::Mysql => self.mysql,
        }
    }
}

/// The soft limit on open descriptors of this process (`getrlimit(RLIMIT_NOFILE)`), or
/// [`FALLBACK_DESCRIPTORS`] when it cannot be read.
pub fn descriptor_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable local.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            // `rlim_t` is a u64 on the platforms served.
            return if limit.rlim_cur == libc::RLIM_INFINITY {
                UNLIMITED_DESCRIPTORS
            } else {
                limit.rlim_cur.min(UNLIMITED_DESCRIPTORS)
            };
        }
    }
    FALLBACK_DESCRIPTORS
}

/// Raises this process's soft limit on open descriptors to its hard limit (at most
/// 2^20), as a server that holds one descriptor per viewer should: the soft limit a shell hands
/// down is often 1 024 while the hard one is far higher, and the connection caps are derived
/// from the soft one ([`descriptor_limit`]). Returns the soft limit in force afterwards.
/// Process-wide, so a binary calls it once at start, before binding; the library never does.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable local.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wanted = if limit.rlim_max == libc::RLIM_INFINITY {
            UNLIMITED_DESCRIPTORS
        } else {
            limit.rlim_max.min(UNLIMITED_DESCRIPTORS)
        };
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads one `rlimit` from a live local.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(descriptor_limit())
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds `per_address` connections.
    AddressFull { per_address: usize },
    /// The listener serves `max_connections` already.
    Full { max_connections: usize },
}

/// What a front end does with an admitted connection.
pub trait Service: Send + Sync + 'static {
    /// Serves one connection until it ends; when `shutdown` is cancelled it finishes what it
    /// may (a response under way) and returns.
    fn serve(
        self: Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Bytes to write to a refused connection before it is closed (written only as far as the
    /// socket takes them at once); none by default.
    fn refusal(&self, _why: Refusal, _peer: SocketAddr) -> Option<Vec<u8>> {
        None
    }
}

/// Threads with a single-threaded runtime each, that a listener spreads its connections over
/// (round robin): a connection's task, its socket's readiness and its timers then live on one
/// thread, with none of the multi-threaded scheduler's hand-offs between threads on every
/// request (docs/performance.md, section 1). The threads end when this is dropped; tasks still
/// on them are dropped with their runtime.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    /// `count` threads (at least one) named `name`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stop.push(tx);
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                // Runs the tasks spawned onto this runtime until the workers are dropped.
                let _ = runtime.block_on(rx);
                runtime.shutdown_background();
            })?;
        }
        Ok(Workers {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
            stop,
        })
    }

    /// One thread per core this process may use.
    pub fn per_core(name: &str) -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from), name)
    }

    fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// An admitted connection on its way to the runtime that serves it: a socket moving to a
/// worker leaves the accepting runtime's reactor and joins the worker's when its task starts.
enum Admitted {
    Here(TcpStream),
    Moving(std::net::TcpStream),
}

impl Admitted {
    fn take(socket: TcpStream, worker: Option<&tokio::runtime::Handle>) -> std::io::Result<Admitted> {
        match worker {
            None => Ok(Admitted::Here(socket)),
            Some(_) => socket.into_std().map(Admitted::Moving),
        }
    }

    /// The socket on the current runtime (called inside the task that serves it).
    fn into_tokio(self) -> std::io::Result<TcpStream> {
        match self {
            Admitted::Here(socket) => Ok(socket),
            Admitted::Moving(socket) => TcpStream::from_std(socket),
        }
    }
}

/// A bound TCP socket with the caps its connections are admitted against.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    protocol: Protocol,
    caps: Caps,
    workers: Option<Arc<Workers>>,
}

impl Listener {
    pub fn new(tcp: TcpListener, protocol: Protocol, caps: Caps) -> Listener {
        Listener {
            tcp,
            protocol,
            caps,
            workers: None,
        }
    }

    /// Serves connections on `workers`' threads instead of the runtime that runs the
    /// listener; the accept loop, the caps and the handlers' bookkeeping stay where they are.
    pub fn with_workers(mut self, workers: Arc<Workers>) -> Listener {
        self.workers = Some(workers);
        self
    }

    /// Binds `addr` (port 0 allowed).
    pub async fn bind(addr: SocketAddr, protocol: Protocol, caps: Caps) -> std::io::Result<Listener> {
        Ok(Listener::new(TcpListener::bind(addr).await?, protocol, caps))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Accepts and serves connections until `shutdown` is cancelled; then stops accepting
    /// (the socket is closed) and waits for every handler to end.
    pub async fn run<S: Service>(self, service: Arc<S>, shutdown: CancellationToken) -> std::io::Result<()> {
        let Listener {
            tcp,
            protocol,
            caps,
            workers,
        } = self;
        let name = protocol.name();
        let all = Arc::new(Semaphore::new(caps.max_connections));
        let per_address = PerIp::new(caps.per_address);
        let mut handlers = JoinSet::new();
        let mut refusals = LogThrottle::new(REFUSAL_LOG_EVERY);
        let mut failures = LogThrottle::new(REFUSAL_LOG_EVERY);
        tracing::info!(
            protocol = name,
            addr = ?tcp.local_addr().ok(),
            max_connections = caps.max_connections,
            per_address = caps.per_address,
            "listening"
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = handlers.join_next(), if !handlers.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(protocol = name, error = %e, "a connection task panicked");
                    }
                }
                accepted = tcp.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let admitted = match per_address.try_acquire(peer.ip()) {
                            None => Err(Refusal::AddressFull { per_address: caps.per_address }),
                            Some(slot) => match all.clone().try_acquire_owned() {
                                Ok(permit) => Ok((slot, permit)),
                                Err(_) => Err(Refusal::Full { max_connections: caps.max_connections }),
                            },
                        };
                        match admitted {
                            Ok(admission) => {
                                let _ = socket.set_nodelay(true);
                                let (service, stop) = (service.clone(), shutdown.clone());
                                let span = tracing::info_span!("connection", protocol = name, %peer);
                                let worker = workers.as_deref().map(Workers::pick);
                                match Admitted::take(socket, worker) {
                                    Err(e) => {
                                        tracing::debug!(protocol = name, %peer, error = %e, "connection lost moving to a worker");
                                    }
                                    Ok(socket) => {
                                        let task = async move {
                                            let _admission = admission;
                                            match socket.into_tokio() {
                                                Ok(socket) => service.serve(socket, peer, stop).await,
                                                Err(e) => tracing::debug!(error = %e, "connection lost moving to a worker"),
                                            }
                                        }
                                        .instrument(span);
                                        match worker {
                                            Some(worker) => handlers.spawn_on(task, worker),
                                            None => handlers.spawn(task),
                                        };
                                    }
                                }
                            }
                            Err(why) => {
                                refuse(socket, service.refusal(why, peer));
                                if let Some(held_back) = refusals.hit(tokio::time::Instant::now()) {
                                    log_refusal(name, peer, why, held_back);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if let Some(held_back) = failures.hit(tokio::time::Instant::now()) {
                            tracing::warn!(protocol = name, error = %e, held_back, "accept failed; backing off");
                        }
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        drop(tcp);
        while handlers.join_next().await.is_some() {}
        Ok(())
    }
}

/// Writes `message` as far as the socket takes it without waiting, then closes the socket.
fn refuse(socket: TcpStream, message: Option<Vec<u8>>) {
    let Some(message) = message else { return };
    // Taken out of the runtime, the socket stays non-blocking: a write never waits.
    if let Ok(mut socket) = socket.into_std() {
        let _ = socket.write(&message);
    }
}

fn log_refusal(protocol: &'static str, peer: SocketAddr, why: Refusal, held_back: u64) {
    match why {
        Refusal::AddressFull { per_address } => tracing::warn!(
            protocol,
            %peer,
            per_address,
            held_back,
            "connection refused: this address holds its share of connections (held_back: refusals since the last such line)"
        ),
        Refusal::Full { max_connections } => tracing::warn!(
            protocol,
            %peer,
            max_connections,
            held_back,
            "connection refused: the listener is at its cap (held_back: refusals since the last such line)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_descriptor_limit_and_add_up_within_it() {
        let all = Listening {
            rtmp: true,
            rtsp: true,
            mysql: true,
        };
        let caps = ConnectionCaps::derive(20_000, all);
        assert_eq!(
            caps.http,
            Caps {
                max_connections: 4326,
                per_address: 270
            }
        );
        assert_eq!(
            caps.rtmp,
            Caps {
                max_connections: 2163,
                per_address: 135
            }
        );
        assert_eq!(caps.rtsp, caps.rtmp);
        assert_eq!(
            caps.mysql,
            Caps {
                max_connections: 64,
                per_address: 4
            }
        );
        for descriptors in [0, 1, 100, 256, 1024, 4096, 20_000, 1 << 20] {
            for listening in [all, Listening::default()] {
                let c = ConnectionCaps::derive(descriptors, listening);
                let sum = c.http.max_connections
                    + usize::from(listening.rtmp) * c.rtmp.max_connections
                    + usize::from(listening.rtsp) * c.rtsp.max_connections
                    + usize::from(listening.mysql) * c.mysql.max_connections;
                let budget = usize::try_from(descriptors)
                    .unwrap()
                    .saturating_sub(64 + descriptors as usize / 8)
                    / 2;
                assert!(sum <= budget.max(4), "{descriptors}: {sum} > {budget}");
                for caps in [c.http, c.rtmp, c.rtsp, c.mysql] {
                    assert!(caps.per_address >= 1 && caps.per_address <= caps.max_connections);
                    assert!(caps.max_connections < 6 || 5 * caps.per_address < caps.max_connections);
                }
            }
        }
        // HTTP alone takes what RTMP and RTSP would have had.
        assert_eq!(
            ConnectionCaps::derive(20_000, Listening::default())
                .http
                .max_connections,
            8718
        );
    }

    #[test]
    fn configured_caps_replace_the_derived_ones() {
        let derived = Caps::of(4000);
        let only_max = ListenLimits {
            max_connections: Some(100),
            max_connections_per_ip: None,
        };
        assert_eq!(
            derived.overridden(&only_max),
            Caps {
                max_connections: 100,
                per_address: 6
            }
        );
        let only_share = ListenLimits {
            max_connections: None,
            max_connections_per_ip: Some(7),
        };
        assert_eq!(
            derived.overridden(&only_share),
            Caps {
                max_connections: 4000,
                per_address: 7
            }
        );
        let share_over_cap = ListenLimits {
            max_connections: None,
            max_connections_per_ip: Some(9000),
        };
        assert_eq!(derived.overridden(&share_over_cap).per_address, 4000);
        assert_eq!(derived.overridden(&ListenLimits::default()), derived);
    }

    /// Holds each connection until shutdown, then takes a while to finish.
    struct Lingering {
        started: std::sync::atomic::AtomicUsize,
        finished: std::sync::atomic::AtomicUsize,
    }

    impl Service for Lingering {
        async fn serve(self: Arc<Self>, _socket: TcpStream, _peer: SocketAddr, shutdown: CancellationToken) {
            use std::sync::atomic::Ordering::SeqCst;
            self.started.fetch_add(1, SeqCst);
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.finished.fetch_add(1, SeqCst);
        }
    }

    #[tokio::test]
    async fn run_returns_once_every_handler_has_ended_and_stops_accepting() {
        use std::sync::atomic::Ordering::SeqCst;
        let caps = Caps {
            max_connections: 8,
            per_address: 8,
        };
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Protocol::Mysql, caps)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Arc::new(Lingering {
            started: 0.into(),
            finished: 0.into(),
        });
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(listener.run(service.clone(), shutdown.clone()));
        let _clients = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        while service.started.load(SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(
            service.finished.load(SeqCst),
            2,
            "run returned before its handlers ended"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }

    /// Echoes one line, and says which thread served the connection.
    struct WhereServed;

    impl Service for WhereServed {
        async fn serve(self: Arc<Self>, mut socket: TcpStream, _peer: SocketAddr, _shutdown: CancellationToken) {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut byte = [0u8; 1];
            if socket.read_exact(&mut byte).await.is_ok() {
                let thread = std::thread::current().name().unwrap_or("?").to_string();
                let _ = socket.write_all(format!("{thread}\n").as_bytes()).await;
            }
        }
    }

    #[tokio::test]
    async fn with_workers_connections_are_served_round_robin_on_their_threads() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let caps = Caps {
            max_connections: 8,
            per_address: 8,
        };
        let workers = Arc::new(Workers::start(2, "test-w").unwrap());
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Protocol::Http, caps)
            .await
            .unwrap()
            .with_workers(workers.clone());
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(listener.run(Arc::new(WhereServed), shutdown.clone()));
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut text = String::new();
            client.read_to_string(&mut text).await.unwrap();
            seen.push(text.trim().to_string());
        }
        assert_eq!(seen, ["test-w-0", "test-w-1", "test-w-0", "test-w-1"]);
        shutdown.cancel();
        run.await.unwrap().unwrap();
        drop(workers);
    }

    #[test]
    fn the_descriptor_limit_is_read() {
        assert!(descriptor_limit() >= 1);
    }
}
