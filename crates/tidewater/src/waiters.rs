//! The queue of callers waiting for a connection, and the hand-off through
//! which each receives one.
//!
//! Waiters live in a slab (a `Vec` whose free slots are reused), linked by
//! index in order of their deadlines, so joining, leaving from the middle
//! (a cancelled caller) and being taken off the front are O(1) and
//! allocate nothing once the slab has grown to the peak number of waiters.
//! Every caller gets the same `acquire_timeout`, so ordering by deadline
//! is ordering by when `get()` was called: FIFO. A caller that joins again
//! (its connection failed validation) keeps its deadline and so its place
//! near the front; finding that place walks back from the tail, which
//! normally stops at once. One timer, the pool's maintenance task, then
//! serves every deadline: it only ever looks at the front.
//!
//! The pool takes a waiter off the queue under its lock and gives it its
//! connection (or error) after releasing the lock, through the waiter's
//! [`Handoff`]: a small cell of its own, shared with the caller's future,
//! so that the caller picks its connection up without touching the pool's
//! lock again. A caller that has picked its connection up leaves its
//! hand-off to its thread for the next caller there that must wait, so
//! waiting allocates nothing.

use std::any::Any;
use std::cell::RefCell;
use std::panic::Location;
use std::sync::Arc;
use std::task::Waker;

use crate::clock::Tick;
use crate::rt::Mutex;

const NONE: u32 = u32::MAX;

/// A waiter's place in the queue, held by its future: the slot, and which
/// of the waiters that used the slot it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey {
    index: u32,
    id: u32,
}

/// A caller waiting for a connection, as the queue keeps it.
pub(crate) struct Waiter<T> {
    /// Where its connection (or error) goes.
    pub(crate) handoff: Arc<Handoff<T>>,
    /// Where it called `get()` (for the checkout record).
    pub(crate) caller: &'static Location<'static>,
    /// When it gives up.
    pub(crate) deadline: Tick,
    /// How many connection attempts had started when it joined: a failed
    /// attempt that started after it joined is news to it.
    pub(crate) attempts_seen: u64,
}

impl<T> Waiter<T> {
    /// Gives the caller `value` and wakes it (no lock may be held); hands
    /// `value` back if the caller has left.
    pub(crate) fn give(self, value: T) -> Result<(), T> {
        let waker = self.handoff.give(value)?;
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

enum Slot<T> {
    Free {
        next_free: u32,
    },
    Queued {
        prev: u32,
        next: u32,
        id: u32,
        waiter: Waiter<T>,
    },
}

/// The waiters, ordered by deadline.
pub(crate) struct WaiterQueue<T> {
    slots: Vec<Slot<T>>,
    head: u32,
    tail: u32,
    free: u32,
    len: u32,
    /// The id of the next waiter (wrapping: a key is only compared with
    /// the waiter in its own slot).
    next_id: u32,
    /// The queue's length integrated over time up to `changed_at`, in
    /// caller-nanoseconds (wrapping: read as differences).
    waited: u64,
    changed_at: Tick,
}

impl<T> WaiterQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NONE,
            tail: NONE,
            free: NONE,
            len: 0,
            next_id: 0,
            waited: 0,
            changed_at: Tick::default(),
        }
    }

    /// The time callers have spent in the queue, all added up, until
    /// `now` (caller-nanoseconds, wrapping): its difference over an
    /// interval divided by the interval's length is the mean number of
    /// callers queued over it, whatever their waits' lengths.
    pub(crate) fn waited(&self, now: Tick) -> u64 {
        self.waited
            .wrapping_add(u64::from(self.len).wrapping_mul(now.nanos_since(self.changed_at)))
    }

    /// Brings `waited` up to `now`, before the length changes.
    fn account(&mut self, now: Tick) {
        if now > self.changed_at {
            self.waited = self.waited(now);
            self.changed_at = now;
        }
    }

    /// Callers waiting.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Adds a waiter after every waiter whose deadline is not later than
    /// its own (normally at the back).
    pub(crate) fn push(&mut self, waiter: Waiter<T>, now: Tick) -> WaiterKey {
        self.account(now);
        let mut before = self.tail;
        while before != NONE && self.waiter(before).deadline > waiter.deadline {
            before = self.links(before).0;
        }
        let after = match before {
            NONE => self.head,
            index => self.links(index).1,
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let slot = Slot::Queued {
            prev: before,
            next: after,
            id,
            waiter,
        };
        let index = if self.free == NONE {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        } else {
            let index = self.free;
            match std::mem::replace(&mut self.slots[index as usize], slot) {
                Slot::Free { next_free } => self.free = next_free,
                Slot::Queued { .. } => unreachable!("the free list points at a queued slot"),
            }
            index
        };
        match before {
            NONE => self.head = index,
            before => self.set_next(before, index),
        }
        match after {
            NONE => self.tail = index,
            after => self.set_prev(after, index),
        }
        self.len += 1;
        WaiterKey { index, id }
    }

    /// The waiter with the earliest deadline.
    pub(crate) fn front(&self) -> Option<&Waiter<T>> {
        (self.head != NONE).then(|| self.waiter(self.head))
    }

    /// Takes the waiter with the earliest deadline off the queue.
    pub(crate) fn pop_front(&mut self, now: Tick) -> Option<Waiter<T>> {
        (self.head != NONE).then(|| self.take(self.head, now))
    }

    /// Takes the front waiter off the queue if `pick` says so.
    pub(crate) fn pop_front_if(
        &mut self,
        now: Tick,
        pick: impl FnOnce(&Waiter<T>) -> bool,
    ) -> Option<Waiter<T>> {
        if pick(self.front()?) {
            self.pop_front(now)
        } else {
            None
        }
    }

    /// Takes the waiter at `key` off the queue if it is still there (its
    /// slot may have been reused since it was taken off).
    pub(crate) fn remove(&mut self, key: WaiterKey, now: Tick) -> bool {
        let queued = matches!(
            self.slots.get(key.index as usize),
            Some(Slot::Queued { id, .. }) if *id == key.id
        );
        if queued {
            drop(self.take(key.index, now));
        }
        queued
    }

    fn take(&mut self, index: u32, now: Tick) -> Waiter<T> {
        self.account(now);
        let freed = Slot::Free {
            next_free: self.free,
        };
        let Slot::Queued {
            prev, next, waiter, ..
        } = std::mem::replace(&mut self.slots[index as usize], freed)
        else {
            unreachable!("took a free slot")
        };
        self.free = index;
        match prev {
            NONE => self.head = next,
            prev => self.set_next(prev, next),
        }
        match next {
            NONE => self.tail = prev,
            next => self.set_prev(next, prev),
        }
        self.len -= 1;
        waiter
    }

    fn waiter(&self, index: u32) -> &Waiter<T> {
        match &self.slots[index as usize] {
            Slot::Queued { waiter, .. } => waiter,
            Slot::Free { .. } => unreachable!("a link points at a free slot"),
        }
    }

    fn links(&self, index: u32) -> (u32, u32) {
        match self.slots[index as usize] {
            Slot::Queued { prev, next, .. } => (prev, next),
            Slot::Free { .. } => unreachable!("a link points at a free slot"),
        }
    }

    fn set_next(&mut self, index: u32, value: u32) {
        if let Slot::Queued { next, .. } = &mut self.slots[index as usize] {
            *next = value;
        }
    }

    fn set_prev(&mut self, index: u32, value: u32) {
        if let Slot::Queued { prev, .. } = &mut self.slots[index as usize] {
            *prev = value;
        }
    }
}

