//! The OCI runtime spec -> WASI plan mapping (`wasmpod_shim::spec`): arbitrary bytes as a
//! bundle's `config.json`, then as `process.env` lines for the `WASMPOD_HTTP_*` settings.
//!
//! Beyond "never panics", checks what `plan_from_spec` documents: argv is `process.args`,
//! the entrypoint is an absolute path the fake rootfs has, every preopen is a clean absolute
//! guest path under the rootfs, and no guest path is preopened twice.

#![no_main]

use std::collections::HashSet;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;
use wasmpod_shim::spec::{http_plan, parse_env, plan_for_program, plan_from_spec};

const ROOTFS: &str = "/run/wasmpod/rootfs";

/// The fake rootfs: regular files are `*.wasm`, anything in a `bin` directory, and `*.conf`
/// (single-file mounts such as `/etc/resolv.conf` are left out of the preopens).
fn is_file(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.ends_with(".wasm") || text.contains("/bin/") || text.ends_with(".conf")
}

fn check_plan(spec: &Spec, plan: &wasmpod_shim::plan::WasiPlan, resolved: bool) {
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    assert_eq!(plan.argv.len(), args.len(), "argv is process.args");
    assert_eq!(plan.argv[1..], args[1..], "argv[1..] verbatim");
    assert!(
        args[0].starts_with(&plan.argv[0]),
        "argv[0] is args[0] without #export"
    );
    if resolved {
        assert!(plan.entrypoint.path.is_absolute(), "{plan:?}");
    }
    let mut seen = HashSet::new();
    for preopen in &plan.preopens {
        let guest = Path::new(&preopen.guest);
        assert!(guest.is_absolute(), "{preopen:?}");
        assert!(
            !guest.components().any(|c| c == Component::ParentDir),
            "{preopen:?}"
        );
        assert!(preopen.host.starts_with(ROOTFS), "{preopen:?}");
        assert!(seen.insert(preopen.guest.clone()), "twice: {preopen:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<Spec>(data) {
        let rootfs = Path::new(ROOTFS);
        if let Ok(plan) = plan_from_spec(&spec, rootfs, is_file) {
            check_plan(&spec, &plan, true);
            let entry = &plan.entrypoint.path;
            let host = rootfs.join(entry.strip_prefix("/").unwrap_or(entry));
            assert!(is_file(&host), "the entrypoint exists: {plan:?}");
        }
        if let Ok(plan) = plan_for_program(&spec, rootfs, is_file, "/app.wasm".into()) {
            check_plan(&spec, &plan, false);
            assert_eq!(plan.entrypoint.path, Path::new("/app.wasm"));
        }
    }
    // The same bytes as `NAME=value` lines: `process.env` as the serving settings see it.
    if let Ok(text) = std::str::from_utf8(data) {
        let lines: Vec<&str> = text.lines().collect();
        if let Ok(env) = parse_env(&lines) {
            if let Ok(http) = http_plan(&env) {
                assert!(http.max_concurrency >= 1 && http.max_concurrency <= 1000);
            }
        }
    }
});
