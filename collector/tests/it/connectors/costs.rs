//! The daily cost reports (OpenAI organization costs, Anthropic cost report) with days
//! without cost, a page that holds none of them, and a row that arrives late for a day already
//! pulled, inside the overlap window.
//!
//! Documented facts the fake follows (VENDORS.md, "OpenAI" and "Anthropic"): both answer one
//! bucket per day of the window, and a day without cost is a bucket with `results: []`; a
//! server may also leave such buckets out, so that a page is `data: []` while `has_more` is
//! still true (both are handled the same way: zero records, the next page is asked for).

use super::*;

/// What the late result adds in either report: OpenAI `0.000123` USD, Anthropic `"0.0123"`
/// cents.
const LATE_NANOS: i64 = 123_000;

/// A result that was not in the report when its day was first pulled.
fn late_result(kind: Kind) -> String {
    match kind {
        Kind::Openai => r#"{"object":"organization.costs.result",
            "amount":{"value":0.000123,"currency":"usd"},
            "line_item":"gpt-4o-mini-2024-07-18, input","project_id":"proj_b"}"#
            .to_owned(),
        _ => r#"{"currency":"USD","amount":"0.0123","workspace_id":"wrkspc_b",
            "description":"Claude Haiku 3.5 Usage - Output Tokens","cost_type":"tokens",
            "context_window":"0-200k","model":"claude-3-5-haiku-20241022",
            "service_tier":"standard","token_type":"output_tokens"}"#
            .to_owned(),
    }
}

/// Six finished days, two a page; the middle page's two days had no cost (buckets without
/// results, or no buckets at all with `omit_quiet`). The first run stores the four other
/// days and reads the empty page through. Then a result arrives late for yesterday (inside
/// the two-day overlap): the next run, a day later, stores it with the new day, and the runs
/// after that find it known. Totals to the billionth after each run.
async fn an_empty_page_and_a_late_row_in_the_overlap(kind: Kind, day_nanos: i64, omit: bool) {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor().await;
    let today = 1_796_083_200; // 2026-12-01T00:00:00Z
    let now = today + 3_600;
    let s = cost_settings(&served, kind, today - 6 * DAY);
    assert_eq!(s.overlap.as_secs() as i64, 2 * DAY, "the kind's default overlap");
    let (index, stats) = (index(), Stats::default());
    served.vendor.quiet.lock().unwrap().extend([today - 4 * DAY, today - 3 * DAY]);
    *served.vendor.omit_quiet.lock().unwrap() = omit;

    let p = first(connectors::run(&store, &index, &s, &stats, now).await.unwrap());
    assert_eq!((p.fetched, p.pages, p.new, p.known), (8, 3, 8, 0), "{kind:?}");
    assert_eq!(stored_nanos(&store).await, (4 * day_nanos, 8), "{kind:?}");
    let pages: Vec<Option<String>> =
        served.vendor.log.lock().unwrap().iter().map(|(_, q)| q.get("page").cloned()).collect();
    assert_eq!(pages, [None, Some("p1".into()), Some("p2".into())], "{kind:?}: read through");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(today));

    // Yesterday's report gains a result after it was pulled.
    served.vendor.late.lock().unwrap().push((today - DAY, late_result(kind)));
    let p = first(connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap());
    assert_eq!(p.window, (today - 2 * DAY, today + DAY), "{kind:?}");
    assert_eq!((p.fetched, p.pages, p.new, p.known), (7, 2, 3, 4), "{kind:?}");
    let total = 5 * day_nanos + LATE_NANOS;
    assert_eq!(stored_nanos(&store).await, (total, 11), "{kind:?}: the late row once");

    // Asked again twice (the cursor moved a day: yesterday and today; then a day on): the
    // late row is known.
    let p = first(connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap());
    assert_eq!(p.window, (today - DAY, today + DAY), "{kind:?}");
    assert_eq!((p.fetched, p.new, p.known), (5, 0, 5), "{kind:?}");
    let p = first(connectors::run(&store, &index, &s, &stats, now + 2 * DAY).await.unwrap());
    assert_eq!(p.window, (today - DAY, today + 2 * DAY), "{kind:?}");
    assert_eq!((p.fetched, p.new, p.known), (7, 2, 5), "{kind:?}");
    assert_eq!(stored_nanos(&store).await, (total + day_nanos, 13), "{kind:?}");
    let metrics = stats.render();
    let name = &s.name;
    for want in [
        format!("aiscout_connector_rows_total{{connector=\"{name}\",outcome=\"new\"}} 13"),
        format!("aiscout_connector_rows_total{{connector=\"{name}\",outcome=\"known\"}} 14"),
        format!("aiscout_connector_runs_total{{connector=\"{name}\",outcome=\"ok\"}} 4"),
    ] {
        assert!(metrics.contains(&want), "{kind:?}: missing {want:?} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_costs_read_an_empty_page_and_a_late_row_once() {
    an_empty_page_and_a_late_row_in_the_overlap(Kind::Openai, OPENAI_DAY_NANOS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_costs_read_a_page_without_buckets_and_a_late_row_once() {
    an_empty_page_and_a_late_row_in_the_overlap(Kind::Openai, OPENAI_DAY_NANOS, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cost_report_reads_an_empty_page_and_a_late_row_once() {
    an_empty_page_and_a_late_row_in_the_overlap(Kind::Anthropic, ANTHROPIC_DAY_NANOS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cost_report_reads_a_page_without_buckets_and_a_late_row_once() {
    an_empty_page_and_a_late_row_in_the_overlap(Kind::Anthropic, ANTHROPIC_DAY_NANOS, true).await;
}
