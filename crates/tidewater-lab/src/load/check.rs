//! The correctness check after a run: what the users were told (the
//! [`Journal`] of every transfer request and its answers) against what the
//! service holds afterwards (balances, every ledger entry of the run's
//! accounts, every transfer involved). A violation fails the run whatever
//! its latency.
//!
//! The rules, over the run's accounts (opened by the run, so nobody else
//! moves their money):
//! 1. **Money is conserved**: the balances add up to what was opened.
//! 2. **Every ledger balances**: each account's balance is its opening
//!    balance plus the sum of its ledger entries.
//! 3. **Each transfer is booked once**: exactly one debit and one credit,
//!    of equal size, on the transfer's own accounts and amount.
//! 4. **Every acknowledged transfer exists exactly once**: the id a `201`
//!    named exists (`GET /api/transfers/{id}`) with the same accounts,
//!    amount and key, and is booked (rule 3).
//! 5. **No idempotency key is applied twice**: every answer for a key
//!    names the same transfer, and no two keys name the same one.
//! 6. **Nothing is applied that was refused**: a booked transfer no `201`
//!    acknowledged must come from a key whose outcome the client never
//!    learnt (a timeout or a 5xx, after which the service may have
//!    committed it), never from one it was told was refused, nor from
//!    outside the run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What the client learnt from one request for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAnswer {
    /// `201`: transfer `id`; `replayed` when the service said it was made
    /// by an earlier request (`Idempotent-Replayed: true`).
    Made {
        /// The transfer's id.
        id: i64,
        /// Answered as a replay.
        replayed: bool,
    },
    /// A definitive refusal (a 4xx): nothing was done.
    Refused {
        /// Its status and problem type (`422 insufficient-funds`).
        answer: String,
    },
    /// No answer or a 5xx: it may or may not have been applied.
    Unknown,
}

/// One idempotency key: the transfer asked for and every answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLog {
    /// The account debited.
    pub from: i64,
    /// The account credited.
    pub to: i64,
    /// The amount, cents.
    pub amount: i64,
    /// The answers, in the order received.
    pub answers: Vec<KeyAnswer>,
}

/// Every transfer request of a run, by idempotency key.
#[derive(Default)]
pub struct Journal {
    keys: Mutex<HashMap<String, KeyLog>>,
}

impl Journal {
    /// Notes a request for `key`, a transfer of `amount` from `from` to
    /// `to`, about to be sent: its answer is [`KeyAnswer::Unknown`] until
    /// [`settle`](Self::settle)d (so a request cut off stays unknown).
    /// Returns the answer's slot.
    pub fn sent(&self, key: &str, from: i64, to: i64, amount: i64) -> usize {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let log = keys.entry(key.to_owned()).or_insert_with(|| KeyLog {
            from,
            to,
            amount,
            answers: Vec::new(),
        });
        log.answers.push(KeyAnswer::Unknown);
        log.answers.len() - 1
    }

    /// Records the answer to the request in `slot` for `key`.
    pub fn settle(&self, key: &str, slot: usize, answer: KeyAnswer) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stored) = keys.get_mut(key).and_then(|log| log.answers.get_mut(slot)) {
            *stored = answer;
        }
    }

    /// Notes a request for `key` and its answer at once.
    pub fn note(&self, key: &str, from: i64, to: i64, amount: i64, answer: KeyAnswer) {
        let slot = self.sent(key, from, to, amount);
        self.settle(key, slot, answer);
    }

    /// A copy of every key's log.
    pub fn snapshot(&self) -> HashMap<String, KeyLog> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An account the run opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Its id.
    pub id: i64,
    /// Its opening balance, cents.
    pub opening: i64,
}

/// One ledger entry, as `GET /api/accounts/{id}/ledger` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's id.
    pub id: i64,
    /// The transfer that wrote it.
    pub transfer_id: i64,
    /// The change to the balance: negative for a debit.
    pub amount: i64,
}

/// A transfer, as `GET /api/transfers/{id}` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The account debited.
    pub from: i64,
    /// The account credited.
    pub to: i64,
    /// The amount.
    pub amount: i64,
    /// Its idempotency key.
    pub key: Option<String>,
}

