//! The store conformance suite: every case is a generic function over [`Store`], compiled
//! once per backend by the `conformance!` macro, so SQLite and PostgreSQL cannot diverge.

use aiscout_collector::model::{
    Admission, AuditEntry, AuditFilter, AuditRecord, Batch, Device, DeviceQuery, DeviceSighting,
    EnrollAttempt, EnrollOutcome, ExpenseLine, GatewaySpend, Health, ImportCounts, ImportRun,
    IngestOutcome, InstallChange, Person, PersonUsage, ReenrollPolicy, Review, Role, Session,
    Token, UsageFilter, ValueUsage,
};
use aiscout_collector::store::{Store, StoreError, Versions};
use aiscout_collector::{join, review};
use aiscout_wire::{ReviewStatus, SightingKind, UnixSecs};

mod alerts;
pub(crate) mod harness;
mod privacy;
mod upgrade;

pub(crate) use alerts::{
    a_taught_descriptor_is_one_alert_event,
    alert_admissions_keep_the_daily_cap_exact_and_the_quiet_period,
    alert_deliveries_are_claimed_once_and_retried_after_their_lease,
    alert_events_are_written_with_their_change_once_each,
};

fn device(host: &str, email: Option<&str>) -> Device {
    Device {
        host_id: host.into(),
        hostname: format!("{host}-name"),
        os: "linux".into(),
        os_version: "12".into(),
        agent_version: "0.1.0".into(),
        owner_email: email.map(str::to_owned),
    }
}

fn sighting(
    product: &str,
    value: &str,
    user: &str,
    window: i64,
    count: i64,
) -> aiscout_collector::model::Sighting {
    aiscout_collector::model::Sighting {
        product: product.into(),
        kind: SightingKind::Dns,
        value: value.into(),
        user: user.into(),
        process: String::new(),
        window: UnixSecs(window),
        first_seen: UnixSecs(window + 1),
        last_seen: UnixSecs(window + 10),
        count,
    }
}

fn batch(id: &str, sightings: Vec<aiscout_collector::model::Sighting>) -> Batch {
    let received = sightings.len() as i64;
    Batch { batch_id: id.into(), sightings, received, dropped: 1, evicted: 2, installs: Vec::new() }
}

async fn total(store: &impl Store, product: &str) -> i64 {
    let filter = UsageFilter { product: Some(product.into()), ..UsageFilter::default() };
    let (sources, _) = store.usage(filter).await.unwrap();
    sources.iter().map(|s| s.count).sum()
}

pub(crate) async fn enroll_replaces_the_node_key(store: impl Store) {
    let d1 = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), Some(d1));
    let d1_again = store.enroll(device("h1", None), [2; 32], 200).await.unwrap();
    assert_eq!(d1, d1_again);
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), None);
    assert_eq!(store.device_by_key([2; 32]).await.unwrap(), Some(d1));
    let devices = store.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].enrolled_at, UnixSecs(100));
    assert_eq!(devices[0].last_contact, UnixSecs(200));
}

fn attempt(host: &str, key: u8, previous: Option<u8>, policy: ReenrollPolicy) -> EnrollAttempt {
    EnrollAttempt {
        device: device(host, None),
        key_hash: [key; 32],
        previous_key: previous.map(|p| [p; 32]),
        policy,
        source: "192.0.2.7".into(),
        now: UnixSecs(100 + i64::from(key)),
    }
}

/// Issue 14 item 3: a known host id enrolls again only with its node key, an admin's approval
/// (used up by that enrollment) or the `replace` policy; `hold` queues it; every re-enrollment
/// and every refused or held attempt is audited, and a refused one changes no key.
pub(crate) async fn reenrollment_follows_the_policy_and_is_audited(store: impl Store) {
    use ReenrollPolicy::{Hold, Replace, RequireKey};
    let enrolled = |how| {
        move |o: EnrollOutcome| match o {
            EnrollOutcome::Enrolled { device, how: got } if got == how => device,
            other => panic!("expected enrolled by {how:?}, got {other:?}"),
        }
    };
    // Security subscribes to takeover alerts (issue 14).
    let takeover = aiscout_collector::alerts::event::DEVICE_TAKEOVER;
    let channel = aiscout_collector::model::ChannelRow {
        name: "sec".into(),
        kind: "webhook".into(),
        events: vec![takeover.to_owned()],
    };
    store.sync_channels(vec![channel], 1).await.unwrap();
    let d = enrolled(Admission::New)(
        store.enroll_checked(attempt("h1", 1, None, RequireKey)).await.unwrap(),
    );
    // No key, or a key that is not the host's: refused, and the real key keeps working.
    for previous in [None, Some(9)] {
        let o = store.enroll_checked(attempt("h1", 2, previous, RequireKey)).await.unwrap();
        assert_eq!(o, EnrollOutcome::Refused);
    }
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), Some(d));
    assert_eq!(store.device_by_key([2; 32]).await.unwrap(), None);
    // The host's own key: the same device, the new key replaces the old.
    let o = store.enroll_checked(attempt("h1", 3, Some(1), RequireKey)).await.unwrap();
    assert_eq!(enrolled(Admission::NodeKey)(o), d);
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), None);
    assert_eq!(store.device_by_key([3; 32]).await.unwrap(), Some(d));
    // Hold: queued, listed, no key changed; an admin's approval lets the next one in, once.
    assert_eq!(
        store.enroll_checked(attempt("h1", 4, None, Hold)).await.unwrap(),
        EnrollOutcome::Held
    );
    let held = store.reenroll_requests().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].host_id.as_str(), held[0].hostname.as_str()), ("h1", "h1-name"));
    assert_eq!((held[0].source.as_str(), held[0].requested_at), ("192.0.2.7", Some(UnixSecs(104))));
    assert_eq!(held[0].approved_by, None);
    assert_eq!(store.device_by_key([3; 32]).await.unwrap(), Some(d));
    store.approve_reenroll("h1".into(), "ann".into(), 150).await.unwrap();
    assert_eq!(store.reenroll_requests().await.unwrap()[0].approved_by.as_deref(), Some("ann"));
    let o = store.enroll_checked(attempt("h1", 5, None, Hold)).await.unwrap();
    assert_eq!(enrolled(Admission::Approved)(o), d);
    assert!(store.reenroll_requests().await.unwrap().is_empty(), "the approval is used up");
    assert_eq!(
        store.enroll_checked(attempt("h1", 6, None, RequireKey)).await.unwrap(),
        EnrollOutcome::Refused
    );
    // An approval ahead of any request works too.
    store.approve_reenroll("h1".into(), "ann".into(), 160).await.unwrap();
    let o = store.enroll_checked(attempt("h1", 7, None, RequireKey)).await.unwrap();
    assert_eq!(enrolled(Admission::Approved)(o), d);
    // Replace: anyone with the secret takes the host over, and it is still audited.
    let o = store.enroll_checked(attempt("h1", 8, None, Replace)).await.unwrap();
    assert_eq!(enrolled(Admission::Replaced)(o), d);
    assert_eq!(store.device_by_key([7; 32]).await.unwrap(), None);
    assert_eq!(store.devices().await.unwrap().len(), 1);

    // One alert per host, outcome, source address and day: the three refusals are one, the
    // hold and the replacement one each; the new host, its own key and the approvals none.
    let mut alerts: Vec<String> = store
        .deliveries(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == takeover)
        .map(|d| d.event_id)
        .collect();
    alerts.sort();
    alerts.dedup();
    assert_eq!(alerts.len(), 3, "{alerts:?}");

    let audit = store.audit(0, 100).await.unwrap();
    let actions: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| (e.record.action.as_str(), e.record.subject.as_str(), e.record.actor.as_str()))
        .collect();
    let by_agent = "enroll@192.0.2.7";
    assert_eq!(
        actions,
        [
            ("device.takeover_refused", "h1", by_agent),
            ("device.takeover_refused", "h1", by_agent),
            ("device.reenroll", "h1", by_agent),
            ("device.reenroll_held", "h1", by_agent),
            ("device.reenroll_approve", "h1", "ann"),
            ("device.reenroll", "h1", by_agent),
            ("device.takeover_refused", "h1", by_agent),
            ("device.reenroll_approve", "h1", "ann"),
            ("device.reenroll", "h1", by_agent),
            ("device.reenroll", "h1", by_agent),
        ]
    );
    let after: serde_json::Value =
        serde_json::from_str(audit[1].record.after.as_deref().unwrap()).unwrap();
    assert_eq!(after["presented_previous_key"], true);
    assert_eq!(after["policy"], "require_key");
    let admitted = |i: usize| -> String {
        let v: serde_json::Value =
            serde_json::from_str(audit[i].record.after.as_deref().unwrap()).unwrap();
        v["admitted_by"].as_str().unwrap().to_owned()
    };
    assert_eq!([admitted(2), admitted(5), admitted(9)], ["node_key", "approved", "replace_policy"]);
}

/// Issue 19: an agent proposes its node key and saves it before it asks. When the answer is
/// lost, the retry carries the same key, which is now the host's current key: under
/// `require_key` that proves the host id, the device stays the same and the key keeps working.
/// Another machine with the same host id and a key of its own is still refused.
pub(crate) async fn an_enrollment_retried_with_its_own_proposed_key_is_let_in(store: impl Store) {
    let d = match store.enroll_checked(attempt("h1", 1, None, ReenrollPolicy::RequireKey)).await {
        Ok(EnrollOutcome::Enrolled { device, how: Admission::New }) => device,
        other => panic!("expected a new enrollment, got {other:?}"),
    };
    let retry = store.enroll_checked(attempt("h1", 1, None, ReenrollPolicy::RequireKey)).await;
    assert_eq!(
        retry.unwrap(),
        EnrollOutcome::Enrolled { device: d, how: Admission::NodeKey },
        "the retry proves the host id with the key it proposed the first time"
    );
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), Some(d));
    assert_eq!(store.devices().await.unwrap().len(), 1);
    let other = store.enroll_checked(attempt("h1", 2, None, ReenrollPolicy::RequireKey)).await;
    assert_eq!(other.unwrap(), EnrollOutcome::Refused);
    assert_eq!(store.device_by_key([1; 32]).await.unwrap(), Some(d));
    assert_eq!(store.device_by_key([2; 32]).await.unwrap(), None);
}

/// Issue 14 item 3: under `separate`, a second machine with a known host id (a clone) is
/// enrolled as a device of its own, flagged, and neither evicts the other; each re-enrolls
/// with its own key as itself.
pub(crate) async fn cloned_machines_sharing_a_host_id_stay_distinct_devices(store: impl Store) {
    use ReenrollPolicy::Separate;
    let id = |o: EnrollOutcome| match o {
        EnrollOutcome::Enrolled { device, how } => (device, how),
        other => panic!("expected enrolled, got {other:?}"),
    };
    let (golden, _) = id(store.enroll_checked(attempt("img", 1, None, Separate)).await.unwrap());
    let (clone2, how) = id(store.enroll_checked(attempt("img", 2, None, Separate)).await.unwrap());
    assert_eq!(how, Admission::Duplicate);
    let (clone3, _) = id(store.enroll_checked(attempt("img", 3, None, Separate)).await.unwrap());
    assert!(golden != clone2 && clone2 != clone3 && golden != clone3);
    for (key, device) in [(1, golden), (2, clone2), (3, clone3)] {
        assert_eq!(store.device_by_key([key; 32]).await.unwrap(), Some(device), "key {key}");
    }
    // A clone re-enrolling with its own key stays itself; so does the original.
    let (again, how) =
        id(store.enroll_checked(attempt("img", 4, Some(2), Separate)).await.unwrap());
    assert_eq!((again, how), (clone2, Admission::NodeKey));
    let (again, _) = id(store.enroll_checked(attempt("img", 5, Some(1), Separate)).await.unwrap());
    assert_eq!(again, golden);
    let devices = store.devices().await.unwrap();
    let listed: Vec<(&str, Option<&str>)> =
        devices.iter().map(|d| (d.device.host_id.as_str(), d.duplicate_of.as_deref())).collect();
    assert_eq!(listed, [("img", None), ("img#2", Some("img")), ("img#3", Some("img"))]);
    let audit = store.audit(0, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "device.duplicate_host_id",
            "device.duplicate_host_id",
            "device.reenroll",
            "device.reenroll"
        ]
    );
    let after: serde_json::Value =
        serde_json::from_str(audit[0].record.after.as_deref().unwrap()).unwrap();
    assert_eq!(after["enrolled_as"], "img#2");
}

