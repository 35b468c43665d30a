//! Faults on the wire: a TCP proxy on 127.0.0.1 that forwards to a server
//! and, on demand, delays, swallows, resets or refuses connections.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::lock;

/// A TCP proxy on 127.0.0.1 (a port of its own) in front of `upstream`,
/// with faults a test switches on and off:
///
/// - [`set_latency`](Self::set_latency): every chunk forwarded, either way,
///   waits this long first, on open connections too;
/// - [`set_blackhole`](Self::set_blackhole): a half-open server. New
///   connections are accepted and never answered; open ones stop forwarding
///   either way. Switched off, held traffic flows again, like a healed
///   network partition;
/// - [`reset_all`](Self::reset_all): every open connection is aborted with a
///   TCP RST, both towards the client and towards the server;
/// - [`set_refuse`](Self::set_refuse): the proxy stops listening, so new
///   connections are refused; open ones go on;
/// - [`set_drop_after_login`](Self::set_drop_after_login): new PostgreSQL
///   sessions are closed as soon as their login completes, as a server,
///   pooler or proxy does that accepts sessions and drops them.
///
/// Its tasks run on the tokio runtime that started it and end when it is
/// dropped (open connections are then closed).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use tidewater_testkit::{FaultProxy, PgCluster};
///
/// let cluster = PgCluster::new().await?;
/// let proxy = FaultProxy::start(cluster.addr()).await?;
/// let url = cluster.url_at(proxy.addr()); // connect through the proxy
/// proxy.set_latency(Duration::from_millis(100));
/// proxy.reset_all().await; // every connection through it breaks
/// # Ok(())
/// # }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; `None` while refusing.
    acceptor: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    upstream: SocketAddr,
    latency_nanos: AtomicU64,
    blackhole: watch::Sender<bool>,
    drop_after_login: AtomicBool,
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Connection>>,
}

/// An open connection: its task and the way to reset it.
struct Connection {
    reset: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

const CHUNK: usize = 16 * 1024;

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, forwarding
    /// faithfully until told otherwise.
    ///
    /// # Errors
    /// When no port can be bound.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let upstream = "127.0.0.1:5432".parse().unwrap();
    /// let proxy = tidewater_testkit::FaultProxy::start(upstream).await?;
    /// assert_ne!(proxy.addr().port(), 5432);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let shared = Arc::new(Shared {
            upstream,
            latency_nanos: AtomicU64::new(0),
            blackhole: watch::Sender::new(false),
            drop_after_login: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        Ok(Self {
            addr: listener.local_addr()?,
            acceptor: tokio::sync::Mutex::new(Some(spawn_acceptor(listener, &shared))),
            shared,
        })
    }

    /// Where clients connect: 127.0.0.1 and the proxy's port.
    ///
    /// ```no_run
    /// # async fn f(proxy: tidewater_testkit::FaultProxy) -> std::io::Result<()> {
    /// let client = tokio::net::TcpStream::connect(proxy.addr()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server it forwards to.
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let upstream = "127.0.0.1:5432".parse().unwrap();
    /// let proxy = tidewater_testkit::FaultProxy::start(upstream).await?;
    /// assert_eq!(proxy.upstream(), upstream);
    /// # Ok(())
    /// # }
    /// ```
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Delays every chunk forwarded from now on, either way, by `latency`
    /// (zero: no delay). Applies to open connections too.
    ///
    /// ```no_run
    /// # fn f(proxy: tidewater_testkit::FaultProxy) {
    /// proxy.set_latency(std::time::Duration::from_millis(200));
    /// # }
    /// ```
    pub fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shared.latency_nanos.store(nanos, SeqCst);
    }

    /// `true`: behave as a half-open server. New connections are accepted
    /// but never reach the server; open ones forward nothing either way
    /// (what they send is held, not dropped). `false`: forward again,
    /// including what was held.
    ///
    /// ```no_run
    /// # fn f(proxy: tidewater_testkit::FaultProxy) {
    /// proxy.set_blackhole(true);
    /// // ... queries through the proxy hang ...
    /// proxy.set_blackhole(false);
    /// # }
    /// ```
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.send_replace(on);
    }

    /// Aborts every open connection with a TCP RST (SO_LINGER 0, then
    /// close) on both sides, and returns how many there were. When it
    /// returns, the resets have been sent.
    ///
    /// ```no_run
    /// # async fn f(proxy: tidewater_testkit::FaultProxy) {
    /// let aborted = proxy.reset_all().await;
    /// assert_eq!(proxy.connections(), 0);
    /// # }
    /// ```
    pub async fn reset_all(&self) -> usize {
        let open = self.shared.take_connections();
        let count = open.len();
        let mut tasks = Vec::with_capacity(count);
        for connection in open {
            // A task that ended meanwhile has dropped its receiver.
            let _ = connection.reset.send(());
            tasks.push(connection.task);
        }
        for task in tasks {
            let _ = task.await;
        }
        count
    }

    /// `true`: stop listening, so new connections are refused (the client
    /// sees "connection refused"); open ones go on. `false`: listen again on
    /// the same port. When it returns, the change is in effect.
    ///
    /// # Errors
    /// When the port cannot be bound again (another process took it).
    ///
    /// ```no_run
    /// # async fn f(proxy: tidewater_testkit::FaultProxy) -> std::io::Result<()> {
    /// proxy.set_refuse(true).await?;
    /// assert!(tokio::net::TcpStream::connect(proxy.addr()).await.is_err());
    /// proxy.set_refuse(false).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_refuse(&self, refuse: bool) -> io::Result<()> {
        let mut acceptor = self.acceptor.lock().await;
        match (refuse, acceptor.take()) {
            (true, Some(task)) => {
                task.abort();
                // Once it has ended, its listener is closed.
                let _ = task.await;
            }
            (false, None) => {
                let listener = TcpListener::bind(self.addr).await?;
                *acceptor = Some(spawn_acceptor(listener, &self.shared));
            }
            (_, unchanged) => *acceptor = unchanged,
        }
        Ok(())
    }

    /// `true`: every PostgreSQL session opened from now on is closed (both
    /// ways) right after the server's first `ReadyForQuery`, the end of the
    /// login: the client's connection attempt succeeds, and the session is
    /// gone before its first query. Open sessions are left alone. Sessions
    /// must not ask for TLS (`sslmode=disable`): the proxy reads the
    /// protocol's framing.
    ///
    /// ```no_run
    /// # fn f(proxy: tidewater_testkit::FaultProxy) {
    /// proxy.set_drop_after_login(true);
    /// # }
    /// ```
    pub fn set_drop_after_login(&self, on: bool) {
        self.shared.drop_after_login.store(on, SeqCst);
    }

    /// How many client connections the proxy has accepted so far.
    ///
    /// ```no_run
    /// # fn f(proxy: tidewater_testkit::FaultProxy) {
    /// assert_eq!(proxy.accepted(), 0);
    /// # }
    /// ```
    pub fn accepted(&self) -> u64 {
        self.shared.next_id.load(SeqCst)
    }

    /// How many client connections are open through the proxy.
    ///
    /// ```no_run
    /// # fn f(proxy: tidewater_testkit::FaultProxy) {
    /// assert_eq!(proxy.connections(), 0);
    /// # }
    /// ```
    pub fn connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("connections", &self.connections())
            .finish()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.acceptor.get_mut().take() {
            task.abort();
        }
        for connection in self.shared.take_connections() {
            connection.task.abort();
        }
    }
}

