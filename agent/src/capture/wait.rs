//! Waiting for a live capture without polling it (issue 22).
//!
//! A live capture sleeps in the kernel until a packet buffer is handed to user space or until
//! it is told to stop, and wakes for nothing else: an idle agent must cost a laptop no more
//! than `tcpdump` does.
//!
//! - Unix: `poll(2)` on two descriptors, the capture's selectable descriptor (the `PF_PACKET`
//!   socket on Linux, the BPF device on macOS) and the read end of a pipe that
//!   [`Breaker::stop`] writes one byte to. On Linux with `TPACKET_V3` the socket becomes
//!   readable only when the kernel retires a block, which it does when the block is full or,
//!   holding at least one packet, when the capture's buffer timeout expires; an idle
//!   interface never makes it readable, so packets still arrive in batches and an idle capture
//!   costs no wakeup at all. The capture itself stays non-blocking and is drained until
//!   libpcap has nothing ready.
//! - Under load (batches less than 100 ms apart, so blocks are retired because they fill) a
//!   capture pauses until [`super::MIN_BATCH_GAP`] after its last batch (still woken by the
//!   breaker) before it looks again, so a flood costs at most one wakeup per gap per interface,
//!   as the polling loop before it did. Sparse traffic and an idle capture never pause.
//! - Windows: `WaitForMultipleObjects` on Npcap's read event (`pcap_getevent`) and a
//!   manual-reset stop event that [`Breaker::stop`] sets. The capture is non-blocking with a
//!   minimum copy size of one byte, so the driver sets the read event as soon as a packet is
//!   buffered; the wait then pauses [`super::MIN_BATCH_GAP`] (still woken by the breaker) so a
//!   burst is read as one batch, as the kernel's buffer timeout batches on Linux. An idle
//!   capture waits with no timeout and never wakes. A read event that stays set with nothing
//!   to read costs at most one wakeup per gap, never a spin. Type-checked only (no Windows
//!   machine here).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Stops a [`super::LiveSource`] waiting in another thread; cheap to clone. Once stopped, the
/// source stays stopped.
#[derive(Clone, Debug)]
pub struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stopped: AtomicBool,
    #[cfg(unix)]
    wake: std::io::PipeWriter,
    #[cfg(windows)]
    wake: super::npcap::StopEvent,
}

impl Breaker {
    /// Makes the source's current or next wait return [`super::Wake::Stopped`].
    pub fn stop(&self) {
        let first = !self.inner.stopped.swap(true, Ordering::SeqCst);
        #[cfg(unix)]
        if first {
            use std::io::Write as _;
            // One byte in an empty pipe never blocks. A failed write can only mean the read
            // end is gone, and then nobody is waiting.
            let _written = (&self.inner.wake).write_all(&[1]);
        }
        #[cfg(windows)]
        if first {
            self.inner.wake.set();
        }
        #[cfg(not(any(unix, windows)))]
        let _first = first;
    }

    /// Whether [`Breaker::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }
}

/// What a wait ended with.
// Only poll(2) reports `Fault` (Windows reports a failed wait as an error).
#[cfg_attr(not(unix), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Ready {
    /// The capture may have packets.
    Capture,
    /// [`Breaker::stop`] was called.
    Stop,
    /// The timeout passed.
    Timeout,
    /// The capture's descriptor reports an error condition (as text); a read tells what it
    /// is, and nothing to read then means waiting again would spin.
    Fault(String),
}

/// The waiting half, owned by the source.
#[derive(Debug)]
pub(super) struct Waiter {
    breaker: Breaker,
    #[cfg(unix)]
    wake: std::io::PipeReader,
}

/// The longest single wait with a timeout; longer waits are split (macOS's `poll` takes at most
/// `i32::MAX` milliseconds).
const LONGEST_WAIT: Duration = Duration::from_secs(3_600);

