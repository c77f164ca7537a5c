//! Process attribution on Linux: which local process owns the socket of a matched flow.
//!
//! A snapshot lookup (bandwhich's approach): find the socket's inode in `/proc/net/{tcp,tcp6,
//! udp,udp6}` by its addresses, then the process holding `socket:[inode]` among
//! `/proc/<pid>/fd/*`, and name it by `/proc/<pid>/exe` (`comm` is cut at 15 bytes). It is run
//! only for observations that matched the catalog (privacy, and cost: a scan of `/proc` per
//! lookup), and only live: a replayed pcap's sockets are long gone. Short-lived sockets can be
//! missed; event-based attribution (eBPF) is future work (endpoint-anchors.md section 5.8).
//!
//! Every read is capped ([`MAX_TABLE_BYTES`]) and every scan bounded ([`MAX_PIDS`],
//! [`MAX_FDS`]).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::model::{Observation, Transport};

/// Bytes read from one `/proc/net` table.
pub const MAX_TABLE_BYTES: u64 = 8 * 1024 * 1024;
/// Processes examined per lookup.
pub const MAX_PIDS: usize = 65_536;
/// File descriptors examined per process.
pub const MAX_FDS: usize = 65_536;

/// The process that owns a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Executable file name (from `/proc/<pid>/exe`, or `comm` when that is unreadable).
    pub name: String,
}

/// The owner of the observation's flow on this host: tried with the source as the local end
/// (an outgoing query or ClientHello), then with the destination (a DNS response).
pub fn owner(obs: &Observation) -> Option<Process> {
    let inode = socket_inode(obs.transport, obs.src, obs.dst)
        .or_else(|| socket_inode(obs.transport, obs.dst, obs.src))?;
    process_of(inode)
}

fn socket_inode(transport: Transport, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let tables: &[&str] = match transport {
        Transport::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Transport::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    tables.iter().find_map(|t| {
        let text = read_capped(t)?;
        find_inode(&text, transport, local, remote)
    })
}

fn read_capped(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_TABLE_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Finds the inode of the socket with these ends in a `/proc/net` table's text. UDP sockets
/// are often unconnected (remote `0.0.0.0:0`) and then match on the local end alone.
pub fn find_inode(
    table: &str,
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let l = parse_addr(cols.nth(1)?)?;
        let r = parse_addr(cols.next()?)?;
        let inode: u64 = cols.nth(6)?.parse().ok()?;
        let local_ok = same(l, local);
        let remote_ok = same(r, remote)
            || (transport == Transport::Udp && r.ip().is_unspecified() && r.port() == 0);
        (local_ok && remote_ok && inode != 0).then_some(inode)
    })
}

/// Equal, treating IPv4-mapped IPv6 as IPv4 and an unspecified local address as a wildcard.
fn same(table: SocketAddr, seen: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    table.port() == seen.port()
        && (canon(table.ip()) == canon(seen.ip()) || table.ip().is_unspecified())
}

/// Parses `0100007F:0035` (IPv4, little-endian words) or the 32-digit IPv6 form.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = match ip_hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip_hex, 16).ok()?.swap_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let start = i.checked_mul(8)?;
                let word =
                    u32::from_str_radix(ip_hex.get(start..start.checked_add(8)?)?, 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[allow(clippy::disallowed_methods)] // Reason: /proc/PID/comm, a kernel file of at most 16 bytes.
fn process_of(inode: u64) -> Option<Process> {
    let wanted = format!("socket:[{inode}]");
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.take(MAX_PIDS).flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let owns = fds.take(MAX_FDS).flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str())
        });
        if owns {
            let name = std::fs::read_link(entry.path().join("exe"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .or_else(|| {
                    std::fs::read_to_string(entry.path().join("comm"))
                        .ok()
                        .map(|c| c.trim().to_owned())
                })
                .unwrap_or_default();
            return Some(Process { pid, name });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:01BB 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn ipv4_table_rows_are_found_by_both_ends() {
        let local: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(find_inode(TCP, Transport::Tcp, local, remote), Some(4242));
        assert_eq!(find_inode(TCP, Transport::Tcp, remote, local), None);
    }

    #[test]
    fn ipv6_table_rows_are_found() {
        let local: SocketAddr = "[::1]:54321".parse().unwrap();
        let remote: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(find_inode(TCP6, Transport::Tcp, local, remote), Some(777));
    }

    #[test]
    fn own_udp_socket_is_attributed_to_this_process() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let obs = Observation {
            kind: crate::model::Kind::Dns,
            name: "claude.ai".into(),
            ts: crate::model::Timestamp(0),
            src: local,
            dst: "127.0.0.1:53".parse().unwrap(),
            transport: Transport::Udp,
            alpn: Vec::new(),
            ech: false,
        };
        let p = owner(&obs).expect("own socket found");
        assert_eq!(p.pid, std::process::id());
    }
}