/// Where one waiting caller receives its connection (or error): shared
/// between the caller's future and, once it is taken off the queue, the
/// code that serves it. Its lock is the caller's own, so it is never
/// contended by other callers.
pub(crate) struct Handoff<T> {
    state: Mutex<HandoffState<T>>,
}

enum HandoffState<T> {
    /// Nothing given yet; the caller's waker.
    Waiting(Waker),
    /// Given, not yet picked up.
    Given(T),
    /// Picked up, or the caller left.
    Closed,
}

thread_local! {
    /// The hand-off of the last caller on this thread that picked its
    /// connection up, kept for the next caller on this thread that must
    /// wait: a queued `get()` then allocates nothing.
    static SPARE: RefCell<Option<Arc<dyn Any + Send + Sync>>> = const { RefCell::new(None) };
}

impl<T: Send + 'static> Handoff<T> {
    /// A hand-off for a caller whose task `waker` wakes: this thread's
    /// spare when nobody else holds it any more, else a new one.
    pub(crate) fn for_caller(waker: &Waker) -> Arc<Self> {
        let spare = SPARE.with(|spare| spare.borrow_mut().take());
        if let Some(Ok(mut spare)) = spare.map(Arc::downcast::<Self>)
            && let Some(handoff) = Arc::get_mut(&mut spare)
        {
            *handoff
                .state
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                HandoffState::Waiting(waker.clone());
            return spare;
        }
        Self::new(waker.clone())
    }

    /// The caller has picked its connection up: its hand-off becomes this
    /// thread's spare.
    pub(crate) fn recycle(this: Arc<Self>) {
        SPARE.with(|spare| *spare.borrow_mut() = Some(this));
    }
}

