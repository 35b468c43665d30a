//! The FIFO queue of callers waiting for a connection.
//!
//! Waiters live in a slab (a `Vec` whose free slots are reused), linked in
//! arrival order by index, so joining, leaving from the middle (a cancelled
//! caller) and being served are all O(1) and allocate nothing once the slab
//! has grown to the peak number of waiters.
//!
//! A waiter's slot belongs to its future: the pool only ever moves it from
//! *waiting* to *served*; the future frees it, on completion or on drop.

use std::panic::Location;
use std::task::Waker;

const NONE: u32 = u32::MAX;

/// A waiter's place in the queue, held by its future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey(u32);

enum Slot<T> {
    Free {
        next_free: u32,
    },
    Waiting {
        prev: u32,
        next: u32,
        waker: Option<Waker>,
        caller: &'static Location<'static>,
    },
    Served(T),
}

pub(crate) struct WaiterQueue<T> {
    slots: Vec<Slot<T>>,
    head: u32,
    tail: u32,
    free: u32,
    len: u32,
}

impl<T> WaiterQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NONE,
            tail: NONE,
            free: NONE,
            len: 0,
        }
    }

    /// Callers still waiting (not yet served).
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Appends a waiter at the back; its waker comes with its first poll.
    pub(crate) fn push(&mut self, caller: &'static Location<'static>) -> WaiterKey {
        let slot = Slot::Waiting {
            prev: self.tail,
            next: NONE,
            waker: None,
            caller,
        };
        let index = if self.free == NONE {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        } else {
            let index = self.free;
            match std::mem::replace(&mut self.slots[index as usize], slot) {
                Slot::Free { next_free } => self.free = next_free,
                _ => unreachable!("free list points at a used slot"),
            }
            index
        };
        match self.tail {
            NONE => self.head = index,
            tail => self.set_next(tail, index),
        }
        self.tail = index;
        self.len += 1;
        WaiterKey(index)
    }

    /// Where the oldest waiter called `get()`.
    pub(crate) fn front_caller(&self) -> Option<&'static Location<'static>> {
        match self.slots.get(self.head as usize) {
            Some(Slot::Waiting { caller, .. }) => Some(caller),
            _ => None,
        }
    }

    /// Gives `value` to the oldest waiter and returns its waker, or hands
    /// `value` back when nobody waits.
    pub(crate) fn serve_front(&mut self, value: T) -> Result<Option<Waker>, T> {
        if self.head == NONE {
            return Err(value);
        }
        let index = self.head;
        Ok(self.serve(index, value))
    }

    /// Gives every waiter a value made by `make`; returns their wakers.
    pub(crate) fn serve_all(&mut self, mut make: impl FnMut() -> T) -> Vec<Waker> {
        let mut wakers = Vec::with_capacity(self.len as usize);
        while self.head != NONE {
            wakers.extend(self.serve(self.head, make()));
        }
        wakers
    }

    fn serve(&mut self, index: u32, value: T) -> Option<Waker> {
        self.unlink(index);
        match std::mem::replace(&mut self.slots[index as usize], Slot::Served(value)) {
            Slot::Waiting { waker, .. } => waker,
            _ => unreachable!("served a slot that was not waiting"),
        }
    }

    /// The waiter's future polls: its value if served (its slot is then
    /// freed), else `None` after storing the newest waker.
    pub(crate) fn poll(&mut self, key: WaiterKey, waker: &Waker) -> Option<T> {
        match &mut self.slots[key.0 as usize] {
            Slot::Waiting { waker: stored, .. } => {
                match stored {
                    Some(stored) if stored.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                None
            }
            Slot::Served(_) => self.release(key),
            Slot::Free { .. } => unreachable!("polled a freed waiter"),
        }
    }

    /// The waiter's future is dropped: leave the queue, and give back the
    /// value if it was already served.
    pub(crate) fn cancel(&mut self, key: WaiterKey) -> Option<T> {
        if matches!(self.slots[key.0 as usize], Slot::Waiting { .. }) {
            self.unlink(key.0);
        }
        self.release(key)
    }

    fn release(&mut self, key: WaiterKey) -> Option<T> {
        let freed = Slot::Free {
            next_free: self.free,
        };
        self.free = key.0;
        match std::mem::replace(&mut self.slots[key.0 as usize], freed) {
            Slot::Served(value) => Some(value),
            _ => None,
        }
    }

    fn unlink(&mut self, index: u32) {
        let Slot::Waiting { prev, next, .. } = self.slots[index as usize] else {
            unreachable!("unlinked a slot that was not waiting")
        };
        match prev {
            NONE => self.head = next,
            prev => self.set_next(prev, next),
        }
        match next {
            NONE => self.tail = prev,
            next => self.set_prev(next, prev),
        }
        self.len -= 1;
    }

    fn set_next(&mut self, index: u32, value: u32) {
        if let Slot::Waiting { next, .. } = &mut self.slots[index as usize] {
            *next = value;
        }
    }

    fn set_prev(&mut self, index: u32, value: u32) {
        if let Slot::Waiting { prev, .. } = &mut self.slots[index as usize] {
            *prev = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with(n: usize) -> (WaiterQueue<usize>, Vec<WaiterKey>) {
        let mut queue = WaiterQueue::new();
        let keys = (0..n).map(|_| queue.push(Location::caller())).collect();
        (queue, keys)
    }

    #[test]
    fn serves_in_arrival_order() {
        let (mut queue, keys) = queue_with(3);
        for value in 0..3 {
            assert!(queue.serve_front(value).is_ok());
        }
        assert!(matches!(queue.serve_front(9), Err(9)));
        for (value, key) in keys.into_iter().enumerate() {
            assert_eq!(queue.poll(key, Waker::noop()), Some(value));
        }
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn cancelling_from_the_middle_keeps_the_order() {
        let (mut queue, keys) = queue_with(4);
        assert_eq!(queue.cancel(keys[1]), None);
        assert_eq!(queue.cancel(keys[3]), None);
        assert_eq!(queue.len(), 2);
        queue.serve_front(10).unwrap();
        queue.serve_front(20).unwrap();
        assert_eq!(queue.poll(keys[0], Waker::noop()), Some(10));
        assert_eq!(queue.poll(keys[2], Waker::noop()), Some(20));
    }

    #[test]
    fn a_served_waiter_that_cancels_gives_its_value_back() {
        let (mut queue, keys) = queue_with(2);
        queue.serve_front(7).unwrap();
        assert_eq!(queue.cancel(keys[0]), Some(7));
        assert_eq!(queue.poll(keys[1], Waker::noop()), None);
    }

    #[test]
    fn freed_slots_are_reused() {
        let (mut queue, keys) = queue_with(2);
        queue.cancel(keys[0]);
        queue.cancel(keys[1]);
        let again = queue.push(Location::caller());
        assert!(again == keys[0] || again == keys[1]);
        assert_eq!(queue.slots.len(), 2);
        assert_eq!(queue.poll(again, Waker::noop()), None);
        assert_eq!(
            queue.serve_all(|| 1).len(),
            1,
            "the waker stored by the poll"
        );
        assert_eq!(queue.poll(again, Waker::noop()), Some(1));
    }
}
