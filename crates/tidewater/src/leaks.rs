//! Who holds which connection since when: the record behind leak detection.
//!
//! Every checkout inserts a record (the caller's source location from
//! `#[track_caller]`, the time, the connection's id) into a slab under the
//! pool's lock; the return removes it. The maintenance task scans the slab
//! and reports each record older than `leak_detection_threshold` once.

use std::fmt;
use std::panic::Location;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::clock::Tick;

/// A checkout's record, held by its guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckoutKey(u32);

#[derive(Clone, Copy)]
pub(crate) struct Record {
    pub(crate) caller: &'static Location<'static>,
    pub(crate) since: Tick,
    pub(crate) connection_id: u64,
    pub(crate) reported: bool,
}

/// A connection held longer than `leak_detection_threshold`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # use std::time::Duration;
/// # use tidewater_testkit::ScriptedManager;
/// let config = tidewater::PoolConfig {
///     leak_detection_threshold: Some(Duration::from_secs(5)),
///     ..Default::default()
/// };
/// let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
/// let held = pool.get().await.unwrap(); // this line is the suspect's caller
/// tokio::time::sleep(Duration::from_secs(6)).await;
/// let suspects = pool.leak_suspects();
/// assert_eq!(suspects.len(), 1);
/// assert!(suspects[0].held_for >= Duration::from_secs(6));
/// println!("{}", suspects[0]); // connection 1 checked out at src/main.rs:9:22 held for 6s
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct LeakSuspect {
    /// The id of the connection, as in the pool's logs.
    pub connection_id: u64,
    /// Where `get()` was called.
    #[serde(serialize_with = "serialize_location")]
    pub caller: &'static Location<'static>,
    /// How long it has been held (`held_for_seconds` in JSON).
    #[serde(rename = "held_for_seconds", serialize_with = "serialize_seconds")]
    pub held_for: Duration,
}

impl fmt::Display for LeakSuspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} checked out at {} held for {:?}",
            self.connection_id, self.caller, self.held_for
        )
    }
}

fn serialize_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

fn serialize_location<S: Serializer>(
    location: &&'static Location<'static>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(location)
}

#[derive(Default)]
pub(crate) struct Checkouts {
    slots: Vec<Option<Record>>,
    free: Vec<u32>,
}

impl Checkouts {
    pub(crate) fn insert(&mut self, record: Record) -> CheckoutKey {
        match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(record);
                CheckoutKey(index)
            }
            None => {
                self.slots.push(Some(record));
                CheckoutKey((self.slots.len() - 1) as u32)
            }
        }
    }

    pub(crate) fn remove(&mut self, key: CheckoutKey) -> Option<Record> {
        let record = self.slots.get_mut(key.0 as usize)?.take()?;
        self.free.push(key.0);
        Some(record)
    }

    /// The connection at `key` passes straight to another caller: its
    /// record now names that caller and time. Returns the record as it was
    /// if it had been reported as a leak suspect (rare, hence boxed).
    pub(crate) fn hand_on(
        &mut self,
        key: CheckoutKey,
        caller: &'static Location<'static>,
        since: Tick,
    ) -> Option<Box<Record>> {
        let record = self.slots.get_mut(key.0 as usize)?.as_mut()?;
        let reported = record.reported.then(|| Box::new(*record));
        record.caller = caller;
        record.since = since;
        record.reported = false;
        reported
    }

    /// Every checkout held longer than `threshold`.
    pub(crate) fn suspects(&self, now: Tick, threshold: Duration) -> Vec<LeakSuspect> {
        self.records()
            .filter_map(|record| suspect(record, now, threshold))
            .collect()
    }

    /// Marks and returns the suspects not reported before.
    pub(crate) fn report_new(&mut self, now: Tick, threshold: Duration) -> Vec<LeakSuspect> {
        let mut found = Vec::new();
        for record in self
            .slots
            .iter_mut()
            .flatten()
            .filter(|record| !record.reported)
        {
            if let Some(leak) = suspect(record, now, threshold) {
                record.reported = true;
                found.push(leak);
            }
        }
        found
    }

    fn records(&self) -> impl Iterator<Item = &Record> {
        self.slots.iter().flatten()
    }
}

fn suspect(record: &Record, now: Tick, threshold: Duration) -> Option<LeakSuspect> {
    let held_for = now.since(record.since);
    (held_for > threshold).then_some(LeakSuspect {
        connection_id: record.connection_id,
        caller: record.caller,
        held_for,
    })
}