pub(crate) async fn replayed_batch_counts_once(store: impl Store) {
    let d = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "", 0, 5)]);
    assert_eq!(store.ingest(d, b.clone(), 200).await.unwrap(), IngestOutcome::Stored);
    assert_eq!(store.ingest(d, b, 300).await.unwrap(), IngestOutcome::Duplicate);
    assert_eq!(total(&store, "openai.chatgpt").await, 5);
    let devices = store.devices().await.unwrap();
    assert_eq!((devices[0].dropped_sightings, devices[0].evicted_sightings), (1, 2));
}

pub(crate) async fn same_batch_id_from_two_devices_counts_twice(store: impl Store) {
    let d1 = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", None), [2; 32], 100).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "", 0, 5)]);
    store.ingest(d1, b.clone(), 200).await.unwrap();
    store.ingest(d2, b, 200).await.unwrap();
    assert_eq!(total(&store, "openai.chatgpt").await, 10);
}

pub(crate) async fn sightings_aggregate_per_key_and_window(store: impl Store) {
    let d = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    store
        .ingest(d, batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "u1", 0, 2)]), 1)
        .await
        .unwrap();
    let mut later = sighting("openai.chatgpt", "chatgpt.com", "u1", 0, 3);
    later.first_seen = UnixSecs(0);
    later.last_seen = UnixSecs(50);
    store.ingest(d, batch("b2", vec![later]), 2).await.unwrap();
    store
        .ingest(d, batch("b3", vec![sighting("openai.chatgpt", "chatgpt.com", "u2", 3600, 1)]), 3)
        .await
        .unwrap();
    let (sources, products) = store.usage(UsageFilter::default()).await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(
        (sources[0].first_seen, sources[0].last_seen, sources[0].count),
        (UnixSecs(0), UnixSecs(3610), 6)
    );
    assert_eq!((products[0].devices, products[0].users), (1, 2));
    let devices = store.product_devices("openai.chatgpt".into()).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].users, vec!["u1".to_owned(), "u2".to_owned()]);
    assert_eq!(devices[0].count, 6);
}

pub(crate) async fn usage_filters_by_time_kind_and_product(store: impl Store) {
    let d = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    store
        .ingest(
            d,
            batch(
                "b1",
                vec![
                    sighting("openai.chatgpt", "chatgpt.com", "", 0, 1),
                    sighting("anthropic.claude", "claude.ai", "", 7200, 1),
                ],
            ),
            1,
        )
        .await
        .unwrap();
    let f = |since: Option<i64>, until: Option<i64>| UsageFilter {
        since: since.map(UnixSecs),
        until: until.map(UnixSecs),
        ..UsageFilter::default()
    };
    let (s, _) = store.usage(f(Some(7000), None)).await.unwrap();
    assert_eq!(s.iter().map(|s| s.product.as_str()).collect::<Vec<_>>(), ["anthropic.claude"]);
    let (s, _) = store.usage(f(None, Some(100))).await.unwrap();
    assert_eq!(s.iter().map(|s| s.product.as_str()).collect::<Vec<_>>(), ["openai.chatgpt"]);
    let (s, _) = store
        .usage(UsageFilter { kind: Some("tls_sni".into()), ..UsageFilter::default() })
        .await
        .unwrap();
    assert!(s.is_empty());
}

pub(crate) async fn heartbeat_is_listed_with_the_device(store: impl Store) {
    let d = store.enroll(device("h1", Some("a@example.com")), [1; 32], 100).await.unwrap();
    let health = Health {
        received_at: UnixSecs(500),
        agent_version: "0.2.0".into(),
        catalog_version: 3,
        interfaces_json: "[]".into(),
        packets: 10,
        drops: 1,
        spool_depth: 2,
        evictions: 0,
        last_scan: Some(UnixSecs(400)),
    };
    store.heartbeat(d, health.clone()).await.unwrap();
    store.heartbeat(d, Health { packets: 20, ..health }).await.unwrap();
    let devices = store.devices().await.unwrap();
    let h = devices[0].health.as_ref().unwrap();
    assert_eq!(h.packets, 20);
    assert_eq!(devices[0].device.agent_version, "0.2.0");
    assert_eq!(devices[0].last_contact, UnixSecs(500));
}

pub(crate) async fn review_change_is_audited_with_before_and_after(store: impl Store) {
    let (r, audit) = review::decide(
        "openai.chatgpt",
        review::Decision::new(ReviewStatus::UnderReview, "check".into()),
        "sec",
        10,
    );
    assert_eq!(store.set_review(r, audit).await.unwrap(), None);
    let (r, audit) = review::decide(
        "openai.chatgpt",
        review::Decision::new(ReviewStatus::Sanctioned, "ok".into()),
        "sec",
        20,
    );
    let before = store.set_review(r, audit).await.unwrap().unwrap();
    assert_eq!(before.status, "under_review");
    let current = store.review("openai.chatgpt".into()).await.unwrap().unwrap();
    assert_eq!(current.status, "sanctioned");
    let log = store.audit(0, 100).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].record.action, "review.set");
    assert!(log[1].record.before.as_deref().unwrap().contains("under_review"));
    assert!(log[1].record.after.as_deref().unwrap().contains("sanctioned"));
    assert!(log[0].id < log[1].id);
    assert_eq!(store.audit(log[0].id, 100).await.unwrap().len(), 1);
}

pub(crate) async fn tokens_are_created_once_revoked_once_and_audited(store: impl Store) {
    let t = Token {
        name: "sec".into(),
        role: Role::Security,
        created_at: UnixSecs(5),
        revoked_at: None,
    };
    store.create_token(t.clone(), [9; 32], review::token_created(&t, "cli")).await.unwrap();
    let again = store.create_token(t.clone(), [8; 32], review::token_created(&t, "cli")).await;
    assert!(matches!(again, Err(StoreError::Exists { .. })), "{again:?}");
    assert_eq!(store.token_by_hash([9; 32]).await.unwrap(), Some(t.clone()));
    assert_eq!(store.token_by_hash([8; 32]).await.unwrap(), None);
    let before = store.revoke_token("sec".into(), 50, review::token_revoked("cli", 50)).await;
    assert_eq!(before.unwrap(), Some(t));
    assert_eq!(
        store.revoke_token("sec".into(), 60, review::token_revoked("cli", 60)).await.unwrap(),
        None
    );
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed[0].revoked_at, Some(UnixSecs(50)));
    let log = store.audit(0, 100).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(actions, ["token.create", "token.revoke"]);
}

pub(crate) async fn migrations_are_idempotent_on_reopen(store: impl Store) {
    // The harness reopens the same database; the open ran the migrations a second time.
    store.ping().await.unwrap();
    assert!(store.tokens().await.unwrap().is_empty());
}

pub(crate) fn expense(key: &str, product: Option<&str>, at: i64, amount: i64) -> ExpenseLine {
    ExpenseLine {
        source: "ramp".into(),
        dedupe_key: key.into(),
        file: "ramp.csv".into(),
        line: 2,
        occurred_at: UnixSecs(at),
        amount_minor: amount,
        currency: "USD".into(),
        descriptor: "OPENAI *CHATGPT SUBSCR".into(),
        merchant: "OpenAI".into(),
        payer_email: "ann@example.com".into(),
        payer_name: "Ann Lee".into(),
        department: "Sales".into(),
        candidate: product.is_none(),
        candidate_reason: String::new(),
        product: product.map(str::to_owned),
    }
}

fn spend(key: &str, product: Option<&str>, at: i64, nanos: i64) -> GatewaySpend {
    GatewaySpend {
        source: "litellm".into(),
        dedupe_key: key.into(),
        file: "spend.csv".into(),
        line: 2,
        period_start: UnixSecs(at),
        provider: "openai".into(),
        model: "gpt-4o".into(),
        team: "platform".into(),
        user: "bob@example.com".into(),
        api_key: "k1".into(),
        tags: String::new(),
        input_tokens: 10,
        output_tokens: 5,
        cost_nanos: nanos,
        currency: "USD".into(),
        product: product.map(str::to_owned),
    }
}

pub(crate) async fn expense_import_twice_counts_each_line_once(store: impl Store) {
    // A candidate of a shared descriptor keeps its reason (issue 17).
    let mut shared = expense("id:2", None, 2_000, 1_500);
    shared.candidate_reason = "GitHub bills its plans and Copilot under one name".into();
    let lines = vec![
        expense("id:1", Some("openai.chatgpt"), 1_000, 2_000),
        shared.clone(),
        // A repeated key inside one import counts once too.
        shared.clone(),
    ];
    let first = store.add_expenses(lines.clone(), 10).await.unwrap();
    assert_eq!(first, ImportCounts { inserted: 2, duplicates: 1, mapped: 0 });
    let second = store.add_expenses(lines, 20).await.unwrap();
    assert_eq!(second, ImportCounts { inserted: 0, duplicates: 3, mapped: 0 });
    let stored = store.expenses(None).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], expense("id:1", Some("openai.chatgpt"), 1_000, 2_000));
    assert_eq!(stored[1], shared);
    assert_eq!(store.expenses(Some(1_500)).await.unwrap().len(), 1);
}

pub(crate) async fn same_dedupe_key_from_two_sources_is_two_lines(store: impl Store) {
    let mut other = expense("id:1", Some("openai.chatgpt"), 1_000, 2_000);
    other.source = "brex".into();
    let lines = vec![expense("id:1", Some("openai.chatgpt"), 1_000, 2_000), other];
    let counts = store.add_expenses(lines, 10).await.unwrap();
    assert_eq!(counts.inserted, 2);
}

pub(crate) async fn gateway_spend_is_idempotent_and_summed_per_day(store: impl Store) {
    let day = 19_000 * 86_400;
    let rows = vec![
        spend("id:a", Some("openai.api"), day + 10, 1_500),
        spend("id:b", Some("openai.api"), day + 20, 2_500),
        spend("id:c", Some("openai.api"), day + 86_400, 7),
        spend("id:d", None, day + 30, 1),
    ];
    let counts = store.add_gateway_spend(rows.clone(), 5).await.unwrap();
    assert_eq!(counts, ImportCounts { inserted: 4, duplicates: 0, mapped: 0 });
    let again = store.add_gateway_spend(rows, 6).await.unwrap();
    assert_eq!(again, ImportCounts { inserted: 0, duplicates: 4, mapped: 0 });
    let totals = store.gateway_totals(None).await.unwrap();
    let first_day: Vec<_> = totals.iter().filter(|t| t.day == UnixSecs(day)).collect();
    assert_eq!(first_day.len(), 2);
    let api = first_day.iter().find(|t| t.product.as_deref() == Some("openai.api")).unwrap();
    assert_eq!((api.cost_nanos, api.tokens, api.rows), (4_000, 30, 2));
    assert_eq!(store.gateway_totals(Some(day + 86_400)).await.unwrap().len(), 1);
}

pub(crate) async fn gateway_chunk_with_some_keys_stored_counts_the_new_ones(store: impl Store) {
    let day = 19_000 * 86_400;
    let row = |key: &str| spend(key, Some("openai.api"), day, 1);
    let first = store.add_gateway_spend(vec![row("id:a"), row("id:b")], 5).await.unwrap();
    assert_eq!(first, ImportCounts { inserted: 2, duplicates: 0, mapped: 0 });
    // New first key, a stored key later, and a key repeated within the chunk.
    let rows = vec![row("id:c"), row("id:a"), row("id:d"), row("id:d")];
    let second = store.add_gateway_spend(rows, 6).await.unwrap();
    assert_eq!(second, ImportCounts { inserted: 2, duplicates: 2, mapped: 0 });
    let totals = store.gateway_totals(None).await.unwrap();
    assert_eq!(totals.iter().map(|t| t.rows).sum::<i64>(), 4);
}