fn spawn_acceptor(listener: TcpListener, shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(_) => {
                    // Out of file descriptors, say: let it pass, do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let id = shared.next_id.fetch_add(1, SeqCst);
            let (reset, reset_rx) = oneshot::channel();
            // Registered under the lock the task takes to deregister, so it
            // cannot deregister before it is registered.
            let mut connections = lock(&shared.connections);
            let task = tokio::spawn(serve(shared.clone(), id, client, reset_rx));
            connections.insert(id, Connection { reset, task });
        }
    })
}

/// Removes a connection from the registry when its task ends or is aborted.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.shared.connections).remove(&self.id);
    }
}

async fn serve(shared: Arc<Shared>, id: u64, mut client: TcpStream, reset: oneshot::Receiver<()>) {
    let _registered = Registered {
        shared: shared.clone(),
        id,
    };
    let mut upstream = None;
    let drop_after_login = shared.drop_after_login.load(SeqCst);
    let aborted = tokio::select! {
        _ = reset => true,
        // A session dropped after its login closes normally (FIN): a reset
        // would discard the login's last messages still unread.
        _ = relay(&shared, &mut client, &mut upstream, drop_after_login) => false,
    };
    if aborted {
        // Closing a socket with a zero linger time sends RST, not FIN.
        for stream in std::iter::once(&client).chain(&upstream) {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// Connects to the server once the proxy is open and forwards both ways
/// until both sides have finished or one fails; with `drop_after_login`,
/// only until the login has completed.
async fn relay(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    drop_after_login: bool,
) {
    shared.wait_open().await;
    let Ok(stream) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let upstream = upstream.insert(stream);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    if drop_after_login {
        let _ = tokio::try_join!(
            pump(shared, client_read, upstream_write),
            pump_login(upstream_read, client_write),
        );
        return;
    }
    let _ = tokio::try_join!(
        pump(shared, client_read, upstream_write),
        pump(shared, upstream_read, client_write),
    );
}

/// Forwards the server's messages up to and including its first
/// `ReadyForQuery` (type `Z`), then fails, which ends the session (both
/// sockets close): the login has completed, and nothing after it gets
/// through.
async fn pump_login(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>) -> io::Result<()> {
    let mut seen = Vec::new();
    let mut message = 0; // where the message being read starts in `seen`
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        seen.extend_from_slice(&buffer[..read]);
        // Every server message: a type byte, then a 4-byte big-endian
        // length that counts itself and the body.
        while let Some(header) = seen.get(message..message + 5) {
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let end = message + 1 + length;
            if end > seen.len() {
                break;
            }
            let ready = header[0] == b'Z';
            to.write_all(&seen[message..end]).await?;
            if ready {
                to.flush().await?;
                return Err(io::Error::other("dropped after login"));
            }
            message = end;
        }
    }
}

/// Forwards one direction chunk by chunk, each after the latency and only
/// while the proxy is open; passes the end of the stream on.
async fn pump(shared: &Shared, mut from: ReadHalf<'_>, mut to: WriteHalf<'_>) -> io::Result<()> {
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = from.read(&mut buffer).await?;
        let latency = Duration::from_nanos(shared.latency_nanos.load(SeqCst));
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        shared.wait_open().await;
        if read == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buffer[..read]).await?;
    }
}

impl Shared {
    /// Empties the registry. The caller resets or aborts them afterwards,
    /// without the lock, which their tasks take to deregister.
    fn take_connections(&self) -> Vec<Connection> {
        lock(&self.connections)
            .drain()
            .map(|(_, connection)| connection)
            .collect()
    }

    /// Returns when the blackhole is off.
    async fn wait_open(&self) {
        let mut blackhole = self.blackhole.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = blackhole.wait_for(|on| !on).await;
    }
}
