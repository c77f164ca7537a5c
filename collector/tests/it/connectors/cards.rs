//! The OpenRouter, Ramp and Brex connectors against the local HTTPS vendor (the parent
//! module's server), each fake implementing the documented shapes of VENDORS.md:
//!
//! - OpenRouter `GET /api/v1/activity?date=YYYY-MM-DD`, `Authorization: Bearer`, answering
//!   `{ "data": [item] }` with `date`, `model`, `usage` and `byok_usage_inference` in USD;
//! - Ramp `POST /developer/v1/token` (client credentials as HTTP Basic, form body
//!   `grant_type=client_credentials&scope=transactions:read`, answering `access_token`), then
//!   `GET /developer/v1/transactions` (`from_date`, `to_date`, `page_size`,
//!   `order_by_date_asc`) answering `{ "data": [...], "page": { "next": absolute URL | null } }`;
//! - Brex `GET /v2/users`, `GET /v2/cards` and `GET /v2/transactions/card/primary`
//!   (`posted_at_start`, `limit`, `cursor`), each `{ "next_cursor", "items" }`, amounts as
//!   Money objects in cents.
//!
//! The fakes answer fewer records per page than asked (as a server may), so that a few
//! records take several pages. Each connector goes through the issue's scenarios: several
//! pages, an empty page, a late row inside the overlap window, 429 with `Retry-After`, 500 then
//! success, a malformed page, an expired credential, totals to the cent and a second sync that
//! adds nothing. A run killed mid-way is the parent module's real-binary test
//! (`a_killed_sync_resumes_without_counting_twice`), run for every kind.

use super::*;

/// Records a fake answers per page.
const PER_PAGE: usize = 4;

pub(super) fn routes() -> axum::Router<Arc<Vendor>> {
    axum::Router::new()
        .route("/api/v1/activity", axum::routing::get(openrouter_activity))
        .route("/developer/v1/token", axum::routing::post(ramp_token))
        .route("/developer/v1/transactions", axum::routing::get(ramp_transactions))
        .route("/v2/users", axum::routing::get(brex_users))
        .route("/v2/cards", axum::routing::get(brex_cards))
        .route("/v2/transactions/card/primary", axum::routing::get(brex_transactions))
}

/// The rows in `[from, to]` by time, and the page from `offset`.
fn window(v: &Vendor, from: i64, to: i64, offset: usize) -> (Vec<String>, usize) {
    let mut rows: Vec<(i64, String)> =
        v.rows.lock().unwrap().iter().filter(|(t, _)| (from..=to).contains(t)).cloned().collect();
    rows.sort_by_key(|(t, _)| *t);
    let total = rows.len();
    (rows.into_iter().skip(offset).take(PER_PAGE).map(|(_, r)| r).collect(), total)
}

