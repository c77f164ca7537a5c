//! Replays every input saved under `tests/data/fuzz-regressions/<target>/` through the same
//! entry points the fuzz targets call, on stable, so a fixed crash stays fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let seeds: &[&[u8]] = &[b"", b"AISCAT\x00\x01", &[0xff; 80], b"..", "b\u{fc}cher..".as_bytes()];
    for s in seeds {
        aiscout_signatures::fuzzing::catalog_artifact(s);
        aiscout_signatures::fuzzing::domain_match(s);
    }
    let replayed = replay("catalog_artifact", aiscout_signatures::fuzzing::catalog_artifact)
        + replay("domain_match", aiscout_signatures::fuzzing::domain_match);
    // The folders hold at least the seed files committed with them.
    assert!(replayed >= 2, "expected saved inputs, replayed {replayed}");
}
