//! Capture: packets from a pcap/pcapng file or a live interface, handed on as [`Frame`]s.
//! The only module that uses the `pcap` crate.
//!
//! Live interfaces, pcapng files and anything unusual go through real libpcap. Classic pcap
//! files, the format `replay` spends its time on, are read by our own reader (`classic`):
//! large buffered reads, frames borrowed from one fixed buffer, libpcap's record rules kept
//! exactly, so that both readers deliver the same frames. [`FileReader::Libpcap`] forces
//! libpcap for comparisons and benchmarks.
//!
//! # The live kernel filter, and why
//! Live capture installs [`LIVE_FILTER`], a classic BPF program run in the kernel, so that
//! bulk traffic never reaches user space. It admits:
//!
//! 1. `port 53`: DNS over UDP and TCP, both directions.
//! 2. TCP SYN without ACK: opens a flow anchored at the client's ISN, so a ClientHello whose
//!    segments arrive out of order can still be put back together.
//! 3. TCP segments whose payload starts with 0x16, a TLS handshake record: the first segment
//!    of every ClientHello, on any port (recognition by content, not port 443).
//! 4. TCP segments with PSH set and a non-empty payload. A post-quantum ClientHello (about
//!    1.8 KB) is sent in one write and leaves the host as a full-sized first segment (rule 3)
//!    plus a tail segment that carries PSH; without this rule the tail could never be seen,
//!    because a continuation segment has no recognisable first byte. Bulk transfers set PSH
//!    only once per application write, so this admits a small share of their segments.
//!    A ClientHello spread over three or more segments (MSS below about 900 bytes) loses its
//!    middle segments here; the flow is then evicted at the idle timeout and counted. That
//!    happens only where the sender's stack segments before the capture point: with GSO/TSO
//!    (the veth default) the host's own write is captured as one packet and admitted whole
//!    by rule 3 (`agent/benches/split_hello.sh` shows both cases). A stateless filter cannot
//!    do better: a middle segment has no feature that tells it from bulk data, and the
//!    sequence offset from the ISN needs per-flow state (see `benches/RESULTS.md`).
//! 5. UDP datagrams whose first payload byte has the high bit set: QUIC long-header packets
//!    (Initials among them). QUIC 1-RTT traffic uses short headers and stays in the kernel.
//!
//! IPv4 uses libpcap's `tcp[]`/`udp[]` accessors, which follow the IP header length. libpcap
//! does not support them for IPv6, so the IPv6 rules index `ip6[]` at fixed offsets and
//! therefore only see TCP and UDP directly after the fixed 40-byte header (no extension
//! headers), which is what endpoints send. In an `or` chain a load past the end of a packet
//! rejects the packet, so the SYN test comes before the payload-byte test.
//!
//! Kernel drops (`ps_drop`) are reported in the summary next to decode's own drops.
//!
//! # Windows
//! libpcap is Npcap's `wpcap.dll` there, which may be absent. Every entry point first makes sure
//! it is loaded (`npcap`), and returns [`CaptureError::Unavailable`] instead of calling into a
//! missing library; the daemon then reports capture as failed and keeps the inventory running.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pcap::{Active, Capture, Device, Offline};

use crate::model::{Frame, LinkType, Timestamp};

pub mod classic;
#[cfg(windows)]
mod npcap;
mod wait;

pub use wait::Breaker;
use wait::{Ready, Waiter};

/// Makes sure libpcap can be called: always on Unix (linked at build time), after loading
/// Npcap on Windows.
fn library() -> Result<(), CaptureError> {
    #[cfg(windows)]
    {
        npcap::load().map_err(CaptureError::Unavailable)
    }
    #[cfg(not(windows))]
    {
        Ok(())
    }
}

/// The live BPF filter; see the module docs for each clause.
pub const LIVE_FILTER: &str = "port 53 \
or (ip and tcp and (tcp[13] & 0x12 = 0x02 \
or tcp[((tcp[12] & 0xf0) >> 2)] = 0x16 \
or (tcp[13] & 0x08 != 0 and ip[2:2] > ((ip[0] & 0x0f) << 2) + ((tcp[12] & 0xf0) >> 2)))) \
or (ip and udp and udp[8] & 0x80 != 0) \
or (ip6 and ip6[6] = 6 and (ip6[53] & 0x12 = 0x02 \
or ip6[40 + ((ip6[52] & 0xf0) >> 2)] = 0x16 \
or (ip6[53] & 0x08 != 0 and ip6[4:2] > ((ip6[52] & 0xf0) >> 2)))) \
or (ip6 and ip6[6] = 17 and ip6[48] & 0x80 != 0)";

