//! Build script: on Windows with the MSVC linker, delay-load Npcap's `wpcap.dll`.
//!
//! The `pcap` crate links `wpcap` as an ordinary import, so without this a machine without
//! Npcap refuses to start the agent at all ("wpcap.dll was not found", before `main`). Delay
//! loading defers that to the first libpcap call, which `capture` only makes after it has
//! loaded the DLL from `System32\Npcap` itself (`capture/npcap.rs`), as the Npcap developer
//! guide prescribes. The GNU linker has no `/DELAYLOAD`; GNU builds keep the load-time import.
//!
//! Not verified here: no MSVC linker on the Linux machines this was written on.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "msvc" {
        // Every linked artefact of this package (the binary, tests, benches, examples).
        println!("cargo:rustc-link-arg=/DELAYLOAD:wpcap.dll");
        println!("cargo:rustc-link-arg=delayimp.lib");
    }
}