/// What the service holds after the run.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Each account's balance (missing: it could not be read).
    pub balances: HashMap<i64, i64>,
    /// Each account's whole ledger.
    pub ledgers: HashMap<i64, Vec<Entry>>,
    /// Each transfer looked up: `None` when the service said 404.
    pub transfers: HashMap<i64, Option<Stored>>,
    /// What could not be read, and why.
    pub unreadable: Vec<String>,
}

/// The most violations listed in a report (all are counted).
const LISTED: usize = 20;

/// The check's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// No violation, and everything could be read.
    pub passed: bool,
    /// Accounts the run opened.
    pub accounts: u64,
    /// Cents opened in them.
    pub money_opened: i64,
    /// Cents in them at the end.
    pub money_found: i64,
    /// Ledger entries read.
    pub ledger_entries: u64,
    /// Transfers booked on the run's accounts.
    pub transfers_booked: u64,
    /// Keys a `201` acknowledged.
    pub transfers_acknowledged: u64,
    /// `201` answers that were replays of an earlier request's transfer.
    pub replays: u64,
    /// Keys the client never learnt the outcome of (only timeouts or 5xx).
    pub unknown_outcomes: u64,
    /// Of those, the ones the service had applied.
    pub unknown_applied: u64,
    /// Every violation found.
    pub violation_count: u64,
    /// The first of them, in words.
    pub violations: Vec<String>,
}

/// The violations found: all counted, the first [`LISTED`] kept.
#[derive(Default)]
struct Violations {
    count: u64,
    listed: Vec<String>,
}

impl Violations {
    fn add(&mut self, violation: String) {
        self.count += 1;
        if self.listed.len() < LISTED {
            self.listed.push(violation);
        }
    }
}

/// Checks `observed` against the run's `accounts` and `journal` (rules in
/// the module documentation).
pub fn check(
    accounts: &[Opened],
    journal: &HashMap<String, KeyLog>,
    observed: &Observed,
) -> CheckReport {
    let mut checker = Checker {
        journal,
        observed,
        bad: Violations::default(),
        postings: BTreeMap::new(),
    };
    for unreadable in &observed.unreadable {
        checker.bad.add(format!("could not read {unreadable}"));
    }
    let money = checker.balances(accounts);
    checker.bookings();
    let ours: HashSet<i64> = accounts.iter().map(|account| account.id).collect();
    let acknowledged = checker.acknowledged(&ours);
    let unknown_applied = checker.unacknowledged(&acknowledged.by_transfer);
    CheckReport {
        passed: checker.bad.count == 0,
        accounts: accounts.len() as u64,
        money_opened: money.opened,
        money_found: money.found,
        ledger_entries: money.ledger_entries,
        transfers_booked: checker.postings.len() as u64,
        transfers_acknowledged: acknowledged.by_transfer.len() as u64,
        replays: acknowledged.replays,
        unknown_outcomes: acknowledged.unknown_outcomes,
        unknown_applied,
        violation_count: checker.bad.count,
        violations: checker.bad.listed,
    }
}

/// The check under way: what it checks, and what it found so far.
struct Checker<'a> {
    journal: &'a HashMap<String, KeyLog>,
    observed: &'a Observed,
    bad: Violations,
    /// Transfer id -> (account, amount) of each of its ledger entries.
    postings: BTreeMap<i64, Vec<(i64, i64)>>,
}

/// The money of the run's accounts.
struct Money {
    /// Cents opened.
    opened: i64,
    /// Cents found at the end.
    found: i64,
    /// Ledger entries read.
    ledger_entries: u64,
}

/// The transfers `201` answers named.
struct Acknowledged<'a> {
    /// Each transfer acknowledged, and its key.
    by_transfer: HashMap<i64, &'a str>,
    /// `201` answers that were replays.
    replays: u64,
    /// Keys whose every answer was unknown.
    unknown_outcomes: u64,
}

