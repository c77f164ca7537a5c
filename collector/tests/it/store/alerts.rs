//! Conformance of the alerts outbox (migration 0008) on both backends: events written by the
//! change that causes them, once per cause; deliveries fanned out to the active channels that
//! take the type; claims held by one claimer until their lease runs out; admissions that
//! never pass a channel's daily cap, however many run at once.

use aiscout_collector::alerts::event;
use aiscout_collector::model::{
    Admit, AdmitRule, Attempt, AuditFilter, ChannelRow, DeliveryRow, Review,
};
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_wire::{ReviewStatus, UnixSecs};

use super::{batch, device, expense, sighting, spend};

fn channel(name: &str, events: &[&str]) -> ChannelRow {
    ChannelRow {
        name: name.into(),
        kind: "webhook".into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
    }
}

async fn rows(store: &impl Store) -> Vec<DeliveryRow> {
    let mut rows = store.deliveries(1_000).await.unwrap();
    rows.sort_by(|a, b| (&a.channel, &a.kind, &a.product).cmp(&(&b.channel, &b.kind, &b.product)));
    rows
}

fn kinds(rows: &[DeliveryRow], channel: &str) -> Vec<(String, String)> {
    rows.iter()
        .filter(|r| r.channel == channel)
        .map(|r| (r.kind.clone(), r.product.clone()))
        .collect()
}

async fn block(store: &impl Store, product: &str, at: i64) {
    let decision = review::Decision {
        status: ReviewStatus::Blocked,
        note: "not approved".into(),
        business_owner: String::new(),
        alternative: String::new(),
        renewal: None,
    };
    let (r, audit): (Review, _) = review::decide(product, decision, "sec", at);
    store.set_review(r, audit).await.unwrap();
}

pub(crate) async fn alert_events_are_written_with_their_change_once_each(store: impl Store) {
    store
        .sync_channels(vec![channel("all", &[]), channel("discoveries", &[event::DISCOVERED])], 10)
        .await
        .unwrap();
    let d1 = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", None), [2; 32], 100).await.unwrap();
    let b = |id: &str, product: &str, window: i64| {
        batch(id, vec![sighting(product, "x.example", "", window, 1)])
    };
    // First sighting of ChatGPT: discovered once, however often and from wherever it is seen.
    store.ingest(d1, b("b1", "openai.chatgpt", 1_000), 1_100).await.unwrap();
    store.ingest(d2, b("b2", "openai.chatgpt", 2_000), 2_100).await.unwrap();
    store.ingest(d1, b("b1", "openai.chatgpt", 1_000), 2_200).await.unwrap();
    let r = rows(&store).await;
    assert_eq!(kinds(&r, "all"), [(event::DISCOVERED.into(), "openai.chatgpt".into())]);
    assert_eq!(kinds(&r, "discoveries"), kinds(&r, "all"));
    assert!(r.iter().all(|d| d.state == "pending" && d.attempts == 0));
    assert_eq!(r[0].event_id, event::id(event::DISCOVERED, "openai.chatgpt"));

    // A decision is an event; blocked, a later sighting on each device is one event each,
    // an earlier one none, and the same device again nothing new.
    block(&store, "openai.chatgpt", 5_000).await;
    store.ingest(d1, b("b3", "openai.chatgpt", 4_000), 5_100).await.unwrap();
    store.ingest(d1, b("b4", "openai.chatgpt", 6_000), 6_100).await.unwrap();
    store.ingest(d1, b("b5", "openai.chatgpt", 7_000), 7_100).await.unwrap();
    store.ingest(d2, b("b6", "openai.chatgpt", 7_000), 7_100).await.unwrap();
    let r = rows(&store).await;
    let all = kinds(&r, "all");
    let count = |k: &str| all.iter().filter(|(kind, _)| kind == k).count();
    assert_eq!(count(event::REVIEW_CHANGED), 1);
    assert_eq!(count(event::BLOCKED_SEEN), 2, "{all:?}");
    assert_eq!(kinds(&r, "discoveries").len(), 1, "a channel takes only its types");

    // Expenses: a new product discovered, a candidate line, a blocked product paid for after
    // the decision; the same file again adds nothing.
    let lines = vec![
        expense("e1", Some("anthropic.claude"), 3_000, 2_000),
        expense("e2", None, 3_000, 1_500),
        expense("e3", Some("openai.chatgpt"), 9_000, 2_000),
        expense("e4", Some("openai.chatgpt"), 4_000, 2_000),
    ];
    store.add_expenses(lines.clone(), 9_100).await.unwrap();
    store.add_expenses(lines, 9_200).await.unwrap();
    // Gateway spend discovers a product once.
    let gateway = vec![
        spend("g1", Some("openai.api"), 3_000, 10),
        spend("g2", Some("openai.api"), 3_000, 10),
    ];
    store.add_gateway_spend(gateway.clone(), 9_300).await.unwrap();
    store.add_gateway_spend(gateway, 9_400).await.unwrap();
    let r = rows(&store).await;
    let all = kinds(&r, "all");
    let of =
        |k: &str, p: &str| all.iter().filter(|(kind, product)| kind == k && product == p).count();
    assert_eq!(of(event::DISCOVERED, "anthropic.claude"), 1);
    assert_eq!(of(event::DISCOVERED, "openai.api"), 1);
    assert_eq!(of(event::EXPENSE_CANDIDATE, ""), 1);
    assert_eq!(of(event::BLOCKED_SEEN, "openai.chatgpt"), 3, "e3 only, not e4 (before)");
    assert_eq!(all.len(), 8, "{all:?}");

    // Emitting a known cause again adds nothing; a test event goes to its channel only.
    let again = event::make(
        event::DISCOVERED,
        "openai.chatgpt",
        1,
        "openai.chatgpt",
        &serde_json::json!({}),
    );
    assert_eq!(store.emit(vec![again], None, 9_500).await.unwrap(), 0);
    assert_eq!(
        store
            .emit(vec![event::test("discoveries", "admin", 9_600, "n1")], None, 9_600)
            .await
            .unwrap(),
        1
    );
    let r = rows(&store).await;
    assert_eq!(kinds(&r, "all").len(), 8);
    assert_eq!(kinds(&r, "discoveries").len(), 4, "three discoveries and the test");

    // A channel no longer configured gets no new events.
    store.sync_channels(vec![channel("all", &[])], 9_700).await.unwrap();
    store.emit(vec![event::test("all", "admin", 9_800, "n2")], None, 9_800).await.unwrap();
    assert_eq!(kinds(&rows(&store).await, "discoveries").len(), 4);
}

