//! The set check of RELIABILITY.md, shared by the durability and fault tests: a [`Ledger`]
//! records message ids (here: contents, unique per test) as *attempted* (a client sent it,
//! whatever answered), *acknowledged* (the server confirmed it: it came back to a client in
//! `serverMessages`) and *read back* (found in the store afterwards, read from the outside),
//! and reports lost = acknowledged − read back, unexpected = read back − attempted, and
//! duplicates = ids read back more than once. A message that was refused or never answered but
//! stored anyway (a timed-out `XADD` that ran after all) is attempted, so it is not unexpected;
//! it is counted as read back but never acknowledged.
//!
//! [`Ledger::chat`] fills one from what the chat clients of [`crate::chat_clients`] saw and the
//! rooms read back. Not here: reading the store (`chat_clients::stream`, the tests' own
//! readers), or any check of order (`chat_clients::check_sequence`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::chat_clients::{Batch, Conn, Room};

/// How many ids of each kind a failure message names.
const EXAMPLES_SHOWN: usize = 5;

/// Attempted, acknowledged and read-back message ids of one run.
#[derive(Default)]
pub struct Ledger {
    attempted: HashSet<String>,
    acknowledged: HashSet<String>,
    /// In the order read, repeats kept.
    read_back: Vec<String>,
}

/// What a [`Ledger`] shows; lists are sorted.
#[derive(Debug)]
pub struct Report {
    pub attempted: usize,
    pub acknowledged: usize,
    /// Ids read back, repeats included.
    pub read_back: usize,
    /// Distinct ids read back that were never acknowledged (attempted, unanswered or refused).
    pub stored_unacknowledged: usize,
    pub lost: Vec<String>,
    pub unexpected: Vec<String>,
    pub duplicates: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty() && self.duplicates.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = |ids: &[String]| ids[..ids.len().min(EXAMPLES_SHOWN)].to_vec();
        write!(
            f,
            "attempted {}, acknowledged {}, read back {} ({} of them never acknowledged): \
             lost {}, unexpected {}, duplicates {}",
            self.attempted,
            self.acknowledged,
            self.read_back,
            self.stored_unacknowledged,
            self.lost.len(),
            self.unexpected.len(),
            self.duplicates.len()
        )?;
        if !self.is_clean() {
            write!(
                f,
                " (first lost {:?}, unexpected {:?}, duplicates {:?})",
                first(&self.lost),
                first(&self.unexpected),
                first(&self.duplicates)
            )?;
        }
        Ok(())
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Ids a client sent.
    pub fn attempted<S: Into<String>>(&mut self, ids: impl IntoIterator<Item = S>) {
        self.attempted.extend(ids.into_iter().map(Into::into));
    }

    /// Ids the server confirmed.
    pub fn acknowledged<S: Into<String>>(&mut self, ids: impl IntoIterator<Item = S>) {
        self.acknowledged.extend(ids.into_iter().map(Into::into));
    }

    /// Ids found in the store, each time it holds them.
    pub fn read_back<S: Into<String>>(&mut self, ids: impl IntoIterator<Item = S>) {
        self.read_back.extend(ids.into_iter().map(Into::into));
    }

    /// The chat's ledger: attempted = every content `batches` wrote; acknowledged = every
    /// content that came back in `serverMessages` to any of `conns`; read back = the contents
    /// of `rooms`.
    pub fn chat<'a>(
        batches: impl IntoIterator<Item = &'a Batch>,
        conns: &[Arc<Conn>],
        rooms: &[Room],
    ) -> Ledger {
        let mut ledger = Ledger::new();
        for batch in batches {
            ledger.attempted(batch.contents.iter().cloned());
        }
        for conn in conns {
            conn.with(|seen| ledger.acknowledged(seen.contents.iter().cloned()));
        }
        ledger.read_back(rooms.iter().flatten().map(|(_, content)| content.clone()));
        ledger
    }

    pub fn report(&self) -> Report {
        let mut stored: HashSet<&str> = HashSet::new();
        let mut duplicates: Vec<String> = Vec::new();
        for id in &self.read_back {
            if !stored.insert(id) {
                duplicates.push(id.clone());
            }
        }
        let mut lost: Vec<String> = self
            .acknowledged
            .iter()
            .filter(|id| !stored.contains(id.as_str()))
            .cloned()
            .collect();
        let mut unexpected: Vec<String> = stored
            .iter()
            .filter(|id| !self.attempted.contains(**id))
            .map(|id| id.to_string())
            .collect();
        lost.sort();
        unexpected.sort();
        duplicates.sort();
        Report {
            attempted: self.attempted.len(),
            acknowledged: self.acknowledged.len(),
            read_back: self.read_back.len(),
            stored_unacknowledged: stored
                .iter()
                .filter(|id| !self.acknowledged.contains(**id))
                .count(),
            lost,
            unexpected,
            duplicates,
        }
    }

    /// Prints `what`'s counts and asserts lost = unexpected = duplicates = 0; the report.
    pub fn assert_clean(&self, what: &str) -> Report {
        let report = self.report();
        eprintln!("{what}: {report}");
        assert!(report.is_clean(), "{what}: {report}");
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_unexpected_and_duplicates() {
        let mut ledger = Ledger::new();
        ledger.attempted(["a", "b", "c", "d"]);
        ledger.acknowledged(["a", "b"]);
        ledger.read_back(["a", "c", "c", "x"]);
        let report = ledger.report();
        assert_eq!(report.lost, ["b"]);
        assert_eq!(report.unexpected, ["x"]);
        assert_eq!(report.duplicates, ["c"]);
        // c (attempted, never acknowledged) and x.
        assert_eq!(report.stored_unacknowledged, 2);
        assert!(!report.is_clean());
    }

    #[test]
    fn stored_without_acknowledgement_is_not_unexpected() {
        let mut ledger = Ledger::new();
        ledger.attempted(["a", "b"]);
        ledger.acknowledged(["a"]);
        ledger.read_back(["a", "b"]);
        let report = ledger.assert_clean("refused but stored");
        assert_eq!(report.stored_unacknowledged, 1);
    }
}
