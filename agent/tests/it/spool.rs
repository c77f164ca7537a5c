//! The spool against an in-memory model (proptest), across reopens; and its size bound.

use std::collections::BTreeMap;

use aiscout_agent::spool::{Record, Spool, SpoolLimits};
use aiscout_wire::UnixSecs;
use proptest::prelude::*;

fn rec(key: u8, window: i64, ts: i64) -> Record {
    Record {
        window: UnixSecs(window),
        product: "openai.chatgpt".into(),
        kind: aiscout_wire::SightingKind::TlsSni,
        value: format!("h{key}.chatgpt.com"),
        user: key.is_multiple_of(2).then(|| "alice".to_owned()),
        process: None,
        first_seen: UnixSecs(ts),
        last_seen: UnixSecs(ts),
        count: 1,
        removed: false,
        flags: Vec::new(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Record(Vec<(u8, i64)>),
    Send,
    Ack,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0i64..3), 1..8).prop_map(Op::Record),
        2 => Just(Op::Send),
        2 => Just(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

/// Sightings per (value, window): what was recorded minus what was acknowledged.
type Model = BTreeMap<(String, i64), u64>;

fn totals(records: &[Record]) -> Model {
    let mut m = Model::new();
    for r in records {
        *m.entry((r.value.clone(), r.window.get())).or_default() += r.count;
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn spool_matches_a_queue_model_across_restarts(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let limits = SpoolLimits { batch_rows: 3, ..SpoolLimits::default() };
        let mut spool = Spool::open(&path, limits).unwrap();
        let mut pending = Model::new(); // recorded, not acknowledged
        let mut delivered = Model::new(); // acknowledged by the "collector", once per batch id
        let mut acked_ids = Vec::new();
        let mut in_flight = None;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Record(items) => {
                    let records: Vec<Record> =
                        items.iter().map(|(k, w)| rec(*k, *w * 3600, *w * 3600 + step as i64)).collect();
                    prop_assert_eq!(spool.record(&records).unwrap(), 0);
                    for (k, v) in totals(&records) {
                        *pending.entry(k).or_default() += v;
                    }
                }
                Op::Send => {
                    let batch = spool.next_batch().unwrap();
                    if let (Some(prev), Some(b)) = (&in_flight, &batch) {
                        prop_assert_eq!(prev, b, "an unacknowledged batch is resent unchanged");
                    }
                    prop_assert!(batch.as_ref().is_none_or(|b| b.records.len() <= 3));
                    in_flight = batch;
                }
                Op::Ack => {
                    if let Some(b) = in_flight.take() {
                        if !acked_ids.contains(&b.id) {
                            acked_ids.push(b.id.clone());
                            for (k, v) in totals(&b.records) {
                                *delivered.entry(k.clone()).or_default() += v;
                                let left = pending.get_mut(&k).unwrap();
                                *left -= v;
                            }
                        }
                        spool.ack(&b).unwrap();
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(&path, limits).unwrap();
                    prop_assert!(spool.moved_aside().is_none());
                }
            }
        }
        // Drain: everything still pending comes out exactly once.
        let mut rounds = 0;
        while let Some(b) = spool.next_batch().unwrap() {
            rounds += 1;
            prop_assert!(rounds < 1_000);
            for (k, v) in totals(&b.records) {
                *delivered.entry(k.clone()).or_default() += v;
                *pending.get_mut(&k).unwrap() -= v;
            }
            spool.ack(&b).unwrap();
        }
        prop_assert!(pending.values().all(|v| *v == 0), "left in the model: {:?}", pending);
        prop_assert_eq!(spool.stats().unwrap().rows, 0);
    }
}

#[test]
fn spool_flood_stays_under_its_cap_and_counts_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let cap = 256 * 1024;
    let mut spool = Spool::open(&path, SpoolLimits { max_bytes: cap, batch_rows: 100 }).unwrap();
    let mut recorded = 0u64;
    let mut evicted = 0u64;
    for chunk in 0..50 {
        let records: Vec<Record> = (0..200)
            .map(|i| {
                let mut r = rec(0, 0, 1);
                r.value = format!("distinct-{chunk}-{i}.chatgpt.com");
                r
            })
            .collect();
        recorded += records.len() as u64;
        evicted += spool.record(&records).unwrap();
        let stats = spool.stats().unwrap();
        assert!(stats.bytes <= cap, "spool at {} bytes over its {cap}-byte cap", stats.bytes);
    }
    let stats = spool.stats().unwrap();
    assert!(evicted > 0, "a flood this size must evict");
    assert_eq!(stats.evicted, evicted, "every eviction is counted");
    assert_eq!(
        stats.rows + evicted,
        recorded,
        "each sighting is either kept or counted as evicted"
    );
    let batch = spool.next_batch().unwrap().unwrap();
    assert_eq!(batch.evicted, evicted, "the next batch reports the evictions");
    spool.ack(&batch).unwrap();
    assert_eq!(spool.stats().unwrap().evicted, 0);
}
