//! The audit log's hash chain: each entry carries the hash of the one before it, so that
//! deleting, editing or reordering any entry breaks the chain from that point on.
//!
//! An entry's hash is `SHA-256(prev_hash ‖ canonical(id, entry))`, written as 64 lower-case hex
//! digits, where `prev_hash` is the previous entry's hash as those 64 ASCII digits ([`GENESIS`],
//! 64 zeros, for the first entry) and the canonical encoding is, in this order:
//!
//! ```text
//! quoalise-audit-v1\n
//! id\n at\n requester\n usage_point\n series\n start\n end\n grant_id\n command\n records\n
//! ```
//!
//! each field written as `<length in bytes>:<bytes>` (integers in decimal, `grant_id` empty when
//! there is none) and followed by a newline. The length prefix makes the encoding unambiguous
//! whatever the texts hold (a requester containing a newline cannot pass for two fields), and the
//! id in it makes two entries swapped by id detectable even if their contents were swapped too.
//!
//! Retention (`[audit] keep`) deletes the oldest entries and appends a [`Checkpoint`] entry
//! (command `audit-pruned`) carrying the id range and count deleted and the hash of the last
//! deleted entry. The first entry left then links to that hash instead of [`GENESIS`], and
//! verification accepts it only if a later checkpoint vouches for exactly that hash: deleting
//! entries at the start by hand still breaks the chain ([`Break::Unattested`]).
//!
//! The chain proves the past was not rewritten *relative to a known head*: deleting the last
//! entries leaves a shorter valid chain. Hence the anchors: the head hash is logged and exposed
//! periodically, and a copy kept elsewhere pins the past.

use sha2::{Digest, Sha256};

use super::{audit_command, AuditEntry};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical encoding of entry `id` (see the module doc).
pub fn canonical(id: i64, entry: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"quoalise-audit-v1\n");
    let numbers = [
        id.to_string(),
        entry.at.to_string(),
        entry.start.to_string(),
        entry.end.to_string(),
        entry.grant_id.map(|g| g.to_string()).unwrap_or_default(),
        entry.records.to_string(),
    ];
    let fields: [&str; 10] = [
        &numbers[0],
        &numbers[1],
        &entry.requester,
        &entry.usage_point,
        &entry.series,
        &numbers[2],
        &numbers[3],
        &numbers[4],
        &entry.command,
        &numbers[5],
    ];
    for field in fields {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The hash of entry `id` following `prev`.
pub fn entry_hash(prev: &str, id: i64, entry: &AuditEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical(id, entry));
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// What a pruning deleted, recorded in the chain as an entry of its own, whose fields hold:
/// `requester` `audit`, `usage_point` `*`, `series` the hash of the last deleted entry,
/// `start`/`end` the first and last id deleted, `records` how many, `command` `audit-pruned`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub first_id: i64,
    pub last_id: i64,
    pub pruned: i64,
    /// The hash of entry `last_id`: the `prev_hash` of the first entry kept.
    pub last_hash: String,
}

impl Checkpoint {
    /// The entry that records this checkpoint, stamped `at`.
    pub fn entry(&self, at: i64) -> AuditEntry {
        AuditEntry {
            requester: "audit".to_owned(),
            usage_point: "*".to_owned(),
            series: self.last_hash.clone(),
            start: self.first_id,
            end: self.last_id,
            grant_id: None,
            command: audit_command::CHECKPOINT.to_owned(),
            records: self.pruned,
            at,
        }
    }

    /// The checkpoint an entry records, if it is one.
    pub fn of(entry: &AuditEntry) -> Option<Checkpoint> {
        (entry.command == audit_command::CHECKPOINT).then(|| Checkpoint {
            first_id: entry.start,
            last_id: entry.end,
            pruned: entry.records,
            last_hash: entry.series.clone(),
        })
    }
}

/// An entry as stored, with its chain columns.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEntry {
    pub id: i64,
    pub entry: AuditEntry,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    /// The entry has no hash (written outside the component, or never sealed).
    #[error("entry {id} has no hash")]
    Unsealed { id: i64 },
    /// Its `prev_hash` is not the previous entry's hash: an entry before it was deleted or
    /// edited together with its hash, or entries were reordered.
    #[error("entry {id}: prev_hash does not match the hash of the entry before it ({previous})")]
    Link { id: i64, previous: String },
    /// Its content does not give its hash: the entry was edited.
    #[error("entry {id}: its content does not match its hash (edited)")]
    Content { id: i64 },
    /// The first entry links to an entry no longer there, and no checkpoint says it was pruned:
    /// entries at the start were deleted by hand.
    #[error("entry {id} is the first, but links to an entry no checkpoint says was pruned")]
    Unattested { id: i64 },
}

/// Checks entries in id order, one page after the other; remembers where it stands. Call
/// [`Verifier::finish`] after the last entry.
#[derive(Debug, Clone)]
pub struct Verifier {
    prev: String,
    previous_id: Option<i64>,
    checked: u64,
    /// The first entry and the hash it links to, when that is not [`GENESIS`], until a
    /// checkpoint vouches for them.
    unattested: Option<(i64, String)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            prev: GENESIS.to_owned(),
            previous_id: None,
            checked: 0,
            unattested: None,
        }
    }
}

