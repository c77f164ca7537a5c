//! Name-based formats: the RPZ zone, hosts, adblock filter lists and the plain domain list.
//!
//! Every name written is a catalog domain rule (validated lowercase a-z, 0-9, '-', '.'); every
//! comment goes through [`super::one_line`], so nothing a reviewer typed can add a record.

use super::{Blocked, Format, Plan};

/// TTL of the zone's records, in seconds: how long a resolver may keep an answer after a
/// decision changes.
const RPZ_TTL_SECS: u32 = 300;

/// `; comment` lines (or `# `, `! `) for a block of text.
fn comment(out: &mut String, mark: &str, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str(mark.trim_end());
        } else {
            out.push_str(mark);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// The heading line of one product: `openai.chatgpt: ChatGPT (OpenAI), blocked; use X instead`.
fn product_line(b: &Blocked) -> String {
    let mut line = format!("{}: {} ({}), {}", b.id, b.name, b.vendor, b.status.as_str());
    if let Some(alt) = &b.alternative {
        line.push_str(&format!("; use {alt} instead"));
    }
    line
}

/// The held-back indicators and notes, as comment lines.
fn trailer(out: &mut String, mark: &str, plan: &Plan) {
    let lines = plan.report_lines();
    if lines.is_empty() {
        return;
    }
    out.push('\n');
    comment(out, mark, "Not written:");
    for line in lines {
        comment(out, mark, &super::one_line(&line));
    }
}

/// The Response Policy Zone.
pub(super) fn rpz(plan: &Plan) -> String {
    let mut out = String::new();
    comment(&mut out, "; ", &plan.headline(Format::Rpz));
    comment(
        &mut out,
        "; ",
        "A DNS Response Policy Zone for BIND, Unbound, PowerDNS and Knot: load it as a response\n\
         policy zone of any name (for example aiscout.rpz). A blocked name and every name below\n\
         it answer NXDOMAIN (CNAME .), or a CNAME to the coaching page for a product with a\n\
         sanctioned alternative; an allowed product's name below a blocked one passes\n\
         (CNAME rpz-passthru.). The serial is the time of the latest review decision.",
    );
    out.push_str(&format!("$TTL {RPZ_TTL_SECS}\n@ IN SOA localhost. hostmaster.localhost. {} 3600 600 86400 {RPZ_TTL_SECS}\n\
         @ IN NS localhost.\n",
        plan.serial
    ));
    for b in &plan.blocked {
        if b.domains.is_empty() {
            continue;
        }
        out.push('\n');
        comment(&mut out, "; ", &product_line(b));
        let target = match (&plan.coaching_host, b.coach) {
            (Some(host), true) => format!("{host}."),
            _ => ".".to_owned(),
        };
        for d in &b.domains {
            out.push_str(&format!("{d} CNAME {target}\n"));
            out.push_str(&format!("*.{d} CNAME {target}\n"));
        }
    }
    if !plan.exceptions.is_empty() {
        out.push('\n');
        comment(&mut out, "; ", "Allowed products' names below blocked ones: they resolve.");
        for e in &plan.exceptions {
            comment(&mut out, "; ", &format!("{} ({}), below {}", e.product, e.status, e.under));
            out.push_str(&format!("{} CNAME rpz-passthru.\n", e.domain));
            out.push_str(&format!("*.{} CNAME rpz-passthru.\n", e.domain));
        }
    }
    trailer(&mut out, "; ", plan);
    out
}

/// A hosts file: each blocked name answered `0.0.0.0` (exact names only).
pub(super) fn hosts(plan: &Plan) -> (String, Vec<String>) {
    let mut out = String::new();
    comment(&mut out, "# ", &plan.headline(Format::Hosts));
    comment(
        &mut out,
        "# ",
        "A hosts file for Pi-hole, AdGuard Home and other hosts-file blocklists. A hosts entry\n\
         matches its exact name only: names below a blocked one (www., api.) are not blocked\n\
         by it. Use the adblock or rpz export to block whole domains.",
    );
    for b in &plan.blocked {
        if b.domains.is_empty() {
            continue;
        }
        out.push('\n');
        comment(&mut out, "# ", &product_line(b));
        for d in &b.domains {
            out.push_str(&format!("0.0.0.0 {d}\n"));
        }
    }
    trailer(&mut out, "# ", plan);
    (out, Vec::new())
}

/// An adblock-style filter list: `||name^` blocks a name and the names below it;
/// `@@||name^` lets an allowed product's name through.
pub(super) fn adblock(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("! Title: aiscout: blocked AI tools\n");
    comment(&mut out, "! ", &plan.headline(Format::Adblock));
    comment(
        &mut out,
        "! ",
        "For AdGuard Home, Pi-hole and uBlock Origin: ||name^ blocks a name and every name below\n\
         it; @@||name^ lets an allowed product's name below a blocked one through.",
    );
    for b in &plan.blocked {
        if b.domains.is_empty() {
            continue;
        }
        out.push('\n');
        comment(&mut out, "! ", &product_line(b));
        for d in &b.domains {
            out.push_str(&format!("||{d}^\n"));
        }
    }
    if !plan.exceptions.is_empty() {
        out.push('\n');
        comment(&mut out, "! ", "Allowed products' names below blocked ones.");
        for e in &plan.exceptions {
            comment(&mut out, "! ", &format!("{} ({}), below {}", e.product, e.status, e.under));
            out.push_str(&format!("@@||{}^\n", e.domain));
        }
    }
    trailer(&mut out, "! ", plan);
    out
}

/// One blocked domain per line, sorted, nothing else (gateways import the list as it is).
pub(super) fn url_list(plan: &Plan) -> (String, Vec<String>) {
    let mut out = String::new();
    for (d, _) in plan.blocked_domains() {
        out.push_str(d);
        out.push('\n');
    }
    let notes = plan
        .exceptions
        .iter()
        .map(|e| {
            format!(
                "url-list has no exceptions: {} of {} ({}) lies below the blocked {}; allow it \
                 in your gateway",
                e.domain, e.product, e.status, e.under
            )
        })
        .collect();
    (out, notes)
}