pub(crate) async fn gateway_totals_place_users_by_directory_in_order(store: impl Store) {
    let day = 19_000 * 86_400;
    let person = |email: &str, department: &str| Person {
        email: email.into(),
        name: email.into(),
        department: department.into(),
        manager: None,
    };
    // As the people import leaves them: ASCII letters lowercased, others as given.
    let people = vec![
        person("bob@example.com", "Research"),
        person("eve@example.com", ""),
        person("Åsa@example.com", "Legal"),
    ];
    store.upsert_people(people).await.unwrap();
    let with = |key: &str, product: Option<&str>, at: i64, user: &str, team: &str| {
        let mut g = spend(key, product, at, 1);
        (g.user, g.team) = (user.into(), team.into());
        g
    };
    let rows = vec![
        // The directory's department, matched by the email lowercased.
        with("id:1", Some("openai.api"), day + 86_400, "Bob@Example.com", "platform"),
        with("id:2", Some("openai.api"), day + 86_400, "bob@example.com", "data"),
        // An empty department, or a user not in the directory: the gateway's team.
        with("id:3", Some("openai.api"), day + 5, "eve@example.com", "platform"),
        with("id:4", Some("openai.api"), day + 6, "zed@example.com", "data"),
        with("id:5", None, day + 7, "", "platform"),
        // Lowercased the same way on both backends: only the ASCII letters.
        with("id:6", Some("openai.api"), day + 2 * 86_400, "ÅSA@EXAMPLE.COM", "data"),
    ];
    store.add_gateway_spend(rows, 5).await.unwrap();
    let totals: Vec<_> = store
        .gateway_totals(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.day.get(), t.product, t.department, t.rows))
        .collect();
    let api = Some("openai.api".to_owned());
    assert_eq!(
        totals,
        vec![
            (day, None, "platform".to_owned(), 1),
            (day, api.clone(), "data".to_owned(), 1),
            (day, api.clone(), "platform".to_owned(), 1),
            (day + 86_400, api.clone(), "Research".to_owned(), 2),
            (day + 2 * 86_400, api, "Legal".to_owned(), 1),
        ]
    );
}

pub(crate) async fn people_upsert_counts_changes_only(store: impl Store) {
    let ann = Person {
        email: "ann@example.com".into(),
        name: "Ann Lee".into(),
        department: "Sales".into(),
        manager: None,
    };
    let mut bob = ann.clone();
    bob.email = "bob@example.com".into();
    bob.manager = Some("ann@example.com".into());
    let c = store.upsert_people(vec![ann.clone(), bob.clone()]).await.unwrap();
    assert_eq!(c, ImportCounts { inserted: 2, duplicates: 0, mapped: 0 });
    let mut moved = ann.clone();
    moved.department = "Engineering".into();
    let c = store.upsert_people(vec![moved.clone(), bob.clone()]).await.unwrap();
    assert_eq!(c, ImportCounts { inserted: 1, duplicates: 1, mapped: 0 });
    assert_eq!(store.people().await.unwrap(), vec![moved, bob]);
}

pub(crate) async fn scim_writes_are_versioned_unique_and_deactivate_people(store: impl Store) {
    use aiscout_collector::model::{ScimPerson, ScimResource, ScimWrite};
    let person = |email: &str, dept: &str, active: bool| ScimPerson {
        person: Person {
            email: email.into(),
            name: "Ann".into(),
            department: dept.into(),
            manager: None,
        },
        active,
        previous_email: None,
    };
    let resource = |id: &str, version: i64| ScimResource {
        kind: "User",
        id: id.into(),
        resource: format!("{{\"v\":{version}}}"),
        version,
        created_at: UnixSecs(10),
        modified_at: UnixSecs(10 + version),
    };
    let audit = |action: &str, id: &str| AuditRecord {
        at: UnixSecs(20),
        actor: "okta".into(),
        action: action.into(),
        subject: format!("User/{id}"),
        before: None,
        after: None,
    };
    let write = |id: &str, version: i64, name: &str, p: Option<ScimPerson>| ScimWrite {
        resource: resource(id, version),
        name: name.into(),
        person: p,
        audit: audit("scim.write", id),
    };
    let w = write("u1", 1, "ann@example.com", Some(person("ann@example.com", "Sales", true)));
    assert!(store.scim_write(w).await.unwrap());
    // The same name under another id is taken; a stale version changes nothing.
    let taken = store.scim_write(write("u2", 1, "ann@example.com", None)).await;
    assert!(matches!(taken, Err(StoreError::Exists { .. })), "{taken:?}");
    assert!(!store.scim_write(write("u1", 3, "ann@example.com", None)).await.unwrap());
    let w = write("u1", 2, "ann@example.com", Some(person("ann@example.com", "R&D", false)));
    assert!(store.scim_write(w).await.unwrap());
    assert_eq!(store.scim_get("User", "u1".into()).await.unwrap(), Some(resource("u1", 2)));
    assert_eq!(store.scim_get("Group", "u1".into()).await.unwrap(), None);
    let people = store.people().await.unwrap();
    assert_eq!(people.len(), 1);
    assert_eq!(people[0].department, "R&D");
    assert_eq!(store.people_active().await.unwrap(), vec![("ann@example.com".into(), false)]);
    let w = write("u3", 1, "bob@example.com", Some(person("bob@example.com", "Ops", true)));
    assert!(store.scim_write(w).await.unwrap());
    let (total, page) = store.scim_list("User", None, 1, 5).await.unwrap();
    assert_eq!((total, page.len(), page[0].id.as_str()), (2, 1, "u3"));
    let (total, page) =
        store.scim_list("User", Some("bob@example.com".into()), 0, 5).await.unwrap();
    assert_eq!((total, page[0].id.as_str()), (1, "u3"));
    let bob = Some("bob@example.com".into());
    assert!(store.scim_delete("User", "u3".into(), bob, audit("scim.delete", "u3")).await.unwrap());
    assert!(
        !store.scim_delete("User", "u3".into(), None, audit("scim.delete", "u3")).await.unwrap()
    );
    // Each change that was written has its audit record, in its transaction; a refused or
    // stale write and a delete of nothing have none.
    let logged: Vec<(String, String)> = store
        .audit(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action.starts_with("scim."))
        .map(|e| (e.record.action, e.record.subject))
        .collect();
    let expected =
        [("scim.write", "u1"), ("scim.write", "u1"), ("scim.write", "u3"), ("scim.delete", "u3")];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(a, id)| ((*a).to_owned(), format!("User/{id}"))).collect();
    assert_eq!(logged, expected);
    // Deleted from SCIM, kept in the directory as an inactive seat.
    assert_eq!(store.people().await.unwrap().len(), 2);
    assert!(store.people_active().await.unwrap().iter().all(|(_, active)| !active));
}

pub(crate) async fn owner_last_use_joins_devices_to_sightings(store: impl Store) {
    let d = store.enroll(device("h1", Some("Ann@Example.com")), [1; 32], 100).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 5)]);
    store.ingest(d, b, 200).await.unwrap();
    assert!(store.owner_last_use(vec!["cursor.cursor".into()]).await.unwrap().is_empty());
    let uses = store.owner_last_use(vec!["openai.chatgpt".into()]).await.unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].owner_email, "ann@example.com");
    assert_eq!(uses[0].last_seen, UnixSecs(10));
    let per_device = store.device_sightings(None).await.unwrap();
    assert_eq!(per_device.len(), 1);
    assert_eq!((per_device[0].kind.as_str(), per_device[0].count), ("dns", 5));
    assert!(store.device_sightings(Some(11)).await.unwrap().is_empty());
}

/// Usage read through the rollups and read from the sightings themselves (a `since` bound
/// before all time, or an `until` after it, forces the second path).
async fn both_ways(store: &impl Store, filter: UsageFilter) {
    let reference = match filter.since {
        None => UsageFilter { since: Some(UnixSecs(i64::MIN)), ..filter.clone() },
        Some(_) => UsageFilter { until: Some(UnixSecs(i64::MAX)), ..filter.clone() },
    };
    let fast = store.usage(filter.clone()).await.unwrap();
    let slow = store.usage(reference).await.unwrap();
    assert_eq!(fast, slow, "rollups disagree with the sightings for {filter:?}");
}

/// [`both_ways`] for the filter as given and from each UTC day of the generated data.
async fn both_ways_by_day(store: &impl Store, filter: UsageFilter) {
    both_ways(store, filter.clone()).await;
    if filter.department.is_none() {
        for day in 1..4 {
            both_ways(store, UsageFilter { since: Some(UnixSecs(day * 86_400)), ..filter.clone() })
                .await;
        }
    }
}

pub(crate) async fn rollups_agree_with_the_sightings(store: impl Store + Clone) {
    let products = ["openai.chatgpt", "anthropic.claude", "cursor.editor"];
    let kinds = ["dns", "tls_sni", "app"];
    let users = ["", "ann", "bob", "cy"];
    let mut devices = Vec::new();
    for i in 0..6 {
        let email = format!("p{}@example.com", i % 4);
        let owner = if i == 5 { None } else { Some(email.as_str()) };
        devices.push(store.enroll(device(&format!("h{i}"), owner), [i; 32], 100).await.unwrap());
    }
    let people: Vec<Person> = (0..3)
        .map(|i| Person {
            email: format!("p{i}@example.com"),
            name: format!("P {i}"),
            department: format!("dept-{}", i % 2),
            manager: None,
        })
        .collect();
    store.upsert_people(people).await.unwrap();
    // A small deterministic generator: batches land in a fixed but mixed order, some are
    // replayed, and folds happen between some of them and concurrently with others.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        usize::try_from(x % n as u64).unwrap()
    };
    let mut batches = Vec::new();
    for b in 0..60 {
        let d = devices[next(devices.len())];
        let mut sightings = Vec::new();
        for _ in 0..1 + next(6) {
            let mut s = sighting(
                products[next(3)],
                &format!("v{}", next(3)),
                users[next(4)],
                // Half-day windows from day 1: the sightings span three UTC days.
                86_400 + (next(5) as i64) * 43_200,
                1 + next(9) as i64,
            );
            s.kind = kinds[next(3)].parse().unwrap();
            s.first_seen = s.first_seen.add_secs(next(100) as i64);
            s.last_seen = s.last_seen.add_secs(next(1000) as i64);
            sightings.push(s);
        }
        // One key per batch, as the agent aggregates.
        sightings.sort_by(|a, b| {
            (&a.product, a.kind, &a.value, &a.user, a.window)
                .cmp(&(&b.product, b.kind, &b.value, &b.user, b.window))
        });
        sightings.dedup_by(|a, b| {
            (&a.product, a.kind, &a.value, &a.user, a.window)
                == (&b.product, b.kind, &b.value, &b.user, b.window)
        });
        batches.push((d, batch(&format!("b{b}"), sightings)));
    }
    for (i, (d, b)) in batches.iter().enumerate() {
        store.ingest(*d, b.clone(), 1000).await.unwrap();
        match i % 7 {
            0 => {
                store.fold().await.unwrap();
            }
            3 => both_ways(&store, UsageFilter::default()).await,
            5 => {
                // A replay changes nothing.
                store.ingest(*d, b.clone(), 1001).await.unwrap();
            }
            _ => {}
        }
    }
    // Folds racing ingests: every acknowledged batch is folded exactly once.
    let mut tasks = Vec::new();
    for (i, (d, b)) in batches.iter().enumerate().take(20) {
        let store = store.clone();
        let (d, mut b) = (*d, b.clone());
        b.batch_id = format!("again-{i}");
        tasks.push(tokio::spawn(async move {
            store.ingest(d, b, 2000).await.unwrap();
            store.fold().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    both_ways_by_day(&store, UsageFilter::default()).await;
    for p in products {
        both_ways_by_day(&store, UsageFilter { product: Some(p.into()), ..UsageFilter::default() })
            .await;
        for k in kinds {
            both_ways_by_day(
                &store,
                UsageFilter {
                    product: Some(p.into()),
                    kind: Some(k.into()),
                    ..UsageFilter::default()
                },
            )
            .await;
        }
    }
    for k in kinds {
        both_ways_by_day(&store, UsageFilter { kind: Some(k.into()), ..UsageFilter::default() })
            .await;
    }
    for department in ["dept-0", "dept-1", "nobody"] {
        for product in [None, Some("openai.chatgpt")] {
            for kind in [None, Some("dns")] {
                let filter = UsageFilter {
                    product: product.map(str::to_owned),
                    kind: kind.map(str::to_owned),
                    department: Some(department.into()),
                    ..UsageFilter::default()
                };
                both_ways_by_day(&store, filter).await;
            }
        }
    }
    let (sources, products) = store.usage(UsageFilter::default()).await.unwrap();
    assert!(sources.len() > 3 && products.len() == 3, "{sources:?}");
    assert!(products.iter().all(|p| p.devices > 0 && !p.departments.is_empty()));
}

/// More pending rows than one SQLite fold transaction takes (50,000): the fold for a read
/// goes on until every row is in, and people changing in between is rebuilt after the last.
pub(crate) async fn large_folds_agree_with_the_sightings(store: impl Store) {
    let mut devices = Vec::new();
    for i in 0..4 {
        let owner = format!("p{i}@example.com");
        devices.push(
            store.enroll(device(&format!("h{i}"), Some(&owner)), [i; 32], 100).await.unwrap(),
        );
    }
    let person = |i: usize, dept: &str| Person {
        email: format!("p{i}@example.com"),
        name: format!("P {i}"),
        department: dept.into(),
        manager: None,
    };
    store.upsert_people((0..4).map(|i| person(i, "dept-a")).collect()).await.unwrap();
    let products = ["openai.chatgpt", "anthropic.claude", "cursor.editor"];
    // 96 batches of 1,000 sightings, each a (product, user, day) of its own: after a fold of
    // the first 32, a department change, then 64,000 pending rows.
    for b in 0..96_usize {
        let sightings = (0..1_000_usize)
            .map(|i| {
                let window = i64::try_from((b + i) % 3).unwrap() * 86_400;
                sighting(products[i % 3], "v", &format!("user-{b}-{i}"), window, 1)
            })
            .collect();
        store.ingest(devices[b % 4], batch(&format!("big-{b}"), sightings), 1_000).await.unwrap();
        if b == 31 {
            store.fold().await.unwrap();
            store.upsert_people(vec![person(1, "dept-b")]).await.unwrap();
        }
    }
    for department in [None, Some("dept-a"), Some("dept-b")] {
        let filter =
            UsageFilter { department: department.map(str::to_owned), ..UsageFilter::default() };
        both_ways_by_day(&store, filter).await;
    }
    let (_, products) = store.usage(UsageFilter::default()).await.unwrap();
    let users: i64 = products.iter().map(|p| p.users).sum();
    assert_eq!(users, 96_000, "every user of every product counted once: {products:?}");
}

pub(crate) async fn rollup_departments_follow_people_and_owners(store: impl Store) {
    let d = store.enroll(device("h1", Some("ann@example.com")), [1; 32], 100).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 5)]);
    store.ingest(d, b, 200).await.unwrap();
    let read = || async {
        let (_, p) = store.usage(UsageFilter::default()).await.unwrap();
        p[0].departments.clone()
    };
    let by_department = || async {
        for department in ["Sales", "Finance", "Legal"] {
            let filter =
                UsageFilter { department: Some(department.into()), ..UsageFilter::default() };
            both_ways(&store, filter).await;
        }
    };
    assert!(read().await.is_empty(), "no directory yet");
    by_department().await;
    let person = |email: &str, dept: &str| Person {
        email: email.into(),
        name: email.into(),
        department: dept.into(),
        manager: None,
    };
    store
        .upsert_people(vec![person("ann@example.com", "Sales"), person("bo@example.com", "Legal")])
        .await
        .unwrap();
    assert_eq!(read().await, ["Sales"]);
    by_department().await;
    store.upsert_people(vec![person("ann@example.com", "Finance")]).await.unwrap();
    assert_eq!(read().await, ["Finance"]);
    by_department().await;
    // The laptop changes hands.
    store.enroll(device("h1", Some("bo@example.com")), [2; 32], 300).await.unwrap();
    assert_eq!(read().await, ["Legal"]);
    by_department().await;
}