/// Issue 17: teaching a descriptor writes one `descriptor.taught` event with the mapping, in
/// its transaction; a refused second teaching of the descriptor writes none.
pub(crate) async fn a_taught_descriptor_is_one_alert_event(store: impl Store) {
    use aiscout_collector::model::{AuditRecord, DescriptorMapping};
    store.sync_channels(vec![channel("all", &[])], 10).await.unwrap();
    let mut line = expense("c1", None, 1_000, 2_000);
    line.descriptor = "ACME AI LABS".into();
    store.add_expenses(vec![line], 10).await.unwrap();
    let before = rows(&store).await.len();
    let mapping = DescriptorMapping {
        id: 0,
        descriptor: "ACME AI LABS".into(),
        product: "anthropic.claude".into(),
        actor: "sam".into(),
        created_at: UnixSecs(50),
        note: String::new(),
    };
    let audit = AuditRecord {
        at: UnixSecs(50),
        actor: "sam".into(),
        action: "descriptor.teach".into(),
        subject: "ACME AI LABS".into(),
        before: None,
        after: None,
    };
    let (stored, _) = store.add_mapping(mapping.clone(), audit.clone()).await.unwrap();
    assert!(store.add_mapping(mapping, audit).await.is_err());
    let r = rows(&store).await;
    let taught: Vec<&DeliveryRow> =
        r.iter().filter(|d| d.kind == event::DESCRIPTOR_TAUGHT).collect();
    assert_eq!(r.len(), before + 1, "{r:?}");
    assert_eq!(taught.len(), 1, "{r:?}");
    assert_eq!(taught[0].product, "anthropic.claude");
    let key = format!("{}\0ACME AI LABS", stored.id);
    assert_eq!(taught[0].event_id, event::id(event::DESCRIPTOR_TAUGHT, &key));
}

