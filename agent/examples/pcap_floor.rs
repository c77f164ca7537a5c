//! The benchmark floor: a bare libpcap read loop that touches every packet (its length and
//! first byte) and parses nothing. `cargo run --release --example pcap_floor -- FILE`.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: pcap_floor FILE")?;
    let mut capture = pcap::Capture::from_file(path)?;
    let (mut packets, mut bytes, mut check) = (0u64, 0u64, 0u64);
    loop {
        match capture.next_packet() {
            Ok(p) => {
                packets += 1;
                bytes += u64::from(p.header.caplen);
                check = check.wrapping_add(u64::from(p.data.first().copied().unwrap_or(0)));
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(e.into()),
        }
    }
    writeln!(std::io::stderr().lock(), "packets={packets} bytes={bytes} check={check}")?;
    Ok(())
}
