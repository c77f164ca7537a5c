//! Npcap on Windows: find and load `wpcap.dll` before the first libpcap call, so a machine
//! without Npcap gets "capture unavailable" instead of an agent that cannot start.
//!
//! Npcap installs `wpcap.dll` and `Packet.dll` in `%SystemRoot%\System32\Npcap`, which is not on
//! the DLL search path (only its optional "WinPcap API-compatible mode" copies them into
//! `System32`). The Npcap developer guide's recipe is: delay-load `wpcap.dll`, add that folder
//! with `SetDllDirectoryW`, load the DLL, and only then call into it. `agent/build.rs` asks the
//! MSVC linker for the delay-load (`/DELAYLOAD:wpcap.dll`); [`load`] does the rest, once per
//! process. If the DLL cannot be loaded, every capture entry point returns
//! [`super::CaptureError::Unavailable`] and libpcap is never called: a call into a
//! delay-loaded DLL that is missing would raise a structured exception, not an error.
//!
//! Not verified here (no Windows machine, no MSVC linker): it is type-checked and linted for
//! `x86_64-pc-windows-gnu` only. With the GNU toolchain there is no delay-load: the import of
//! `wpcap.dll` stays a load-time import and the binary does not start without the DLL on the
//! search path (see `installer/README.md`).
//!
//! It also holds the Win32 side of waiting for a live capture without polling (see
//! `super::wait`): Npcap's read event (`pcap_getevent`) and a stop event, waited on together.

// SAFETY (for the whole module): three kernel32 calls with buffers we own. The system folder
// buffer's length is passed in and the returned length checked against it before use; the two
// strings passed in are NUL-terminated UTF-16 that outlive the calls. The loaded module is
// deliberately never freed, so the delay-load helper finds it. The event calls take a handle we
// created and close once (`StopEvent`) or Npcap's read event of a capture borrowed for the
// whole wait, and an array of two handles that outlives the call.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use windows_sys::Win32::System::LibraryLoader::{LoadLibraryW, SetDllDirectoryW};
use windows_sys::Win32::System::SystemInformation::GetSystemDirectoryW;

/// The outcome of the one attempt per process.
static LOADED: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads Npcap's `wpcap.dll` once; afterwards the cached outcome.
///
/// # Errors
/// A sentence for the operator when Npcap is not installed or its DLL does not load.
pub(crate) fn load() -> Result<(), String> {
    LOADED.get_or_init(load_once).clone()
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn load_once() -> Result<(), String> {
    let mut buf = [0u16; 520];
    let len = unsafe { GetSystemDirectoryW(buf.as_mut_ptr(), buf.len() as u32) } as usize;
    if let Some(system) = buf.get(..len).filter(|_| len > 0) {
        let mut npcap = String::from_utf16_lossy(system);
        npcap.push_str("\\Npcap");
        let folder = wide(&npcap);
        // A failure only means the folder is not searched; the load below then tells.
        let _searched = unsafe { SetDllDirectoryW(folder.as_ptr()) };
    }
    let name = wide("wpcap.dll");
    let module = unsafe { LoadLibraryW(name.as_ptr()) };
    if module.is_null() {
        return Err(format!(
            "Npcap is not installed (wpcap.dll did not load from System32\\Npcap or the DLL \
             search path: {}); live capture is unavailable, the inventory still runs",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A manual-reset Win32 event: the stop signal a [`super::wait::Breaker`] sets and a capture's
/// wait watches beside Npcap's read event (issue 22: no timed polling on Windows either).
#[derive(Debug)]
pub(crate) struct StopEvent(windows_sys::Win32::Foundation::HANDLE);

// SAFETY: an event handle is a kernel object usable from any thread; it is closed only on drop.
unsafe impl Send for StopEvent {}
// SAFETY: as above; `SetEvent` and the waits may be called concurrently.
unsafe impl Sync for StopEvent {}

impl StopEvent {
    /// A new, unset event.
    ///
    /// # Errors
    /// When Windows cannot create it.
    pub(crate) fn new() -> std::io::Result<Self> {
        use windows_sys::Win32::System::Threading::CreateEventW;
        // Manual reset (stays set once stopped), initially unset, unnamed.
        let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if handle.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StopEvent(handle))
    }

    /// Sets the event; every current and later wait on it returns.
    pub(crate) fn set(&self) {
        // A failure could only mean an invalid handle, which `new` rules out.
        let _set = unsafe { windows_sys::Win32::System::Threading::SetEvent(self.0) };
    }
}

impl Drop for StopEvent {
    fn drop(&mut self) {
        let _closed = unsafe { windows_sys::Win32::Foundation::CloseHandle(self.0) };
    }
}

/// What [`wait`] ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signaled {
    /// Npcap's read event: packets are ready.
    Capture,
    /// The stop event.
    Stop,
    /// The timeout passed.
    Timeout,
}

/// A timeout in milliseconds for the Win32 waits, `INFINITE` without one.
fn millis(timeout: Option<std::time::Duration>) -> u32 {
    use windows_sys::Win32::System::Threading::INFINITE;
    // Below INFINITE (u32::MAX), so a long finite timeout never becomes an infinite one.
    timeout.map_or(INFINITE, |t| {
        u32::try_from(t.as_millis()).unwrap_or(INFINITE - 1).min(INFINITE - 1)
    })
}

/// Sleeps until Npcap's read event for `capture` (`pcap_getevent`) or `stop` is set, or
/// `timeout` (forever without one) has passed.
///
/// # Errors
/// When `WaitForMultipleObjects` fails or reports an abandoned wait.
pub(crate) fn wait(
    capture: &pcap::Capture<pcap::Active>,
    stop: &StopEvent,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<Signaled> {
    use windows_sys::Win32::Foundation::{WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
    use windows_sys::Win32::System::Threading::WaitForMultipleObjects;
    // The pcap crate types the handle with its own (older) windows-sys, as an integer; the
    // handle stays valid while `capture` is borrowed.
    let read_event = unsafe { capture.get_event() } as windows_sys::Win32::Foundation::HANDLE;
    let handles = [read_event, stop.0];
    let waited = unsafe { WaitForMultipleObjects(2, handles.as_ptr(), 0, millis(timeout)) };
    match waited {
        w if w == WAIT_OBJECT_0 => Ok(Signaled::Capture),
        w if w == WAIT_OBJECT_0 + 1 => Ok(Signaled::Stop),
        WAIT_TIMEOUT => Ok(Signaled::Timeout),
        WAIT_FAILED => Err(std::io::Error::last_os_error()),
        other => Err(std::io::Error::other(format!("WaitForMultipleObjects returned {other:#x}"))),
    }
}

/// Sleeps until `stop` is set (`true`) or `timeout` has passed (`false`).
///
/// # Errors
/// When `WaitForSingleObject` fails.
pub(crate) fn pause(stop: &StopEvent, timeout: std::time::Duration) -> std::io::Result<bool> {
    use windows_sys::Win32::Foundation::{WAIT_OBJECT_0, WAIT_TIMEOUT};
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    match unsafe { WaitForSingleObject(stop.0, millis(Some(timeout))) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(std::io::Error::last_os_error()),
    }
}
