//! The config editors of `wasmpod install` / `uninstall` on arbitrary text: containerd's
//! `config.toml` (`install::containerd`, toml_edit) and Docker's `daemon.json`
//! (`install::docker`, a splice of the original text).
//!
//! Input: one flag byte (bit 0: `--force`; bits 1-2: the handler name), then the file.
//! Both commands are promised idempotent, so when an edit succeeds: the result parses and
//! registers the runtime, installing again changes nothing, uninstalling removes exactly the
//! runtime (Docker: every other value is kept), and uninstalling again changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use toml_edit::{DocumentMut, Item};
use wasmpod_image::install::{containerd, diff, docker, RUNTIME_TYPE};

const HANDLERS: [&str; 4] = ["wasmpod", "wasm.pod", "wasm pod", "runc"];
const DOCKER_RUNTIME: &str = "wasmpod";

fn registered(text: &str, schema: containerd::Schema, handler: &str) -> Option<String> {
    let doc: DocumentMut = text.parse().expect("the edited config parses");
    doc.get("plugins")?
        .get(schema.plugin())?
        .get("containerd")?
        .get("runtimes")?
        .get(handler)?
        .get("runtime_type")
        .and_then(Item::as_str)
        .map(str::to_owned)
}

fn containerd_round(text: &str, handler: &str, force: bool) {
    let Ok(Some(added)) = containerd::add("config.toml", Some(text), handler, force) else {
        if let Ok(Some(removed)) = containerd::remove("config.toml", text, handler) {
            if removed.text != text {
                assert_eq!(
                    containerd::remove("config.toml", &removed.text, handler).ok(),
                    Some(None),
                    "uninstall twice: {text:?} -> {:?}",
                    removed.text
                );
            }
        }
        return;
    };
    let _ = diff::unified("config.toml", text, &added.text);
    assert_eq!(
        registered(&added.text, added.schema, handler).as_deref(),
        Some(RUNTIME_TYPE),
        "{text:?} -> {:?}",
        added.text
    );
    assert_eq!(
        containerd::add("config.toml", Some(&added.text), handler, force).ok(),
        Some(None),
        "install twice: {text:?} -> {:?}",
        added.text
    );
    let removed = containerd::remove("config.toml", &added.text, handler)
        .expect("uninstall reads what install wrote")
        .expect("uninstall finds the runtime");
    assert_ne!(removed.text, added.text, "uninstall removes the runtime");
    assert_eq!(registered(&removed.text, removed.schema, handler), None);
    assert_eq!(
        containerd::remove("config.toml", &removed.text, handler).ok(),
        Some(None),
        "uninstall twice: {text:?} -> {:?}",
        removed.text
    );
}

/// A daemon.json value without `runtimes.<name>` (and without `runtimes` once empty).
fn without_runtime(mut json: Value) -> Value {
    if let Some(object) = json.as_object_mut() {
        if let Some(runtimes) = object.get_mut("runtimes").and_then(Value::as_object_mut) {
            runtimes.remove(DOCKER_RUNTIME);
            if runtimes.is_empty() {
                object.remove("runtimes");
            }
        }
    }
    json
}

fn docker_round(text: &str, force: bool) {
    let _ = docker::has_containerd_snapshotter(Some(text));
    let Ok(Some(added)) = docker::add("daemon.json", Some(text), DOCKER_RUNTIME, force) else {
        if let Ok(Some(removed)) = docker::remove("daemon.json", text, DOCKER_RUNTIME) {
            let before: Value = serde_json::from_str(text).expect("remove parsed it");
            let after: Value = serde_json::from_str(&removed)
                .unwrap_or_else(|e| panic!("uninstall writes JSON ({e}): {text:?} -> {removed:?}"));
            assert_eq!(
                after,
                without_runtime(before),
                "uninstall removes only the runtime: {text:?} -> {removed:?}"
            );
        }
        return;
    };
    let _ = diff::unified("daemon.json", text, &added);
    let before: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(text).expect("add parsed it")
    };
    let after: Value = serde_json::from_str(&added)
        .unwrap_or_else(|e| panic!("install writes JSON ({e}): {text:?} -> {added:?}"));
    assert_eq!(
        after["runtimes"][DOCKER_RUNTIME]["runtimeType"], RUNTIME_TYPE,
        "{text:?} -> {added:?}"
    );
    assert_eq!(
        without_runtime(after),
        without_runtime(before.clone()),
        "install keeps every other value: {text:?} -> {added:?}"
    );
    assert_eq!(
        docker::add("daemon.json", Some(&added), DOCKER_RUNTIME, force).ok(),
        Some(None),
        "install twice: {text:?} -> {added:?}"
    );
    let removed = docker::remove("daemon.json", &added, DOCKER_RUNTIME)
        .expect("uninstall reads what install wrote")
        .expect("uninstall finds the runtime");
    let removed_json: Value = serde_json::from_str(&removed)
        .unwrap_or_else(|e| panic!("uninstall writes JSON ({e}): {added:?} -> {removed:?}"));
    assert_eq!(
        removed_json,
        without_runtime(before),
        "uninstall removes only the runtime: {text:?} -> {added:?} -> {removed:?}"
    );
    assert_eq!(
        docker::remove("daemon.json", &removed, DOCKER_RUNTIME).ok(),
        Some(None),
        "uninstall twice: {removed:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        let _ = containerd::add("config.toml", None, "wasmpod", false);
        let _ = docker::add("daemon.json", None, DOCKER_RUNTIME, false);
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let force = flags & 1 == 1;
    let handler = HANDLERS[usize::from((flags >> 1) & 3)];
    containerd_round(text, handler, force);
    docker_round(text, force);
});