pub(crate) async fn installed_items_follow_the_latest_report(store: impl Store) {
    let d = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let change = |value: &str, present: bool, at: i64| InstallChange {
        product: "cursor.editor".into(),
        kind: SightingKind::App,
        value: value.into(),
        user: "ann".into(),
        present,
        at: UnixSecs(at),
        flags: String::new(),
    };
    let send = |id: &str, installs: Vec<InstallChange>| {
        let mut b = batch(id, vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 1)]);
        b.installs = installs;
        b
    };
    let installed = || async {
        let devices = store.product_devices("cursor.editor".into()).await.unwrap();
        devices.first().map(|d| d.installed)
    };
    let mut app = sighting("cursor.editor", "com.todesktop.cursor", "ann", 0, 1);
    app.kind = SightingKind::App;
    let mut b = send("b1", vec![change("com.todesktop.cursor", true, 100)]);
    b.sightings.push(app);
    store.ingest(d, b, 100).await.unwrap();
    assert_eq!(installed().await, Some(Some(true)));
    store
        .ingest(d, send("b2", vec![change("com.todesktop.cursor", false, 200)]), 200)
        .await
        .unwrap();
    assert_eq!(installed().await, Some(Some(false)));
    // A report older than the removal (a spool drained late) changes nothing.
    store
        .ingest(d, send("b3", vec![change("com.todesktop.cursor", true, 150)]), 300)
        .await
        .unwrap();
    assert_eq!(installed().await, Some(Some(false)));
    // Installed again.
    store
        .ingest(d, send("b4", vec![change("com.todesktop.cursor", true, 400)]), 400)
        .await
        .unwrap();
    assert_eq!(installed().await, Some(Some(true)));
    // Seen only on the network: nothing is known about installation.
    let devices = store.product_devices("openai.chatgpt".into()).await.unwrap();
    assert_eq!(devices[0].installed, None);
}

pub(crate) async fn mcp_flags_follow_the_latest_report_of_installed_servers(store: impl Store) {
    let h1 = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let h2 = store.enroll(device("h2", None), [2; 32], 100).await.unwrap();
    let server = |value: &str, present: bool, at: i64, flags: &str| InstallChange {
        product: "anthropic.claude".into(),
        kind: SightingKind::McpServer,
        value: value.into(),
        user: "ann".into(),
        present,
        at: UnixSecs(at),
        flags: flags.into(),
    };
    let send = |id: &str, installs: Vec<InstallChange>| {
        let mut b = batch(id, vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 1)]);
        b.installs = installs;
        b
    };
    let fs = "filesystem: npx -y @modelcontextprotocol/server-filesystem /tmp";
    let shell = "sh: bash -c run";
    assert!(store.mcp_flags().await.unwrap().is_empty(), "nothing reported yet");
    store
        .ingest(
            h1,
            send(
                "b1",
                vec![
                    server(fs, true, 100, "file_write,unpinned_package"),
                    server(shell, true, 100, "shell_exec"),
                    server("quiet: /usr/bin/srv", true, 100, ""),
                ],
            ),
            100,
        )
        .await
        .unwrap();
    store
        .ingest(h2, send("b1", vec![server(fs, true, 110, "file_write,unpinned_package")]), 110)
        .await
        .unwrap();
    let rows = store.mcp_flags().await.unwrap();
    let got: Vec<(&str, Vec<&str>, i64)> = rows
        .iter()
        .map(|r| (r.value.as_str(), r.flags.iter().map(String::as_str).collect(), r.devices))
        .collect();
    assert_eq!(
        got,
        [(fs, vec!["file_write", "unpinned_package"], 2), (shell, vec!["shell_exec"], 1)],
        "a server without flags is not listed; devices are counted"
    );
    // A later report replaces the flags (the version was pinned); a removal drops the server.
    store
        .ingest(
            h1,
            send("b2", vec![server(fs, true, 200, "file_write"), server(shell, false, 200, "")]),
            200,
        )
        .await
        .unwrap();
    // An older report (a spool drained late) changes nothing.
    store.ingest(h1, send("b3", vec![server(shell, true, 150, "shell_exec")]), 300).await.unwrap();
    let rows = store.mcp_flags().await.unwrap();
    let got: Vec<(Vec<&str>, i64)> =
        rows.iter().map(|r| (r.flags.iter().map(String::as_str).collect(), r.devices)).collect();
    assert_eq!(got, [(vec!["file_write"], 1), (vec!["file_write", "unpinned_package"], 1)]);
    assert!(rows.iter().all(|r| r.value == fs && r.product == "anthropic.claude"));
}

fn record(at: i64, actor: &str, action: &str, subject: &str) -> AuditRecord {
    AuditRecord {
        at: UnixSecs(at),
        actor: actor.into(),
        action: action.into(),
        subject: subject.into(),
        before: None,
        after: None,
    }
}

fn session(actor: &str, token: Option<&str>, last_seen: i64, expires_at: i64) -> Session {
    Session {
        actor: actor.into(),
        role: Role::Viewer,
        method: if token.is_some() { "token" } else { "oidc" }.into(),
        token: token.map(str::to_owned),
        csrf: format!("csrf-{actor}"),
        created_at: UnixSecs(100),
        last_seen: UnixSecs(last_seen),
        expires_at: UnixSecs(expires_at),
    }
}

fn actions(log: &[AuditEntry]) -> Vec<(&str, &str, &str)> {
    log.iter()
        .map(|e| (e.record.action.as_str(), e.record.actor.as_str(), e.record.subject.as_str()))
        .collect()
}

pub(crate) async fn sessions_expire_at_their_deadline_and_with_their_token(store: impl Store) {
    let t = Token {
        name: "ann-token".into(),
        role: Role::Viewer,
        created_at: UnixSecs(5),
        revoked_at: None,
    };
    store.create_token(t.clone(), [9; 32], review::token_created(&t, "cli")).await.unwrap();
    let by_token = session("ann-token", Some("ann-token"), 100, 1_000);
    let by_oidc = session("bob@example.com", None, 100, 1_000);
    let login = |actor: &str| record(100, actor, "session.login", actor);
    store.create_session([1; 32], by_token.clone(), login("ann-token")).await.unwrap();
    store.create_session([2; 32], by_oidc.clone(), login("bob@example.com")).await.unwrap();
    // A hash already in use is refused, and writes no audit record.
    let again = store.create_session([1; 32], by_oidc.clone(), login("mallory")).await;
    assert!(matches!(again, Err(StoreError::Exists { what: "session", .. })), "{again:?}");
    assert_eq!(store.session([1; 32], 999).await.unwrap(), Some(by_token.clone()));
    assert_eq!(store.session([2; 32], 999).await.unwrap(), Some(by_oidc.clone()));
    assert_eq!(store.session([3; 32], 999).await.unwrap(), None);
    // The absolute expiry is the first instant the session is gone.
    assert_eq!(store.session([1; 32], 1_000).await.unwrap(), None);
    // A request moves last_seen, and nothing else.
    store.touch_session([1; 32], 300).await.unwrap();
    store.touch_session([3; 32], 300).await.unwrap();
    let touched = Session { last_seen: UnixSecs(300), ..by_token };
    assert_eq!(store.session([1; 32], 400).await.unwrap(), Some(touched));
    assert_eq!(store.session([2; 32], 400).await.unwrap(), Some(by_oidc.clone()));
    // Revoking the token ends the sessions signed in with it; others stay.
    store.revoke_token("ann-token".into(), 500, review::token_revoked("cli", 500)).await.unwrap();
    assert_eq!(store.session([1; 32], 600).await.unwrap(), None);
    assert_eq!(store.session([2; 32], 600).await.unwrap(), Some(by_oidc));
    let log = store.audit(0, 100).await.unwrap();
    assert_eq!(
        actions(&log),
        [
            ("token.create", "cli", "ann-token"),
            ("session.login", "ann-token", "ann-token"),
            ("session.login", "bob@example.com", "bob@example.com"),
            ("token.revoke", "cli", "ann-token"),
        ]
    );
    assert_eq!(log[1].record, login("ann-token"));
}

pub(crate) async fn session_of_a_token_that_does_not_exist_is_no_session(store: impl Store) {
    let s = session("ghost", Some("ghost"), 100, 1_000);
    store.create_session([1; 32], s, record(100, "ghost", "session.login", "ghost")).await.unwrap();
    assert_eq!(store.session([1; 32], 200).await.unwrap(), None);
}

