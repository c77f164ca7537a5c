//! Our extraction agrees with tshark on every fixture. Skipped, with a printed line, when
//! tshark is not installed.

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::*;

/// The distinct names tshark prints for `fields`, lowercased, without trailing dots.
fn tshark_names(path: &std::path::Path, fields: &[&str]) -> BTreeSet<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-T", "fields", "-E", "separator=,", "-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .split([',', '\n'])
        .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n != "<root>")
        .collect()
}

#[test]
fn extraction_agrees_with_tshark_on_every_fixture() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("tshark not installed: skipping the tshark comparison");
        return;
    }
    for path in pcap_fixtures() {
        let (records, _) = replay_file(&path, true);
        let ours = |kinds: &[&str]| -> BTreeSet<String> {
            records
                .iter()
                .filter(|r| kinds.contains(&r["kind"].as_str().unwrap()))
                .map(|r| r["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let file = path.display();
        // Server names: exactly tshark's (TLS over TCP and QUIC alike; tshark decrypts
        // QUIC Initials itself).
        let sni = tshark_names(&path, &["tls.handshake.extensions_server_name"]);
        assert_eq!(ours(&["tls_sni", "quic_sni"]), sni, "server names differ on {file}");
        // DNS: every question tshark sees, and nothing that is not a name tshark also
        // decoded from a question or answer.
        let questions = tshark_names(&path, &["dns.qry.name"]);
        let answers = tshark_names(
            &path,
            &["dns.qry.name", "dns.resp.name", "dns.cname", "dns.svcb.targetname"],
        );
        let dns = ours(&["dns"]);
        assert!(questions.is_subset(&dns), "{file}: tshark questions {questions:?}, ours {dns:?}");
        assert!(dns.is_subset(&answers), "{file}: ours {dns:?}, tshark names {answers:?}");
    }
}