/// Bytes captured per packet live: everything the decoder reads from one frame, and no more
/// (issue 22: steady RSS; libpcap sizes its ring's blocks from it). The decoder reads at most
/// 16 KiB of a TCP stream (`Limits::max_flow_bytes`, so the largest ClientHello it reads
/// fits in 16 KiB, and a flow whose first segment carries more is dropped whole) and a QUIC
/// Initial from one datagram (about 1.2–1.5 kB); the extra 1 KiB covers the link header (SLL2,
/// Ethernet with VLAN tags), IPv6 with extension headers and TCP with options. What a TSO/GRO
/// super-packet carries beyond that is data the decoder never reads.
/// `live_snaplen_cuts_only_what_decode_would_not_read` checks this on the real captures and on
/// super-packets.
pub const SNAPLEN: i32 = 16 * 1024 + 1024;

/// The kernel ring of a live capture, in bytes: 1 MiB instead of libpcap's default 2 MiB
/// (per interface, resident once touched). Idle, at most a few blocks are ever used; under
/// load frames are at most [`SNAPLEN`] bytes, and `agent/benches/live.sh` measures drops.
const KERNEL_BUFFER: i32 = 1 << 20;

/// The kernel's buffer timeout for a live capture, in milliseconds: packets wait up to this
/// long in the kernel so that they reach user space in batches (one wakeup for many packets).
/// A second, as tcpdump uses: sightings are aggregated per window, so a second of latency
/// costs nothing, and sparse background traffic wakes a capture at most once a second.
const READ_TIMEOUT_MS: i32 = 1_000;

/// Batches closer together than this are dense traffic (well under [`READ_TIMEOUT_MS`]).
const DENSE: std::time::Duration = std::time::Duration::from_millis(100);

/// After delivering a batch, a live capture waits this long before it looks for the next one,
/// so that under load the kernel's ring fills further and one wakeup takes many blocks. The
/// same 20 ms the polling loop before issue 22 slept, so a flood costs what it did then (see
/// BENCHMARKS.md for what a shorter gap buys in drops and costs in CPU). Idle, it never applies.
pub const MIN_BATCH_GAP: std::time::Duration = std::time::Duration::from_millis(20);

/// The most frames one [`LiveSource::next_batch`] delivers, so that a sustained flood still
/// lets the caller look at its breaker and update its counters.
const MAX_BATCH: u64 = 65_536;

/// Why capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// A capture file could not be opened.
    #[error("cannot open capture file {path}")]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: pcap::Error,
    },
    /// A live interface could not be opened.
    #[error("cannot capture on interface {interface}")]
    OpenInterface {
        /// The interface.
        interface: String,
        /// The cause.
        #[source]
        source: pcap::Error,
    },
    /// The kernel filter could not be installed.
    #[error("cannot install the capture filter on {interface}")]
    Filter {
        /// The interface.
        interface: String,
        /// The cause.
        #[source]
        source: pcap::Error,
    },
    /// A classic pcap file read by our own reader is corrupt part-way; frames before
    /// `offset` were delivered.
    #[error("capture file {path} is corrupt at byte {offset}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The byte offset of the record header where the damage starts.
        offset: u64,
        /// What is wrong there.
        problem: classic::Corruption,
    },
    /// The operating system failed to read a classic pcap file part-way; frames before
    /// `offset` were delivered.
    #[error("cannot read capture file {path} at byte {offset}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The byte offset of the record being read.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading packets failed.
    #[error("error reading packets from {source_name}")]
    Read {
        /// The file or interface.
        source_name: String,
        /// The cause.
        #[source]
        source: pcap::Error,
    },
    /// Waiting for packets failed.
    #[error("cannot wait for packets on {interface}")]
    Wait {
        /// The interface.
        interface: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Listing interfaces failed.
    #[error("cannot list network interfaces")]
    List(#[source] pcap::Error),
    /// The capture library itself is missing (Windows without Npcap).
    #[error("live capture is unavailable: {0}")]
    Unavailable(String),
}

/// Counters a live capture reports from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets the filter admitted.
    pub received: u64,
    /// Packets dropped because the capture buffer was full.
    pub dropped: u64,
    /// Packets dropped by the interface or driver.
    pub if_dropped: u64,
}