pub(crate) async fn purge_removes_idle_and_expired_sessions_only(store: impl Store) {
    let login = || record(100, "cli", "session.login", "x");
    store.create_session([1; 32], session("idle", None, 100, 10_000), login()).await.unwrap();
    store.create_session([2; 32], session("expiring", None, 500, 600), login()).await.unwrap();
    store.create_session([3; 32], session("active", None, 500, 10_000), login()).await.unwrap();
    // At 600 the second has expired; the first's last request (100) is not before 100.
    assert_eq!(store.purge_sessions(600, 100).await.unwrap(), 1);
    assert_eq!(store.session([2; 32], 0).await.unwrap(), None);
    assert!(store.session([1; 32], 700).await.unwrap().is_some());
    // A request keeps a session from going idle.
    store.touch_session([1; 32], 650).await.unwrap();
    assert_eq!(store.purge_sessions(700, 600).await.unwrap(), 1);
    assert!(store.session([1; 32], 700).await.unwrap().is_some());
    assert_eq!(store.session([3; 32], 700).await.unwrap(), None);
    assert_eq!(store.purge_sessions(700, 600).await.unwrap(), 0);
    assert_eq!(store.purge_sessions(10_000, 0).await.unwrap(), 1);
    assert_eq!(store.session([1; 32], 700).await.unwrap(), None);
}

pub(crate) async fn ending_a_session_is_audited_only_when_there_was_one(store: impl Store) {
    let login = |actor: &str| record(100, actor, "session.login", actor);
    let logout = |actor: &str| Some(record(200, actor, "session.logout", actor));
    store.create_session([1; 32], session("ann", None, 100, 1_000), login("ann")).await.unwrap();
    store.create_session([2; 32], session("bob", None, 100, 1_000), login("bob")).await.unwrap();
    assert!(store.end_session([1; 32], logout("ann")).await.unwrap());
    assert_eq!(store.session([1; 32], 150).await.unwrap(), None);
    assert!(!store.end_session([1; 32], logout("ann")).await.unwrap());
    assert!(!store.end_session([7; 32], logout("nobody")).await.unwrap());
    // Without a record (an expired session swept away, say) nothing is appended.
    assert!(store.end_session([2; 32], None).await.unwrap());
    assert_eq!(store.session([2; 32], 150).await.unwrap(), None);
    let log = store.audit(0, 100).await.unwrap();
    assert_eq!(
        actions(&log),
        [
            ("session.login", "ann", "ann"),
            ("session.login", "bob", "bob"),
            ("session.logout", "ann", "ann")
        ]
    );
    assert_eq!(log[2].record.at, UnixSecs(200));
}

pub(crate) async fn viewer_tokens_round_trip(store: impl Store) {
    let viewer = Token {
        name: "view".into(),
        role: Role::Viewer,
        created_at: UnixSecs(5),
        revoked_at: None,
    };
    let admin =
        Token { name: "adm".into(), role: Role::Admin, created_at: UnixSecs(6), revoked_at: None };
    store
        .create_token(viewer.clone(), [1; 32], review::token_created(&viewer, "cli"))
        .await
        .unwrap();
    store.create_token(admin.clone(), [2; 32], review::token_created(&admin, "cli")).await.unwrap();
    assert_eq!(store.token_by_hash([1; 32]).await.unwrap(), Some(viewer.clone()));
    assert_eq!(store.tokens().await.unwrap(), vec![admin, viewer]);
    let log = store.audit(0, 100).await.unwrap();
    let after: serde_json::Value =
        serde_json::from_str(log[0].record.after.as_deref().unwrap()).unwrap();
    assert_eq!(after["role"], "viewer");
}

pub(crate) async fn review_owner_alternative_and_renewal_round_trip_and_are_audited(
    store: impl Store,
) {
    let renewal = UnixSecs(20_000 * 86_400);
    let decision = review::Decision {
        status: ReviewStatus::Sanctioned,
        note: "enterprise plan".into(),
        business_owner: "ann@example.com".into(),
        alternative: String::new(),
        renewal: Some(renewal),
    };
    let (r, audit) = review::decide("openai.chatgpt", decision, "sec", 10);
    assert_eq!(store.set_review(r, audit).await.unwrap(), None);
    let first = Review {
        product: "openai.chatgpt".into(),
        status: "sanctioned".into(),
        note: "enterprise plan".into(),
        reviewed_by: "sec".into(),
        reviewed_at: UnixSecs(10),
        business_owner: "ann@example.com".into(),
        alternative: String::new(),
        renewal: Some(renewal),
    };
    assert_eq!(store.review("openai.chatgpt".into()).await.unwrap(), Some(first.clone()));
    let decision = review::Decision {
        status: ReviewStatus::Unsanctioned,
        note: "use the enterprise one".into(),
        business_owner: String::new(),
        alternative: "openai.chatgpt-enterprise".into(),
        renewal: None,
    };
    let (r, audit) = review::decide("openai.chatgpt", decision, "admin", 20);
    let second = r.clone();
    assert_eq!(store.set_review(r, audit).await.unwrap(), Some(first));
    assert_eq!(store.reviews().await.unwrap(), vec![second.clone()]);
    assert_eq!(second.alternative, "openai.chatgpt-enterprise");
    assert_eq!((second.business_owner.as_str(), second.renewal), ("", None));
    let log = store.audit(0, 100).await.unwrap();
    let json = |s: Option<&str>| serde_json::from_str::<serde_json::Value>(s.unwrap()).unwrap();
    let before = json(log[1].record.before.as_deref());
    let after = json(log[1].record.after.as_deref());
    assert_eq!(before["business_owner"], "ann@example.com");
    assert_eq!(before["renewal"], renewal.get());
    assert_eq!(after["alternative"], "openai.chatgpt-enterprise");
    assert_eq!(after["renewal"], serde_json::Value::Null);
}

pub(crate) async fn audit_query_filters_newest_first_and_pages(store: impl Store) {
    let rows = [(10, "ann", "p1"), (20, "bob", "p1"), (30, "ann", "p2"), (40, "ann", "p1")];
    for (i, (at, actor, subject)) in rows.into_iter().enumerate() {
        let hash = [u8::try_from(i).unwrap(); 32];
        store
            .rotate_enroll_secret(hash, at, record(at, actor, "test.write", subject))
            .await
            .unwrap();
    }
    store.rotate_enroll_secret([9; 32], 50, record(50, "bob", "test.write", "p2")).await.unwrap();
    let all = store.audit(0, 100).await.unwrap();
    let id = |n: usize| all[n - 1].id;
    let query = |filter: AuditFilter| {
        let store = &store;
        async move {
            let found = store.audit_query(filter).await.unwrap();
            found.iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let f = |limit| AuditFilter { limit, ..AuditFilter::default() };
    let newest_first = store.audit_query(f(100)).await.unwrap();
    assert_eq!(newest_first, all.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(query(f(100)).await, [id(5), id(4), id(3), id(2), id(1)]);
    let by_actor = |actor: &str| AuditFilter { actor: Some(actor.into()), ..f(100) };
    assert_eq!(query(by_actor("ann")).await, [id(4), id(3), id(1)]);
    assert_eq!(query(by_actor("nobody")).await, Vec::<i64>::new());
    let by_subject = AuditFilter { subject: Some("p1".into()), ..f(100) };
    assert_eq!(query(by_subject.clone()).await, [id(4), id(2), id(1)]);
    // The subject is matched exactly.
    assert_eq!(query(AuditFilter { subject: Some("p".into()), ..f(100) }).await, Vec::<i64>::new());
    let both = AuditFilter { actor: Some("ann".into()), ..by_subject };
    assert_eq!(query(both).await, [id(4), id(1)]);
    assert_eq!(
        query(AuditFilter { since: Some(UnixSecs(30)), ..f(100) }).await,
        [id(5), id(4), id(3)]
    );
    assert_eq!(
        query(AuditFilter { until: Some(UnixSecs(30)), ..f(100) }).await,
        [id(3), id(2), id(1)]
    );
    let window = AuditFilter { since: Some(UnixSecs(20)), until: Some(UnixSecs(40)), ..f(100) };
    assert_eq!(query(window).await, [id(4), id(3), id(2)]);
    // Pages of two, each starting below the last id of the one before.
    assert_eq!(query(f(2)).await, [id(5), id(4)]);
    let page = |before: i64| AuditFilter { before_id: Some(before), ..f(2) };
    assert_eq!(query(page(id(4))).await, [id(3), id(2)]);
    assert_eq!(query(page(id(2))).await, [id(1)]);
    assert_eq!(query(page(id(1))).await, Vec::<i64>::new());
    let ann_page = AuditFilter { actor: Some("ann".into()), before_id: Some(id(4)), ..f(1) };
    assert_eq!(query(ann_page).await, [id(3)]);
    // The limit is clamped to 1..=1000.
    assert_eq!(query(f(0)).await, [id(5)]);
    assert_eq!(query(f(-3)).await, [id(5)]);
    assert_eq!(query(f(i64::MAX)).await.len(), 5);
}

pub(crate) async fn audit_query_returns_at_most_a_thousand_entries(store: impl Store) {
    for at in 0..1_001 {
        store
            .rotate_enroll_secret([1; 32], at, record(at, "admin", "enroll_secret.rotate", "x"))
            .await
            .unwrap();
    }
    let page = store.audit_query(AuditFilter { limit: 5_000, ..AuditFilter::default() }).await;
    let page = page.unwrap();
    assert_eq!(page.len(), 1_000);
    assert_eq!((page[0].record.at, page[999].record.at), (UnixSecs(1_000), UnixSecs(1)));
}

fn import_run(at: i64, kind: &str, file: &str, rows: i64) -> ImportRun {
    ImportRun {
        at: UnixSecs(at),
        actor: "cli".into(),
        kind: kind.parse().unwrap(),
        file: file.into(),
        format: "ramp".into(),
        rows,
        stored: rows - 2,
        duplicates: 1,
        errors: 1,
        error: String::new(),
    }
}

pub(crate) async fn import_history_lists_the_newest_first(store: impl Store) {
    assert!(store.import_runs(10).await.unwrap().is_empty());
    let runs = [
        import_run(300, "expenses", "a.csv", 10),
        // Recorded later with an earlier time: the order is the order of recording.
        import_run(200, "gateway", "b.csv", 20),
        import_run(400, "people", "c.csv", 30),
    ];
    for run in &runs {
        store.record_import(run.clone()).await.unwrap();
    }
    let [a, b, c] = runs;
    assert_eq!(store.import_runs(10).await.unwrap(), vec![c.clone(), b.clone(), a]);
    assert_eq!(store.import_runs(2).await.unwrap(), vec![c, b]);
    assert!(store.import_runs(0).await.unwrap().is_empty());
    assert!(store.import_runs(-1).await.unwrap().is_empty());
}

pub(crate) async fn device_detail_sums_its_own_sightings(store: impl Store) {
    let d1 = store.enroll(device("h1", Some("ann@example.com")), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", None), [2; 32], 100).await.unwrap();
    let health = Health {
        received_at: UnixSecs(500),
        agent_version: "0.2.0".into(),
        catalog_version: 3,
        interfaces_json: "[\"eth0\"]".into(),
        packets: 10,
        drops: 1,
        spool_depth: 2,
        evictions: 0,
        last_scan: Some(UnixSecs(400)),
    };
    store.heartbeat(d1, health).await.unwrap();
    let mut sni = sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 4);
    sni.kind = SightingKind::TlsSni;
    store
        .ingest(
            d1,
            batch(
                "b1",
                vec![
                    sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 2),
                    sighting("openai.chatgpt", "chatgpt.com", "bob", 0, 3),
                    sighting("openai.chatgpt", "api.openai.com", "", 3_600, 1),
                    sighting("anthropic.claude", "claude.ai", "ann", 7_200, 5),
                    sni,
                ],
            ),
            600,
        )
        .await
        .unwrap();
    store
        .ingest(
            d1,
            batch("b2", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 86_400, 7)]),
            700,
        )
        .await
        .unwrap();
    store
        .ingest(d2, batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "", 0, 9)]), 700)
        .await
        .unwrap();
    let devices = store.devices().await.unwrap();
    assert_eq!(store.device("h1".into()).await.unwrap().as_ref(), Some(&devices[0]));
    assert_eq!(store.device("h2".into()).await.unwrap().as_ref(), Some(&devices[1]));
    assert_eq!(devices[0].health.as_ref().map(|h| h.packets), Some(10));
    assert_eq!(devices[1].health, None);
    assert_eq!(store.device("h3".into()).await.unwrap(), None);
    let row = |product: &str, kind: &str, value: &str, first, last, count| DeviceSighting {
        host_id: "h1".into(),
        hostname: "h1-name".into(),
        os: "linux".into(),
        owner_email: Some("ann@example.com".into()),
        product: product.into(),
        kind: kind.parse().unwrap(),
        value: value.into(),
        first_seen: UnixSecs(first),
        last_seen: UnixSecs(last),
        count,
    };
    assert_eq!(
        store.device_products("h1".into()).await.unwrap(),
        vec![
            row("anthropic.claude", "dns", "claude.ai", 7_201, 7_210, 5),
            row("openai.chatgpt", "dns", "api.openai.com", 3_601, 3_610, 1),
            row("openai.chatgpt", "dns", "chatgpt.com", 1, 86_410, 12),
            row("openai.chatgpt", "tls_sni", "chatgpt.com", 1, 10, 4),
        ]
    );
    let h2 = store.device_products("h2".into()).await.unwrap();
    assert_eq!(h2.len(), 1);
    assert_eq!(
        (h2[0].host_id.as_str(), h2[0].owner_email.as_deref(), h2[0].count),
        ("h2", None, 9)
    );
    assert!(store.device_products("h3".into()).await.unwrap().is_empty());
}

