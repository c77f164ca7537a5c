//! Issue 17, a reviewer teaches the collector: a candidate descriptor mapped to a product over
//! the API and the console counts as that product's spend, past lines and later imports alike;
//! an undo makes the lines candidates again; both are audited; only security and admins may,
//! and a console form needs its CSRF token. Also the consumer plans of the reconciliation.

use aiscout_collector::model::Role;
use aiscout_collector::store::Store;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::start;
use crate::console::{csrf, get, post_with_cookie, sign_in};

const NOVEMBER: &str = "date,amount,currency,descriptor,payer_email,department\n\
    2026-11-02,49.00,USD,SQ *ACME AI LABS 4155550100,ann.lee@example.com,Sales\n\
    2026-11-03,20.00,USD,OPENAI *CHATGPT SUBSCR,bob@example.com,Engineering\n";

const DECEMBER: &str = "date,amount,currency,descriptor,payer_email,department\n\
    2026-12-02,49.00,USD,ACME AI LABS 99881,ann.lee@example.com,Sales\n";

async fn json_of(
    c: &mut aiscout_collector::client::Connection,
    method: Method,
    path: &str,
    token: &str,
    body: impl Into<hyper::body::Bytes>,
) -> (StatusCode, Value) {
    let (status, bytes) = c.send(method, path, Some(token), body).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The expense spend of `product` in the inventory (`"–"` when it has none).
async fn card_spend(
    c: &mut aiscout_collector::client::Connection,
    token: &str,
    product: &str,
) -> String {
    let (_, v) = json_of(c, Method::GET, "/api/v1/inventory?source=expense", token, "").await;
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["product"] == product)
        .and_then(|r| r["expense_spend"][0]["amount"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "–".into())
}

async fn candidates(c: &mut aiscout_collector::client::Connection, token: &str) -> Vec<Value> {
    let (_, v) = json_of(c, Method::GET, "/api/v1/reports/reconcile", token, "").await;
    v["candidates"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taught_descriptor_counts_past_and_future_lines_and_undo_restores_the_candidate() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let proc = server.token("proc", Role::Procurement).await;
    let sec = server.token("sec", Role::Security).await;
    let viewer = server.token("view", Role::Viewer).await;
    let path = "/api/v1/imports/expenses?name=november.csv";
    let (status, v) = json_of(&mut c, Method::POST, path, &proc, NOVEMBER).await;
    assert_eq!(
        (status, v["stored"].as_u64(), v["candidates"].as_u64()),
        (StatusCode::OK, Some(2), Some(1)),
        "{v}"
    );
    let before = candidates(&mut c, &proc).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["descriptor"], "SQ *ACME AI LABS 4155550100");
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "–");

    // Who may teach: not a viewer, not procurement; a product must be in the catalog.
    let teach = json!({"descriptor": "SQ *ACME AI LABS 4155550100", "product": "anthropic.claude",
                       "note": "Acme resells Claude seats"})
    .to_string();
    for token in [&viewer, &proc] {
        let (status, _) =
            json_of(&mut c, Method::POST, "/api/v1/mappings", token, teach.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let unknown = json!({"descriptor": "ACME AI LABS", "product": "nope.x"}).to_string();
    let (status, v) = json_of(&mut c, Method::POST, "/api/v1/mappings", &sec, unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(candidates(&mut c, &proc).await.len(), 1, "a refused teaching changes nothing");

    // Taught: the past line counts for the product, in the inventory and the reconciliation.
    let (status, v) = json_of(&mut c, Method::POST, "/api/v1/mappings", &sec, teach.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!((v["descriptor"].as_str(), v["lines"].as_u64()), (Some("ACME AI LABS"), Some(1)));
    let id = v["id"].as_i64().unwrap();
    let (status, _) = json_of(&mut c, Method::POST, "/api/v1/mappings", &sec, teach).await;
    assert_eq!(status, StatusCode::CONFLICT, "one mapping per descriptor");
    assert!(candidates(&mut c, &proc).await.is_empty());
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "49.00");
    let (_, r) = json_of(&mut c, Method::GET, "/api/v1/reports/reconcile", &proc, "").await;
    let paid = r["paid_not_sanctioned"].as_array().unwrap();
    assert!(
        paid.iter()
            .any(|p| p["product"] == "anthropic.claude" && p["payer"] == "ann.lee@example.com"),
        "{paid:?}"
    );

    // A later import of the same descriptor resolves directly; the same file again counts once.
    let path = "/api/v1/imports/expenses?name=december.csv";
    // Its line needs no review, so the summary counts no candidate (issue 17).
    for stored in [1, 0] {
        let (status, v) = json_of(&mut c, Method::POST, path, &proc, DECEMBER).await;
        assert_eq!(
            (status, v["stored"].as_u64(), v["candidates"].as_u64()),
            (StatusCode::OK, Some(stored), Some(0)),
            "{v}"
        );
    }
    assert!(candidates(&mut c, &proc).await.is_empty());
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "98.00");
    let (_, list) = json_of(&mut c, Method::GET, "/api/v1/mappings", &viewer, "").await;
    assert_eq!(list["mappings"][0]["product"], "anthropic.claude");
    assert_eq!(list["mappings"][0]["actor"], "sec");

    // Undo: not for a viewer; then both lines are candidates again.
    let undo = format!("/api/v1/mappings/{id}");
    let (status, _) = json_of(&mut c, Method::DELETE, &undo, &viewer, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = json_of(&mut c, Method::DELETE, &undo, &sec, "").await;
    assert_eq!((status, v["lines"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
    let (status, _) = json_of(&mut c, Method::DELETE, &undo, &sec, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let back = candidates(&mut c, &proc).await;
    assert_eq!(back.iter().map(|x| x["lines"].as_u64().unwrap()).sum::<u64>(), 2, "{back:?}");
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "–");
    let (_, log) = json_of(&mut c, Method::GET, "/api/v1/audit", &sec, "").await;
    let actions: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("descriptor."))
        .map(|e| (e["action"].as_str().unwrap().into(), e["actor"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        actions,
        [
            ("descriptor.teach".to_owned(), "sec".to_owned()),
            ("descriptor.undo".into(), "sec".into())
        ]
    );

    // The console: procurement sees no form and is refused one posted anyway; security's form
    // without its CSRF token is refused; with it, the lines count again, and undo restores.
    let mut web = server.connect(false).await;
    let p = sign_in(&mut web, &proc).await;
    let (_, _, page) = get(&mut web, "/reconcile", Some(&p)).await;
    assert!(!page.contains("action=\"/reconcile/mappings\""), "procurement sees no teach form");
    let form = "descriptor=ACME+AI+LABS+99881&product=anthropic.claude";
    let (status, _, _) = post_with_cookie(
        &mut web,
        "/reconcile/mappings",
        Some(&p),
        &format!("{form}&csrf={}", csrf(&page)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let s = sign_in(&mut web, &sec).await;
    let (_, _, page) = get(&mut web, "/reconcile", Some(&s)).await;
    assert!(page.contains("This is…") && page.contains("list=\"catalog-products\""), "{page}");
    let (status, _, body) = post_with_cookie(&mut web, "/reconcile/mappings", Some(&s), form).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Nothing was changed"));
    assert!(server.store.mappings().await.unwrap().is_empty());
    // A product name works as well as its id.
    let by_name = "descriptor=ACME+AI+LABS+99881&product=claude";
    let (status, headers, _) = post_with_cookie(
        &mut web,
        "/reconcile/mappings",
        Some(&s),
        &format!("{by_name}&csrf={}", csrf(&page)),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/reconcile?taught=2#s8");
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "98.00");
    let (_, _, page) = get(&mut web, "/reconcile?taught=2", Some(&s)).await;
    assert!(page.contains("Taught: 2 expense lines are now counted"), "{page}");
    // The notice takes a count only: other text in the address is never shown.
    let (_, _, forged) = get(&mut web, "/reconcile?taught=Call%20555", Some(&s)).await;
    assert!(!forged.contains("Call 555") && !forged.contains("Taught:"), "{forged}");
    let (_, _, one) = get(&mut web, "/reconcile?undone=1", Some(&s)).await;
    assert!(one.contains("Undone: 1 expense line is a candidate again"), "{one}");
    let taught = server.store.mappings().await.unwrap();
    assert_eq!(taught.len(), 1);
    let (status, headers, _) = post_with_cookie(
        &mut web,
        &format!("/reconcile/mappings/{}/undo", taught[0].id),
        Some(&s),
        &format!("csrf={}", csrf(&page)),
    )
    .await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/reconcile?undone=2#s6")
    );
    assert_eq!(card_spend(&mut c, &proc, "anthropic.claude").await, "–");
    assert_eq!(candidates(&mut c, &proc).await.len(), 2);
}

/// A card line whose amount is a consumer plan's list price (ChatGPT Plus, 20 USD a month) is
/// marked as a personal subscription with the business seat proposed (Team, 30 USD per seat
/// per month), in the JSON, the section's CSV and the page; a line of another amount is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_plan_on_a_card_is_marked_and_the_business_seat_proposed() {
    let server = start(100).await;
    let mut c = server.connect(true).await;
    let proc = server.token("proc", Role::Procurement).await;
    let csv = "date,amount,currency,descriptor,payer_email,department\n\
        2026-10-03,20.00,USD,OPENAI *CHATGPT SUBSCR,bob@example.com,Engineering\n\
        2026-11-03,20.00,USD,OPENAI *CHATGPT SUBSCR,bob@example.com,Engineering\n\
        2026-11-04,30.00,USD,OPENAI *CHATGPT SUBSCR,eve@example.com,Legal\n\
        2026-11-05,18.00,USD,CLAUDE.AI PRO SUBSCRIPTION,ann@example.com,Sales\n";
    let (status, v) =
        json_of(&mut c, Method::POST, "/api/v1/imports/expenses?name=cards.csv", &proc, csv).await;
    assert_eq!((status, v["stored"].as_u64()), (StatusCode::OK, Some(4)), "{v}");
    let (_, r) = json_of(&mut c, Method::GET, "/api/v1/reports/reconcile", &proc, "").await;
    let plans = r["consumer_plans"].as_array().unwrap();
    type Row<'a> = (&'a str, &'a str, &'a str, u64, Option<&'a str>, Option<&'a str>, Option<u64>);
    let got: Vec<Row<'_>> = plans
        .iter()
        .map(|p| {
            (
                p["product"].as_str().unwrap(),
                p["payer"].as_str().unwrap(),
                p["plan"].as_str().unwrap(),
                p["lines"].as_u64().unwrap(),
                p["business_plan"].as_str(),
                p["business_price"]["amount"].as_str(),
                p["business_min_seats"].as_u64(),
            )
        })
        .collect();
    // Claude Pro by its name in the descriptor (the amount is no list price), ChatGPT Plus by
    // its amount; Eve's 30.00 is the Team price, not a consumer plan.
    assert_eq!(
        got,
        [
            // The business plans' minimums (issue 17): Claude Team 5 seats, ChatGPT Team 2.
            (
                "anthropic.claude",
                "ann@example.com",
                "Pro",
                1,
                Some("Team Standard"),
                Some("30.00"),
                Some(5)
            ),
            ("openai.chatgpt", "bob@example.com", "Plus", 2, Some("Team"), Some("30.00"), Some(2)),
        ]
    );
    let mut web = server.connect(false).await;
    let s = sign_in(&mut web, &proc).await;
    let (status, _, sheet) = get(&mut web, "/reconcile/consumer-plans.csv", Some(&s)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sheet.lines().next().unwrap().contains("business_plan"), "{sheet}");
    assert!(sheet.lines().next().unwrap().contains("business_min_seats"), "{sheet}");
    assert!(
        sheet.contains("bob@example.com") && sheet.contains("Plus") && sheet.contains("Team"),
        "{sheet}"
    );
    let (_, _, page) = get(&mut web, "/reconcile", Some(&s)).await;
    assert!(
        page.contains("Consumer plans paid on cards")
            && page.contains("Team (USD 30.00 per seat per month, minimum 2 seats)")
            && page.contains("Team Standard (USD 30.00 per seat per month, minimum 5 seats)"),
        "{page}"
    );
}
