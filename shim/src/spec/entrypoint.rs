//! The entrypoint from `process.args[0]`: `#export` suffix and `PATH` resolution.
//!
//! Owns [`split_export`] and [`resolve_entrypoint`]. No I/O: whether a candidate file exists
//! is asked through a caller-supplied closure, so the search is testable and the shim's own
//! environment never leaks into it.

use std::path::{Component, Path, PathBuf};

use super::process::env_lookup;
use super::{EntrypointLookup, SpecError};

/// `PATH` used when the spec's `process.env` has none; the value runc, youki and Docker use.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Splits `process.args[0]` into the program path and an optional export name.
///
/// `path#name` gives `(path, Some(name))`, a plain `path` gives `(path, None)`. The split is at
/// the first `#` because component export names can themselves contain `#` (for example
/// `wasi:http/incoming-handler@0.2.0#handle`), whereas a program path with a `#` is vanishingly
/// rare; such a path cannot be expressed.
///
/// # Errors
/// [`SpecError::EmptyProgramPath`] when nothing precedes the `#` (or `arg0` is empty),
/// [`SpecError::EmptyExportName`] when nothing follows it.
pub fn split_export(arg0: &str) -> Result<(&str, Option<&str>), SpecError> {
    let (path, export) = match arg0.split_once('#') {
        Some((path, export)) => (path, Some(export)),
        None => (arg0, None),
    };
    if path.is_empty() {
        return Err(SpecError::EmptyProgramPath {
            arg0: arg0.to_owned(),
        });
    }
    if export == Some("") {
        return Err(SpecError::EmptyExportName {
            arg0: arg0.to_owned(),
        });
    }
    Ok((path, export))
}

/// Finds the program named by `program` (an `args[0]` without its `#export`) inside the
/// container, the way `execvp` would, but against the spec's environment.
///
/// - absolute (`/app/x.wasm`): itself, if it exists;
/// - relative with a `/` (`./x.wasm`, `bin/x.wasm`): joined to `cwd` (the guest working
///   directory), `.` components dropped;
/// - bare name (`x.wasm`): the first hit in the `PATH` entry of `env` (the spec's
///   `process.env`, parsed), or [`DEFAULT_PATH`] when it has none. Never the shim's own `PATH`,
///   which describes the node, not the image. Empty and relative `PATH` entries are skipped:
///   they would make the result depend on `cwd`, a classic way to run the wrong program.
///
/// `exists` receives absolute container paths and should answer whether a regular file is
/// there.
///
/// # Errors
/// [`SpecError::EntrypointNotFound`], saying where it looked (for `PATH`, the full value).
pub fn resolve_entrypoint(
    program: &str,
    env: &[(String, String)],
    cwd: &Path,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, SpecError> {
    let not_found = |searched| SpecError::EntrypointNotFound {
        entrypoint: program.to_owned(),
        searched,
    };
    let as_path = Path::new(program);
    if as_path.is_absolute() {
        return if exists(as_path) {
            Ok(as_path.to_owned())
        } else {
            Err(not_found(EntrypointLookup::Absolute))
        };
    }
    if program.contains('/') {
        let candidate = join_relative(cwd, as_path);
        return if exists(&candidate) {
            Ok(candidate)
        } else {
            Err(not_found(EntrypointLookup::Cwd(cwd.to_owned())))
        };
    }
    let search = env_lookup(env, "PATH").unwrap_or(DEFAULT_PATH);
    search
        .split(':')
        .map(Path::new)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| exists(candidate))
        .ok_or_else(|| not_found(EntrypointLookup::Path(search.to_owned())))
}