pub(crate) async fn product_values_sum_each_value_over_devices_and_windows(store: impl Store) {
    let d1 = store.enroll(device("h1", None), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", None), [2; 32], 100).await.unwrap();
    let app = |value: &str, window, count| {
        let mut s = sighting("openai.chatgpt", value, "", window, count);
        s.kind = SightingKind::App;
        s
    };
    let b1 = vec![
        sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 2),
        sighting("openai.chatgpt", "chatgpt.com", "bob", 0, 3),
        sighting("openai.chatgpt", "api.openai.com", "", 3_600, 1),
        app("com.openai.chat", 0, 1),
        // Other products, one of them with the same value: never counted.
        sighting("anthropic.claude", "claude.ai", "ann", 0, 5),
        sighting("other.product", "chatgpt.com", "ann", 0, 100),
    ];
    store.ingest(d1, batch("b1", b1), 200).await.unwrap();
    // The same window again widens its first and last seen and adds to its count.
    let mut again = sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 4);
    again.first_seen = UnixSecs(0);
    again.last_seen = UnixSecs(50);
    let b2 = vec![again, sighting("openai.chatgpt", "chatgpt.com", "ann", 86_400, 7)];
    store.ingest(d1, batch("b2", b2), 300).await.unwrap();
    let b1 = vec![
        sighting("openai.chatgpt", "chatgpt.com", "", 0, 9),
        app("OpenAI.ChatGPT", 7_200, 2),
        app("com.openai.chat", 3_600, 1),
    ];
    store.ingest(d2, batch("b1", b1), 200).await.unwrap();
    let b2 = vec![sighting("openai.chatgpt", "chatgpt.com", "", 0, 1)];
    store.ingest(d2, batch("b2", b2), 300).await.unwrap();

    let row = |kind: &str, value: &str, devices, count, first_seen, last_seen| ValueUsage {
        kind: kind.parse().unwrap(),
        value: value.into(),
        devices,
        count,
        first_seen: UnixSecs(first_seen),
        last_seen: UnixSecs(last_seen),
    };
    // Kinds, then values, by their bytes: "OpenAI..." before "com...".
    let all = vec![
        row("app", "OpenAI.ChatGPT", 1, 2, 7_201, 7_210),
        row("app", "com.openai.chat", 2, 2, 1, 3_610),
        row("dns", "api.openai.com", 1, 1, 3_601, 3_610),
        row("dns", "chatgpt.com", 2, 26, 0, 86_410),
    ];
    assert_eq!(store.product_values("openai.chatgpt".into(), 1_000).await.unwrap(), all);
    assert_eq!(store.product_values("openai.chatgpt".into(), 2).await.unwrap(), all[..2]);
    // A limit below one is one, and one above a thousand is a thousand.
    assert_eq!(store.product_values("openai.chatgpt".into(), 0).await.unwrap(), all[..1]);
    assert_eq!(store.product_values("openai.chatgpt".into(), -5).await.unwrap(), all[..1]);
    assert_eq!(store.product_values("openai.chatgpt".into(), i64::MAX).await.unwrap(), all);
    let many = (0..1_001).map(|i| sighting("many.values", &format!("v{i:04}"), "", 0, 1)).collect();
    store.ingest(d1, batch("b3", many), 400).await.unwrap();
    let first_thousand = store.product_values("many.values".into(), 5_000).await.unwrap();
    assert_eq!(first_thousand.len(), 1_000);
    assert_eq!(first_thousand.last().map(|v| v.value.as_str()), Some("v0999"));
    assert_eq!(
        store.product_values("other.product".into(), 10).await.unwrap(),
        vec![row("dns", "chatgpt.com", 1, 100, 1, 10)]
    );
    assert!(store.product_values("cursor.editor".into(), 10).await.unwrap().is_empty());
}

fn usage(email: &str, products: &[&str], last_activity: i64) -> PersonUsage {
    PersonUsage {
        email: email.into(),
        products: products.iter().map(|p| (*p).to_owned()).collect(),
        last_activity: UnixSecs(last_activity),
        ..PersonUsage::default()
    }
}

fn money(sums: &[(&str, i64)]) -> Vec<(String, i64)> {
    sums.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
}

pub(crate) async fn person_usage_lists_products_on_owned_devices(store: impl Store) {
    let d1 = store.enroll(device("h1", Some("Ann@Example.com")), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", Some("ann@example.com")), [2; 32], 100).await.unwrap();
    let d3 = store.enroll(device("h3", None), [3; 32], 100).await.unwrap();
    let d4 = store.enroll(device("h4", Some("bob@example.com")), [4; 32], 100).await.unwrap();
    store.enroll(device("h5", Some("cy@example.com")), [5; 32], 100).await.unwrap();
    let chatgpt = sighting("openai.chatgpt", "chatgpt.com", "", 0, 1);
    store.ingest(d1, batch("b1", vec![chatgpt.clone()]), 200).await.unwrap();
    let claude = sighting("anthropic.claude", "claude.ai", "", 7_200, 1);
    store.ingest(d2, batch("b1", vec![claude, chatgpt]), 200).await.unwrap();
    let cursor = sighting("cursor.editor", "cursor.com", "", 90_000, 1);
    store.ingest(d3, batch("b1", vec![cursor.clone()]), 200).await.unwrap();
    let mut late = sighting("openai.chatgpt", "chatgpt.com", "", 0, 1);
    late.last_seen = UnixSecs(50_000);
    store.ingest(d4, batch("b1", vec![late]), 200).await.unwrap();
    // Owners of both cases meet as one person; a device without an owner, and an owner
    // whose devices saw nothing, are nobody's usage.
    assert_eq!(
        store.person_usage(None).await.unwrap(),
        vec![
            usage("ann@example.com", &["anthropic.claude", "openai.chatgpt"], 7_210),
            usage("bob@example.com", &["openai.chatgpt"], 50_000),
        ]
    );
    // Sightings after the last read are folded in.
    store.ingest(d1, batch("b2", vec![cursor]), 300).await.unwrap();
    let ann = store.person_usage(Some("ann@example.com".into())).await.unwrap();
    assert_eq!(
        ann,
        vec![usage(
            "ann@example.com",
            &["anthropic.claude", "cursor.editor", "openai.chatgpt"],
            90_010
        )]
    );
}

pub(crate) async fn person_usage_sums_matched_expenses_per_currency(store: impl Store) {
    let line = |key: &str, payer: &str, product: Option<&str>, at, amount, currency: &str| {
        let mut l = expense(key, product, at, amount);
        l.payer_email = payer.into();
        l.currency = currency.into();
        l
    };
    let lines = vec![
        line("id:1", "ann@example.com", Some("openai.chatgpt"), 1_000, 2_000, "USD"),
        line("id:2", "ann@example.com", Some("anthropic.claude"), 3_000, 500, "EUR"),
        line("id:3", "ann@example.com", Some("openai.chatgpt"), 2_000, -300, "USD"),
        // A candidate is not known AI spend yet: neither its amount nor its time counts.
        line("id:4", "ann@example.com", None, 5_000, 999, "USD"),
        line("id:5", "", Some("openai.chatgpt"), 6_000, 100, "USD"),
        line("id:6", "Cy@Example.com", Some("openai.chatgpt"), 50, 100, "USD"),
        line("id:7", "dee@example.com", None, 60, 100, "USD"),
    ];
    store.add_expenses(lines, 10).await.unwrap();
    let ann = PersonUsage {
        expense_minor: money(&[("EUR", 500), ("USD", 1_700)]),
        ..usage("ann@example.com", &[], 3_000)
    };
    let cy =
        PersonUsage { expense_minor: money(&[("USD", 100)]), ..usage("cy@example.com", &[], 50) };
    assert_eq!(store.person_usage(None).await.unwrap(), vec![ann, cy.clone()]);
    assert_eq!(store.person_usage(Some("CY@example.COM".into())).await.unwrap(), vec![cy]);
    assert!(store.person_usage(Some("dee@example.com".into())).await.unwrap().is_empty());
}

pub(crate) async fn person_usage_sums_gateway_spend_of_end_users_with_an_email(store: impl Store) {
    let row = |key: &str, user: &str, product: Option<&str>, at, nanos, currency: &str| {
        let mut g = spend(key, product, at, nanos);
        g.user = user.into();
        g.currency = currency.into();
        g
    };
    let rows = vec![
        row("id:1", "Bob@Example.com", Some("openai.api"), 100, 1_500, "USD"),
        row("id:2", "bob@example.com", None, 300, 2_500, "USD"),
        row("id:3", "bob@example.com", Some("openai.api"), 200, 7, "EUR"),
        row("id:4", "service-account", Some("openai.api"), 900, 1_000, "USD"),
        row("id:5", "", Some("openai.api"), 900, 1_000, "USD"),
        // Only ASCII letters are lowercased, on both backends.
        row("id:6", "ÉVA@Example.com", Some("openai.api"), 400, 11, "USD"),
        row("id:7", "éva@example.com", Some("openai.api"), 500, 12, "USD"),
    ];
    store.add_gateway_spend(rows, 10).await.unwrap();
    let bob = PersonUsage {
        gateway_nanos: money(&[("EUR", 7), ("USD", 4_000)]),
        ..usage("bob@example.com", &[], 300)
    };
    // "ÉVA" keeps its "É" (and stays apart from "éva"), where full Unicode lowercasing
    // would have merged the two.
    let eva_upper =
        PersonUsage { gateway_nanos: money(&[("USD", 11)]), ..usage("Éva@example.com", &[], 400) };
    let eva =
        PersonUsage { gateway_nanos: money(&[("USD", 12)]), ..usage("éva@example.com", &[], 500) };
    assert_eq!(store.person_usage(None).await.unwrap(), vec![bob.clone(), eva_upper, eva]);
    assert_eq!(store.person_usage(Some("BOB@example.com".into())).await.unwrap(), vec![bob]);
    assert!(store.person_usage(Some("service-account".into())).await.unwrap().is_empty());
}

pub(crate) async fn person_usage_of_one_email_joins_all_three_sources(store: impl Store) {
    let d1 = store.enroll(device("h1", Some("ann@example.com")), [1; 32], 100).await.unwrap();
    let d2 = store.enroll(device("h2", Some("bob@example.com")), [2; 32], 100).await.unwrap();
    store
        .ingest(d1, batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "", 0, 1)]), 200)
        .await
        .unwrap();
    store
        .ingest(d2, batch("b1", vec![sighting("cursor.editor", "cursor.com", "", 0, 1)]), 200)
        .await
        .unwrap();
    let mut line = expense("id:1", Some("anthropic.claude"), 5_000, 2_000);
    line.payer_email = "ann@example.com".into();
    store.add_expenses(vec![line], 10).await.unwrap();
    let mut row = spend("id:1", Some("openai.api"), 3_000, 1_500);
    row.user = "ANN@example.com".into();
    store.add_gateway_spend(vec![row], 10).await.unwrap();
    let ann = PersonUsage {
        email: "ann@example.com".into(),
        products: vec!["openai.chatgpt".into()],
        expense_minor: money(&[("USD", 2_000)]),
        gateway_nanos: money(&[("USD", 1_500)]),
        last_activity: UnixSecs(5_000),
    };
    assert_eq!(
        store.person_usage(Some("Ann@Example.com".into())).await.unwrap(),
        vec![ann.clone()]
    );
    let everyone = store.person_usage(None).await.unwrap();
    assert_eq!(everyone, vec![ann, usage("bob@example.com", &["cursor.editor"], 10)]);
}

