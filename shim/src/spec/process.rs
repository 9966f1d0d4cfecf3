//! `process.env` and `process.cwd` of the OCI spec, validated into guest values.
//!
//! Owns the environment parsing and the working directory rule. Pure functions, no I/O.

use std::path::{Path, PathBuf};

use super::SpecError;

/// Parses `process.env` (`NAME=value` entries) into ordered pairs.
///
/// The value is everything after the first `=`, so it may itself contain `=`. When a name
/// repeats, the last value wins but the pair keeps the position of the first occurrence, which
/// matches what `execve` consumers such as `getenv` and shells end up seeing.
///
/// # Errors
/// [`SpecError::EnvMissingEquals`] for an entry without `=`, [`SpecError::EnvEmptyName`] for an
/// entry starting with `=`. Both are rejected rather than dropped: a silently lost variable is
/// much harder to debug than a refused container.
pub fn parse_env<S: AsRef<str>>(entries: &[S]) -> Result<Vec<(String, String)>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.as_ref();
        let Some((name, value)) = entry.split_once('=') else {
            return Err(SpecError::EnvMissingEquals {
                entry: entry.to_owned(),
            });
        };
        if name.is_empty() {
            return Err(SpecError::EnvEmptyName {
                entry: entry.to_owned(),
            });
        }
        // Linear scan: environments are small and this keeps the first-position order simple.
        match env.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((name.to_owned(), value.to_owned())),
        }
    }
    Ok(env)
}

/// Looks up `name` in an environment parsed by [`parse_env`].
pub fn env_lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The guest working directory from `process.cwd`: `/` when empty (a spec that omits the
/// field deserializes to an empty path), otherwise the path as written.
///
/// # Errors
/// [`SpecError::CwdNotAbsolute`] for a relative path: there is no directory it could be
/// relative to inside the guest.
pub fn guest_cwd(cwd: &Path) -> Result<PathBuf, SpecError> {
    if cwd.as_os_str().is_empty() {
        return Ok(PathBuf::from("/"));
    }
    if !cwd.is_absolute() {
        return Err(SpecError::CwdNotAbsolute {
            cwd: cwd.to_owned(),
        });
    }
    Ok(cwd.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_keeps_spec_order() {
        let env = parse_env(&["B=2", "A=1", "C=3"]);
        assert_eq!(env, Ok(pairs(&[("B", "2"), ("A", "1"), ("C", "3")])));
    }

    #[test]
    fn env_value_may_contain_equals() {
        let env = parse_env(&["OPTS=a=1,b=2", "X=="]);
        assert_eq!(env, Ok(pairs(&[("OPTS", "a=1,b=2"), ("X", "=")])));
    }

    #[test]
    fn env_empty_value_is_kept() {
        assert_eq!(parse_env(&["EMPTY="]), Ok(pairs(&[("EMPTY", "")])));
    }

    #[test]
    fn env_duplicate_last_wins_first_position() {
        let env = parse_env(&["A=1", "B=2", "A=3"]);
        assert_eq!(env, Ok(pairs(&[("A", "3"), ("B", "2")])));
    }

    #[test]
    fn env_names_are_case_sensitive() {
        let env = parse_env(&["path=/x", "PATH=/y"]);
        assert_eq!(env, Ok(pairs(&[("path", "/x"), ("PATH", "/y")])));
    }

    #[test]
    fn env_missing_equals_is_rejected() {
        let err = parse_env(&["A=1", "FOO"]);
        assert_eq!(
            err,
            Err(SpecError::EnvMissingEquals {
                entry: "FOO".into()
            })
        );
        let msg = SpecError::EnvMissingEquals {
            entry: "FOO".into(),
        }
        .to_string();
        assert_eq!(msg, "process.env entry \"FOO\" has no '='");
    }

    #[test]
    fn env_empty_name_is_rejected() {
        assert_eq!(
            parse_env(&["=x"]),
            Err(SpecError::EnvEmptyName { entry: "=x".into() })
        );
    }

    #[test]
    fn env_empty_list_is_empty() {
        assert_eq!(parse_env::<&str>(&[]), Ok(Vec::new()));
    }

    #[test]
    fn env_lookup_finds_exact_name() {
        let env = pairs(&[("PATH", "/bin"), ("PATHX", "/no")]);
        assert_eq!(env_lookup(&env, "PATH"), Some("/bin"));
        assert_eq!(env_lookup(&env, "HOME"), None);
    }

    #[test]
    fn cwd_defaults_to_root() {
        assert_eq!(guest_cwd(Path::new("")), Ok(PathBuf::from("/")));
    }

    #[test]
    fn cwd_absolute_is_kept() {
        assert_eq!(guest_cwd(Path::new("/work")), Ok(PathBuf::from("/work")));
    }

    #[test]
    fn cwd_relative_is_rejected() {
        let err = guest_cwd(Path::new("rel"));
        assert_eq!(err, Err(SpecError::CwdNotAbsolute { cwd: "rel".into() }));
        let msg = SpecError::CwdNotAbsolute { cwd: "rel".into() }.to_string();
        assert_eq!(msg, "process.cwd \"rel\" is not absolute");
    }
}