pub(crate) async fn alert_deliveries_are_claimed_once_and_retried_after_their_lease(
    store: impl Store,
) {
    store.sync_channels(vec![channel("soc", &[])], 10).await.unwrap();
    let events: Vec<_> = (0..5)
        .map(|i| {
            event::make(
                event::DISCOVERED,
                &format!("p{i}"),
                100,
                &format!("p{i}"),
                &serde_json::json!({}),
            )
        })
        .collect();
    assert_eq!(store.emit(events, None, 100).await.unwrap(), 5);
    // Two claimers at once: each delivery goes to one of them.
    let (a, b) = tokio::join!(
        store.claim_deliveries("soc".into(), "A".into(), 200, 260, 3),
        store.claim_deliveries("soc".into(), "B".into(), 200, 260, 3),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 5, "{a:?} {b:?}");
    let mut seqs: Vec<i64> = a.iter().chain(&b).map(|c| c.event.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 5, "no delivery claimed twice");
    assert!(a.iter().chain(&b).all(|c| c.created_at == UnixSecs(100) && c.attempts == 0));
    assert!(
        store.claim_deliveries("soc".into(), "C".into(), 210, 270, 10).await.unwrap().is_empty()
    );

    let (mine, theirs) = if a.is_empty() { (b, a) } else { (a, b) };
    let claimer = if mine.is_empty() { "B" } else { "A" };
    let _ = theirs;
    let first = mine[0].clone();
    // Delivered by its claimer; a stranger's finish changes nothing.
    assert!(
        !store
            .finish_delivery(
                first.clone(),
                "C".into(),
                Attempt::Delivered { status: 200 },
                None,
                220
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_delivery(
                first.clone(),
                claimer.into(),
                Attempt::Delivered { status: 200 },
                None,
                220
            )
            .await
            .unwrap()
    );
    // A retry comes back when due, with its attempt counted.
    let second = mine[1].clone();
    let retry = Attempt::Retry { at: UnixSecs(400), status: Some(503), error: "down".into() };
    store.finish_delivery(second.clone(), claimer.into(), retry, None, 230).await.unwrap();
    // The rest lapse: their leases end at 260, and another claimer takes them (and the retry
    // once due).
    let later = store.claim_deliveries("soc".into(), "D".into(), 300, 1_000, 10).await.unwrap();
    assert_eq!(later.len(), 3, "{later:?}");
    assert!(
        later.iter().all(|c| c.event.seq != second.event.seq && c.event.seq != first.event.seq)
    );
    let due = store.claim_deliveries("soc".into(), "D".into(), 400, 460, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].event.seq, due[0].attempts), (second.event.seq, 1));
    // Given up: failed, with its audit entry in the same transaction.
    let audit = aiscout_collector::model::AuditRecord {
        at: UnixSecs(410),
        actor: "alerts".into(),
        action: "alert.failed".into(),
        subject: "soc".into(),
        before: None,
        after: None,
    };
    let failed = Attempt::Failed { status: Some(500), error: "gave up".into() };
    assert!(
        store.finish_delivery(due[0].clone(), "D".into(), failed, Some(audit), 410).await.unwrap()
    );
    let rows = store.deliveries(100).await.unwrap();
    let state_of = |seq: i64| {
        let id = rows
            .iter()
            .find(|r| {
                r.event_id
                    == mine.iter().chain(&due).find(|c| c.event.seq == seq).unwrap().event.event.id
            })
            .unwrap();
        (id.state.clone(), id.attempts, id.last_status)
    };
    assert_eq!(state_of(first.event.seq), ("delivered".into(), 1, Some(200)));
    assert_eq!(state_of(second.event.seq), ("failed".into(), 2, Some(500)));
    let counts = store.delivery_counts().await.unwrap();
    assert!(counts.contains(&("soc".into(), "delivered".into(), 1)), "{counts:?}");
    assert!(counts.contains(&("soc".into(), "failed".into(), 1)), "{counts:?}");
    assert!(counts.contains(&("soc".into(), "sending".into(), 3)), "{counts:?}");
    let audit = store
        .audit_query(AuditFilter {
            subject: Some("soc".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.iter().filter(|a| a.record.action == "alert.failed").count(), 1);
}

pub(crate) async fn alert_admissions_keep_the_daily_cap_exact_and_the_quiet_period(
    store: impl Store,
) {
    const DAY: i64 = 86_400;
    let d = 20 * DAY;
    store.sync_channels(vec![channel("soc", &[])], 10).await.unwrap();
    let mut events: Vec<_> = (0..6)
        .map(|i| {
            let p = format!("p{i}");
            event::make(event::DISCOVERED, &p, d + 100, &p, &serde_json::json!({}))
        })
        .collect();
    for cause in ["devices", "users"] {
        events.push(event::make(event::SPREAD, cause, d + 100, "q", &serde_json::json!({})));
    }
    assert_eq!(store.emit(events, None, d + 100).await.unwrap(), 8);
    let claimed = store.claim_deliveries("soc".into(), "A".into(), d + 100, d + 160, 10).await;
    let claimed = claimed.unwrap();
    assert_eq!(claimed.len(), 8);
    let (found, spread): (Vec<_>, Vec<_>) =
        claimed.into_iter().partition(|c| c.event.event.kind == event::DISCOVERED);
    let cap = |max: i64| AdmitRule { max_per_day: max, quiet_since: None };
    let admit = |c: &aiscout_collector::model::Claimed, who: &str, now: i64, rule: AdmitRule| {
        let asked = store.admit_deliveries(vec![c.clone()], who.into(), now, rule);
        async move { asked.await.map(|mut answers| answers.remove(0)) }
    };

    // Six admissions at once (as from six collectors) against a cap of three: three places,
    // whatever the interleaving.
    let at = d + 101;
    let all = tokio::join!(
        admit(&found[0], "A", at, cap(3)),
        admit(&found[1], "A", at, cap(3)),
        admit(&found[2], "A", at, cap(3)),
        admit(&found[3], "A", at, cap(3)),
        admit(&found[4], "A", at, cap(3)),
        admit(&found[5], "A", at, cap(3)),
    );
    let all = [all.0, all.1, all.2, all.3, all.4, all.5].map(Result::unwrap);
    let admitted: Vec<usize> = (0..6).filter(|&i| all[i] == Admit::Admitted).collect();
    let capped: Vec<usize> = (0..6).filter(|&i| all[i] != Admit::Admitted).collect();
    assert_eq!(admitted.len(), 3, "{all:?}");
    for &i in &capped {
        assert_eq!(all[i], Admit::Capped("max_per_day 3 reached".into()));
    }
    // An admitted attempt asked again (a re-claim after its collector died) keeps its place
    // and takes no second one; a capped one is still capped.
    let (a0, a1, a2) = (&found[admitted[0]], &found[admitted[1]], &found[admitted[2]]);
    assert_eq!(admit(a0, "A", at + 1, cap(3)).await.unwrap(), Admit::Admitted);
    assert_ne!(admit(&found[capped[0]], "A", at + 1, cap(3)).await.unwrap(), Admit::Admitted);
    // Only the claimer admits.
    assert_eq!(admit(&found[capped[0]], "Z", at + 1, cap(3)).await.unwrap(), Admit::Lost);
    // Delivered keeps its place; a retry gives its place back, and a capped one takes it.
    let delivered = Attempt::Delivered { status: 200 };
    assert!(store.finish_delivery(a1.clone(), "A".into(), delivered, None, at + 2).await.unwrap());
    let retry = Attempt::Retry { at: UnixSecs(d + 5_000), status: Some(503), error: "down".into() };
    assert!(store.finish_delivery(a2.clone(), "A".into(), retry, None, at + 2).await.unwrap());
    assert_eq!(admit(&found[capped[0]], "A", at + 3, cap(3)).await.unwrap(), Admit::Admitted);
    assert_ne!(admit(&found[capped[1]], "A", at + 3, cap(3)).await.unwrap(), Admit::Admitted);
    // The cap is per calendar day (UTC), not the 24 hours before: just after midnight, fewer
    // than 24 hours after the three, a new day's places.
    let tomorrow = d + DAY + 5;
    assert_eq!(admit(&found[capped[1]], "A", tomorrow, cap(3)).await.unwrap(), Admit::Admitted);
    assert_eq!(
        admit(&found[capped[2]], "A", tomorrow, cap(1)).await.unwrap(),
        Admit::Capped("max_per_day 1 reached".into())
    );

    // Quiet period: of two events of one type about one product admitted in one round, the
    // second is held back; a round's answers come in its order.
    let quiet = AdmitRule { max_per_day: 100, quiet_since: Some(UnixSecs(at - 3_600)) };
    let answers = store.admit_deliveries(spread.clone(), "A".into(), at, quiet).await.unwrap();
    assert_eq!(answers, [Admit::Admitted, Admit::Capped("quiet period".into())]);
    // One round against the cap: places in order, then capped.
    let later = d + 2 * DAY;
    let rest: Vec<_> = capped.iter().map(|&i| found[i].clone()).collect();
    let answers = store.admit_deliveries(rest, "A".into(), later, cap(2)).await.unwrap();
    let capped2 = Admit::Capped("max_per_day 2 reached".into());
    assert_eq!(answers, [Admit::Admitted, Admit::Admitted, capped2]);
}