impl<'a> Checker<'a> {
    /// Rules 1 and 2: money conserved, each ledger balances; gathers the
    /// postings of every transfer.
    fn balances(&mut self, accounts: &[Opened]) -> Money {
        let mut money = Money {
            opened: accounts.iter().map(|account| account.opening).sum(),
            found: 0,
            ledger_entries: 0,
        };
        for account in accounts {
            let Some(&balance) = self.observed.balances.get(&account.id) else {
                self.bad
                    .add(format!("account {}: its balance was not read", account.id));
                continue;
            };
            money.found += balance;
            let entries = self
                .observed
                .ledgers
                .get(&account.id)
                .map_or(&[][..], Vec::as_slice);
            money.ledger_entries += entries.len() as u64;
            let moved: i64 = entries.iter().map(|entry| entry.amount).sum();
            if account.opening + moved != balance {
                self.bad.add(format!(
                    "account {}: balance {balance} but opening {} + ledger {moved} = {}",
                    account.id,
                    account.opening,
                    account.opening + moved
                ));
            }
            for entry in entries {
                self.postings
                    .entry(entry.transfer_id)
                    .or_default()
                    .push((account.id, entry.amount));
            }
        }
        if money.found != money.opened {
            self.bad.add(format!(
                "money not conserved: {} cents opened, {} found ({:+})",
                money.opened,
                money.found,
                money.found - money.opened
            ));
        }
        money
    }

    /// Rule 3: one debit and one credit per transfer, matching it.
    fn bookings(&mut self) {
        for (&transfer, entries) in &self.postings {
            let debits: Vec<_> = entries.iter().filter(|(_, amount)| *amount < 0).collect();
            let credits: Vec<_> = entries.iter().filter(|(_, amount)| *amount > 0).collect();
            if debits.len() != 1 || credits.len() != 1 || entries.len() != 2 {
                self.bad.add(format!(
                    "transfer {transfer}: {} debits and {} credits in the ledgers ({} entries), not one of each",
                    debits.len(),
                    credits.len(),
                    entries.len()
                ));
                continue;
            }
            let (debited, debit) = *debits[0];
            let (credited, credit) = *credits[0];
            if -debit != credit {
                self.bad.add(format!(
                    "transfer {transfer}: debit {debit} and credit {credit} differ"
                ));
            }
            match self.observed.transfers.get(&transfer) {
                Some(Some(stored))
                    if (stored.from, stored.to, stored.amount) != (debited, credited, credit) =>
                {
                    self.bad.add(format!(
                        "transfer {transfer}: booked {credit} from {debited} to {credited}, but it is {} from {} to {}",
                        stored.amount, stored.from, stored.to
                    ));
                }
                Some(Some(_)) => {}
                Some(None) => self.bad.add(format!(
                    "transfer {transfer}: in the ledgers, but GET /api/transfers/{transfer} says 404"
                )),
                None => {}
            }
        }
    }

