//! Embeds every catalog source file, so `Catalog::builtin()` needs no files at run time.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("catalog");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names = Vec::new();
    // Vendor files, catalog-wide rule files in `rules/` and risk facts in `risk/` (named
    // `rules/<file>` and `risk/<vendor>.toml`).
    for folder in [dir.clone(), dir.join("rules"), dir.join("risk")] {
        println!("cargo::rerun-if-changed={}", folder.display());
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry?.path();
            println!("cargo::rerun-if-changed={}", path.display());
            if path.extension().is_some_and(|e| e == "toml") {
                names.push(path);
            }
        }
    }
    names.sort();
    let mut out =
        String::from("/// Every catalog source file, as (file name, text), sorted by name.\n");
    out.push_str("pub(crate) static BUILTIN_SOURCES: &[(&str, &str)] = &[\n");
    for path in &names {
        let file = path.strip_prefix(&dir)?.to_str().ok_or("non-UTF-8 file name")?;
        // Files in sub-folders are named `rules/<file>` and `risk/<vendor>.toml`, whatever the platform's separator.
        let file = file.replace('\\', "/");
        writeln!(out, "    ({file:?}, include_str!({:?})),", path.display().to_string())?;
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR")?).join("builtin_sources.rs");
    std::fs::write(dest, out)?;
    Ok(())
}
