//! Detects whether a `.wasm` file is a core module or a component, and
//! validates it, so a broken file is refused at build time instead of when
//! the shim first tries to run it.

use std::fmt;
use std::path::{Path, PathBuf};

use wasmparser::types::Types;
use wasmparser::{Parser, Validator, WasmFeatures};

/// The two kinds of WebAssembly binary the shim can run. Serialised as
/// `"module"` / `"component"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WasmKind {
    /// A core module (WASI preview 1).
    Module,
    /// A component (WASI preview 2).
    Component,
}

impl WasmKind {
    /// The image OS for this kind: `wasip1` for modules, `wasip2` for components.
    pub fn default_os(self) -> &'static str {
        match self {
            Self::Module => "wasip1",
            Self::Component => "wasip2",
        }
    }
}

impl fmt::Display for WasmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Module => "core module",
            Self::Component => "component",
        })
    }
}

/// Why a file is not a usable WebAssembly binary.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The file could not be read.
    #[error("cannot read WASM file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the WebAssembly magic and version.
    #[error("{} is not a WebAssembly binary ({reason})", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The binary is malformed or fails validation.
    #[error("{} is not a valid WebAssembly {kind}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the header claimed it was.
        kind: WasmKind,
        /// The validator's message, with the byte offset.
        reason: String,
    },
}

/// A validated WebAssembly binary, read into memory.
#[derive(Debug, Clone)]
pub struct WasmBinary {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Module or component.
    pub kind: WasmKind,
}

/// Reads and validates the WebAssembly binary at `path`.
///
/// # Errors
/// [`WasmError::Read`] if the file cannot be read, [`WasmError::NotWasm`] if it
/// lacks the binary header (e.g. it is `.wat` text), [`WasmError::Invalid`] if
/// it does not validate.
pub fn load(path: &Path) -> Result<WasmBinary, WasmError> {
    let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
        path: path.to_owned(),
        source,
    })?;
    let kind = check(&bytes).map_err(|e| e.at(path))?;
    Ok(WasmBinary { bytes, kind })
}

/// A [`WasmError`] before the file name is known.
#[derive(Debug)]
pub(crate) enum Problem {
    NotWasm(String),
    Invalid(WasmKind, String),
}

impl Problem {
    /// The error for the file (or image path) at `path`.
    pub(crate) fn at(self, path: &Path) -> WasmError {
        let path = path.to_owned();
        match self {
            Self::NotWasm(reason) => WasmError::NotWasm { path, reason },
            Self::Invalid(kind, reason) => WasmError::Invalid { path, kind, reason },
        }
    }
}

fn check(bytes: &[u8]) -> Result<WasmKind, Problem> {
    validate(bytes).map(|(kind, _)| kind)
}

/// Detects the kind of `bytes` and validates them, returning the type
/// information the validator collected (imports, exports and their types).
pub(crate) fn validate(bytes: &[u8]) -> Result<(WasmKind, Types), Problem> {
    let kind = if Parser::is_component(bytes) {
        WasmKind::Component
    } else if Parser::is_core_wasm(bytes) {
        WasmKind::Module
    } else if bytes.starts_with(b"\0asm") {
        return Err(Problem::NotWasm("unsupported binary version".to_owned()));
    } else if bytes.is_empty() {
        return Err(Problem::NotWasm("the file is empty".to_owned()));
    } else if bytes.trim_ascii_start().starts_with(b"(") {
        return Err(Problem::NotWasm(
            "it looks like WAT text; compile it to a binary first".to_owned(),
        ));
    } else {
        return Err(Problem::NotWasm("missing the \\0asm header".to_owned()));
    };
    // All proposals are enabled on purpose: this check is about catching
    // broken or truncated files; which proposals a runtime accepts is the
    // shim's decision, made when it loads the module.
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| Problem::Invalid(kind, e.to_string()))?;
    Ok((kind, types))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests {
    use super::*;

    #[test]
    fn detects_module_and_component() {
        let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(check(&module).unwrap(), WasmKind::Module);
        assert_eq!(check(&component).unwrap(), WasmKind::Component);
    }

    #[test]
    fn explains_what_is_wrong() {
        let not_wasm = |b: &[u8]| match check(b) {
            Err(Problem::NotWasm(reason)) => reason,
            other => panic!("unexpected {other:?}"),
        };
        assert!(not_wasm(b"").contains("empty"));
        assert!(not_wasm(b"  (module)").contains("WAT"));
        assert!(not_wasm(b"ELF...").contains("header"));

        let mut truncated = wat::parse_str("(module (func (export \"f\") nop))").unwrap();
        truncated.truncate(truncated.len() - 3);
        match check(&truncated) {
            Err(Problem::Invalid(WasmKind::Module, reason)) => assert!(reason.contains("offset")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.wasm");
        std::fs::write(&path, b"\0asm\x01\0\0\0\x01\x05").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(message.contains("broken.wasm"), "{message}");
        assert!(
            message.contains("not a valid WebAssembly core module"),
            "{message}"
        );
    }
}