/// `base` joined with `relative`, without the `.` components (`./x` under `/w` is `/w/x`).
/// `..` is kept: without I/O it cannot be folded correctly across symlinks.
fn join_relative(base: &Path, relative: &Path) -> PathBuf {
    let mut joined = base.to_path_buf();
    for component in relative.components() {
        if component != Component::CurDir {
            joined.push(component);
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// An `exists` closure that knows exactly these files.
    fn files(known: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |path| known.iter().any(|k| Path::new(k) == path)
    }

    #[test]
    fn split_plain_path() {
        assert_eq!(split_export("/app.wasm"), Ok(("/app.wasm", None)));
    }

    #[test]
    fn split_path_and_export() {
        assert_eq!(
            split_export("/app.wasm#serve"),
            Ok(("/app.wasm", Some("serve")))
        );
    }

    #[test]
    fn split_at_first_hash_keeps_component_names() {
        let split = split_export("app.wasm#wasi:http/incoming-handler@0.2.0#handle");
        assert_eq!(
            split,
            Ok(("app.wasm", Some("wasi:http/incoming-handler@0.2.0#handle")))
        );
    }

    #[test]
    fn split_empty_export_is_rejected() {
        assert_eq!(
            split_export("/app.wasm#"),
            Err(SpecError::EmptyExportName {
                arg0: "/app.wasm#".into()
            })
        );
        let msg = SpecError::EmptyExportName { arg0: "a#".into() }.to_string();
        assert!(
            msg.starts_with("entrypoint export name after '#' is empty"),
            "{msg}"
        );
    }

    #[test]
    fn split_empty_path_is_rejected() {
        assert_eq!(
            split_export("#main"),
            Err(SpecError::EmptyProgramPath {
                arg0: "#main".into()
            })
        );
        assert_eq!(
            split_export(""),
            Err(SpecError::EmptyProgramPath {
                arg0: String::new()
            })
        );
    }

    #[test]
    fn absolute_path_that_exists() {
        let found = resolve_entrypoint("/app/x.wasm", &[], Path::new("/"), files(&["/app/x.wasm"]));
        assert_eq!(found, Ok(PathBuf::from("/app/x.wasm")));
    }

    #[test]
    fn absolute_path_is_not_searched_in_path() {
        let found = resolve_entrypoint("/x.wasm", &[], Path::new("/"), files(&["/usr/bin/x.wasm"]));
        assert_eq!(
            found,
            Err(SpecError::EntrypointNotFound {
                entrypoint: "/x.wasm".into(),
                searched: EntrypointLookup::Absolute,
            })
        );
    }

    #[test]
    fn relative_with_slash_uses_cwd() {
        let exists = files(&["/work/x.wasm", "/work/bin/y.wasm"]);
        let cwd = Path::new("/work");
        assert_eq!(
            resolve_entrypoint("./x.wasm", &[], cwd, &exists),
            Ok("/work/x.wasm".into())
        );
        let nested = resolve_entrypoint("bin/./y.wasm", &[], cwd, &exists);
        assert_eq!(nested, Ok("/work/bin/y.wasm".into()));
    }

    #[test]
    fn relative_with_slash_is_not_searched_in_path() {
        let found = resolve_entrypoint("bin/x.wasm", &[], Path::new("/w"), files(&["/bin/x.wasm"]));
        let err = found.map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "entrypoint \"bin/x.wasm\" not found in the container rootfs \
                 (relative to process.cwd /w)"
                    .into()
            )
        );
    }

    #[test]
    fn bare_name_uses_spec_path_first_hit() {
        let env = env(&[("PATH", "/opt/a:/opt/b")]);
        let exists = files(&["/opt/b/x.wasm", "/usr/bin/x.wasm"]);
        assert_eq!(
            resolve_entrypoint("x.wasm", &env, Path::new("/"), &exists),
            Ok("/opt/b/x.wasm".into())
        );
        let both = files(&["/opt/a/x.wasm", "/opt/b/x.wasm"]);
        assert_eq!(
            resolve_entrypoint("x.wasm", &env, Path::new("/"), both),
            Ok("/opt/a/x.wasm".into())
        );
    }

    #[test]
    fn bare_name_without_spec_path_uses_default_path() {
        let env = env(&[("HOME", "/root")]);
        let exists = files(&["/bin/x.wasm"]);
        assert_eq!(
            resolve_entrypoint("x.wasm", &env, Path::new("/"), exists),
            Ok("/bin/x.wasm".into())
        );
    }

    #[test]
    fn bare_name_never_falls_back_to_default_when_spec_has_path() {
        let env = env(&[("PATH", "/opt")]);
        let found = resolve_entrypoint("x.wasm", &env, Path::new("/"), files(&["/bin/x.wasm"]));
        assert!(found.is_err());
    }

    #[test]
    fn bare_name_skips_empty_and_relative_path_entries() {
        let env = env(&[("PATH", ":.:bin:/opt")]);
        let exists = files(&[
            "x.wasm",
            "./x.wasm",
            "bin/x.wasm",
            "/w/x.wasm",
            "/opt/x.wasm",
        ]);
        assert_eq!(
            resolve_entrypoint("x.wasm", &env, Path::new("/w"), exists),
            Ok("/opt/x.wasm".into())
        );
    }

    #[test]
    fn not_found_lists_the_searched_path() {
        let env = env(&[("PATH", "/usr/bin:/bin")]);
        let err = resolve_entrypoint("app.wasm", &env, Path::new("/"), |_| false);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("entrypoint \"app.wasm\" not found in the container rootfs \
                 (searched PATH /usr/bin:/bin)"
                .into())
        );
    }

    #[test]
    fn not_found_lists_the_default_path() {
        let err = resolve_entrypoint("app.wasm", &[], Path::new("/"), |_| false);
        assert_eq!(
            err,
            Err(SpecError::EntrypointNotFound {
                entrypoint: "app.wasm".into(),
                searched: EntrypointLookup::Path(DEFAULT_PATH.into()),
            })
        );
    }
}
