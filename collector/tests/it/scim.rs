//! SCIM 2.0 provisioning (`/scim/v2`, issue 16) end to end over HTTPS on loopback: the
//! scim2-tester conformance checker from PyPI (pinned in .ci/install-deps) against the
//! collector, the request shapes Entra ID and Okta send, deprovisioning, and bad input.

use std::process::{Command, Stdio};

use aiscout_collector::client::Connection;
use aiscout_collector::model::Role;
use aiscout_collector::store::Store;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{Server, start};

async fn send(
    c: &mut Connection,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let (status, bytes) = c.send(method, path, Some(token), body).await.unwrap();
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, v)
}

async fn scim_server() -> (Server, Connection, String) {
    let server = start(100).await;
    let token = server.token("entra", Role::Scim).await;
    let c = server.connect(false).await;
    (server, c, token)
}

fn active_of(people: &[(String, bool)], email: &str) -> Option<bool> {
    people.iter().find(|(e, _)| e == email).map(|(_, a)| *a)
}

/// The virtualenv .ci/install-deps puts scim2-tester in.
fn scim_python() -> Option<std::path::PathBuf> {
    let venv =
        std::env::var_os("AISCOUT_SCIM_VENV").map(std::path::PathBuf::from).or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/aiscout/scim-venv"))
        })?;
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_finds_no_conformance_error() {
    conformance(start(100).await).await;
}

/// Pseudonymous mode seals each stored resource and keeps its name as a pseudonym (issue 21);
/// the identity provider sees no difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_finds_no_conformance_error_in_pseudonymous_mode() {
    use aiscout_collector::identity::{Identities, PrivacyMode};
    let server = crate::api::start_tuned(100, Default::default(), |state| {
        let ids = Identities::new(&[5; 32], PrivacyMode::Pseudonymous);
        state.store.protect_identities(std::sync::Arc::new(ids));
    })
    .await;
    conformance(server).await;
}