pub(crate) async fn enroll_secret_rotation_keeps_the_latest_and_is_audited(store: impl Store) {
    assert_eq!(store.enroll_secret().await.unwrap(), None);
    let rotate = |at| record(at, "admin", "enroll_secret.rotate", "enroll_secret");
    store.rotate_enroll_secret([3; 32], 100, rotate(100)).await.unwrap();
    assert_eq!(store.enroll_secret().await.unwrap(), Some(([3; 32], 100)));
    store.rotate_enroll_secret([4; 32], 200, rotate(200)).await.unwrap();
    assert_eq!(store.enroll_secret().await.unwrap(), Some(([4; 32], 200)));
    let log = store.audit(0, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.record.clone()).collect::<Vec<_>>(),
        [rotate(100), rotate(200)]
    );
}

pub(crate) async fn data_versions_move_with_their_data_only(store: impl Store) {
    let v0 = store.versions().await.unwrap();
    let lines = vec![expense("id:1", Some("openai.chatgpt"), 1_000, 2_000)];
    store.add_expenses(lines.clone(), 10).await.unwrap();
    let v1 = store.versions().await.unwrap();
    assert_eq!(v1, Versions { spend: v0.spend + 1, ..v0 }, "an expense import bumps spend");
    store.add_expenses(lines, 11).await.unwrap();
    assert_eq!(store.versions().await.unwrap(), v1, "a repeated import changes nothing");
    let day = 19_000 * 86_400;
    store.add_gateway_spend(vec![spend("id:a", Some("openai.api"), day, 5)], 12).await.unwrap();
    let v2 = store.versions().await.unwrap();
    assert_eq!(v2, Versions { spend: v1.spend + 1, ..v1 }, "a gateway import bumps spend");
    let ann = Person {
        email: "ann@example.com".into(),
        name: "Ann Lee".into(),
        department: "Sales".into(),
        manager: None,
    };
    store.upsert_people(vec![ann.clone()]).await.unwrap();
    let v3 = store.versions().await.unwrap();
    assert_eq!(v3.spend, v2.spend + 1, "a people import bumps spend");
    store.upsert_people(vec![ann]).await.unwrap();
    assert_eq!(store.versions().await.unwrap().spend, v3.spend, "an unchanged person does not");
    let v3 = store.versions().await.unwrap();
    let d = store.enroll(device("h1", Some("ann@example.com")), [1; 32], 100).await.unwrap();
    let v4 = store.versions().await.unwrap();
    assert!(v4.devices > v3.devices, "an enrolment bumps devices");
    assert_eq!(v4.spend, v3.spend);
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 5)]);
    store.ingest(d, b, 200).await.unwrap();
    // Read without an explicit fold: the versions cover every acknowledged batch.
    let v5 = store.versions().await.unwrap();
    assert!(v5.usage > v4.usage, "a batch bumps usage once folded");
    assert_eq!((v5.spend, v5.devices), (v4.spend, v4.devices));
    let (r, audit) = review::decide(
        "openai.chatgpt",
        review::Decision::new(ReviewStatus::Sanctioned, "ok".into()),
        "sec",
        300,
    );
    store.set_review(r, audit).await.unwrap();
    assert_eq!(store.versions().await.unwrap(), v5, "a review is read fresh, not versioned");
}

pub(crate) async fn device_page_lists_silent_first_with_counts(store: impl Store) {
    let health = |at: i64| Health {
        received_at: UnixSecs(at),
        agent_version: "0.2.0".into(),
        catalog_version: 3,
        interfaces_json: "[]".into(),
        packets: 1,
        drops: 0,
        spool_depth: 0,
        evictions: 0,
        last_scan: None,
    };
    // Heartbeats at 900 (fresh), 50 and 10 (silent before 100); "d" only enrolled (contact 20).
    for (host, owner, beat) in [
        ("a", "ann@example.com", Some(900)),
        ("b", "bob@example.com", Some(50)),
        ("c", "cy@example.com", Some(10)),
        ("d", "dee@example.com", None),
    ] {
        let id =
            store.enroll(device(host, Some(owner)), [host.as_bytes()[0]; 32], 20).await.unwrap();
        if let Some(at) = beat {
            store.heartbeat(id, health(at)).await.unwrap();
        }
    }
    let q = DeviceQuery { stale_before: UnixSecs(100), limit: 50, ..DeviceQuery::default() };
    let page = store.devices_page(q.clone()).await.unwrap();
    assert_eq!((page.total, page.stale, page.matched), (4, 3, 4));
    let hosts: Vec<&str> = page.devices.iter().map(|d| d.device.host_id.as_str()).collect();
    assert_eq!(hosts, ["c", "d", "b", "a"], "silent first, oldest heartbeat first");
    let page = store.devices_page(DeviceQuery { only_stale: true, ..q.clone() }).await.unwrap();
    assert_eq!((page.total, page.stale, page.matched, page.devices.len()), (4, 3, 3, 3));
    let page =
        store.devices_page(DeviceQuery { search: "bob@".into(), ..q.clone() }).await.unwrap();
    assert_eq!(page.matched, 1);
    assert_eq!(page.devices[0].device.host_id, "b");
    let page =
        store.devices_page(DeviceQuery { search: "-name".into(), ..q.clone() }).await.unwrap();
    assert_eq!(page.matched, 4, "the host name matches too");
    let page = store.devices_page(DeviceQuery { offset: 1, limit: 2, ..q }).await.unwrap();
    let hosts: Vec<&str> = page.devices.iter().map(|d| d.device.host_id.as_str()).collect();
    assert_eq!((page.matched, hosts), (4, vec!["d", "b"]));
}

/// Every view `join` derives, through the cache and straight from the store, for `since`.
async fn views_agree(store: &impl Store, cache: &join::Cache, since: Option<i64>, now: i64) {
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let q = aiscout_wire::InventoryQuery::default();
    for purpose in [join::Purpose::Inventory, join::Purpose::Reconcile] {
        let filter = UsageFilter { since: since.map(UnixSecs), ..UsageFilter::default() };
        let plain = join::gather(store, filter.clone(), now, purpose).await.unwrap();
        let cached = join::gather_from(store, Some(cache), filter, now, purpose).await.unwrap();
        assert_eq!(
            join::inventory(&catalog, &Default::default(), &q, &plain),
            join::inventory(&catalog, &Default::default(), &q, &cached),
            "inventory, {purpose:?}, since {since:?}"
        );
        assert_eq!(join::spend_by_month(&plain, None), join::spend_by_month(&cached, None));
        assert_eq!(
            join::reconcile::reconcile(&catalog, &plain, 30),
            join::reconcile::reconcile(&catalog, &cached, 30),
            "reconciliation, {purpose:?}, since {since:?}"
        );
    }
}

pub(crate) async fn cache_answers_as_the_store_does(store: impl Store) {
    let day = 86_400;
    let now = 20_000 * day;
    let cache = join::Cache::default();
    let person = |email: &str, name: &str, department: &str| Person {
        email: email.into(),
        name: name.into(),
        department: department.into(),
        manager: None,
    };
    store
        .upsert_people(vec![
            person("ann@example.com", "Ann Lee", "Sales"),
            person("bob@example.com", "Bob Roe", "Engineering"),
        ])
        .await
        .unwrap();
    // Ann pays ChatGPT monthly by email; Bob is named only (the directory places him);
    // a candidate line; a gateway row for Bob.
    let mut lines = Vec::new();
    for m in 0..4 {
        lines.push(expense(
            &format!("ann:{m}"),
            Some("openai.chatgpt"),
            now - (m * 30 + 2) * day,
            2_000,
        ));
        let mut bob =
            expense(&format!("bob:{m}"), Some("anysphere.cursor"), now - (m * 30 + 5) * day, 2_000);
        bob.payer_email = String::new();
        bob.payer_name = "Bob Roe".into();
        bob.department = String::new();
        lines.push(bob);
    }
    lines.push(expense("cand:1", None, now - 3 * day, 999));
    store.add_expenses(lines, now).await.unwrap();
    store
        .add_gateway_spend(
            vec![spend("gw:1", Some("openai.api"), now - 2 * day + 300, 5_000_000)],
            now,
        )
        .await
        .unwrap();
    let d = store.enroll(device("h1", Some("ann@example.com")), [1; 32], now).await.unwrap();
    store
        .ingest(
            d,
            batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", now - day, 3)]),
            now,
        )
        .await
        .unwrap();
    let (r, audit) = review::decide(
        "openai.chatgpt",
        review::Decision::new(ReviewStatus::Sanctioned, "ok".into()),
        "sec",
        now,
    );
    store.set_review(r, audit).await.unwrap();
    let midnight = now - 40 * day;
    for since in [None, Some(midnight), Some(midnight + 3_600)] {
        views_agree(&store, &cache, since, now).await;
    }
    // A change to each family after the cache filled: the next read sees it.
    let mut late = expense("bob:late", Some("anysphere.cursor"), now - day, 2_100);
    late.payer_email = String::new();
    late.payer_name = "Bob Roe".into();
    late.department = String::new();
    store.add_expenses(vec![late], now).await.unwrap();
    views_agree(&store, &cache, None, now).await;
    store.upsert_people(vec![person("bob@example.com", "Bob Roe", "Research")]).await.unwrap();
    // What serve does every few seconds: rebuild the used entries whose data changed.
    cache.warm(&store, now).await.unwrap();
    views_agree(&store, &cache, None, now).await;
    let cached = join::gather_from(
        &store,
        Some(&cache),
        UsageFilter::default(),
        now,
        join::Purpose::Inventory,
    )
    .await
    .unwrap();
    assert!(cached.spend.payers.iter().any(|p| p.department == "Research"), "people import seen");
    store.enroll(device("h2", Some("bob@example.com")), [2; 32], now).await.unwrap();
    views_agree(&store, &cache, None, now).await;
    let (r, audit) = review::decide(
        "anysphere.cursor",
        review::Decision::new(ReviewStatus::Sanctioned, "ok".into()),
        "sec",
        now,
    );
    store.set_review(r, audit).await.unwrap();
    views_agree(&store, &cache, None, now).await;
    // Per-person views: the cached list equals one built from the store's reads.
    let people = cache.people(&store, now).await.unwrap();
    let spend = join::read_spend(&store, None, true, now).await.unwrap();
    let expect = join::people::people_spend(store.person_usage(None).await.unwrap(), &spend);
    let emails = |p: &join::people::PeopleSpend| -> Vec<(String, Vec<aiscout_wire::Money>)> {
        p.people.iter().map(|x| (x.usage.email.clone(), x.spend.clone())).collect()
    };
    assert_eq!(emails(&people), emails(&expect));
    assert_eq!(people.total, expect.total);
}

/// Compiles every case as a `#[tokio::test]` against the backend that `$open` opens.
pub(crate) async fn connector_cursors_are_per_name_and_only_move_forward(store: impl Store) {
    assert_eq!(store.connector_cursor("litellm-prod".into()).await.unwrap(), None);
    store.set_connector_cursor("litellm-prod".into(), 1_000, 10).await.unwrap();
    store.set_connector_cursor("openai-admin".into(), 5_000, 10).await.unwrap();
    assert_eq!(store.connector_cursor("litellm-prod".into()).await.unwrap(), Some(1_000));
    store.set_connector_cursor("litellm-prod".into(), 2_000, 20).await.unwrap();
    assert_eq!(store.connector_cursor("litellm-prod".into()).await.unwrap(), Some(2_000));
    // Another instance that got less far does not move it back.
    store.set_connector_cursor("litellm-prod".into(), 1_500, 30).await.unwrap();
    assert_eq!(store.connector_cursor("litellm-prod".into()).await.unwrap(), Some(2_000));
    assert_eq!(store.connector_cursor("openai-admin".into()).await.unwrap(), Some(5_000));
    assert_eq!(store.connector_cursor("LITELLM-PROD".into()).await.unwrap(), None);
}