async fn openrouter_activity(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let authorized = header(&headers, "authorization") == Some(&format!("Bearer {KEY}"));
    let day = aiscout_collector::ingest::parse::parse_day(&q["date"]).unwrap();
    let page = (v.log.lock().unwrap().len() + 1) as u32;
    let malformed = match gate(&v, &q, authorized, page).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut data: Vec<String> = v
        .rows
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| (day..day + DAY).contains(t))
        .map(|(_, r)| r.clone())
        .collect();
    if malformed {
        break_last(&mut data, "usage");
    }
    ([("content-type", "application/json")], format!(r#"{{"data":[{}]}}"#, data.join(",")))
        .into_response()
}

async fn ramp_token(State(v): State<Arc<Vendor>>, headers: HeaderMap, body: String) -> Response {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{RAMP_ID}:{RAMP_SECRET}"));
    let form: HashMap<String, String> =
        form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(header(&headers, "content-type"), Some("application/x-www-form-urlencoded"));
    if header(&headers, "authorization") != Some(&format!("Basic {basic}"))
        || *v.expired.lock().unwrap()
    {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    assert_eq!(
        (form["grant_type"].as_str(), form["scope"].as_str()),
        ("client_credentials", "transactions:read")
    );
    let n = {
        let mut issued = v.tokens_issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    let token = format!("ramp_tok_{n}");
    *v.token.lock().unwrap() = token.clone();
    let body = format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":864000,"scope":"transactions:read"}}"#
    );
    ([("content-type", "application/json")], body).into_response()
}

async fn ramp_transactions(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = v.token.lock().unwrap().clone();
    let authorized =
        !token.is_empty() && header(&headers, "authorization") == Some(&format!("Bearer {token}"));
    let offset: usize = q.get("start").map_or(0, |s| s.parse().unwrap());
    let malformed = match gate(&v, &q, authorized, (offset / PER_PAGE + 1) as u32).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    assert_eq!(q["order_by_date_asc"], "true");
    let parse = aiscout_collector::ingest::parse::parse_datetime;
    let (from, to) = (parse(&q["from_date"]).unwrap(), parse(&q["to_date"]).unwrap());
    let (mut data, total) = window(&v, from, to, offset);
    if malformed {
        break_last(&mut data, "amount");
    }
    let next = (offset + PER_PAGE < total).then(|| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("from_date", &q["from_date"])
            .append_pair("to_date", &q["to_date"])
            .append_pair("page_size", &q["page_size"])
            .append_pair("order_by_date_asc", "true")
            .append_pair("start", &(offset + PER_PAGE).to_string())
            .finish();
        format!("\"{}/developer/v1/transactions?{query}\"", v.origin.lock().unwrap())
    });
    let body = format!(
        r#"{{"data":[{}],"page":{{"next":{}}}}}"#,
        data.join(","),
        next.unwrap_or_else(|| "null".to_owned())
    );
    ([("content-type", "application/json")], body).into_response()
}

/// Brex's `next_cursor` after the page at `offset` of `total` items (JSON).
fn next_cursor(offset: usize, total: usize) -> String {
    if offset + PER_PAGE < total {
        format!("\"c{}\"", offset + PER_PAGE)
    } else {
        "null".to_owned()
    }
}

/// A Brex list: page `cursor` (`c<offset>`) of `items`.
fn brex_list(items: &[String], cursor: Option<&String>) -> String {
    let offset: usize = cursor.map_or(0, |c| c.trim_start_matches('c').parse().unwrap());
    let page: Vec<String> = items.iter().skip(offset).take(PER_PAGE).cloned().collect();
    let next = next_cursor(offset, items.len());
    format!(r#"{{"next_cursor":{next},"items":[{}]}}"#, page.join(","))
}

fn brex_authorized(v: &Vendor, headers: &HeaderMap) -> bool {
    header(headers, "authorization") == Some(&format!("Bearer {BREX_TOKEN}"))
        && !*v.expired.lock().unwrap()
}

/// Six users (two pages), each holding one card.
async fn brex_users(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !brex_authorized(&v, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let users: Vec<String> = (0..6)
        .map(|u| {
            format!(
                r#"{{"id":"cuuser_{u}","first_name":"Person","last_name":"N{u}","email":"p{u}@example.com",
                "status":"ACTIVE","manager_id":null,"department_id":"cudept_1","location_id":null}}"#
            )
        })
        .collect();
    ([("content-type", "application/json")], brex_list(&users, q.get("cursor"))).into_response()
}

async fn brex_cards(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !brex_authorized(&v, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let cards: Vec<String> = (0..6)
        .map(|u| {
            format!(
                r#"{{"id":"ncard_{u}","owner":{{"type":"USER","user_id":"cuuser_{u}"}},"status":"ACTIVE",
                "last_four":"000{u}","card_name":"Card {u}","card_type":"VIRTUAL"}}"#
            )
        })
        .collect();
    ([("content-type", "application/json")], brex_list(&cards, q.get("cursor"))).into_response()
}