    /// Rules 4 and 5: acknowledged transfers, one per key, one key per
    /// transfer; `ours` are the run's accounts.
    fn acknowledged(&mut self, ours: &HashSet<i64>) -> Acknowledged<'a> {
        let mut acknowledged = Acknowledged {
            by_transfer: HashMap::new(),
            replays: 0,
            unknown_outcomes: 0,
        };
        let mut keys: Vec<(&'a String, &'a KeyLog)> = self.journal.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, log) in keys {
            let ids: Vec<i64> = log
                .answers
                .iter()
                .filter_map(|answer| match answer {
                    KeyAnswer::Made { id, replayed } => {
                        acknowledged.replays += u64::from(*replayed);
                        Some(*id)
                    }
                    _ => None,
                })
                .collect();
            let distinct: HashSet<i64> = ids.iter().copied().collect();
            if distinct.len() > 1 {
                let mut listed: Vec<i64> = distinct.iter().copied().collect();
                listed.sort_unstable();
                self.bad.add(format!(
                    "key {key}: answered with different transfers {listed:?}"
                ));
            }
            let Some(&id) = ids.first() else {
                if log
                    .answers
                    .iter()
                    .all(|answer| *answer == KeyAnswer::Unknown)
                {
                    acknowledged.unknown_outcomes += 1;
                }
                continue;
            };
            if let Some(other) = acknowledged.by_transfer.insert(id, key) {
                self.bad.add(format!(
                    "transfer {id}: acknowledged for two keys, {other} and {key}"
                ));
            }
            self.acknowledged_exists(id, key, log, ours);
        }
        acknowledged
    }

    /// Rule 4 for transfer `id`, acknowledged for `key`: it exists as
    /// asked, under its key, and (between two of `ours`) is booked.
    fn acknowledged_exists(&mut self, id: i64, key: &str, log: &KeyLog, ours: &HashSet<i64>) {
        match self.observed.transfers.get(&id) {
            Some(Some(stored)) => {
                if (stored.from, stored.to, stored.amount) != (log.from, log.to, log.amount)
                    || stored.key.as_deref() != Some(key)
                {
                    self.bad.add(format!(
                        "transfer {id} (key {key}): asked {} from {} to {}, stored {} from {} to {} under key {:?}",
                        log.amount,
                        log.from,
                        log.to,
                        stored.amount,
                        stored.from,
                        stored.to,
                        stored.key
                    ));
                }
            }
            Some(None) => self.bad.add(format!(
                "transfer {id} (key {key}): acknowledged with 201, but GET /api/transfers/{id} says 404"
            )),
            None => self
                .bad
                .add(format!("transfer {id} (key {key}): was not looked up")),
        }
        if ours.contains(&log.from) && ours.contains(&log.to) && !self.postings.contains_key(&id) {
            self.bad.add(format!(
                "transfer {id} (key {key}): acknowledged with 201, but not in the ledgers"
            ));
        }
    }

    /// Rule 6: booked but not `acknowledged`; returns how many of those
    /// came from a key whose outcome the client never learnt (allowed).
    fn unacknowledged(&mut self, acknowledged: &HashMap<i64, &str>) -> u64 {
        let mut unknown_applied = 0;
        let mut applied_unacknowledged: HashSet<&str> = HashSet::new();
        for &transfer in self.postings.keys() {
            if acknowledged.contains_key(&transfer) {
                continue;
            }
            let Some(Some(stored)) = self.observed.transfers.get(&transfer) else {
                continue; // reported above
            };
            let Some(key) = stored.key.as_deref() else {
                self.bad.add(format!(
                    "transfer {transfer}: on the run's accounts without an idempotency key: not made by this run"
                ));
                continue;
            };
            let Some(log) = self.journal.get(key) else {
                self.bad.add(format!(
                    "transfer {transfer}: key {key} was never sent by this run"
                ));
                continue;
            };
            let made = log.answers.iter().find_map(|answer| match answer {
                KeyAnswer::Made { id, .. } => Some(*id),
                _ => None,
            });
            if let Some(made) = made {
                self.bad.add(format!(
                    "key {key}: applied again as transfer {transfer} after it was acknowledged as transfer {made}"
                ));
            } else if !applied_unacknowledged.insert(key) {
                self.bad.add(format!(
                    "key {key}: applied more than once (transfer {transfer} is another)"
                ));
            } else if log.answers.contains(&KeyAnswer::Unknown) {
                // Its outcome was never learnt (perhaps a retry was refused
                // after the first try went through): allowed.
                unknown_applied += 1;
            } else {
                let refused: Vec<&str> = log
                    .answers
                    .iter()
                    .filter_map(|answer| match answer {
                        KeyAnswer::Refused { answer } => Some(answer.as_str()),
                        _ => None,
                    })
                    .collect();
                self.bad.add(format!(
                    "transfer {transfer}: applied though every request for key {key} was refused ({})",
                    refused.join(", ")
                ));
            }
        }
        unknown_applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two accounts of 1000; the journal and the service's state after
    /// transfer 1 (key a: 100 from 1 to 2, replayed once) and transfer 2
    /// (key b: 30 from 2 to 1), and key c refused.
    fn world() -> (Vec<Opened>, HashMap<String, KeyLog>, Observed) {
        let accounts = vec![
            Opened {
                id: 1,
                opening: 1000,
            },
            Opened {
                id: 2,
                opening: 1000,
            },
        ];
        let journal = Journal::default();
        let made = |id, replayed| KeyAnswer::Made { id, replayed };
        journal.note("a", 1, 2, 100, made(1, false));
        journal.note("a", 1, 2, 100, made(1, true));
        journal.note("b", 2, 1, 30, made(2, false));
        journal.note(
            "c",
            1,
            2,
            5000,
            KeyAnswer::Refused {
                answer: "422 insufficient-funds".into(),
            },
        );
        let entry = |id, transfer_id, amount| Entry {
            id,
            transfer_id,
            amount,
        };
        let stored = |from, to, amount, key: &str| {
            Some(Stored {
                from,
                to,
                amount,
                key: Some(key.into()),
            })
        };
        let observed = Observed {
            balances: HashMap::from([(1, 930), (2, 1070)]),
            ledgers: HashMap::from([
                (1, vec![entry(4, 2, 30), entry(1, 1, -100)]),
                (2, vec![entry(3, 2, -30), entry(2, 1, 100)]),
            ]),
            transfers: HashMap::from([(1, stored(1, 2, 100, "a")), (2, stored(2, 1, 30, "b"))]),
            unreadable: Vec::new(),
        };
        (accounts, journal.snapshot(), observed)
    }

    fn violations(report: &CheckReport) -> String {
        report.violations.join("\n")
    }

    #[test]
    fn a_correct_run_passes() {
        let (accounts, journal, observed) = world();
        let report = check(&accounts, &journal, &observed);
        assert!(report.passed, "{}", violations(&report));
        assert_eq!(report.money_opened, 2000);
        assert_eq!(report.money_found, 2000);
        assert_eq!(report.transfers_acknowledged, 2);
        assert_eq!(report.transfers_booked, 2);
        assert_eq!(report.replays, 1);
        assert_eq!(report.ledger_entries, 4);
    }

    #[test]
    fn money_created_is_caught() {
        let (accounts, journal, mut observed) = world();
        observed.balances.insert(2, 1071);
        let report = check(&accounts, &journal, &observed);
        assert!(!report.passed);
        let text = violations(&report);
        assert!(text.contains("money not conserved"), "{text}");
        assert!(text.contains("account 2: balance 1071"), "{text}");
    }

    #[test]
    fn a_transfer_booked_twice_is_caught() {
        let (accounts, journal, mut observed) = world();
        // Transfer 1 debited twice (and the balance followed).
        observed.ledgers.get_mut(&1).unwrap().push(Entry {
            id: 9,
            transfer_id: 1,
            amount: -100,
        });
        observed.balances.insert(1, 830);
        let report = check(&accounts, &journal, &observed);
        let text = violations(&report);
        assert!(
            text.contains("transfer 1: 2 debits and 1 credits"),
            "{text}"
        );
        assert!(text.contains("money not conserved"), "{text}");
    }

    #[test]
    fn a_key_applied_twice_is_caught() {
        let (accounts, journal, mut observed) = world();
        // Key a made transfer 1, and the service made transfer 3 for it too.
        observed.transfers.insert(
            3,
            Some(Stored {
                from: 1,
                to: 2,
                amount: 100,
                key: Some("a".into()),
            }),
        );
        observed.ledgers.get_mut(&1).unwrap().push(Entry {
            id: 5,
            transfer_id: 3,
            amount: -100,
        });
        observed.ledgers.get_mut(&2).unwrap().push(Entry {
            id: 6,
            transfer_id: 3,
            amount: 100,
        });
        observed.balances = HashMap::from([(1, 830), (2, 1170)]);
        let report = check(&accounts, &journal, &observed);
        let text = violations(&report);
        assert!(
            text.contains(
                "key a: applied again as transfer 3 after it was acknowledged as transfer 1"
            ),
            "{text}"
        );
        assert_eq!(report.violation_count, 1, "{text}");
    }

    #[test]
    fn different_answers_for_one_key_are_caught() {
        let (accounts, mut journal, observed) = world();
        journal.get_mut("a").unwrap().answers.push(KeyAnswer::Made {
            id: 2,
            replayed: true,
        });
        let report = check(&accounts, &journal, &observed);
        let text = violations(&report);
        assert!(
            text.contains("key a: answered with different transfers [1, 2]"),
            "{text}"
        );
    }

    #[test]
    fn an_acknowledged_transfer_that_vanished_is_caught() {
        let (accounts, journal, mut observed) = world();
        observed.transfers.insert(2, None);
        for ledger in observed.ledgers.values_mut() {
            ledger.retain(|entry| entry.transfer_id != 2);
        }
        observed.balances = HashMap::from([(1, 900), (2, 1100)]);
        let report = check(&accounts, &journal, &observed);
        let text = violations(&report);
        assert!(
            text.contains(
                "transfer 2 (key b): acknowledged with 201, but GET /api/transfers/2 says 404"
            ),
            "{text}"
        );
        assert!(
            text.contains("transfer 2 (key b): acknowledged with 201, but not in the ledgers"),
            "{text}"
        );
    }

    #[test]
    fn a_stored_transfer_unlike_the_request_is_caught() {
        let (accounts, journal, mut observed) = world();
        if let Some(Some(stored)) = observed.transfers.get_mut(&2) {
            stored.key = Some("z".into());
        }
        let text = violations(&check(&accounts, &journal, &observed));
        assert!(
            text.contains("transfer 2 (key b): asked 30 from 2 to 1"),
            "{text}"
        );
    }

    /// Key c: the first try timed out, the retry was refused; the
    /// service had applied the first try. That is allowed; the same
    /// transfer after nothing but refusals is not.
    #[test]
    fn unknown_outcomes_may_be_applied_refused_ones_may_not() {
        let (accounts, mut journal, mut observed) = world();
        let c = journal.get_mut("c").unwrap();
        c.amount = 50;
        observed.transfers.insert(
            3,
            Some(Stored {
                from: 1,
                to: 2,
                amount: 50,
                key: Some("c".into()),
            }),
        );
        observed.ledgers.get_mut(&1).unwrap().push(Entry {
            id: 5,
            transfer_id: 3,
            amount: -50,
        });
        observed.ledgers.get_mut(&2).unwrap().push(Entry {
            id: 6,
            transfer_id: 3,
            amount: 50,
        });
        observed.balances = HashMap::from([(1, 880), (2, 1120)]);
        let refused_only = check(&accounts, &journal, &observed);
        assert!(
            violations(&refused_only)
                .contains("transfer 3: applied though every request for key c was refused (422 insufficient-funds)"),
            "{}",
            violations(&refused_only)
        );
        journal
            .get_mut("c")
            .unwrap()
            .answers
            .insert(0, KeyAnswer::Unknown);
        let report = check(&accounts, &journal, &observed);
        assert!(report.passed, "{}", violations(&report));
        assert_eq!(report.unknown_applied, 1);
        // Unknown only: counted as an unknown outcome, and applied.
        journal.get_mut("c").unwrap().answers = vec![KeyAnswer::Unknown];
        let report = check(&accounts, &journal, &observed);
        assert!(report.passed, "{}", violations(&report));
        assert_eq!((report.unknown_outcomes, report.unknown_applied), (1, 1));
    }

    #[test]
    fn a_transfer_from_outside_the_run_is_caught() {
        let (accounts, journal, mut observed) = world();
        observed.transfers.insert(
            3,
            Some(Stored {
                from: 1,
                to: 2,
                amount: 10,
                key: None,
            }),
        );
        observed.ledgers.get_mut(&1).unwrap().push(Entry {
            id: 5,
            transfer_id: 3,
            amount: -10,
        });
        observed.ledgers.get_mut(&2).unwrap().push(Entry {
            id: 6,
            transfer_id: 3,
            amount: 10,
        });
        observed.balances = HashMap::from([(1, 920), (2, 1080)]);
        let text = violations(&check(&accounts, &journal, &observed));
        assert!(text.contains("not made by this run"), "{text}");
    }

    #[test]
    fn unreadable_state_fails_the_check() {
        let (accounts, journal, mut observed) = world();
        observed.balances.remove(&2);
        observed.unreadable.push("GET /api/accounts/2: 503".into());
        let report = check(&accounts, &journal, &observed);
        assert!(!report.passed);
        assert!(report.violation_count >= 2);
    }

    #[test]
    fn violations_are_counted_past_the_listed_ones() {
        let (accounts, journal, mut observed) = world();
        observed.unreadable = (0..50).map(|n| format!("thing {n}")).collect();
        let report = check(&accounts, &journal, &observed);
        assert_eq!(report.violation_count, 50);
        assert_eq!(report.violations.len(), LISTED);
    }
}
