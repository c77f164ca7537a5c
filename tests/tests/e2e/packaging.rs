//! The collector's packaging (issue 19): the Containerfile read as a container engine reads
//! it, and the Helm chart and compose file checked by installer/helm/check.py (Helm's own SDK
//! lints and renders; kubernetes-validate checks every object against the Kubernetes schemas).
//! The image itself is built and run by tests/container/run (podman, outside `cargo test`: a
//! release build inside the image; installer/container/README.md has the result).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// One instruction: its keyword (upper case) and the rest, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// Parses a Containerfile: comments and blank lines skipped, `\` continuations joined.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if line.starts_with('#') {
            pending = Some((start, joined));
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line);
                let (keyword, args) =
                    joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
                out.push(Instruction {
                    line: start,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
            }
        }
    }
    assert!(pending.is_none(), "the Containerfile ends inside a continued line");
    out
}

/// The value of `key` in a `KEY=VALUE ...` ENV instruction.
fn env_value(args: &str, key: &str) -> Option<String> {
    args.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

#[test]
fn containerfile_runs_the_built_collector_as_a_non_root_user_with_a_health_check() {
    let path = root().join("installer/container/Containerfile");
    let all = instructions(&std::fs::read_to_string(&path).unwrap());
    let at = |i: &Instruction| format!("{}:{}", path.display(), i.line);
    let froms: Vec<usize> =
        all.iter().enumerate().filter(|(_, i)| i.keyword == "FROM").map(|(n, _)| n).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {all:?}");
    let (build, runtime) = (&all[froms[0]..froms[1]], &all[froms[1]..]);

    // The build stage uses the workspace's toolchain and builds the collector's binary.
    let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = ").map(|v| v.trim_matches('"').to_owned()))
        .unwrap();
    let minor = channel.rsplit_once('.').map_or(channel.as_str(), |(m, _)| m);
    let from = &build[0];
    assert!(from.args.contains(&format!("rust:{minor}-slim")), "{}: {}", at(from), from.args);
    let stage = from.args.split_whitespace().last().unwrap();
    // The binary is named after the package (collector/Cargo.toml has no [[bin]] section).
    let manifest = std::fs::read_to_string(root().join("collector/Cargo.toml")).unwrap();
    assert!(!manifest.contains("[[bin]]"), "a [[bin]] section: update this test's binary name");
    let bin = manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = ").map(|v| v.trim_matches('"').to_owned()))
        .unwrap();
    assert!(
        build.iter().any(|i| i.keyword == "RUN"
            && i.args.contains("cargo build --release --locked")
            && i.args.contains(&format!("--bin {bin}"))),
        "the build stage builds --bin {bin}: {build:?}"
    );

    // The runtime stage: slim Debian, the built binary, a data volume, a non-root user, a
    // health check on /healthz, and the collector as the entry point.
    assert!(runtime[0].args.contains("debian:") && runtime[0].args.contains("-slim"));
    let copy = runtime.iter().find(|i| i.keyword == "COPY").unwrap();
    assert_eq!(
        copy.args,
        format!("--from={stage} /src/target/release/{bin} /usr/local/bin/{bin}"),
        "{}",
        at(copy)
    );
    let entry = runtime.iter().find(|i| i.keyword == "ENTRYPOINT").unwrap();
    assert_eq!(entry.args, format!("[\"/usr/local/bin/{bin}\"]"), "{}", at(entry));
    let last_user = runtime.iter().rposition(|i| i.keyword == "USER").unwrap();
    let user = &runtime[last_user];
    let uid = user.args.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u >= 1000), "{}: USER {}", at(user), user.args);
    assert!(
        runtime[last_user..].iter().all(|i| i.keyword != "RUN"),
        "nothing runs as root after USER"
    );
    let env = runtime.iter().find(|i| i.keyword == "ENV").unwrap();
    let data_dir = env_value(&env.args, "AISCOUT_DATA_DIR").unwrap();
    let listen = env_value(&env.args, "AISCOUT_LISTEN").unwrap();
    let port = listen.rsplit_once(':').unwrap().1;
    let volume = runtime.iter().find(|i| i.keyword == "VOLUME").unwrap();
    assert_eq!(volume.args, format!("[\"{data_dir}\"]"), "the data folder is the volume");
    let check = runtime.iter().find(|i| i.keyword == "HEALTHCHECK").unwrap();
    assert!(
        check.args.contains(&format!("https://127.0.0.1:{port}/healthz")),
        "{}: {}",
        at(check),
        check.args
    );
    let expose = runtime.iter().find(|i| i.keyword == "EXPOSE").unwrap();
    assert_eq!(expose.args, port);
    // The chart runs the same user (check.py compares runAsUser with this USER).
    let deployment = std::fs::read_to_string(
        root().join("installer/helm/aiscout-collector/templates/deployment.yaml"),
    )
    .unwrap();
    assert!(deployment.contains(&format!("runAsUser: {uid}")));
    assert!(deployment.contains(&format!("value: {data_dir}")));
}

#[test]
fn containerfile_parser_joins_continuations_and_skips_comments() {
    let parsed = instructions("# c\nFROM a AS b\nRUN x \\\n  # inner\n  y\n\nuser 10001\n");
    let seen: Vec<(usize, &str, &str)> =
        parsed.iter().map(|i| (i.line, i.keyword.as_str(), i.args.as_str())).collect();
    assert_eq!(seen, [(2, "FROM", "a AS b"), (3, "RUN", "x  y"), (7, "USER", "10001")]);
}

/// The virtualenv .ci/install-deps puts the chart checker in.
fn helm_python() -> Option<PathBuf> {
    let venv = std::env::var_os("AISCOUT_HELM_VENV").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/aiscout/helm-venv"))
    })?;
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

#[test]
fn helm_chart_lints_renders_and_validates_against_kubernetes_schemas() {
    let Some(python) = helm_python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the chart checker is not installed: run .ci/install-deps"
        );
        println!("skipping: the chart checker is not installed (run .ci/install-deps)");
        return;
    };
    let out = Command::new(python).arg(root().join("installer/helm/check.py")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "chart and compose file: ok");
}
