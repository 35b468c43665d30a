//! Idle connections and checkout records, sharded by thread.
//!
//! A single lock shared by every core makes each checkout and return move
//! the lock's cache line (and the connection's) between cores: on two cores
//! that alone halves throughput. So idle connections live in shards, one per
//! core: a thread takes from and returns to its home shard (its own cache
//! lines, an uncontended lock), and steals from other shards only when its
//! own is empty. Each shard also keeps the checkout records of connections
//! taken from it (for leak reports) and the statistics every checkout
//! updates (checkouts served directly or after a wait, wait and use time),
//! so neither the fast path nor a hand-off writes to a counter another core
//! writes to.
//!
//! Order within a shard follows `idle_order` (LIFO by default), so reuse is
//! most-recently-returned first per thread.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock::Tick;
use crate::config::IdleOrder;
use crate::guard::{Checkout, Conn};
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::leaks::{CheckoutKey, Checkouts, LeakSuspect, Record};
use crate::rt::{self, Mutex, MutexGuard};

/// Where a checkout's record is kept: in a shard, or (for a connection
/// handed straight from caller to caller) with the waiter queue, under the
/// pool's lock that every hand-off takes anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordKey {
    shard: u32,
    key: CheckoutKey,
}

/// `RecordKey::shard` of a record the queue keeps.
const WITH_QUEUE: u32 = u32::MAX;

impl RecordKey {
    /// A record the queue keeps.
    pub(crate) fn with_queue(key: CheckoutKey) -> Self {
        Self {
            shard: WITH_QUEUE,
            key,
        }
    }

    /// Its key among the queue's records, if the queue keeps it.
    pub(crate) fn queue_key(self) -> Option<CheckoutKey> {
        (self.shard == WITH_QUEUE).then_some(self.key)
    }
}

/// One shard on cache lines of its own.
#[repr(align(128))]
struct Shard<C> {
    state: Mutex<ShardState<C>>,
    /// Idle connections here, written under `state`, read without it.
    len: AtomicU32,
    /// Changes to the number of waiting callers made by threads of this
    /// shard, wrapping (their sum over the shards is the number).
    waiting: AtomicU64,
    acquired_direct: AtomicU64,
    /// Checkouts that waited or validated (its count is theirs).
    wait_time: Histogram,
    use_time: Histogram,
}

impl<C> Default for Shard<C> {
    fn default() -> Self {
        Self {
            state: Mutex::new(ShardState {
                idle: VecDeque::new(),
                checkouts: Checkouts::default(),
            }),
            len: AtomicU32::new(0),
            waiting: AtomicU64::new(0),
            acquired_direct: AtomicU64::new(0),
            wait_time: Histogram::new(),
            use_time: Histogram::new(),
        }
    }
}

struct ShardState<C> {
    idle: VecDeque<Conn<C>>,
    checkouts: Checkouts,
}

/// The checkout statistics the shards keep, added up.
pub(crate) struct HotStats {
    pub(crate) acquired_direct: u64,
    pub(crate) acquired_after_wait: u64,
    /// Checkouts that waited or validated (the direct ones not included).
    pub(crate) wait_time: HistogramSnapshot,
    pub(crate) use_time: HistogramSnapshot,
}

pub(crate) struct Shards<C> {
    shards: Box<[Shard<C>]>,
    /// `shards.len() - 1`: the count is a power of two, so that finding a
    /// thread's home is a mask, not a division.
    mask: usize,
    order: IdleOrder,
}

impl<C> Shards<C> {
    /// One shard per core the process may use.
    pub(crate) fn new(order: IdleOrder) -> Self {
        Self::with_count(order, rt::shard_count())
    }

    fn with_count(order: IdleOrder, count: usize) -> Self {
        let count = count.next_power_of_two();
        let shards = (0..count).map(|_| Shard::default()).collect();
        Self {
            shards,
            mask: count - 1,
            order,
        }
    }

