//! Live state of this machine: running processes (via `sysinfo`) and local model servers
//! listening on catalog ports (Linux: `/proc/net/tcp` and `tcp6`, attributed to their process
//! through the socket inode in `/proc/<pid>/fd`).

use std::collections::HashMap;

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use super::fs::Fs;
use super::{Found, Kind, Sink};

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>) {
    processes(sink);
    listening_ports(fs, sink);
}

fn processes(sink: &mut Sink<'_>) {
    let mut sys =
        System::new_with_specifics(RefreshKind::nothing().with_processes(
            ProcessRefreshKind::nothing().with_exe(sysinfo::UpdateKind::OnlyIfNotSet),
        ));
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_exe(sysinfo::UpdateKind::OnlyIfNotSet),
    );
    for (pid, process) in sys.processes() {
        // The executable's file name is the reliable name; the process name may be truncated
        // (Linux keeps 15 bytes) or rewritten by the process.
        let exe_name =
            process.exe().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let name = process.name().to_string_lossy().into_owned();
        let (value, matched) = match exe_name
            .as_deref()
            .and_then(|e| sink.index().process(e).map(|m| (e.to_owned(), m)))
        {
            Some((v, m)) => (v, Some(m)),
            None => (name.clone(), sink.index().process(&name)),
        };
        if matched.is_none() {
            continue;
        }
        let path = process.exe().map(|p| p.display().to_string());
        let mut found = Found::new(value).detail(format!("pid {pid}"));
        if let Some(p) = path {
            found = found.path(p);
        }
        sink.add(Kind::Process, matched, found);
    }
}

/// Listening TCP sockets on ports the catalog knows, with the owning process when visible.
fn listening_ports(fs: &mut Fs, sink: &mut Sink<'_>) {
    let mut listening: Vec<(u16, u64)> = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Some(text) = fs.read_text(std::path::Path::new(table)) else { continue };
        listening.extend(parse_proc_net_listeners(&text));
    }
    listening.retain(|(port, _)| sink.index().local_port(*port).is_some());
    if listening.is_empty() {
        return;
    }
    let owners = socket_owners(listening.iter().map(|(_, inode)| *inode).collect());
    listening.sort_unstable();
    listening.dedup_by_key(|(port, _)| *port);
    for (port, inode) in listening {
        let matched = sink.index().local_port(port);
        let mut found = Found::new(format!("127.0.0.1:{port}"));
        if let Some((pid, exe)) = owners.get(&inode) {
            found = found.detail(format!("pid {pid} {exe}"));
        }
        sink.add(Kind::LocalRuntime, matched, found);
    }
}

/// (local port, socket inode) of every LISTEN (state `0A`) row of `/proc/net/tcp[6]`.
pub(crate) fn parse_proc_net_listeners(text: &str) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let state = cols.get(3)?;
            let inode = cols.get(9)?.parse().ok()?;
            if *state != "0A" {
                return None;
            }
            let port_hex = local.rsplit_once(':')?.1;
            Some((u16::from_str_radix(port_hex, 16).ok()?, inode))
        })
        .collect()
}

/// Which process holds each socket inode: a walk of `/proc/<pid>/fd` links, bounded by the
/// number of processes and fds the kernel shows.
fn socket_owners(mut wanted: Vec<u64>) -> HashMap<u64, (u32, String)> {
    wanted.sort_unstable();
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return out };
    for proc_entry in procs.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else { continue };
            if wanted.binary_search(&inode).is_ok() {
                let exe = std::fs::read_link(proc_entry.path().join("exe"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                out.insert(inode, (pid, exe));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_listeners() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0\n\
   2: garbage\n";
        assert_eq!(parse_proc_net_listeners(text), vec![(11434, 4242)]);
    }
}