impl<T> Handoff<T> {
    /// A new hand-off for a caller whose task `waker` wakes.
    pub(crate) fn new(waker: Waker) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HandoffState::Waiting(waker)),
        })
    }

    fn lock(&self) -> crate::rt::MutexGuard<'_, HandoffState<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives `value` to the caller and returns its waker, to wake once no
    /// lock is held; hands `value` back if the caller has left.
    fn give(&self, value: T) -> Result<Option<Waker>, T> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, HandoffState::Closed) {
            HandoffState::Waiting(waker) => {
                *state = HandoffState::Given(value);
                Ok(Some(waker))
            }
            HandoffState::Given(given) => {
                *state = HandoffState::Given(given);
                Err(value)
            }
            HandoffState::Closed => Err(value),
        }
    }

    /// The caller polls: its value if given, else `None` after keeping the
    /// newest waker.
    pub(crate) fn poll(&self, waker: &Waker) -> Option<T> {
        let mut state = self.lock();
        match &mut *state {
            HandoffState::Waiting(stored) => {
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
                None
            }
            HandoffState::Given(_) => match std::mem::replace(&mut *state, HandoffState::Closed) {
                HandoffState::Given(value) => Some(value),
                _ => unreachable!("matched Given"),
            },
            HandoffState::Closed => unreachable!("polled after completion"),
        }
    }

    /// The caller leaves: whatever was given and not picked up comes back;
    /// anything given later is refused.
    pub(crate) fn leave(&self) -> Option<T> {
        match std::mem::replace(&mut *self.lock(), HandoffState::Closed) {
            HandoffState::Given(value) => Some(value),
            HandoffState::Waiting(_) | HandoffState::Closed => None,
        }
    }
}

#[cfg(all(test, not(tidewater_shuttle)))]
mod tests {
    use std::time::Duration;

    use super::*;

    fn waiter(deadline: Tick) -> (Waiter<u32>, Arc<Handoff<u32>>) {
        let handoff = Handoff::new(Waker::noop().clone());
        let waiter = Waiter {
            handoff: handoff.clone(),
            caller: Location::caller(),
            deadline,
            attempts_seen: 0,
        };
        (waiter, handoff)
    }

    fn deadlines(queue: &mut WaiterQueue<u32>) -> Vec<Tick> {
        std::iter::from_fn(|| queue.pop_front(Tick::default()).map(|w| w.deadline)).collect()
    }

    #[test]
    fn serves_in_order_of_deadline() {
        let t0 = Tick::default();
        let at = |ms| t0.after(Duration::from_millis(ms));
        let mut queue = WaiterQueue::new();
        for ms in [10, 20, 30] {
            queue.push(waiter(at(ms)).0, t0);
        }
        queue.push(waiter(at(15)).0, t0); // joined again, with an earlier deadline
        queue.push(waiter(at(1)).0, t0);
        queue.push(waiter(at(30)).0, t0); // a tie keeps arrival order: after the other 30
        assert_eq!(queue.len(), 6);
        assert_eq!(
            deadlines(&mut queue),
            [1, 10, 15, 20, 30, 30].map(at).to_vec()
        );
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn leaving_from_the_middle_keeps_the_order() {
        let t0 = Tick::default();
        let mut queue = WaiterQueue::new();
        let mut keys = Vec::new();
        let mut handoffs = Vec::new();
        for ms in 0..4 {
            let (waiter, handoff) = waiter(t0.after(Duration::from_millis(ms)));
            handoffs.push(handoff);
            keys.push(queue.push(waiter, t0));
        }
        assert!(queue.remove(keys[1], t0));
        assert!(!queue.remove(keys[1], t0), "already gone");
        assert!(queue.remove(keys[3], t0));
        assert_eq!(queue.len(), 2);
        queue.pop_front(t0).unwrap().give(7).unwrap();
        assert_eq!(handoffs[0].poll(Waker::noop()), Some(7));
        // A slot reused by a new waiter is not removed under the old key.
        let (newcomer, _) = waiter(t0);
        let reused = queue.push(newcomer, t0);
        assert!(!queue.remove(keys[0], t0));
        assert!(queue.remove(reused, t0));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.slots.len(), 4, "freed slots are reused");
    }

    #[test]
    fn the_time_queued_adds_up_over_callers() {
        let t0 = Tick::default();
        let at = |ms| t0.after(Duration::from_millis(ms));
        let mut queue = WaiterQueue::new();
        let first = queue.push(waiter(at(1_000)).0, at(0));
        queue.push(waiter(at(1_000)).0, at(10));
        assert!(queue.remove(first, at(30)));
        assert_eq!(queue.waited(at(30)), 50_000_000, "30 ms + 20 ms");
        queue.pop_front(at(40)).unwrap();
        assert_eq!(
            queue.waited(at(100)),
            60_000_000,
            "nobody queued since 40 ms"
        );
    }

    #[test]
    fn a_handoff_delivers_once_and_refuses_after_the_caller_left() {
        let (waiter, handoff) = waiter(Tick::default());
        assert_eq!(handoff.poll(Waker::noop()), None);
        waiter.give(7).unwrap();
        assert_eq!(handoff.poll(Waker::noop()), Some(7));

        let (waiter, handoff) = super::tests::waiter(Tick::default());
        assert_eq!(handoff.leave(), None);
        assert_eq!(waiter.give(9), Err(9), "the caller is gone");

        let (waiter, handoff) = super::tests::waiter(Tick::default());
        waiter.give(5).unwrap();
        assert_eq!(handoff.leave(), Some(5), "comes back to the pool");
    }
}