// The `timeval` fields are `i64` on 64-bit Unix but `c_long` (`i32`) on Windows.
#[allow(clippy::useless_conversion)]
fn timestamp(header: &pcap::PacketHeader) -> Timestamp {
    Timestamp::from_parts(i64::from(header.ts.tv_sec), i64::from(header.ts.tv_usec))
}

/// Which reader opens capture files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileReader {
    /// Our own reader for the classic pcap files it recognises, libpcap for everything else.
    #[default]
    Auto,
    /// libpcap for every file (the reference, for comparisons and benchmarks).
    Libpcap,
}

/// A pcap or pcapng file.
pub struct FileSource {
    reader: Reader,
    link: LinkType,
    path: PathBuf,
}

enum Reader {
    Classic(Box<classic::Reader<File>>),
    Libpcap(Capture<Offline>),
}

impl FileSource {
    /// Opens a capture file: classic pcap with our own reader, anything else (pcapng, old
    /// versions, unknown link types) with libpcap.
    ///
    /// # Errors
    /// [`CaptureError::OpenFile`] when libpcap cannot open or read the file header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        FileSource::open_with(path, FileReader::Auto)
    }

    /// Opens a capture file with the given reader choice.
    ///
    /// # Errors
    /// [`CaptureError::OpenFile`] when libpcap cannot open or read the file header.
    pub fn open_with(path: &Path, reader: FileReader) -> Result<Self, CaptureError> {
        if reader == FileReader::Auto
            && let Some((file, header)) = classic_file(path)
        {
            let reader = Reader::Classic(Box::new(classic::Reader::new(file, header)));
            return Ok(FileSource { reader, link: header.link, path: path.to_owned() });
        }
        library()?;
        let capture = Capture::from_file(path)
            .map_err(|source| CaptureError::OpenFile { path: path.to_owned(), source })?;
        let link = LinkType::from_linktype(capture.get_datalink().0);
        Ok(FileSource { reader: Reader::Libpcap(capture), link, path: path.to_owned() })
    }

    /// The file's link type.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Whether our own reader (not libpcap) reads this file.
    pub fn is_classic(&self) -> bool {
        matches!(self.reader, Reader::Classic(_))
    }

    /// Calls `f` with every frame of the file, in order.
    ///
    /// # Errors
    /// [`CaptureError::Corrupt`] or [`CaptureError::ReadFile`] (our reader, with the byte
    /// offset) or [`CaptureError::Read`] (libpcap) when the file is corrupt or unreadable
    /// part-way; frames before that were delivered.
    pub fn for_each(&mut self, mut f: impl FnMut(&Frame<'_>)) -> Result<(), CaptureError> {
        let link = self.link;
        match &mut self.reader {
            Reader::Classic(reader) => reader
                .for_each(|record| f(&Frame { ts: record.ts, link, data: record.data }))
                .map_err(|e| match e {
                    classic::ReadError::Corrupt { offset, problem } => {
                        CaptureError::Corrupt { path: self.path.clone(), offset, problem }
                    }
                    classic::ReadError::Io { offset, source } => {
                        CaptureError::ReadFile { path: self.path.clone(), offset, source }
                    }
                }),
            Reader::Libpcap(capture) => loop {
                match capture.next_packet() {
                    Ok(packet) => {
                        f(&Frame { ts: timestamp(packet.header), link, data: packet.data })
                    }
                    Err(pcap::Error::NoMorePackets) => return Ok(()),
                    Err(source) => {
                        return Err(CaptureError::Read {
                            source_name: self.path.display().to_string(),
                            source,
                        });
                    }
                }
            },
        }
    }
}

/// The file opened and positioned after its header, when it is a classic pcap file our own
/// reader handles; `None` sends it to libpcap (which also reports any error opening it).
fn classic_file(path: &Path) -> Option<(File, classic::Header)> {
    let mut file = File::open(path).ok()?;
    let mut header = [0; classic::FILE_HEADER_BYTES];
    file.read_exact(&mut header).ok()?;
    Some((file, classic::Header::parse(&header)?))
}

/// A live interface with [`LIVE_FILTER`] installed.
pub struct LiveSource {
    capture: Capture<Active>,
    link: LinkType,
    interface: String,
    waiter: Waiter,
    /// When the last batch was delivered.
    delivered: Option<Instant>,
    /// Set when the last two batches came close together: the next call pauses first.
    dense: bool,
}

