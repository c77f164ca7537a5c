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
    let mut listening = listeners(fs);
    listening.retain(|(port, _)| sink.index().local_port(*port).is_some());
    listening.sort_unstable();
    listening.dedup_by_key(|(port, _)| *port);
    for (port, owner) in listening {
        let matched = sink.index().local_port(port);
        let mut found = Found::new(format!("127.0.0.1:{port}"));
        if let Some((pid, exe)) = owner {
            found = found.detail(format!("pid {pid} {exe}"));
        }
        sink.add(Kind::LocalRuntime, matched, found);
    }
}

/// (port, owner) of every listening TCP socket. Linux reads `/proc`; macOS asks `lsof`;
/// Windows asks `netstat -ano`. The parsers are shared code, tested on every platform from
/// captured output.
#[cfg(target_os = "linux")]
fn listeners(fs: &mut Fs) -> Vec<(u16, Option<(u32, String)>)> {
    let mut sockets: Vec<(u16, u64)> = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Some(text) = fs.read_text(std::path::Path::new(table)) else { continue };
        sockets.extend(parse_proc_net_listeners(&text));
    }
    let owners = socket_owners(sockets.iter().map(|(_, inode)| *inode).collect());
    sockets.into_iter().map(|(port, inode)| (port, owners.get(&inode).cloned())).collect()
}

#[cfg(target_os = "macos")]
fn listeners(_fs: &mut Fs) -> Vec<(u16, Option<(u32, String)>)> {
    let out = std::process::Command::new("/usr/sbin/lsof")
        .args(["-nP", "-iTCP", "-sTCP:LISTEN", "-Fpcn"])
        .output();
    match out {
        Ok(o) => parse_lsof_listeners(&String::from_utf8_lossy(&o.stdout))
            .into_iter()
            .map(|(port, pid, name)| (port, Some((pid, name))))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(windows)]
fn listeners(_fs: &mut Fs) -> Vec<(u16, Option<(u32, String)>)> {
    let out = std::process::Command::new("netstat").args(["-ano", "-p", "TCP"]).output();
    let Ok(o) = out else { return Vec::new() };
    let mut sys = System::new();
    sys.refresh_processes(ProcessesToUpdate::All, true);
    parse_netstat_listeners(&String::from_utf8_lossy(&o.stdout))
        .into_iter()
        .map(|(port, pid)| {
            let name = sys
                .process(sysinfo::Pid::from_u32(pid))
                .map(|p| p.name().to_string_lossy().into_owned())
                .unwrap_or_default();
            (port, Some((pid, name)))
        })
        .collect()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn listeners(_fs: &mut Fs) -> Vec<(u16, Option<(u32, String)>)> {
    Vec::new()
}

/// `lsof -nP -iTCP -sTCP:LISTEN -Fpcn` output: a `p<pid>` line, a `c<command>` line, then one
/// `n<address>:<port>` line per listening socket of that process.
pub fn parse_lsof_listeners(text: &str) -> Vec<(u16, u32, String)> {
    let mut out = Vec::new();
    let (mut pid, mut command) = (None, String::new());
    for line in text.lines() {
        match line.split_at_checked(1) {
            Some(("p", rest)) => {
                pid = rest.trim().parse().ok();
                command.clear();
            }
            Some(("c", rest)) => command = rest.trim().to_owned(),
            Some(("n", rest)) => {
                let port = rest.rsplit_once(':').and_then(|(_, p)| p.trim().parse().ok());
                if let (Some(port), Some(pid)) = (port, pid) {
                    out.push((port, pid, command.clone()));
                }
            }
            _ => {}
        }
    }
    out
}

/// `netstat -ano -p TCP` output: `TCP  127.0.0.1:11434  0.0.0.0:0  LISTENING  1234` rows
/// (IPv6 rows write `[::1]:11434`).
pub fn parse_netstat_listeners(text: &str) -> Vec<(u16, u32)> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [proto, local, _remote, state, pid]
                    if proto.eq_ignore_ascii_case("tcp") && *state == "LISTENING" =>
                {
                    let port = local.rsplit_once(':')?.1.parse().ok()?;
                    Some((port, pid.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// (local port, socket inode) of every LISTEN (state `0A`) row of `/proc/net/tcp[6]`.
pub fn parse_proc_net_listeners(text: &str) -> Vec<(u16, u64)> {
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

#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // Linux only; parsers are tested everywhere.
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
    fn lsof_listeners_as_macos_prints_them() {
        let text = "p812\ncollama\nn127.0.0.1:11434\np990\ncLM Studio\nn*:1234\nn[::1]:1234\np5\ncbroken\nnnot-an-address\n";
        assert_eq!(
            parse_lsof_listeners(text),
            vec![
                (11434, 812, "ollama".to_owned()),
                (1234, 990, "LM Studio".to_owned()),
                (1234, 990, "LM Studio".to_owned()),
            ]
        );
    }

    #[test]
    fn netstat_listeners_as_windows_prints_them() {
        let text = "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State           PID\r\n  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1016\r\n  TCP    127.0.0.1:11434        0.0.0.0:0              LISTENING       4242\r\n  TCP    127.0.0.1:50000        127.0.0.1:11434        ESTABLISHED     77\r\n  TCP    [::1]:1234             [::]:0                 LISTENING       99\r\n";
        assert_eq!(parse_netstat_listeners(text), vec![(135, 1016), (11434, 4242), (1234, 99)]);
    }

    #[test]
    fn proc_net_tcp_listeners() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0\n\
   2: garbage\n";
        assert_eq!(parse_proc_net_listeners(text), vec![(11434, 4242)]);
    }
}