async fn brex_transactions(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let offset: usize = q.get("cursor").map_or(0, |c| c.trim_start_matches('c').parse().unwrap());
    let authorized = brex_authorized(&v, &headers);
    let malformed = match gate(&v, &q, authorized, (offset / PER_PAGE + 1) as u32).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let from = aiscout_collector::ingest::parse::parse_datetime(&q["posted_at_start"]).unwrap();
    let (mut data, total) = window(&v, from, i64::MAX, offset);
    if malformed {
        break_last(&mut data, "posted_at_date");
    }
    let next = next_cursor(offset, total);
    let body = format!(r#"{{"next_cursor":{next},"items":[{}]}}"#, data.join(","));
    ([("content-type", "application/json")], body).into_response()
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Vend {
    Openrouter,
    Ramp,
    Brex,
}

impl Vend {
    /// The fake of a card or OpenRouter connector.
    pub(super) fn of(kind: Kind) -> Vend {
        match kind {
            Kind::Openrouter => Vend::Openrouter,
            Kind::Ramp => Vend::Ramp,
            Kind::Brex => Vend::Brex,
            other => unreachable!("{other:?} has its fake in the parent module"),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Vend::Openrouter => Kind::Openrouter,
            Vend::Ramp => Kind::Ramp,
            Vend::Brex => Kind::Brex,
        }
    }

    /// Record `i` at `at`: OpenRouter's `usage` is `(i % 7 + 1) * 0.0015` USD; a card
    /// transaction is `(i % 5 + 1) * 10 + 0.99` USD.
    fn record(self, i: u64, at: i64) -> String {
        let day = aiscout_collector::ingest::parse::ymd(at);
        let rfc = connectors::litellm::datetime(at).replace(' ', "T") + "+00:00";
        let cents = (i % 5 + 1) * 1_000 + 99;
        let descriptor =
            if i.is_multiple_of(2) { "OPENAI *CHATGPT SUBSCR" } else { "CLAUDE.AI SUBSCRIPTION" };
        match self {
            Vend::Openrouter => format!(
                r#"{{"date":"{day}","model":"openai/gpt-4.1","model_permaslug":"openai/gpt-4.1-2025-04-14",
                "endpoint_id":"ep-{i}","provider_name":"OpenAI","usage":0.{:06},"byok_usage_inference":0,
                "requests":5,"prompt_tokens":50,"completion_tokens":125,"reasoning_tokens":25}}"#,
                (i % 7 + 1) * 1_500
            ),
            Vend::Ramp => format!(
                r#"{{"id":"0f3c1a2b-{i:04}","amount":{}.{:02},"currency_code":"USD",
                "user_transaction_time":"{rfc}","merchant_name":"Vendor","merchant_descriptor":"{descriptor}",
                "merchant_id":"m-1","sk_category_name":"SaaS / Software","state":"CLEARED","card_id":"c-1",
                "card_holder":{{"user_id":"u-1","first_name":"Ada","last_name":"Lovelace",
                "department_id":"d-1","department_name":"Engineering","location_id":null,"location_name":null}},
                "memo":null,"receipts":[]}}"#,
                cents / 100,
                cents % 100
            ),
            Vend::Brex => format!(
                r#"{{"id":"pste_{i:04}","card_id":"ncard_{}","description":"Vendor",
                "amount":{{"amount":{cents},"currency":"USD"}},"initiated_at_date":"{day}",
                "posted_at_date":"{day}","type":"PURCHASE",
                "merchant":{{"raw_descriptor":"{descriptor}","mcc":"5734","country":"USA"}}}}"#,
                i % 6
            ),
        }
    }

    /// What record `i` adds to the stored total: billionths of a dollar (OpenRouter), cents
    /// (the cards).
    fn value(self, i: u64) -> i64 {
        match self {
            Vend::Openrouter => nanos(i),
            Vend::Ramp | Vend::Brex => ((i % 5 + 1) * 1_000 + 99) as i64,
        }
    }

    /// A record the vendor lists that is not spend (a declined swipe, a payment to Brex).
    fn not_spend(self, at: i64) -> Option<String> {
        let day = aiscout_collector::ingest::parse::ymd(at);
        let rfc = connectors::litellm::datetime(at).replace(' ', "T") + "+00:00";
        match self {
            Vend::Openrouter => None,
            Vend::Ramp => Some(format!(
                r#"{{"id":"declined-1","amount":99.00,"currency_code":"USD","user_transaction_time":"{rfc}",
                "merchant_name":"Vendor","merchant_descriptor":"OPENAI *CHATGPT SUBSCR","state":"DECLINED",
                "card_holder":null}}"#
            )),
            Vend::Brex => Some(format!(
                r#"{{"id":"pste_payment","description":"Payment – Thank you!",
                "amount":{{"amount":-63600,"currency":"USD"}},"posted_at_date":"{day}","type":"COLLECTION"}}"#
            )),
        }
    }

    fn settings(self, served: &Served, start: i64) -> Settings {
        let kind = self.kind();
        let base = served.base_url.trim_end_matches("/litellm");
        let (credential, client_id, setting) = match self {
            Vend::Openrouter => {
                (KEY, None, "connector.openrouter.api_key_file (/etc/aiscout/or.key)")
            }
            Vend::Ramp => (
                RAMP_SECRET,
                Some(Secret::new(RAMP_ID)),
                "connector.ramp.client_id_file (/etc/aiscout/ramp.id) and \
                 connector.ramp.client_secret_file (/etc/aiscout/ramp.secret)",
            ),
            Vend::Brex => (BREX_TOKEN, None, "connector.brex.token_file (/etc/aiscout/brex.token)"),
        };
        Settings {
            name: kind.as_str().to_owned(),
            kind,
            base_url: BaseUrl::parse(base).unwrap(),
            credential: Secret::new(credential),
            client_id,
            credential_setting: setting.to_owned(),
            overlap: kind.default_overlap(),
            ..settings(served, start)
        }
    }

    /// The stored total and row count.
    async fn stored(self, store: &impl Store) -> (i64, i64) {
        stored(self.kind(), store).await
    }

    /// Fills the vendor: OpenRouter two items a day on the 1st, 2nd, 4th and 5th day before
    /// `today` (the 3rd is an empty page); the cards ten transactions every eight hours back
    /// from an hour before `now`, and one that is not spend. Returns the expected total, the
    /// row count and the `start` to sync from.
    pub(super) fn fixtures(self, vendor: &Vendor, now: i64) -> (i64, i64, i64) {
        let today = now / DAY * DAY;
        let mut rows = vendor.rows.lock().unwrap();
        let mut total = 0;
        match self {
            Vend::Openrouter => {
                let mut i = 0;
                for d in [5, 4, 2, 1] {
                    for h in [3, 15] {
                        let at = today - d * DAY + h * 3_600;
                        rows.push((at, self.record(i, at)));
                        total += self.value(i);
                        i += 1;
                    }
                }
                (total, 8, today - 5 * DAY)
            }
            Vend::Ramp | Vend::Brex => {
                for i in 0..10u64 {
                    let at = now - 3_600 - i as i64 * 8 * 3_600;
                    rows.push((at, self.record(i, at)));
                    total += self.value(i);
                }
                rows.push((now - 600, self.not_spend(now - 600).unwrap()));
                (total, 10, now - 10 * DAY)
            }
        }
    }
}

