//! Will this pool fit on the server? `max_size` (times the number of
//! replicas running it) against what `max_connections` leaves.

use std::fmt;

use tidewater::Pool;
use tokio_postgres::SimpleQueryMessage;

use crate::error::PgError;
use crate::manager::PgManager;

/// The server's connection budget, read at one moment, against a pool.
///
/// ```
/// use tidewater_postgres::Capacity;
/// let capacity = Capacity { max_connections: 100, reserved: 3, in_use: 12, own: 2, max_size: 50, replicas: 2 };
/// assert_eq!(capacity.available(), 87);
/// assert_eq!(capacity.demand(), 100);
/// assert!(capacity.warning().unwrap().contains("exhaust"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Slots only superusers (and reserved roles) may use.
    pub reserved: u32,
    /// Client connections open on the server now, this pool's included.
    pub in_use: u32,
    /// This pool's own connections among them.
    pub own: u32,
    /// The pool's `max_size`.
    pub max_size: u32,
    /// How many copies of this pool run against the server.
    pub replicas: u32,
}

impl Capacity {
    /// Connections the pools may still take: the server's limit, less the
    /// reserved slots and the connections others hold.
    pub fn available(&self) -> u32 {
        let others = self.in_use.saturating_sub(self.own);
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(others)
    }

    /// Connections the pools would hold at their largest.
    pub fn demand(&self) -> u32 {
        self.max_size.saturating_mul(self.replicas)
    }

    /// The largest `max_size` that fits, split over the replicas.
    pub fn fitting_max_size(&self) -> u32 {
        self.available() / self.replicas.max(1)
    }

    /// The server's free connections now, for the pool's capacity alert.
    pub fn server(&self) -> tidewater::alerts::ServerCapacity {
        let free = self
            .max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use);
        tidewater::alerts::ServerCapacity {
            max_connections: self.max_connections,
            available: free,
        }
    }

    /// A warning, with the numbers, when the pools could exhaust the server.
    pub fn warning(&self) -> Option<String> {
        (self.demand() > self.available()).then(|| self.to_string())
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_size {} x {} replica(s) = {} connections, but the server has {} left \
             (max_connections {} - {} reserved - {} held by others)",
            self.max_size,
            self.replicas,
            self.demand(),
            self.available(),
            self.max_connections,
            self.reserved,
            self.in_use.saturating_sub(self.own),
        )?;
        if self.demand() > self.available() {
            write!(
                f,
                ": these pools could exhaust the server; lower max_size to {} or raise max_connections",
                self.fitting_max_size()
            )?;
        }
        Ok(())
    }
}

/// The limit, the reserved slots, and the client sessions (a role without
/// `pg_read_all_stats` sees other roles' sessions without a
/// `backend_type`, but with their user: counted too).
const BUDGET: &str = "SELECT current_setting('max_connections'), \
     current_setting('superuser_reserved_connections')::int \
       + coalesce(current_setting('reserved_connections', true)::int, 0), \
     (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
        OR (backend_type IS NULL AND usename IS NOT NULL))";

/// Reads the server's connection budget through one of `pool`'s
/// connections, for `replicas` copies of the pool.
///
/// # Errors
/// When no connection can be had, or the server's answer is not understood.
///
/// ```no_run
/// # async fn run(pool: tidewater::Pool<tidewater_postgres::PgManager>) -> Result<(), Box<dyn std::error::Error>> {
/// let capacity = tidewater_postgres::check_capacity(&pool, 3).await?;
/// if let Some(warning) = capacity.warning() {
///     eprintln!("{warning}");
/// }
/// # Ok(()) }
/// ```
pub async fn check_capacity(
    pool: &Pool<PgManager>,
    replicas: u32,
) -> Result<Capacity, CapacityError> {
    let conn = pool.get().await.map_err(CapacityError::Pool)?;
    let rows = conn
        .simple_query(BUDGET)
        .await
        .map_err(CapacityError::Query)?;
    let own = pool.status().size;
    let numbers: Option<Vec<u32>> = rows
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                Some((0..3).map(|i| row.get(i)?.parse().ok()).collect())
            }
            _ => None,
        })
        .flatten();
    let Some([max_connections, reserved, in_use]) = numbers
        .as_deref()
        .and_then(|n| <[u32; 3]>::try_from(n).ok())
    else {
        return Err(CapacityError::Answer);
    };
    Ok(Capacity {
        max_connections,
        reserved,
        in_use,
        own,
        max_size: pool.status().max_size,
        replicas: replicas.max(1),
    })
}

/// Why the capacity check could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum CapacityError {
    /// No connection from the pool.
    Pool(tidewater::Error),
    /// The query failed.
    Query(PgError),
    /// The server's answer had an unexpected shape.
    Answer,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pool(error) => write!(f, "capacity check: {error}"),
            Self::Query(error) => write!(f, "capacity check: {error}"),
            Self::Answer => f.write_str("capacity check: unexpected answer from the server"),
        }
    }
}

impl std::error::Error for CapacityError {}
