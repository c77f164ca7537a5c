//! Local model stores: which models sit on disk for a local runtime, and how much space they
//! take. Ollama keeps a manifest per model tag that lists its blobs with their sizes; LM Studio
//! keeps model files (`.gguf`, `.safetensors`, MLX folders) under `<publisher>/<model>/`.

use std::path::Path;

use super::fs::Fs;
use super::{Finding, Home, Kind, Sink};

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    for h in homes {
        ollama(fs, sink, h);
        lm_studio(fs, sink, h);
    }
    // The Linux service install keeps models under the `ollama` system user.
    let system = fs.host("/usr/share/ollama/.ollama/models");
    ollama_store(fs, sink, None, &system);
}

fn push(
    sink: &mut Sink<'_>,
    product: &str,
    value: String,
    user: Option<&str>,
    path: String,
    bytes: u64,
) {
    let Some(product) = sink.index().catalog().product(product).map(|p| p.id.clone()) else {
        return;
    };
    sink.findings.push(Finding {
        kind: Kind::Model,
        product,
        value,
        user: user.map(str::to_owned),
        path: Some(path),
        version: None,
        detail: Some(format!("{bytes} bytes")),
        flags: Vec::new(),
    });
}

fn ollama(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    let store = home.dir.join(".ollama/models");
    ollama_store(fs, sink, Some(&home.user), &store);
}

/// `manifests/<registry>/<namespace>/<model>/<tag>`: JSON with `config` and `layers`, each
/// with a `size`.
fn ollama_store(fs: &mut Fs, sink: &mut Sink<'_>, user: Option<&str>, store: &Path) {
    let manifests = store.join("manifests");
    for (registry, registry_dir) in fs.list(&manifests) {
        for (namespace, ns_dir) in fs.list(&registry_dir) {
            for (model, model_dir) in fs.list(&ns_dir) {
                for (tag, manifest) in fs.list(&model_dir) {
                    let Some(json) = fs.read_json(&manifest) else { continue };
                    let mut bytes: u64 = json["config"]["size"].as_u64().unwrap_or(0);
                    for layer in json["layers"].as_array().into_iter().flatten() {
                        bytes = bytes.saturating_add(layer["size"].as_u64().unwrap_or(0));
                    }
                    let name = if registry == "registry.ollama.ai" && namespace == "library" {
                        format!("{model}:{tag}")
                    } else {
                        format!("{registry}/{namespace}/{model}:{tag}")
                    };
                    let path = fs.display(&manifest);
                    push(sink, "ollama.ollama", name, user, path, bytes);
                }
            }
        }
    }
}

fn lm_studio(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for rel in [".lmstudio/models", ".cache/lm-studio/models"] {
        let store = home.dir.join(rel);
        for (publisher, pub_dir) in fs.list(&store) {
            for (model, model_dir) in fs.list(&pub_dir) {
                if !fs.is_dir(&model_dir) {
                    continue;
                }
                let bytes = folder_bytes(fs, &model_dir, 2);
                let path = fs.display(&model_dir);
                push(
                    sink,
                    "lmstudio.lm-studio",
                    format!("{publisher}/{model}"),
                    Some(&home.user),
                    path,
                    bytes,
                );
            }
        }
    }
}

/// Total size of the regular files in a folder, descending at most `depth` levels.
fn folder_bytes(fs: &mut Fs, dir: &Path, depth: u32) -> u64 {
    let mut total: u64 = 0;
    for (_, path) in fs.list(dir) {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
            Ok(m) if m.is_dir() && depth > 0 => {
                total = total.saturating_add(folder_bytes(fs, &path, depth - 1));
            }
            _ => {}
        }
    }
    total
}
