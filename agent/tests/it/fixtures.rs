//! The real-client fixtures in tests/data/pcap (see tests/data/README.md for how each was
//! made), replayed through libpcap.

use aiscout_agent::capture::FileSource;
use aiscout_agent::model::LinkType;
use serde_json::{Value, json};

use crate::support::*;

fn replay(name: &str, all: bool) -> Vec<Value> {
    replay_file(&data_dir().join("pcap").join(format!("{name}.pcap")), all).0
}

/// The single record named `name`, asserting there is exactly one.
fn only<'a>(records: &'a [Value], name: &str) -> &'a Value {
    let hits: Vec<&Value> = records.iter().filter(|r| r["name"] == name).collect();
    assert_eq!(hits.len(), 1, "{records:?}");
    hits[0]
}

#[test]
fn openssl_tls12_over_ipv4() {
    let r = replay("openssl-tls12-ipv4", false);
    let rec = only(&r, "chatgpt.com");
    assert_eq!((&rec["kind"], &rec["product"]), (&json!("tls_sni"), &json!("openai.chatgpt")));
    assert_eq!(rec["alpn"], json!(["h2", "http/1.1"]));
    assert_eq!(rec["ech"], false);
}

#[test]
fn openssl_tls13_over_ipv6() {
    let r = replay("openssl-tls13-ipv6", false);
    let rec = only(&r, "claude.ai");
    assert_eq!(rec["product"], "anthropic.claude");
    assert!(rec["src"].as_str().unwrap().starts_with("[fd00:99::1]:"));
}

#[test]
fn curl_over_ipv4_and_ipv6() {
    assert_eq!(only(&replay("curl-ipv4", false), "api.openai.com")["product"], "openai.api");
    assert_eq!(only(&replay("curl-ipv6", false), "gemini.google.com")["product"], "google.gemini");
}

#[test]
fn curl_on_the_any_device_is_linux_sll2() {
    let path = data_dir().join("pcap/curl-any-sll2.pcap");
    assert_eq!(FileSource::open(&path).unwrap().link(), LinkType::LinuxSll2);
    assert_eq!(only(&replay("curl-any-sll2", false), "claude.ai")["kind"], "tls_sni");
}

#[test]
fn dig_over_udp_reads_questions_answers_cname_targets_and_https_targets() {
    let all = replay("dig-udp", true);
    assert_eq!(
        kind_names(&all),
        set(&[
            "dns chatgpt.com",
            "dns claude.ai",
            "dns svc.claude.ai",
            "dns www.cname.test",
            "dns api.openai.com",
            "dns example.org",
        ])
    );
    // The mixed-case query `ChatGPT.com.` is reported lowercase without the dot.
    assert!(all.iter().any(|r| r["name"] == "chatgpt.com" && r["dst"] == "10.99.0.2:53"));
    let matched = replay("dig-udp", false);
    assert!(matched.iter().all(|r| !r["product"].is_null()));
    assert!(matched.iter().any(|r| r["name"] == "api.openai.com"), "CNAME target counts");
    assert!(!matched.iter().any(|r| r["name"] == "example.org"));
}

#[test]
fn dig_over_tcp_reads_length_prefixed_messages_on_ipv4_and_ipv6() {
    let all = replay("dig-tcp", true);
    assert_eq!(
        kind_names(&all),
        set(&[
            "dns api.anthropic.com",
            "dns chatgpt.com",
            "dns svc.chatgpt.com",
            "dns gemini.google.com"
        ])
    );
    assert!(all.iter().any(|r| r["name"] == "gemini.google.com"
        && r["src"].as_str().unwrap().starts_with("[fd00:99::2]:53")));
}

#[test]
fn chromium_post_quantum_client_hello_split_over_two_segments() {
    let matched = replay("chromium-tls", false);
    assert!(!matched.is_empty());
    for rec in &matched {
        assert_eq!(
            (&rec["name"], &rec["product"]),
            (&json!("chatgpt.com"), &json!("openai.chatgpt"))
        );
        assert_eq!(rec["alpn"], json!(["h2", "http/1.1"]));
        // Chromium always sends an ECH extension (GREASE when it has no ECH config).
        assert_eq!(rec["ech"], true);
    }
    // Chromium's own background names are extracted too, but only printed with --all.
    assert!(replay("chromium-tls", true).len() > matched.len());
}

#[test]
fn chromium_quic_initials_yield_the_sni() {
    let r = replay("chromium-quic", false);
    let rec = only(&r, "chatgpt.com");
    assert_eq!(rec["kind"], "quic_sni");
    assert_eq!(rec["alpn"], json!(["h3"]));
    assert_eq!(rec["ech"], true);
}