/// Several pages with a 429 and a 500 on the way, then a late row, then the same again.
async fn pages_retries_a_late_row_and_a_second_sync(vend: Vend, store: impl Store) {
    let served = serve_vendor().await;
    let now = 1_796_083_200 + 20 * 3_600; // 2026-12-01T20:00:00Z
    let (expected, count, start) = vend.fixtures(&served.vendor, now);
    let s = vend.settings(&served, start);
    let (index, stats) = (index(), Stats::default());
    served.vendor.faults.lock().unwrap().extend([
        Some(Fault::TooMany(1)),
        None,
        Some(Fault::Unavailable),
        None,
    ]);
    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    let records = if matches!(vend, Vend::Openrouter) { 8 } else { 11 };
    let pages = if matches!(vend, Vend::Openrouter) { 5 } else { 3 };
    assert_eq!((p.fetched, p.pages, p.new, p.known), (records, pages, count as u64, 0), "{vend:?}");
    assert_eq!(vend.stored(&store).await, (expected, count), "{vend:?}: totals to the cent");
    {
        let log = served.vendor.log.lock().unwrap();
        assert_eq!(log.len() as u64, pages + 2, "one retry after the 429, one after the 500");
        let waited = log[1].0.duration_since(log[0].0);
        assert!(waited >= std::time::Duration::from_secs(1), "Retry-After honoured: {waited:?}");
        assert_eq!(log[0].1, log[1].1, "the refused page is asked again");
        assert_eq!(log[2].1, log[3].1, "the failed page is asked again");
        assert_ne!(log[1].1, log[2].1);
    }
    assert!(
        stats
            .render()
            .contains(&format!("aiscout_connector_retries_total{{connector=\"{}\"}} 2", s.name))
    );
    if matches!(vend, Vend::Brex) {
        let lines = store.expenses(None).await.unwrap();
        let payers: std::collections::BTreeSet<&str> =
            lines.iter().map(|l| l.payer_email.as_str()).collect();
        assert_eq!(payers.len(), 6, "card holders from the users and cards lists: {payers:?}");
        assert!(lines.iter().all(|l| l.source == "brex"));
    }
    if matches!(vend, Vend::Ramp) {
        let lines = store.expenses(None).await.unwrap();
        assert!(lines.iter().all(|l| l.department == "Engineering" && l.source == "ramp"));
        assert_eq!(*served.vendor.tokens_issued.lock().unwrap(), 1, "one token for the run");
    }

    // Ten minutes later a late row appears inside the overlap window (yesterday for the
    // daily report, two days ago for a card that cleared late).
    let later = now + 600;
    let late_at = if matches!(vend, Vend::Openrouter) {
        now / DAY * DAY - DAY + 7_200
    } else {
        now - 2 * DAY
    };
    served.vendor.rows.lock().unwrap().push((late_at, vend.record(100, late_at)));
    let p = connectors::run(&store, &index, &s, &stats, later).await.unwrap();
    assert_eq!(p.new, 1, "{vend:?}: the late row, once");
    assert!(p.known > 0, "{vend:?}: the overlap asked again: {p:?}");
    let expected = expected + vend.value(100);
    assert_eq!(vend.stored(&store).await, (expected, count + 1));

    // The same again adds nothing.
    let p = connectors::run(&store, &index, &s, &stats, later).await.unwrap();
    assert_eq!(p.new, 0, "{vend:?}: {p:?}");
    assert_eq!(vend.stored(&store).await, (expected, count + 1));

    // Forty days on the window holds nothing: empty pages, and the cursor moves.
    // (The first run after the gap still asks again from its cursor minus the overlap.)
    let month = later + 40 * DAY;
    let p = connectors::run(&store, &index, &s, &stats, month).await.unwrap();
    assert_eq!(p.new, 0, "{vend:?}");
    let month = month + 60;
    let p = connectors::run(&store, &index, &s, &stats, month).await.unwrap();
    assert_eq!((p.fetched, p.new), (0, 0), "{vend:?}");
    assert!(p.pages >= 1);
    let cursor = store.connector_cursor(s.name.clone()).await.unwrap().unwrap();
    assert!(cursor > later, "{vend:?}: the cursor moved to {cursor}");
    let history = store.import_runs(10).await.unwrap();
    assert_eq!(history[0].actor, format!("connector:{}", s.name));
}