async fn conformance(server: Server) {
    let Some(python) = scim_python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "scim2-tester is not installed: run .ci/install-deps"
        );
        eprintln!("skipping: scim2-tester is not installed (run .ci/install-deps)");
        return;
    };
    let token = server.token("entra", Role::Scim).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem_of(&server.ca)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scim/conformance.py");
    let base = format!("https://localhost:{}/scim/v2", server.addr.port());
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(&base)
        .arg(&ca)
        .env("SCIM_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let failures: Vec<&Value> = lines
        .iter()
        .filter(|l| matches!(l["status"].as_str(), Some("ERROR" | "CRITICAL")))
        .collect();
    assert!(
        output.status.success() && failures.is_empty(),
        "conformance failures: {failures:#?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for l in &lines {
        if let Some(s) = l["status"].as_str() {
            *by_status.entry(s.to_owned()).or_default() += 1;
        }
    }
    eprintln!("scim2-tester results by status: {by_status:?}");
    let summary = lines.last().unwrap();
    // The checker ran the discovery and the create/read/replace/delete checks of both types.
    assert!(summary["checks"].as_u64().unwrap() >= 20, "{stdout}");
    let passed = |rt: &str| {
        lines.iter().filter(|l| l["resource_type"] == rt && l["status"] == "SUCCESS").count()
    };
    assert!(passed("User") >= 4 && passed("Group") >= 4, "{stdout}");
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_provisioning_creates_updates_department_and_deactivates_without_losing_history() {
    let (server, mut c, token) = scim_server().await;
    // The manager first, as Entra provisions in dependency order.
    let (status, boss) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "b1", "userName": "Grace@Example.com", "active": true,
            "displayName": "Grace Hopper",
            "emails": [{"primary": true, "type": "work", "value": "grace@example.com"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Navy"}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{boss}");
    let boss_id = boss["id"].as_str().unwrap().to_owned();
    // Entra's create (from the Entra SCIM validator's request shapes).
    let (status, ada) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "a1", "userName": "ada@example.com", "active": true,
            "displayName": "Ada Lovelace",
            "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
            "emails": [{"primary": true, "type": "work", "value": "ada@example.com"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"department": "Engineering", "manager": {"value": boss_id}}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let id = ada["id"].as_str().unwrap().to_owned();
    assert_eq!(ada["meta"]["resourceType"], "User");
    assert_eq!(ada["meta"]["version"], "W/\"1\"");
    let people = server.store.people().await.unwrap();
    let p = people.iter().find(|p| p.email == "ada@example.com").unwrap();
    assert_eq!(p.department, "Engineering");
    assert_eq!(p.manager.as_deref(), Some("grace@example.com"));
    // Entra looks the user up by userName before every change.
    let (status, list) = send(
        &mut c,
        Method::GET,
        "/scim/v2/Users?filter=userName+eq+%22ADA%40example.com%22",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());
    let (_, none) = send(
        &mut c,
        Method::GET,
        "/scim/v2/Users?filter=userName+eq+%22nobody%40example.com%22",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!((none["totalResults"].clone(), none["Resources"].clone()), (json!(0), json!([])));
    // Entra's PATCH: capitalised ops, the department by extension URN path.
    let (status, patched) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "Replace", "path":
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
             "value": "Research"},
            {"op": "Add", "path": "title", "value": "Analyst"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["meta"]["version"], "W/\"2\"");
    let people = server.store.people().await.unwrap();
    assert_eq!(
        people.iter().find(|p| p.email == "ada@example.com").unwrap().department,
        "Research"
    );
    // Entra's deprovisioning: active "False" as a string.
    let (status, _) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let active = server.store.people_active().await.unwrap();
    assert_eq!(active_of(&active, "ada@example.com"), Some(false));
    assert_eq!(active_of(&active, "grace@example.com"), Some(true));
    // History stays: the person is still in the directory with their department.
    let people = server.store.people().await.unwrap();
    assert_eq!(
        people.iter().find(|p| p.email == "ada@example.com").unwrap().department,
        "Research"
    );
    let (_, got) =
        send(&mut c, Method::GET, &format!("/scim/v2/Users/{id}"), &token, Value::Null).await;
    assert_eq!(got["active"], false);
    // A person's export says they are no longer an active seat.
    let admin = server.token("root", Role::Admin).await;
    let (status, export) =
        send(&mut c, Method::GET, "/api/v1/people/ada@example.com/export", &admin, Value::Null)
            .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(
        (export["person"]["department"].clone(), export["person"]["active"].clone()),
        (json!("Research"), json!(false))
    );
    // A hard delete keeps the person too, inactive; the resource is gone.
    let (status, _) =
        send(&mut c, Method::DELETE, &format!("/scim/v2/Users/{boss_id}"), &token, Value::Null)
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) =
        send(&mut c, Method::GET, &format!("/scim/v2/Users/{boss_id}"), &token, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["status"], "404");
    let active = server.store.people_active().await.unwrap();
    assert_eq!(active_of(&active, "grace@example.com"), Some(false));
    // Every change is audited with the token as the actor, and none of them names the person
    // (the audit log outlives an erasure); /metrics counts them.
    let scim: Vec<_> = server
        .store
        .audit(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action.starts_with("scim."))
        .collect();
    let actions: Vec<(&str, &str)> =
        scim.iter().map(|e| (e.record.action.as_str(), e.record.subject.as_str())).collect();
    let (ada, grace) = (format!("User/{id}"), format!("User/{boss_id}"));
    assert_eq!(
        actions,
        [
            ("scim.create", grace.as_str()),
            ("scim.create", ada.as_str()),
            ("scim.update", ada.as_str()),
            ("scim.update", ada.as_str()),
            ("scim.delete", grace.as_str()),
        ]
    );
    assert!(scim.iter().all(|e| e.record.actor == "entra"));
    assert_eq!(scim[3].record.after.as_deref(), Some(r#"{"active":false,"version":3}"#));
    let text = format!("{scim:?}").to_lowercase();
    // (Not "ada" alone: it is hex, and may be part of a resource id.)
    for secret in ["example.com", "grace", "lovelace", "hopper", "research", "navy"] {
        assert!(!text.contains(secret), "{secret} in the SCIM audit entries: {text}");
    }
    let (_, bytes) = c.send(Method::GET, "/metrics", None, "").await.unwrap();
    let metrics = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        "aiscout_collector_scim_changes_total{op=\"create\"} 2",
        "aiscout_collector_scim_changes_total{op=\"update\"} 2",
        "aiscout_collector_scim_changes_total{op=\"delete\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_and_group_shapes_are_accepted() {
    let (server, mut c, token) = scim_server().await;
    let (status, u) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "linus@example.com",
            "name": {"givenName": "Linus", "familyName": "T"},
            "emails": [{"primary": true, "value": "linus@example.com", "type": "work"}],
            "displayName": "Linus T", "locale": "en-US", "externalId": "00u1", "groups": [],
            "password": "ignored-by-aiscout", "active": true
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    // The password Okta may send is never stored or returned.
    assert!(u.get("password").is_none(), "{u}");
    let id = u["id"].as_str().unwrap().to_owned();
    let stored = server.store.scim_get("User", id.clone()).await.unwrap().unwrap();
    assert!(!stored.resource.contains("ignored-by-aiscout"));
    // Okta deactivates with a pathless replace.
    let (status, u) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "value": {"active": false}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["active"], false);
    assert_eq!(
        active_of(&server.store.people_active().await.unwrap(), "linus@example.com"),
        Some(false)
    );
    // Okta reactivates with PUT of the whole user.
    let mut whole = u.clone();
    whole["active"] = json!(true);
    let (status, u) =
        send(&mut c, Method::PUT, &format!("/scim/v2/Users/{id}"), &token, whole).await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(
        active_of(&server.store.people_active().await.unwrap(), "linus@example.com"),
        Some(true)
    );
    // Groups: Okta pushes a group, adds and removes members by PATCH.
    let (status, g) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Groups",
        &token,
        json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "AI Users", "members": []}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let path = format!("/scim/v2/Groups/{gid}");
    let (status, g) = send(
        &mut c,
        Method::PATCH,
        &path,
        &token,
        json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members",
                        "value": [{"value": id, "display": "linus@example.com"}]}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(g["members"][0]["value"], id.as_str());
    let (status, g) = send(
        &mut c,
        Method::PATCH,
        &path,
        &token,
        json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(g["members"], json!([]));
    let (_, list) = send(
        &mut c,
        Method::GET,
        "/scim/v2/Groups?filter=displayName%20eq%20%22ai%20users%22",
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(list["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_user_once() {
    let (_server, mut c, token) = scim_server().await;
    for i in 0..7 {
        let (status, _) = send(
            &mut c,
            Method::POST,
            "/scim/v2/Users",
            &token,
            json!({"userName": format!("u{i}@example.com")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut start = 1;
    for _ in 0..10 {
        let (_, page) = send(
            &mut c,
            Method::GET,
            &format!("/scim/v2/Users?startIndex={start}&count=3"),
            &token,
            Value::Null,
        )
        .await;
        assert_eq!(page["totalResults"], 7);
        assert_eq!(page["startIndex"], start);
        let items = page["Resources"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        seen.extend(items.iter().map(|r| r["userName"].as_str().unwrap().to_owned()));
        start += i64::try_from(items.len()).unwrap();
    }
    seen.sort();
    let expected: Vec<String> = (0..7).map(|i| format!("u{i}@example.com")).collect();
    assert_eq!(seen, expected);
    let (_, zero) = send(&mut c, Method::GET, "/scim/v2/Users?count=0", &token, Value::Null).await;
    assert_eq!((zero["totalResults"].clone(), zero["Resources"].clone()), (json!(7), json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_scim_errors_naming_the_problem() {
    let (server, mut c, token) = scim_server().await;
    let check =
        |status: StatusCode, body: &Value, want: StatusCode, scim_type: &str, word: &str| {
            assert_eq!(status, want, "{body}");
            assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
            assert_eq!(body["status"], want.as_u16().to_string());
            assert_eq!(body["scimType"], scim_type, "{body}");
            assert!(body["detail"].as_str().unwrap().contains(word), "{body}");
        };
    let (s, b) =
        send(&mut c, Method::POST, "/scim/v2/Users", &token, json!({"active": true})).await;
    check(s, &b, StatusCode::BAD_REQUEST, "invalidValue", "userName");
    let (s, b) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({"userName": "x@example.com", "active": "maybe"}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "invalidValue", "active");
    let (status, bytes) =
        c.send(Method::POST, "/scim/v2/Users", Some(&token), "{\"userName\": ").await.unwrap();
    let b: Value = serde_json::from_slice(&bytes).unwrap();
    check(status, &b, StatusCode::BAD_REQUEST, "invalidSyntax", "line 1");
    let (s, _) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({"userName": "dup@example.com"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({"userName": "DUP@example.com"}),
    )
    .await;
    check(s, &b, StatusCode::CONFLICT, "uniqueness", "dup@example.com");
    let (s, b) = send(
        &mut c,
        Method::GET,
        "/scim/v2/Users?filter=title%20sw%20%22x%22",
        &token,
        Value::Null,
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "invalidFilter", "userName eq");
    let (s, b) = send(&mut c, Method::GET, "/scim/v2/Users?count=ten", &token, Value::Null).await;
    check(s, &b, StatusCode::BAD_REQUEST, "invalidValue", "count");
    let (_, list) = send(&mut c, Method::GET, "/scim/v2/Users", &token, Value::Null).await;
    let id = list["Resources"][0]["id"].as_str().unwrap().to_owned();
    let (s, b) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "remove"}]}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "noTarget", "Operations[0]");
    let (s, b) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "id", "value": "mine"}]}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "mutability", "id");
    let (s, b) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"Operations": []}),
    )
    .await;
    check(s, &b, StatusCode::BAD_REQUEST, "invalidSyntax", "PatchOp");
    // A failed PATCH changed nothing.
    let (_, got) =
        send(&mut c, Method::GET, &format!("/scim/v2/Users/{id}"), &token, Value::Null).await;
    assert_eq!(got["meta"]["version"], "W/\"1\"");
    // Only the scim role: others are refused, no token is 401.
    let admin = server.token("root", Role::Admin).await;
    let (s, b) = send(&mut c, Method::GET, "/scim/v2/Users", &admin, Value::Null).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("--role scim"));
    let (s, _) = c.send(Method::GET, "/scim/v2/Users", None, "").await.unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The scim token reaches nothing outside /scim/v2, and cannot sign in to the console.
    let (s, _) = c.send(Method::GET, "/api/v1/inventory", Some(&token), "").await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN);
    let headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)> = vec![(
        "content-type".parse().unwrap(),
        "application/x-www-form-urlencoded".parse().unwrap(),
    )];
    let r = c
        .request(Method::POST, "/login", &headers, format!("token={token}&next=%2F"), 1 << 20)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("set-cookie").is_none(), "no session");
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("role (scim) is for SCIM provisioning (/scim/v2) only."), "{page}");
}

