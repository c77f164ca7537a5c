//! Everything that comes in: sighting batches from the wire, and the file imports of issue 7
//! (expense exports, gateway spend, the people directory).
//!
//! Sighting batches are validated upstream and aggregated here.
//!
//! The agent aggregates per window already, but a batch may still repeat a key (two spool
//! rows of one window). Aggregating here makes every key appear once per batch, which the
//! PostgreSQL bulk upsert needs, and sorting makes concurrent batches lock rows in one order.

use std::collections::BTreeMap;

use aiscout_wire::{SightingBatch, SightingKind, UnixSecs};

use crate::model::{Batch, InstallChange, Sighting};

pub mod drop;
pub mod expense;
pub mod file;
pub mod gateway;
pub mod mapping;
pub mod parse;
pub mod people;
pub mod table;

pub use file::{FileReport, ImportError, Input, RowError, Tally};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The known flags among a sighting's, sorted and joined with `,` (a newer agent's unknown
/// flag is dropped, not stored).
fn mcp_flags(names: &[String]) -> String {
    let known = aiscout_wire::McpFlag::known(names.iter().map(String::as_str));
    known.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",")
}

/// Converts a validated wire batch into a domain batch with one entry per aggregation key.
pub fn batch(wire: SightingBatch) -> Batch {
    type Key = (String, SightingKind, String, String, String, UnixSecs);
    let received = i64::try_from(wire.sightings.len()).unwrap_or(i64::MAX);
    let mut merged: BTreeMap<Key, (UnixSecs, UnixSecs, i64)> = BTreeMap::new();
    let mut installs: BTreeMap<(String, SightingKind, String, String), InstallChange> =
        BTreeMap::new();
    for s in wire.sightings {
        if s.kind.is_installed() {
            let user = s.user.clone().unwrap_or_default();
            let change = InstallChange {
                product: s.product.clone(),
                kind: s.kind,
                value: s.value.clone(),
                user: user.clone(),
                present: !s.removed,
                at: s.last_seen,
                flags: mcp_flags(&s.flags),
            };
            let key = (s.product.clone(), s.kind, s.value.clone(), user);
            // The later report wins; at the same time, a removal wins.
            match installs.get(&key) {
                Some(old) if (old.at, !old.present) >= (change.at, !change.present) => {}
                _ => {
                    installs.insert(key, change);
                }
            }
        }
        if s.removed {
            // A removal is not a sighting: it only changes what is installed.
            continue;
        }
        let key = (
            s.product,
            s.kind,
            s.value,
            s.user.unwrap_or_default(),
            s.process.unwrap_or_default(),
            s.window,
        );
        let count = to_i64(s.count);
        merged
            .entry(key)
            .and_modify(|(first, last, n)| {
                *first = (*first).min(s.first_seen);
                *last = (*last).max(s.last_seen);
                *n = n.saturating_add(count);
            })
            .or_insert((s.first_seen, s.last_seen, count));
    }
    let sightings = merged
        .into_iter()
        .map(|((product, kind, value, user, process, window), (first_seen, last_seen, count))| {
            Sighting { product, kind, value, user, process, window, first_seen, last_seen, count }
        })
        .collect();
    Batch {
        batch_id: wire.batch_id,
        sightings,
        received,
        dropped: to_i64(wire.dropped),
        evicted: to_i64(wire.evicted),
        installs: installs.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use aiscout_wire::{AgentInfo, Sighting, SightingBatch, SightingKind, UnixSecs};

    fn sighting(value: &str, first: i64, last: i64, count: u64) -> Sighting {
        Sighting {
            product: "openai.chatgpt".into(),
            kind: SightingKind::Dns,
            value: value.into(),
            user: None,
            process: None,
            first_seen: UnixSecs(first),
            last_seen: UnixSecs(last),
            count,
            window: UnixSecs(0),
            removed: false,
            flags: Vec::new(),
        }
    }

    #[test]
    fn repeated_keys_in_one_batch_are_merged() {
        let wire = SightingBatch {
            batch_id: "b".into(),
            agent: AgentInfo { version: "1".into(), catalog_version: 1 },
            sightings: vec![
                sighting("chatgpt.com", 10, 20, 2),
                sighting("api.openai.com", 5, 5, 1),
                sighting("chatgpt.com", 3, 15, 3),
            ],
            dropped: 1,
            evicted: 2,
        };
        let b = super::batch(wire);
        assert_eq!(b.received, 3);
        assert_eq!(b.sightings.len(), 2);
        let chat = b.sightings.iter().find(|s| s.value == "chatgpt.com").unwrap();
        assert_eq!((chat.first_seen, chat.last_seen, chat.count), (UnixSecs(3), UnixSecs(20), 5));
        assert_eq!(chat.user, "");
    }

    #[test]
    fn removals_change_installs_and_are_not_sightings() {
        let mut app = sighting("com.openai.chat", 10, 10, 1);
        app.kind = SightingKind::App;
        let mut gone = app.clone();
        gone.removed = true;
        gone.first_seen = UnixSecs(30);
        gone.last_seen = UnixSecs(30);
        let wire = SightingBatch {
            batch_id: "b".into(),
            agent: AgentInfo { version: "1".into(), catalog_version: 1 },
            sightings: vec![app, gone, sighting("chatgpt.com", 5, 5, 1)],
            dropped: 0,
            evicted: 0,
        };
        let b = super::batch(wire);
        assert_eq!(b.sightings.len(), 2, "the removal is not counted as a sighting");
        assert_eq!(b.installs.len(), 1, "one change per item");
        assert_eq!((b.installs[0].present, b.installs[0].at), (false, UnixSecs(30)));
    }
}