impl Verifier {
    /// Checks the next entry; the first break found is the answer.
    pub fn check(&mut self, e: &ChainedEntry) -> Result<(), Break> {
        let (Some(prev_hash), Some(hash)) = (&e.prev_hash, &e.hash) else {
            return Err(Break::Unsealed { id: e.id });
        };
        if self.previous_id.is_none() && *prev_hash != self.prev {
            // The start was pruned (or deleted): carry on, and wait for a checkpoint.
            self.unattested = Some((e.id, prev_hash.clone()));
            self.prev.clone_from(prev_hash);
        }
        if *prev_hash != self.prev {
            return Err(Break::Link {
                id: e.id,
                previous: self
                    .previous_id
                    .map_or_else(|| "the start".to_owned(), |p| format!("entry {p}")),
            });
        }
        if entry_hash(prev_hash, e.id, &e.entry) != *hash {
            return Err(Break::Content { id: e.id });
        }
        if let (Some((first, linked)), Some(checkpoint)) =
            (&self.unattested, Checkpoint::of(&e.entry))
        {
            if checkpoint.last_hash == *linked && checkpoint.last_id < *first {
                self.unattested = None;
            }
        }
        self.prev.clone_from(hash);
        self.previous_id = Some(e.id);
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: a start no checkpoint vouched for is a break.
    pub fn finish(&self) -> Result<(), Break> {
        match &self.unattested {
            Some((id, _)) => Err(Break::Unattested { id: *id }),
            None => Ok(()),
        }
    }

    /// The hash of the last entry checked (the chain's head so far).
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// Entries checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(requester: &str, records: i64) -> AuditEntry {
        AuditEntry {
            requester: requester.into(),
            usage_point: "30001610071843".into(),
            series: "consumption/power/active/raw".into(),
            start: 1_700_000_000,
            end: 1_700_086_400,
            grant_id: Some(3),
            command: "get_history".into(),
            records,
            at: 1_700_090_000,
        }
    }

    fn chain(n: i64) -> Vec<ChainedEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|id| {
                let e = entry("alice@example.org", id);
                let hash = entry_hash(&prev, id, &e);
                let c = ChainedEntry {
                    id,
                    entry: e,
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                };
                prev = hash;
                c
            })
            .collect()
    }

    fn verify(entries: &[ChainedEntry]) -> Result<(), Break> {
        let mut v = Verifier::default();
        entries.iter().try_for_each(|e| v.check(e))?;
        v.finish()
    }

    /// Appends `entry` to `chain` with the next id.
    fn append(chain: &mut Vec<ChainedEntry>, entry: AuditEntry) {
        let last = chain.last().unwrap();
        let (id, prev) = (last.id + 1, last.hash.clone().unwrap());
        let hash = entry_hash(&prev, id, &entry);
        chain.push(ChainedEntry {
            id,
            entry,
            prev_hash: Some(prev),
            hash: Some(hash),
        });
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let e = entry("a\nb", 7);
        let text = String::from_utf8(canonical(12, &e)).unwrap();
        assert_eq!(
            text,
            "quoalise-audit-v1\n2:12\n10:1700090000\n3:a\nb\n14:30001610071843\n\
             28:consumption/power/active/raw\n10:1700000000\n10:1700086400\n1:3\n11:get_history\n1:7\n"
        );
        // A known vector, so that an outside verifier can be checked against this one.
        assert_eq!(entry_hash(GENESIS, 12, &e).len(), 64);
        assert_ne!(entry_hash(GENESIS, 12, &e), entry_hash(GENESIS, 13, &e));
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        assert_eq!(verify(&entries), Ok(()));
        let mut v = Verifier::default();
        for e in &entries {
            v.check(e).unwrap();
        }
        assert_eq!(v.checked(), 5);
        assert_eq!(Some(v.head()), entries[4].hash.as_deref());
    }

    #[test]
    fn edits_deletions_and_reorders_are_caught_where_they_are() {
        let mut edited = chain(5);
        edited[2].entry.records = 999;
        assert_eq!(verify(&edited), Err(Break::Content { id: 3 }));

        let mut deleted = chain(5);
        deleted.remove(2);
        assert!(matches!(verify(&deleted), Err(Break::Link { id: 4, .. })));

        // Rehashing an edited entry does not help: the next one no longer links.
        let mut rehashed = chain(5);
        rehashed[2].entry.records = 999;
        rehashed[2].hash = Some(entry_hash(GENESIS, 3, &rehashed[2].entry));
        assert!(verify(&rehashed).is_err());

        let mut swapped = chain(5);
        swapped.swap(1, 2);
        assert!(matches!(verify(&swapped), Err(Break::Link { id: 3, .. })));

        let mut unsealed = chain(3);
        unsealed[1].hash = None;
        assert_eq!(verify(&unsealed), Err(Break::Unsealed { id: 2 }));
    }

    #[test]
    fn a_pruned_start_verifies_only_with_its_checkpoint() {
        let full = chain(6);
        let checkpoint = |last: usize| Checkpoint {
            first_id: 1,
            last_id: full[last].id,
            pruned: full[last].id,
            last_hash: full[last].hash.clone().unwrap(),
        };
        // Entries 1-3 pruned, the checkpoint appended at the head.
        let mut pruned = full[3..].to_vec();
        append(&mut pruned, checkpoint(2).entry(1_700_100_000));
        assert_eq!(verify(&pruned), Ok(()));
        assert_eq!(Checkpoint::of(&pruned[3].entry), Some(checkpoint(2)));

        // Without it, or with one for another cut, the start is a deletion.
        assert_eq!(verify(&full[3..]), Err(Break::Unattested { id: 4 }));
        let mut other = full[3..].to_vec();
        append(&mut other, checkpoint(1).entry(1_700_100_000));
        assert_eq!(verify(&other), Err(Break::Unattested { id: 4 }));
        // One more entry deleted after a genuine pruning is caught too.
        let mut more = full[4..].to_vec();
        append(&mut more, checkpoint(2).entry(1_700_100_000));
        assert_eq!(verify(&more), Err(Break::Unattested { id: 5 }));
        // An ordinary entry is no checkpoint.
        assert_eq!(Checkpoint::of(&full[0].entry), None);
    }
}