/// What one [`LiveSource::next_batch`] ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// This many frames were delivered (at least one).
    Frames(u64),
    /// The deadline passed with nothing to deliver.
    Deadline,
    /// Waits ended with nothing to deliver before any deadline (after an hour, or after many
    /// wakes with nothing for us, such as blocks that libpcap's user-space filter rejected
    /// whole); call again.
    Idle,
    /// The source's [`Breaker`] was used.
    Stopped,
}

impl LiveSource {
    /// Opens `interface` (not promiscuous: the agent watches its own host's traffic) and
    /// installs the kernel filter.
    ///
    /// # Errors
    /// When the interface cannot be opened (missing privileges: CAP_NET_RAW) or the filter
    /// does not compile for its link type.
    pub fn open(interface: &str) -> Result<Self, CaptureError> {
        library()?;
        let open_err =
            |source| CaptureError::OpenInterface { interface: interface.to_owned(), source };
        let capture = Capture::from_device(interface)
            .map_err(open_err)?
            .promisc(false)
            .snaplen(SNAPLEN)
            .buffer_size(KERNEL_BUFFER)
            .timeout(READ_TIMEOUT_MS)
            .open()
            .map_err(open_err)?;
        // Non-blocking, and `next_batch` sleeps in poll(2) on the capture's descriptor and the
        // breaker's pipe (Unix) or on Npcap's read event and the breaker's event (Windows; see
        // `wait`); a blocking TPACKET_V3 read with a timeout can block indefinitely while no
        // packet arrives and could not be interrupted. On Windows the driver sets its read
        // event once a packet is buffered (minimum copy size one byte), not at 16 kB.
        #[cfg(windows)]
        let capture = capture.min_to_copy(1);
        let capture = capture.setnonblock().map_err(open_err)?;
        let mut capture = capture;
        capture
            .filter(LIVE_FILTER, true)
            .map_err(|source| CaptureError::Filter { interface: interface.to_owned(), source })?;
        let link = LinkType::from_linktype(capture.get_datalink().0);
        let waiter = Waiter::new()
            .map_err(|source| CaptureError::Wait { interface: interface.to_owned(), source })?;
        Ok(LiveSource {
            capture,
            link,
            interface: interface.to_owned(),
            waiter,
            delivered: None,
            dense: false,
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// A handle that makes this source's waits return [`Wake::Stopped`], from any thread.
    pub fn breaker(&self) -> Breaker {
        self.waiter.breaker().clone()
    }

    /// Calls `f` with every frame until `deadline` (forever without one) or until the
    /// [`Breaker`] is used.
    ///
    /// # Errors
    /// [`CaptureError::Read`] when libpcap reports an error other than a read timeout,
    /// [`CaptureError::Wait`] when waiting for packets fails.
    pub fn run(
        &mut self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&Frame<'_>),
    ) -> Result<(), CaptureError> {
        loop {
            match self.next_batch(deadline, &mut f)? {
                Wake::Frames(_) | Wake::Idle => {}
                Wake::Deadline | Wake::Stopped => return Ok(()),
            }
        }
    }

    /// Sleeps until packets are ready, `deadline` passes (never without one) or the
    /// [`Breaker`] is used, then calls `f` with every frame ready. Frames ready when the
    /// breaker is used are still delivered first.
    ///
    /// # Errors
    /// [`CaptureError::Read`] when libpcap reports an error other than a read timeout,
    /// [`CaptureError::Wait`] when waiting for packets fails.
    pub fn next_batch(
        &mut self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&Frame<'_>),
    ) -> Result<Wake, CaptureError> {
        if std::mem::take(&mut self.dense) {
            let mut until = self.delivered.unwrap_or_else(Instant::now) + MIN_BATCH_GAP;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                // A stop seen here is reported below, after what is ready.
                self.waiter.pause(left).map_err(|e| self.wait_error(e))?;
            }
        }
        let wake = self.batch(deadline, &mut f)?;
        if matches!(wake, Wake::Frames(_)) {
            let now = Instant::now();
            // Batches closer together than the buffer timeout mean the kernel retires blocks
            // because they fill: traffic is dense, so pause before the next look. Sparse
            // traffic comes in timeout-sized batches and never pauses (one wakeup per batch).
            if self.delivered.is_some_and(|at| now.saturating_duration_since(at) < DENSE) {
                self.dense = true;
            }
            self.delivered = Some(now);
        }
        Ok(wake)
    }

    fn batch(
        &mut self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&Frame<'_>),
    ) -> Result<Wake, CaptureError> {
        // Bounded: each turn either returns or follows a wait that reported the capture
        // readable (or a deadline not yet reached). A readable capture with nothing for us
        // happens when libpcap filters in user space (the kernel refused the filter) and
        // rejects a whole block; after a hundred such turns the caller gets `Idle` and may
        // look at its breaker and counters before calling again.
        for _ in 0..100 {
            let frames = self.drain(&mut f)?;
            if frames > 0 {
                return Ok(Wake::Frames(frames));
            }
            if self.waiter.breaker().is_stopped() {
                return Ok(Wake::Stopped);
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Wake::Deadline);
                    }
                    Some(left)
                }
                None => None,
            };
            match self.wait(timeout)? {
                Ready::Capture => {}
                Ready::Timeout if deadline.is_some() => {}
                Ready::Timeout => return Ok(Wake::Idle),
                Ready::Stop => {
                    // Deliver what arrived meanwhile, then stop.
                    let frames = self.drain(&mut f)?;
                    return Ok(if frames > 0 { Wake::Frames(frames) } else { Wake::Stopped });
                }
                Ready::Fault(what) => {
                    let frames = self.drain(&mut f)?;
                    if frames > 0 {
                        return Ok(Wake::Frames(frames));
                    }
                    return Err(self.wait_error(std::io::Error::other(format!(
                        "the capture descriptor reports {what} and has nothing to read"
                    ))));
                }
            }
        }
        Ok(Wake::Idle)
    }

    fn wait_error(&self, source: std::io::Error) -> CaptureError {
        CaptureError::Wait { interface: self.interface.clone(), source }
    }

    #[cfg(unix)]
    fn wait(&self, timeout: Option<std::time::Duration>) -> Result<Ready, CaptureError> {
        self.waiter.wait(&self.capture, timeout).map_err(|e| self.wait_error(e))
    }

    #[cfg(windows)]
    fn wait(&self, timeout: Option<std::time::Duration>) -> Result<Ready, CaptureError> {
        self.waiter.wait(&self.capture, timeout).map_err(|e| self.wait_error(e))
    }

    #[cfg(not(any(unix, windows)))]
    fn wait(&self, _timeout: Option<std::time::Duration>) -> Result<Ready, CaptureError> {
        Ok(if self.waiter.breaker().is_stopped() { Ready::Stop } else { Ready::Timeout })
    }

    /// Calls `f` with every frame libpcap has ready, up to [`MAX_BATCH`]; returns how many.
    fn drain(&mut self, f: &mut impl FnMut(&Frame<'_>)) -> Result<u64, CaptureError> {
        let mut frames: u64 = 0;
        while frames < MAX_BATCH {
            match self.capture.next_packet() {
                Ok(packet) => {
                    frames = frames.saturating_add(1);
                    f(&Frame { ts: timestamp(packet.header), link: self.link, data: packet.data });
                }
                Err(pcap::Error::TimeoutExpired) => return Ok(frames),
                Err(source) => {
                    return Err(CaptureError::Read { source_name: self.interface.clone(), source });
                }
            }
        }
        Ok(frames)
    }

    /// The kernel's counters for this capture.
    pub fn kernel_stats(&mut self) -> KernelStats {
        self.capture
            .stats()
            .map(|s| KernelStats {
                received: u64::from(s.received),
                dropped: u64::from(s.dropped),
                if_dropped: u64::from(s.if_dropped),
            })
            .unwrap_or_default()
    }
}

/// The interfaces that are up and running, excluding libpcap's pseudo-devices (`any`,
/// netfilter, USB and D-Bus monitors, Bluetooth).
///
/// # Errors
/// [`CaptureError::List`] when libpcap cannot enumerate devices.
pub fn interfaces_up() -> Result<Vec<String>, CaptureError> {
    library()?;
    let devices = Device::list().map_err(CaptureError::List)?;
    Ok(devices
        .into_iter()
        .filter(|d| d.flags.is_up() && d.flags.is_running())
        .map(|d| d.name)
        .filter(|n| {
            n != "any"
                && !["nflog", "nfqueue", "usbmon", "dbus", "bluetooth"]
                    .iter()
                    .any(|p| n.starts_with(p))
        })
        .collect())
}