impl Waiter {
    /// A waiter and the breaker that ends its waits.
    pub(super) fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            let (wake, writer) = std::io::pipe()?;
            let inner = Arc::new(Inner { stopped: AtomicBool::new(false), wake: writer });
            Ok(Waiter { breaker: Breaker { inner }, wake })
        }
        #[cfg(windows)]
        {
            let wake = super::npcap::StopEvent::new()?;
            let inner = Arc::new(Inner { stopped: AtomicBool::new(false), wake });
            Ok(Waiter { breaker: Breaker { inner } })
        }
        #[cfg(not(any(unix, windows)))]
        {
            let inner = Arc::new(Inner { stopped: AtomicBool::new(false) });
            Ok(Waiter { breaker: Breaker { inner } })
        }
    }

    pub(super) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Sleeps for `timeout` unless the breaker is used first (then `Ready::Stop`).
    ///
    /// # Errors
    /// When `poll(2)` fails.
    pub(super) fn pause(&self, timeout: Duration) -> std::io::Result<Ready> {
        if self.breaker.is_stopped() {
            return Ok(Ready::Stop);
        }
        #[cfg(unix)]
        {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            let timespec = Timespec::try_from(timeout.min(LONGEST_WAIT))
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
            match poll(&mut fds, Some(&timespec)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => Ok(Ready::Timeout),
                Ok(_) => Ok(Ready::Stop),
                Err(errno) => Err(errno.into()),
            }
        }
        #[cfg(windows)]
        {
            let stopped = super::npcap::pause(&self.breaker.inner.wake, timeout.min(LONGEST_WAIT))?;
            Ok(if stopped { Ready::Stop } else { Ready::Timeout })
        }
        #[cfg(not(any(unix, windows)))]
        {
            std::thread::sleep(timeout);
            Ok(if self.breaker.is_stopped() { Ready::Stop } else { Ready::Timeout })
        }
    }

    /// Sleeps until Npcap's read event for `capture` or the breaker is set, or `timeout`
    /// (forever without one) has passed; after the read event, pauses
    /// [`super::MIN_BATCH_GAP`] (unless stopped) so that a burst is read as one batch.
    ///
    /// # Errors
    /// When a Win32 wait fails.
    #[cfg(windows)]
    pub(super) fn wait(
        &self,
        capture: &pcap::Capture<pcap::Active>,
        timeout: Option<Duration>,
    ) -> std::io::Result<Ready> {
        use super::npcap::Signaled;
        if self.breaker.is_stopped() {
            return Ok(Ready::Stop);
        }
        let stop = &self.breaker.inner.wake;
        match super::npcap::wait(capture, stop, timeout.map(|t| t.min(LONGEST_WAIT)))? {
            Signaled::Stop => Ok(Ready::Stop),
            Signaled::Timeout => Ok(Ready::Timeout),
            Signaled::Capture => {
                // A stop seen here is reported after what is ready (by the caller's drain).
                let stopped = super::npcap::pause(stop, super::MIN_BATCH_GAP)?;
                Ok(if stopped { Ready::Stop } else { Ready::Capture })
            }
        }
    }

    /// Sleeps until `capture` is readable, the breaker is used or `timeout` (forever without
    /// one) has passed.
    ///
    /// # Errors
    /// When `poll(2)` fails.
    #[cfg(unix)]
    pub(super) fn wait(
        &self,
        capture: &impl std::os::fd::AsFd,
        timeout: Option<Duration>,
    ) -> std::io::Result<Ready> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        if self.breaker.is_stopped() {
            return Ok(Ready::Stop);
        }
        let timespec = timeout
            .map(|t| Timespec::try_from(t.min(LONGEST_WAIT)))
            .transpose()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let mut fds = [PollFd::new(capture, PollFlags::IN), PollFd::new(&self.wake, PollFlags::IN)];
        // Bounded: a signal interrupts the wait at most once per delivered signal, and the
        // agent's handlers are few; a hundred in a row means something else is wrong.
        for _ in 0..100 {
            match poll(&mut fds, timespec.as_ref()) {
                Ok(0) => return Ok(Ready::Timeout),
                Ok(_) => {
                    let [capture, wake] = &fds;
                    if !wake.revents().is_empty() {
                        return Ok(Ready::Stop);
                    }
                    let revents = capture.revents();
                    if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) {
                        return Ok(Ready::Fault(format!("{revents:?}")));
                    }
                    return Ok(Ready::Capture);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Err(std::io::Error::from(std::io::ErrorKind::Interrupted))
    }
}