/// Issue 17: a taught descriptor resolves its stored candidate lines (its normalised form:
/// processor prefix and trailing reference do not matter) and every later import of it; the
/// undo turns exactly those lines back into candidates; both are audited and move the spend
/// data version; a second mapping of one descriptor is refused.
pub(crate) async fn descriptor_mappings_resolve_past_and_future_lines_and_undo_restores_them(
    store: impl Store,
) {
    use aiscout_collector::model::{DescriptorMapping, descriptor_key};
    let candidate = |key: &str, descriptor: &str| {
        let mut l = expense(key, None, 1_000, 2_000);
        l.descriptor = descriptor.into();
        l
    };
    let lines = vec![
        candidate("c1", "SQ *ACME AI 4155550100 CA"),
        candidate("c2", "ACME AI"),
        candidate("c3", "OTHER GPT TOOLS"),
        expense("m1", Some("openai.chatgpt"), 1_000, 2_000),
    ];
    store.add_expenses(lines, 10).await.unwrap();
    let before = store.versions().await.unwrap();
    let key = descriptor_key("sq *Acme AI 99");
    assert_eq!(key, "ACME AI");
    let mapping = DescriptorMapping {
        id: 0,
        descriptor: key.clone(),
        product: "anthropic.claude".into(),
        actor: "sam".into(),
        created_at: UnixSecs(50),
        note: "their AI plan".into(),
    };
    let audit = AuditRecord {
        at: UnixSecs(50),
        actor: "sam".into(),
        action: "descriptor.teach".into(),
        subject: key.clone(),
        before: None,
        after: Some("{}".into()),
    };
    let (stored, resolved) = store.add_mapping(mapping.clone(), audit.clone()).await.unwrap();
    assert_eq!(resolved, 2);
    assert!(stored.id > 0);
    assert_eq!(DescriptorMapping { id: 0, ..stored.clone() }, mapping);
    assert_eq!(store.mappings().await.unwrap(), std::slice::from_ref(&stored));
    assert!(store.versions().await.unwrap().spend > before.spend, "teaching moves spend");
    let products = |lines: &[ExpenseLine]| -> Vec<(String, Option<String>, bool)> {
        lines.iter().map(|l| (l.dedupe_key.clone(), l.product.clone(), l.candidate)).collect()
    };
    let claude = Some("anthropic.claude".to_owned());
    let chatgpt = Some("openai.chatgpt".to_owned());
    assert_eq!(
        products(&store.expenses(None).await.unwrap()),
        [
            ("c1".into(), claude.clone(), false),
            ("c2".into(), claude.clone(), false),
            ("c3".into(), None, true),
            ("m1".into(), chatgpt.clone(), false),
        ]
    );
    // The same descriptor again: refused, nothing written.
    match store.add_mapping(mapping.clone(), audit).await {
        Err(StoreError::Exists { .. }) => {}
        other => panic!("expected Exists, got {other:?}"),
    }
    // A later import: its candidate of the descriptor is resolved as it is stored; a line the
    // catalog matched keeps its product.
    let later = vec![candidate("c4", "PAYPAL *ACME AI 12345"), candidate("c5", "ACME AIR")];
    assert_eq!(store.add_expenses(later, 60).await.unwrap().inserted, 2);
    let got = products(&store.expenses(None).await.unwrap());
    assert!(got.contains(&("c4".into(), claude.clone(), false)), "{got:?}");
    assert!(got.contains(&("c5".into(), None, true)), "{got:?}");
    // Undo: exactly the lines it resolved are candidates again.
    let undo = review::untaught("ada", 70);
    let (removed, restored) = store.remove_mapping(stored.id, undo).await.unwrap().unwrap();
    assert_eq!((removed, restored), (stored.clone(), 3));
    assert!(store.mappings().await.unwrap().is_empty());
    let got = products(&store.expenses(None).await.unwrap());
    for key in ["c1", "c2", "c3", "c4", "c5"] {
        assert!(got.contains(&(key.into(), None, true)), "{key} is a candidate again: {got:?}");
    }
    assert!(got.contains(&("m1".into(), chatgpt, false)));
    assert!(store.remove_mapping(stored.id, review::untaught("ada", 71)).await.unwrap().is_none());
    let log = store.audit(0, 100).await.unwrap();
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.record.action.as_str(), e.record.actor.as_str(), e.record.subject.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("descriptor.teach", "sam", "ACME AI"), ("descriptor.undo", "ada", "ACME AI")]
    );
    assert!(log[1].record.before.as_deref().unwrap().contains("anthropic.claude"));
    // After the undo, a new import of the descriptor stays a candidate.
    store.add_expenses(vec![candidate("c6", "ACME AI")], 80).await.unwrap();
    let got = products(&store.expenses(None).await.unwrap());
    assert!(got.contains(&("c6".into(), None, true)), "{got:?}");
}

macro_rules! conformance {
    ($open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $open().await;
                super::$case(harness.store.clone()).await;
                drop(harness);
            }
        )*
    };
}

pub(crate) async fn person_export_holds_what_is_stored_about_them_and_nobody_else(
    store: impl Store,
) {
    use aiscout_collector::person;
    let people = vec![
        Person {
            email: "ann@example.com".into(),
            name: "Ann Lee".into(),
            department: "Sales".into(),
            manager: Some("grace@example.com".into()),
        },
        Person {
            email: "bob@example.com".into(),
            name: "Bob Kim".into(),
            department: "Engineering".into(),
            manager: None,
        },
    ];
    store.upsert_people(people).await.unwrap();
    let ann =
        store.enroll(device("ann-laptop", Some("Ann@Example.com")), [1; 32], 100).await.unwrap();
    let bob =
        store.enroll(device("bob-laptop", Some("bob@example.com")), [2; 32], 100).await.unwrap();
    let b = batch("a1", vec![sighting("openai.chatgpt", "chatgpt.com", "ann", 0, 4)]);
    store.ingest(ann, b, 200).await.unwrap();
    let b = batch("b1", vec![sighting("anthropic.claude", "claude.ai", "bob", 0, 9)]);
    store.ingest(bob, b, 200).await.unwrap();
    let mut bobs = expense("e2", Some("anthropic.claude"), 1_000, 2_000);
    bobs.payer_email = "bob@example.com".into();
    bobs.payer_name = "Bob Kim".into();
    store
        .add_expenses(vec![expense("e1", Some("openai.chatgpt"), 1_000, 2_500), bobs], 300)
        .await
        .unwrap();
    let mut anns = spend("g1", Some("openai.api"), 1_000, 7_000_000);
    anns.user = "ann@example.com".into();
    store
        .add_gateway_spend(vec![anns, spend("g2", Some("openai.api"), 1_000, 5)], 300)
        .await
        .unwrap();
    let decision = review::Decision::new(ReviewStatus::Sanctioned, "approved".into());
    let (r, audit) = review::decide("openai.chatgpt", decision, "ann@example.com", 400);
    store.set_review(r, audit).await.unwrap();
    let decision = review::Decision::new(ReviewStatus::Blocked, "no".into());
    let (r, audit) = review::decide("deepseek.chat", decision, "bob@example.com", 401);
    store.set_review(r, audit).await.unwrap();
    store.fold().await.unwrap();

    let record = person::export(&store, "ann@example.com").await.unwrap();
    assert!(!record.is_empty());
    assert_eq!(record.person.as_ref().unwrap().name, "Ann Lee");
    let hosts: Vec<&str> = record.devices.iter().map(|d| d.device.host_id.as_str()).collect();
    assert_eq!(hosts, ["ann-laptop"]);
    let seen: Vec<(&str, &str, i64)> =
        record.sightings.iter().map(|s| (s.product.as_str(), s.value.as_str(), s.count)).collect();
    assert_eq!(seen, [("openai.chatgpt", "chatgpt.com", 4)]);
    let lines: Vec<&str> = record.expenses.iter().map(|l| l.dedupe_key.as_str()).collect();
    assert_eq!(lines, ["e1"]);
    let usage = record.usage.as_ref().unwrap();
    assert_eq!(usage.gateway_nanos, [("USD".to_owned(), 7_000_000)]);
    let actions: Vec<(&str, &str)> = record
        .audit
        .iter()
        .map(|e| (e.record.action.as_str(), e.record.subject.as_str()))
        .collect();
    assert_eq!(actions, [("review.set", "openai.chatgpt")]);
    // Nothing of Bob's is in Ann's document.
    let json = person::to_json(&record).to_string();
    for other in ["bob", "Bob", "claude", "deepseek", "e2", "g2"] {
        assert!(!json.contains(other), "{other} in {json}");
    }
    assert_eq!(
        person::to_json(&record)["expense_lines"][0]["amount_minor"],
        serde_json::json!(2_500)
    );
    // Somebody unknown: an empty record that says so.
    let nobody = person::export(&store, "nobody@example.com").await.unwrap();
    assert!(nobody.is_empty());
    assert_eq!(person::to_json(&nobody)["found"], false);
}

/// Issue 17: the cheap version check a cached overlay is compared with.
pub(crate) async fn overlay_version_is_the_highest_stored(store: impl Store) {
    let audit = |v: i64| AuditRecord {
        at: UnixSecs(v),
        actor: "admin".into(),
        action: "overlay.update".into(),
        subject: format!("overlay/{v}"),
        before: None,
        after: None,
    };
    assert_eq!(store.overlay_version().await.unwrap(), None);
    for v in [1, 2] {
        assert!(store.put_overlay(v, "{}".into(), audit(v)).await.unwrap());
    }
    assert!(!store.put_overlay(2, "{}".into(), audit(2)).await.unwrap(), "one writer per version");
    assert_eq!(store.overlay_version().await.unwrap(), Some(2));
    assert_eq!(store.overlay().await.unwrap().map(|(v, _)| v), Some(2));
}

macro_rules! all_cases {
    ($open:path) => {
        conformance!($open;
            enroll_replaces_the_node_key,
            reenrollment_follows_the_policy_and_is_audited,
            an_enrollment_retried_with_its_own_proposed_key_is_let_in,
            cloned_machines_sharing_a_host_id_stay_distinct_devices,
            replayed_batch_counts_once,
            same_batch_id_from_two_devices_counts_twice,
            sightings_aggregate_per_key_and_window,
            usage_filters_by_time_kind_and_product,
            heartbeat_is_listed_with_the_device,
            review_change_is_audited_with_before_and_after,
            tokens_are_created_once_revoked_once_and_audited,
            migrations_are_idempotent_on_reopen,
            expense_import_twice_counts_each_line_once,
            same_dedupe_key_from_two_sources_is_two_lines,
            gateway_spend_is_idempotent_and_summed_per_day,
            gateway_totals_place_users_by_directory_in_order,
            gateway_chunk_with_some_keys_stored_counts_the_new_ones,
            people_upsert_counts_changes_only,
            scim_writes_are_versioned_unique_and_deactivate_people,
            owner_last_use_joins_devices_to_sightings,
            rollups_agree_with_the_sightings,
            rollup_departments_follow_people_and_owners,
            large_folds_agree_with_the_sightings,
            installed_items_follow_the_latest_report,
            mcp_flags_follow_the_latest_report_of_installed_servers,
            sessions_expire_at_their_deadline_and_with_their_token,
            session_of_a_token_that_does_not_exist_is_no_session,
            purge_removes_idle_and_expired_sessions_only,
            ending_a_session_is_audited_only_when_there_was_one,
            viewer_tokens_round_trip,
            review_owner_alternative_and_renewal_round_trip_and_are_audited,
            audit_query_filters_newest_first_and_pages,
            audit_query_returns_at_most_a_thousand_entries,
            import_history_lists_the_newest_first,
            device_detail_sums_its_own_sightings,
            product_values_sum_each_value_over_devices_and_windows,
            person_usage_lists_products_on_owned_devices,
            person_usage_sums_matched_expenses_per_currency,
            person_usage_sums_gateway_spend_of_end_users_with_an_email,
            person_usage_of_one_email_joins_all_three_sources,
            enroll_secret_rotation_keeps_the_latest_and_is_audited,
            data_versions_move_with_their_data_only,
            device_page_lists_silent_first_with_counts,
            connector_cursors_are_per_name_and_only_move_forward,
            cache_answers_as_the_store_does,
            alert_events_are_written_with_their_change_once_each,
            a_taught_descriptor_is_one_alert_event,
            overlay_version_is_the_highest_stored,
            alert_deliveries_are_claimed_once_and_retried_after_their_lease,
            alert_admissions_keep_the_daily_cap_exact_and_the_quiet_period,
            person_export_holds_what_is_stored_about_them_and_nobody_else,
            descriptor_mappings_resolve_past_and_future_lines_and_undo_restores_them,
        );
    };
}

mod sqlite {
    all_cases!(super::harness::sqlite);
}

mod postgres {
    all_cases!(super::harness::postgres);
}