/// A person deprovisioned over SCIM stays in history but is no active seat: the seat they
/// still pay for becomes an idle seat in the reconciliation (while active, Ann owns no device,
/// so her seat is not one), and the /people page marks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioned_payer_is_an_idle_seat_and_marked_on_the_people_page() {
    use aiscout_collector::join;
    let (server, mut c, token) = scim_server().await;
    let now = aiscout_collector::store::now();
    let day = 86_400;
    let lines = (0..3)
        .map(|m| {
            crate::store::expense(
                &format!("ann:{m}"),
                Some("openai.chatgpt"),
                now - (m * 30 + 2) * day,
                2_000,
            )
        })
        .collect();
    server.store.add_expenses(lines, now).await.unwrap();
    let (r, audit) = aiscout_collector::review::decide(
        "openai.chatgpt",
        aiscout_collector::review::Decision::new(
            aiscout_wire::ReviewStatus::Sanctioned,
            "ok".into(),
        ),
        "sec",
        now,
    );
    server.store.set_review(r, audit).await.unwrap();
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let idle = async || {
        let facts = join::gather(&server.store, Default::default(), now, join::Purpose::Reconcile)
            .await
            .unwrap();
        join::reconcile::reconcile(&catalog, &facts, 30)
            .idle_subscriptions
            .into_iter()
            .map(|s| s.payer)
            .collect::<Vec<_>>()
    };
    assert!(idle().await.is_empty(), "an active payer without a device is no idle seat");

    let (status, created) = send(
        &mut c,
        Method::POST,
        "/scim/v2/Users",
        &token,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "ann@example.com", "active": true,
               "name": {"givenName": "Ann", "familyName": "Lee"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(idle().await.is_empty());
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = send(
        &mut c,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        &token,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(idle().await, ["ann@example.com"], "the deprovisioned payer's seat is idle");

    let proc =
        crate::console::sign_in(&mut c, &server.token("proc", Role::Procurement).await).await;
    let (status, _, page) = crate::console::get(&mut c, "/people", Some(&proc)).await;
    assert_eq!(status, StatusCode::OK);
    let row = page.split("ann@example.com").nth(1).expect("Ann is still listed");
    assert!(row.split("</tr>").next().unwrap().contains("deprovisioned"), "{row}");
}
