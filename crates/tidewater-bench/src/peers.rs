//! The peer pools under comparison on the no-op backend: the backend
//! ([`Noop`]), how each pool is built and checked out from ([`BenchPool`]),
//! and the pool kinds on the command line ([`PoolKind`]).

use std::convert::Infallible;
use std::future::Future;

use clap::ValueEnum;
use serde::Serialize;

use crate::ACQUIRE_TIMEOUT;

/// A pool under comparison; its name on the command line and in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PoolKind {
    /// This project's pool.
    Tidewater,
    /// `deadpool::managed`.
    Deadpool,
    /// `bb8`.
    Bb8,
    /// `mobc`.
    Mobc,
    /// `qp` (Quick Pool).
    Qp,
}

/// Work generic over the pool type: what [`PoolKind::run`] runs.
pub(crate) trait OnPool {
    /// What the work returns.
    type Output;

    /// Does the work on pools of type `P`.
    fn run<P: BenchPool>(self) -> impl Future<Output = Self::Output>;
}

impl PoolKind {
    /// Runs `work` with this kind's pool type.
    pub(crate) async fn run<W: OnPool>(self, work: W) -> W::Output {
        match self {
            Self::Tidewater => work.run::<tidewater::Pool<Noop>>().await,
            Self::Deadpool => work.run::<deadpool::managed::Pool<Noop>>().await,
            Self::Bb8 => work.run::<bb8::Pool<Noop>>().await,
            Self::Mobc => work.run::<mobc::Pool<Noop>>().await,
            Self::Qp => work.run::<qp::Pool<Noop>>().await,
        }
    }

    /// The name, as on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tidewater => "tidewater",
            Self::Deadpool => "deadpool",
            Self::Bb8 => "bb8",
            Self::Mobc => "mobc",
            Self::Qp => "qp",
        }
    }
}

/// The backend every pool runs on: a connection is a number, and opening,
/// checking and recycling one do nothing and return at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Noop;

/// A [`Noop`] connection.
pub(crate) type Conn = u64;

impl tidewater::Manager for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn validate(&self, _conn: &mut Conn) -> Result<(), Infallible> {
        Ok(())
    }
}

impl deadpool::managed::Manager for Noop {
    type Type = Conn;
    type Error = Infallible;

    async fn create(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _conn: &mut Conn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Conn) -> bool {
        false
    }
}

#[mobc::async_trait]
impl mobc::Manager for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn check(&self, conn: Conn) -> Result<Conn, Infallible> {
        Ok(conn)
    }
}

#[qp::async_trait]
impl qp::resource::Manage for Noop {
    type Output = Conn;
    type Error = Infallible;

    async fn try_create(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }
}

/// A pool as the benchmark drives it: built over [`Noop`] with the settings
/// that make the comparison fair, and checked out from.
pub(crate) trait BenchPool: Clone + Send + Sync + 'static {
    /// A checked-out connection; dropping it gives it back.
    type Guard<'a>: Send
    where
        Self: 'a;

    /// A pool of at most `size` connections, none open yet.
    fn build(size: u32) -> impl Future<Output = Self>;

    /// Takes a connection, waiting for one if needed.
    fn checkout(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
}

/// The connection in `result`; a no-op backend never fails, so an error is a
/// bug worth stopping for.
fn served<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.expect("a pool over the no-op backend failed a checkout")
}

impl BenchPool for tidewater::Pool<Noop> {
    type Guard<'a> = tidewater::PooledConnection<Noop>;

    async fn build(size: u32) -> Self {
        // Defaults but the size, and room for the 100 000 callers of the
        // scaling measurement in the queue (`max_waiters` only decides when
        // a caller gets `QueueFull`). `acquire_timeout` is 30 s already,
        // and a checkout validates only a connection idle longer than
        // `validate_after` (500 ms), which never happens while timing.
        let config = tidewater::PoolConfig {
            max_size: size,
            max_waiters: 200_000,
            ..Default::default()
        };
        tidewater::Pool::new(Noop, config).expect("a valid configuration")
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for deadpool::managed::Pool<Noop> {
    type Guard<'a> = deadpool::managed::Object<Noop>;

    async fn build(size: u32) -> Self {
        // deadpool calls `Manager::recycle` on every checkout and has no
        // switch to skip it; here it returns at once. Its default has no
        // wait timeout (a caller may wait forever), and that default is
        // what runs here: with `wait_timeout` set, every get arms a tokio
        // timer and deadpool is 2-3x slower when callers queue (measured:
        // 0.73 M against 2.0 M gets a second in the yield regime), which
        // would flatter tidewater, whose deadline costs no timer.
        deadpool::managed::Pool::builder(Noop)
            .max_size(size as usize)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a valid configuration")
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for bb8::Pool<Noop> {
    type Guard<'a> = bb8::PooledConnection<'a, Noop>;

    async fn build(size: u32) -> Self {
        // `test_on_check_out(false)`: bb8 otherwise calls `is_valid` on every
        // checkout (on by default). `connection_timeout` is how long `get()`
        // waits. No `min_idle`, like the others.
        bb8::Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(Noop)
            .await
            .unwrap_or_else(|never| match never {})
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for mobc::Pool<Noop> {
    type Guard<'a> = mobc::Connection<Noop>;

    async fn build(size: u32) -> Self {
        // `test_on_check_out(false)`: mobc otherwise calls `Manager::check`
        // on every checkout (on by default; `health_check_interval` only
        // spaces those checks out). `max_idle(size)`: mobc keeps only 2 idle
        // connections by default and closes the others when they come back,
        // which would time connection opening. `get_timeout` bounds `get()`.
        mobc::Pool::builder()
            .max_open(u64::from(size))
            .max_idle(u64::from(size))
            .test_on_check_out(false)
            .get_timeout(Some(ACQUIRE_TIMEOUT))
            .build(Noop)
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for qp::Pool<Noop> {
    type Guard<'a> = qp::Pooled<'a, Noop>;

    async fn build(size: u32) -> Self {
        // qp has no acquire timeout (it waits forever) and no options but
        // the size.
        qp::Pool::new(Noop, size as usize)
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        // `acquire_unchecked`: plain `acquire` calls `Manage::validate` on
        // every checkout (a boxed `async_trait` future); this skips it.
        served(self.acquire_unchecked().await)
    }
}