    fn home(&self) -> usize {
        rt::worker_number() & self.mask
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ShardState<C>> {
        self.shards[shard]
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Idle connections in all shards.
    pub(crate) fn len(&self) -> u32 {
        self.shards
            .iter()
            .map(|shard| shard.len.load(Relaxed))
            .sum()
    }

    /// Takes an idle connection (home shard first) and records the checkout
    /// for `caller` in the shard it came from.
    pub(crate) fn take(
        &self,
        caller: &'static Location<'static>,
        now: Tick,
    ) -> Option<Checkout<C>> {
        let home = self.home();
        for i in 0..=self.mask {
            let shard = (home + i) & self.mask;
            if self.shards[shard].len.load(Relaxed) == 0 {
                continue;
            }
            let mut state = self.lock(shard);
            let conn = match self.order {
                IdleOrder::Lifo => state.idle.pop_back(),
                IdleOrder::Fifo => state.idle.pop_front(),
            };
            let Some(conn) = conn else { continue };
            self.shards[shard]
                .len
                .store(state.idle.len() as u32, Relaxed);
            return Some(check_out(&mut state, shard, conn, caller, now));
        }
        None
    }

    /// Records the checkout of a connection that is in no shard (new, or
    /// passed from one caller to the next), in the home shard.
    pub(crate) fn check_out(
        &self,
        conn: Conn<C>,
        caller: &'static Location<'static>,
        now: Tick,
    ) -> Checkout<C> {
        let home = self.home();
        check_out(&mut self.lock(home), home, conn, caller, now)
    }

    /// Makes `conn` idle in the home shard.
    pub(crate) fn push(&self, mut conn: Conn<C>) {
        conn.fresh = false;
        let home = self.home();
        let mut state = self.lock(home);
        state.idle.push_back(conn);
        self.shards[home]
            .len
            .store(state.idle.len() as u32, Relaxed);
    }

    /// Ends a checkout: removes its record, and makes the connection idle in
    /// the home shard when `keep` is given. One lock when the record is
    /// home (the usual case), two otherwise.
    pub(crate) fn check_in(&self, record: RecordKey, keep: Option<Conn<C>>) -> Option<Record> {
        debug_assert!(record.queue_key().is_none(), "a record the queue keeps");
        let shard = record.shard as usize;
        let mut state = self.lock(shard);
        let removed = state.checkouts.remove(record.key);
        if let Some(mut conn) = keep {
            conn.fresh = false;
            if shard != self.home() {
                drop(state);
                self.push(conn);
                return removed;
            }
            state.idle.push_back(conn);
            self.shards[shard]
                .len
                .store(state.idle.len() as u32, Relaxed);
        }
        removed
    }

    /// Takes out every idle connection for which `pick` gives a value (a
    /// reason to close it, say), in each shard from least to most recently
    /// returned. `pick` also sees how many it has picked so far.
    pub(crate) fn take_where<R>(
        &self,
        mut pick: impl FnMut(&Conn<C>, usize) -> Option<R>,
    ) -> Vec<(Conn<C>, R)> {
        let mut picked = Vec::new();
        for shard in 0..self.shards.len() {
            let mut state = self.lock(shard);
            let mut kept = VecDeque::with_capacity(state.idle.len());
            for conn in state.idle.drain(..) {
                match pick(&conn, picked.len()) {
                    Some(value) => picked.push((conn, value)),
                    None => kept.push_back(conn),
                }
            }
            state.idle = kept;
            self.shards[shard]
                .len
                .store(state.idle.len() as u32, Relaxed);
        }
        picked
    }

    /// Records a change of `delta` to the number of waiting callers, on
    /// this thread's shard (a line no other core writes to). Called under
    /// the pool's lock only, so a plain read and write suffice.
    pub(crate) fn add_waiting(&self, delta: i64) {
        let waiting = &self.shards[self.home()].waiting;
        waiting.store(waiting.load(Relaxed).wrapping_add(delta as u64), Relaxed);
    }

    /// Callers waiting, as the shards count them.
    pub(crate) fn waiting(&self) -> u32 {
        let sum = self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(shard.waiting.load(Relaxed))
        });
        (sum as i64).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Counts a checkout served straight from an idle connection.
    pub(crate) fn count_direct(&self) {
        self.shards[self.home()]
            .acquired_direct
            .fetch_add(1, Relaxed);
    }

    /// Counts a checkout that waited for a connection or validated one,
    /// and how long it took.
    pub(crate) fn record_wait(&self, waited_nanos: u64) {
        self.shards[self.home()]
            .wait_time
            .record_nanos(waited_nanos);
    }

    /// Records how long a caller held a connection.
    pub(crate) fn record_use(&self, held_nanos: u64) {
        self.shards[self.home()].use_time.record_nanos(held_nanos);
    }

    /// The checkout statistics over all shards.
    pub(crate) fn hot_stats(&self) -> HotStats {
        let sum = |counter: fn(&Shard<C>) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|shard| counter(shard).load(Relaxed))
                .sum()
        };
        let merged = |histogram: fn(&Shard<C>) -> &Histogram| {
            self.shards
                .iter()
                .fold(HistogramSnapshot::default(), |all, shard| {
                    all.merge(&histogram(shard).snapshot(0))
                })
        };
        let wait_time = merged(|shard| &shard.wait_time);
        HotStats {
            acquired_direct: sum(|shard| &shard.acquired_direct),
            acquired_after_wait: wait_time.count(),
            wait_time,
            use_time: merged(|shard| &shard.use_time),
        }
    }

    /// Checkouts held longer than `threshold`, in all shards.
    pub(crate) fn leak_suspects(&self, now: Tick, threshold: Duration) -> Vec<LeakSuspect> {
        (0..self.shards.len())
            .flat_map(|shard| self.lock(shard).checkouts.suspects(now, threshold))
            .collect()
    }

    /// Marks and returns the suspects not reported before.
    pub(crate) fn report_new_leaks(&self, now: Tick, threshold: Duration) -> Vec<LeakSuspect> {
        (0..self.shards.len())
            .flat_map(|shard| self.lock(shard).checkouts.report_new(now, threshold))
            .collect()
    }
}

