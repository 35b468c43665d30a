//! Slot accounting: how many connections are open, how many attempts to
//! open one are under way, and the most allowed.
//!
//! The three numbers share one atomic word, so that a reservation is one
//! compare-and-swap that can never take the pool past `max_size`, and a
//! reader sees all three from the same moment. Every slot taken is a value
//! that gives itself back when dropped: an [`AttemptSlot`] (held by a task
//! opening a connection) becomes an [`OpenSlot`] (held by the connection,
//! idle or checked out) when the attempt succeeds; a [`PingSlot`] marks an
//! idle connection that is out for a keepalive ping. No code path
//! decrements a count by hand, so none can forget to: a panic in a
//! backend's `connect`, a cancelled task or an early return all give the
//! slot back.
//!
//! Invariant: `open + opening <= max`, except that after `max` shrinks the
//! open connections may exceed it until they come back and are closed.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use crate::rt::{AtomicU32, AtomicU64};

/// Each count takes 16 bits of the word (`max_size` is at most 10 000).
const BITS: u32 = 16;
const MASK: u64 = (1 << BITS) - 1;
const OPEN: u64 = 1;
const OPENING: u64 = 1 << BITS;
const MAX_SHIFT: u32 = 2 * BITS;

/// The pool's slot counts; see the module documentation.
pub(crate) struct Slots {
    word: AtomicU64,
    pinging: AtomicU32,
}

/// The slot counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    /// Connections open: idle, checked out, or being validated.
    pub(crate) open: u32,
    /// Connection attempts in flight or backing off.
    pub(crate) opening: u32,
    /// Most connections allowed.
    pub(crate) max: u32,
}

impl SlotCounts {
    #[inline]
    fn of(word: u64) -> Self {
        let field = |shift: u32| ((word >> shift) & MASK) as u32;
        Self {
            open: field(0),
            opening: field(BITS),
            max: field(MAX_SHIFT),
        }
    }

    /// Slots neither open nor being opened.
    #[inline]
    pub(crate) fn room(self) -> u32 {
        self.max.saturating_sub(self.open + self.opening)
    }
}

impl Slots {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            word: AtomicU64::new(u64::from(max) << MAX_SHIFT),
            pinging: AtomicU32::new(0),
        })
    }

    #[inline]
    pub(crate) fn counts(&self) -> SlotCounts {
        SlotCounts::of(self.word.load(SeqCst))
    }

    /// Changes the most connections allowed. Open connections above it are
    /// not closed here: whoever sees `open > max` closes one.
    pub(crate) fn set_max(&self, max: u32) {
        let _ = self.word.fetch_update(SeqCst, SeqCst, |word| {
            Some(word & !(MASK << MAX_SHIFT) | u64::from(max) << MAX_SHIFT)
        });
    }

    /// Reserves a slot for a connection attempt, if the pool has room and
    /// fewer than `limit` attempts are under way.
    pub(crate) fn reserve_attempt(self: &Arc<Self>, limit: u32) -> Option<AttemptSlot> {
        self.word
            .fetch_update(SeqCst, SeqCst, |word| {
                let counts = SlotCounts::of(word);
                (counts.room() > 0 && counts.opening < limit).then_some(word + OPENING)
            })
            .ok()
            .map(|_| AttemptSlot(self.clone()))
    }

    /// Idle connections out for a keepalive ping.
    pub(crate) fn pinging(&self) -> u32 {
        self.pinging.load(SeqCst)
    }

    /// Marks an idle connection as out for a keepalive ping until the
    /// returned slot drops.
    pub(crate) fn start_ping(self: &Arc<Self>) -> PingSlot {
        self.pinging.fetch_add(1, SeqCst);
        PingSlot(self.clone())
    }
}

/// A reserved connection attempt: counted in `opening` until it drops or
/// becomes an [`OpenSlot`].
pub(crate) struct AttemptSlot(Arc<Slots>);

impl AttemptSlot {
    /// The attempt opened a connection: the slot becomes an open one, unless
    /// the pool has shrunk meanwhile and has no room for it (the attempt's
    /// slot is then given back, and the connection must be closed).
    pub(crate) fn into_open(self) -> Option<OpenSlot> {
        let slots = self.0.clone();
        // Give the attempt slot back and take an open one in one step,
        // unless open connections already fill the pool.
        let converted = slots
            .word
            .fetch_update(SeqCst, SeqCst, |word| {
                let counts = SlotCounts::of(word);
                (counts.open < counts.max).then(|| word - OPENING + OPEN)
            })
            .is_ok();
        if converted {
            std::mem::forget(self);
            Some(OpenSlot(slots))
        } else {
            None
        }
    }
}

impl Drop for AttemptSlot {
    fn drop(&mut self) {
        self.0.word.fetch_sub(OPENING, SeqCst);
    }
}

/// An open connection's place in the pool: counted in `open` until it
/// drops, which is when the pool stops counting the connection (it is
/// closed, or detached).
pub(crate) struct OpenSlot(Arc<Slots>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.word.fetch_sub(OPEN, SeqCst);
    }
}

/// An idle connection out for a keepalive ping: still counted as idle for
/// `min_idle`, so that the ping does not make the pool open a spare.
pub(crate) struct PingSlot(Arc<Slots>);

impl Drop for PingSlot {
    fn drop(&mut self) {
        self.0.pinging.fetch_sub(1, SeqCst);
    }
}

#[cfg(all(test, not(tidewater_shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn attempts_stay_within_the_room_and_the_limit() {
        let slots = Slots::new(3);
        let first = slots.reserve_attempt(2).expect("room");
        let second = slots.reserve_attempt(2).expect("room");
        assert!(slots.reserve_attempt(2).is_none(), "at the limit of 2");
        let open = first.into_open().expect("room to open");
        assert_eq!(
            slots.counts(),
            SlotCounts {
                open: 1,
                opening: 1,
                max: 3
            }
        );
        let third = slots.reserve_attempt(2).expect("room for a third");
        assert!(
            slots.reserve_attempt(5).is_none(),
            "no room left: 1 open, 2 opening"
        );
        drop((second, third));
        assert_eq!(slots.counts().opening, 0);
        drop(open);
        assert_eq!(
            slots.counts(),
            SlotCounts {
                open: 0,
                opening: 0,
                max: 3
            }
        );
    }

    #[test]
    fn an_attempt_finishing_after_a_shrink_has_no_room() {
        let slots = Slots::new(2);
        let kept = slots.reserve_attempt(2).unwrap().into_open().unwrap();
        let late = slots.reserve_attempt(2).unwrap();
        slots.set_max(1);
        assert!(late.into_open().is_none());
        assert_eq!(
            slots.counts(),
            SlotCounts {
                open: 1,
                opening: 0,
                max: 1
            }
        );
        slots.set_max(0);
        assert_eq!(slots.counts().open, 1, "shrinking closes nothing by itself");
        drop(kept);
    }

    #[test]
    fn pings_count_until_dropped() {
        let slots = Slots::new(1);
        let ping = slots.start_ping();
        assert_eq!(slots.pinging(), 1);
        drop(ping);
        assert_eq!(slots.pinging(), 0);
    }
}