/// Page 2 misses a required field: the run fails naming page and field, page 1 stays stored
/// whole, nothing of page 2 is, the cursor stays; the next run stores the rest once.
async fn a_malformed_page_stores_nothing_of_it(vend: Vend) {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor().await;
    let now = 1_796_083_200 + 20 * 3_600;
    let (expected, count, start) = vend.fixtures(&served.vendor, now);
    let s = vend.settings(&served, start);
    let (index, stats) = (index(), Stats::default());
    served.vendor.faults.lock().unwrap().extend([None, Some(Fault::Malformed)]);
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Shape { page: 2, .. }), "{text}");
    let field = match vend {
        Vend::Openrouter => "usage",
        Vend::Ramp => "amount",
        Vend::Brex => "posted_at_date",
    };
    assert!(text.contains(&format!("missing field `{field}`")), "{text}");
    let first_page = if matches!(vend, Vend::Openrouter) { 2 } else { PER_PAGE as i64 };
    assert_eq!(vend.stored(&store).await.1, first_page, "{vend:?}: page 1 whole, nothing of 2");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), None);
    assert!(stats.render().contains("cause=\"shape\"} 1"));

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.new, p.known), ((count - first_page) as u64, first_page as u64));
    assert_eq!(vend.stored(&store).await, (expected, count));
}

