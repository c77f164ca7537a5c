//! Embeds every catalog source file, so `Catalog::builtin()` needs no files at run time.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("catalog");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names = Vec::new();
    // Vendor files, then catalog-wide rule files in `rules/` (named `rules/<file>`).
    for folder in [dir.clone(), dir.join("rules")] {
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
        let base = path.file_name().and_then(|n| n.to_str()).ok_or("non-UTF-8 file name")?;
        let in_rules = path.parent().and_then(|p| p.file_name()).is_some_and(|p| p == "rules");
        let file = if in_rules { format!("rules/{base}") } else { base.to_owned() };
        writeln!(out, "    ({file:?}, include_str!({:?})),", path.display().to_string())?;
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR")?).join("builtin_sources.rs");
    std::fs::write(dest, out)?;
    Ok(())
}
