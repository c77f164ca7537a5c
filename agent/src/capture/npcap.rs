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

// SAFETY (for the whole module): three kernel32 calls with buffers we own. The system folder
// buffer's length is passed in and the returned length checked against it before use; the two
// strings passed in are NUL-terminated UTF-16 that outlive the calls. The loaded module is
// deliberately never freed, so the delay-load helper finds it.
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