/// A refused credential fails at once, names the setting(s) holding it and never its value.
async fn an_expired_credential_names_its_setting(vend: Vend) {
    let h = harness::sqlite().await;
    let served = serve_vendor().await;
    let now = 1_796_083_200 + 20 * 3_600;
    let (_, _, start) = vend.fixtures(&served.vendor, now);
    *served.vendor.expired.lock().unwrap() = true;
    let s = vend.settings(&served, start);
    let e = connectors::run(&h.store, &index(), &s, &Stats::default(), now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Auth { status: 401, page: 1, .. }), "{text}");
    assert!(text.contains(&s.credential_setting), "{text}");
    for secret in [KEY, RAMP_ID, RAMP_SECRET, BREX_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
    assert_eq!(vend.stored(&h.store).await.1, 0);
    assert_eq!(h.store.connector_cursor(s.name.clone()).await.unwrap(), None);
}

macro_rules! each_vendor {
    ($($name:ident: $vend:expr),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn pages_retries_a_late_row_and_a_second_sync_sqlite() {
                    let h = harness::sqlite().await;
                    pages_retries_a_late_row_and_a_second_sync($vend, h.store.clone()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn pages_retries_a_late_row_and_a_second_sync_postgres() {
                    let h = harness::postgres().await;
                    pages_retries_a_late_row_and_a_second_sync($vend, h.store.clone()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_malformed_page_stores_nothing_of_it() {
                    super::a_malformed_page_stores_nothing_of_it($vend).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn an_expired_credential_names_its_setting() {
                    super::an_expired_credential_names_its_setting($vend).await;
                }
            }
        )*
    };
}

each_vendor!(openrouter: Vend::Openrouter, ramp: Vend::Ramp, brex: Vend::Brex);

/// Ramp's access token expires mid-run: the refused page is asked again with a new token from
/// the client credentials, and nothing is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_asks_for_a_new_token_when_the_access_token_expires() {
    let h = harness::sqlite().await;
    let served = serve_vendor().await;
    let now = 1_796_083_200 + 20 * 3_600;
    let (expected, count, start) = Vend::Ramp.fixtures(&served.vendor, now);
    let s = Vend::Ramp.settings(&served, start);
    served.vendor.faults.lock().unwrap().extend([None, Some(Fault::Revoke)]);
    let p = connectors::run(&h.store, &index(), &s, &Stats::default(), now).await.unwrap();
    assert_eq!((p.pages, p.new), (3, count as u64));
    assert_eq!(*served.vendor.tokens_issued.lock().unwrap(), 2);
    assert_eq!(Vend::Ramp.stored(&h.store).await, (expected, count));
}

/// A failing connector raises `connector.failed` once per failure streak: two failed runs are
/// one event; after a successful run (the cursor moves) the next failure is a new one. The
/// event names the connector and cause, never the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_streak_raises_one_connector_failed_event() {
    use aiscout_collector::alerts::event;
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let channel = aiscout_collector::model::ChannelRow {
        name: "ops".into(),
        kind: "webhook".into(),
        events: vec![event::CONNECTOR_FAILED.to_owned()],
    };
    store.sync_channels(vec![channel], 1).await.unwrap();
    let served = serve_vendor().await;
    let now = 1_796_083_200 + 20 * 3_600;
    Vend::Brex.fixtures(&served.vendor, now);
    let s = Vend::Brex.settings(&served, now - 10 * DAY);
    let (index, stats) = (index(), Stats::default());
    let failed = async |store: &aiscout_collector::store::sqlite::SqliteStore| {
        store
            .deliveries(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == event::CONNECTOR_FAILED)
            .map(|d| d.event_id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    *served.vendor.expired.lock().unwrap() = true;
    connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    connectors::run(&store, &index, &s, &stats, now + 3_600).await.unwrap_err();
    assert_eq!(failed(&store).await.len(), 1, "two failures in a row are one event");
    *served.vendor.expired.lock().unwrap() = false;
    connectors::run(&store, &index, &s, &stats, now + 7_200).await.unwrap();
    served.vendor.faults.lock().unwrap().extend([Some(Fault::Malformed)]);
    connectors::run(&store, &index, &s, &stats, now + 10_800).await.unwrap_err();
    assert_eq!(failed(&store).await.len(), 2, "a new streak after a success is a new event");
    let deliveries = store.deliveries(100).await.unwrap();
    assert!(deliveries.iter().all(|d| d.channel == "ops"));
}