fn check_out<C>(
    state: &mut ShardState<C>,
    shard: usize,
    conn: Conn<C>,
    caller: &'static Location<'static>,
    since: Tick,
) -> Checkout<C> {
    let record = Record {
        caller,
        since,
        connection_id: conn.id,
        reported: false,
    };
    let key = state.checkouts.insert(record);
    Checkout {
        record: RecordKey {
            shard: shard as u32,
            key,
        },
        since,
        conn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64) -> Conn<u64> {
        let slots = crate::slots::Slots::new(1);
        let slot = slots.reserve_attempt(1).unwrap().into_open().unwrap();
        Conn::new(id, id, slot, Tick::default(), Tick::NEVER)
    }

    /// Runs `f` on a fresh thread, which gets a home shard of its own.
    fn on_new_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| scope.spawn(f).join().unwrap())
    }

    #[test]
    fn a_connection_returned_on_one_thread_is_taken_on_another() {
        let shards = Shards::with_count(IdleOrder::Lifo, 64);
        let home_of_pusher = on_new_thread(|| {
            shards.push(conn(1));
            shards.home()
        });
        let (home_of_taker, taken) = on_new_thread(|| {
            (
                shards.home(),
                shards.take(Location::caller(), Tick::default()),
            )
        });
        assert_ne!(
            home_of_pusher, home_of_taker,
            "consecutive threads get different shards"
        );
        let taken = taken.expect("stolen from the other shard");
        assert_eq!(taken.conn.id, 1);
        assert_eq!(
            taken.record.shard as usize, home_of_pusher,
            "recorded where it was found"
        );
        assert_eq!(shards.len(), 0);

        // Given back on a third thread: the record goes, the connection
        // lands in that thread's shard.
        let record = on_new_thread(|| shards.check_in(taken.record, Some(taken.conn)));
        assert_eq!(record.map(|r| r.connection_id), Some(1));
        assert_eq!(shards.len(), 1);
        assert!(
            shards
                .leak_suspects(Tick::default(), Duration::ZERO)
                .is_empty()
        );
    }

    #[test]
    fn lifo_and_fifo_within_a_shard() {
        for (order, first) in [(IdleOrder::Lifo, 3), (IdleOrder::Fifo, 1)] {
            let shards = Shards::with_count(order, 1);
            (1..=3).for_each(|id| shards.push(conn(id)));
            assert_eq!(
                shards
                    .take(Location::caller(), Tick::default())
                    .unwrap()
                    .conn
                    .id,
                first
            );
        }
    }

    #[test]
    fn hot_stats_add_up_over_shards() {
        let shards = Shards::<u64>::with_count(IdleOrder::Lifo, 8);
        for _ in 0..3 {
            on_new_thread(|| {
                shards.count_direct();
                shards.record_use(1_000_000);
            });
        }
        let stats = shards.hot_stats();
        assert_eq!((stats.acquired_direct, stats.use_time.count()), (3, 3));
    }
}
