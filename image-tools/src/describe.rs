//! What a WebAssembly binary needs from its host and what it offers: kind,
//! WASI version, imports grouped by interface (the capabilities it asks
//! for), exports, and for components the top-level names that the CNCF
//! artifact config records.
//!
//! Pure: bytes in, [`WasmInfo`] out. Everything comes from wasmparser's
//! validator, so a binary that does not validate is never described.

use std::path::Path;

use serde::Serialize;
use wasmparser::component_types::ComponentEntityType;
use wasmparser::types::{EntityType, Types};
use wasmparser::{Parser, Payload};

use crate::layer::sha256_hex;
use crate::wasm::{self, WasmError, WasmKind};

/// Which WASI a binary is written against, read from its imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WasiVersion {
    /// No WASI import at all (pure computation, or a custom host API).
    None,
    /// `wasi_unstable` (the pre-snapshot ABI).
    Preview0,
    /// `wasi_snapshot_preview1`.
    Preview1,
    /// `wasi:*@0.2.*` interfaces.
    Preview2,
    /// `wasi:*@0.3.*` interfaces.
    Preview3,
}

impl WasiVersion {
    /// The lower-case name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Preview0 => "preview0",
            Self::Preview1 => "preview1",
            Self::Preview2 => "preview2",
            Self::Preview3 => "preview3",
        }
    }
}

/// One imported or exported item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Its name inside the interface (`fd_write`, `get-environment`).
    pub name: String,
    /// `func`, `memory`, `table`, `global`, `tag` (core) or `func`,
    /// `instance`, `module`, `component`, `value`, `type` (component).
    pub kind: &'static str,
}

/// Items grouped by the interface they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// The core import module (`wasi_snapshot_preview1`) or the component
    /// instance name (`wasi:cli/environment@0.2.0`); empty for items that
    /// belong to no interface (core exports, top-level component functions).
    pub name: String,
    /// The items, in binary order. For component instances only functions
    /// are listed (type exports are how they are described, not what they do).
    pub items: Vec<Item>,
}

/// What [`describe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WasmInfo {
    /// Module or component.
    pub kind: WasmKind,
    /// The WASI version the imports point at.
    pub wasi: WasiVersion,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// Imports grouped by interface: what the host must provide.
    pub imports: Vec<Interface>,
    /// Exports grouped by interface.
    pub exports: Vec<Interface>,
    /// The WASI world a component targets, inferred from its exports:
    /// `wasi:cli/run` -> `wasi:cli/command`, `wasi:http/incoming-handler` ->
    /// `wasi:http/proxy` (same version). Components carry no world name.
    pub world: Option<String>,
}

/// The `component` object of the wasm artifact config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ComponentSummary {
    /// Names of the exported instances and functions, in binary order.
    pub exports: Vec<String>,
    /// Names of the imported instances and functions, in binary order.
    pub imports: Vec<String>,
    /// The world the component targets, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl WasmInfo {
    /// For components, the top-level instance and function names (what the
    /// artifact config lists); `None` for core modules.
    pub fn component_summary(&self) -> Option<ComponentSummary> {
        if self.kind != WasmKind::Component {
            return None;
        }
        Some(ComponentSummary {
            exports: top_level_names(&self.exports),
            imports: top_level_names(&self.imports),
            target: self.world.clone(),
        })
    }
}

/// Validates `bytes` and describes them; `path` only names the binary in
/// errors.
///
/// # Errors
/// [`WasmError::NotWasm`] or [`WasmError::Invalid`] as [`wasm::load`] does.
pub fn describe(bytes: &[u8], path: &Path) -> Result<WasmInfo, WasmError> {
    let (kind, types) = wasm::validate(bytes).map_err(|e| e.at(path))?;
    let (imports, exports) = match kind {
        WasmKind::Module => core_interfaces(&types),
        WasmKind::Component => {
            let (imports, exports) = component_names(bytes)
                .map_err(|e| wasm::Problem::Invalid(kind, e.to_string()).at(path))?;
            (
                component_interfaces(&types, &imports, true),
                component_interfaces(&types, &exports, false),
            )
        }
    };
    let wasi = wasi_version(kind, &imports);
    let world = match kind {
        WasmKind::Component => infer_world(&exports),
        WasmKind::Module => None,
    };
    Ok(WasmInfo {
        kind,
        wasi,
        size: bytes.len() as u64,
        digest: format!("sha256:{}", sha256_hex(bytes)),
        imports,
        exports,
        world,
    })
}

fn core_interfaces(types: &Types) -> (Vec<Interface>, Vec<Interface>) {
    let types = types.as_ref();
    let mut imports: Vec<Interface> = Vec::new();
    for (module, name, ty) in types.core_imports().into_iter().flatten() {
        push_item(&mut imports, module, name, core_kind(&ty));
    }
    let mut exports = Vec::new();
    for (name, ty) in types.core_exports().into_iter().flatten() {
        push_item(&mut exports, "", name, core_kind(&ty));
    }
    (imports, exports)
}

/// Appends to the group named `group`, creating it at the end if the last
/// group has another name (core imports of one module are usually adjacent;
/// non-adjacent runs are merged so each module is listed once).
fn push_item(groups: &mut Vec<Interface>, group: &str, name: &str, kind: &'static str) {
    let item = Item {
        name: name.to_owned(),
        kind,
    };
    match groups.iter_mut().find(|g| g.name == group) {
        Some(existing) => existing.items.push(item),
        None => groups.push(Interface {
            name: group.to_owned(),
            items: vec![item],
        }),
    }
}

fn core_kind(ty: &EntityType) -> &'static str {
    match ty {
        EntityType::Func(_) | EntityType::FuncExact(_) => "func",
        EntityType::Table(_) => "table",
        EntityType::Memory(_) => "memory",
        EntityType::Global(_) => "global",
        EntityType::Tag(_) => "tag",
    }
}

fn component_kind(ty: &ComponentEntityType) -> &'static str {
    match ty {
        ComponentEntityType::Module(_) => "module",
        ComponentEntityType::Func(_) => "func",
        ComponentEntityType::Value(_) => "value",
        ComponentEntityType::Type { .. } => "type",
        ComponentEntityType::Instance(_) => "instance",
        ComponentEntityType::Component(_) => "component",
    }
}

/// The names in the outermost component's import and export sections
/// (nested modules and components are skipped by tracking depth: each
/// nested one starts with a section payload and ends with its own `End`).
fn component_names(
    bytes: &[u8],
) -> Result<(Vec<String>, Vec<String>), wasmparser::BinaryReaderError> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth == 0 => break,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// Instances become one interface each (listing their functions); other
/// top-level items go together into the interface with the empty name.
fn component_interfaces(types: &Types, names: &[String], imports: bool) -> Vec<Interface> {
    let types_ref = types.as_ref();
    let mut groups = Vec::new();
    for name in names {
        let item = if imports {
            types_ref.component_item_for_import(name)
        } else {
            types_ref.component_item_for_export(name)
        };
        let Some(item) = item else { continue };
        match &item.ty {
            ComponentEntityType::Instance(id) => {
                let items = types[*id]
                    .exports
                    .iter()
                    .filter(|(_, item)| matches!(item.ty, ComponentEntityType::Func(_)))
                    .map(|(name, _)| Item {
                        name: name.clone(),
                        kind: "func",
                    })
                    .collect();
                groups.push(Interface {
                    name: name.clone(),
                    items,
                });
            }
            // Type imports/exports are how an interface is described, not a
            // capability; they would drown the list.
            ComponentEntityType::Type { .. } => {}
            other => push_item(&mut groups, "", name, component_kind(other)),
        }
    }
    groups
}

/// Instance names plus top-level function (and other non-type) names.
fn top_level_names(groups: &[Interface]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|g| {
            if g.name.is_empty() {
                g.items.iter().map(|i| i.name.clone()).collect()
            } else {
                vec![g.name.clone()]
            }
        })
        .collect()
}

fn wasi_version(kind: WasmKind, imports: &[Interface]) -> WasiVersion {
    let names = || imports.iter().map(|g| g.name.as_str());
    match kind {
        WasmKind::Module => {
            if names().any(|n| n == "wasi_snapshot_preview1") {
                WasiVersion::Preview1
            } else if names().any(|n| n == "wasi_unstable") {
                WasiVersion::Preview0
            } else {
                WasiVersion::None
            }
        }
        WasmKind::Component => {
            let versions: Vec<&str> = names()
                .filter(|n| n.starts_with("wasi:"))
                .filter_map(|n| n.split_once('@').map(|(_, v)| v))
                .collect();
            if versions.iter().any(|v| v.starts_with("0.3.")) {
                WasiVersion::Preview3
            } else if versions.iter().any(|v| v.starts_with("0.2.")) {
                WasiVersion::Preview2
            } else {
                WasiVersion::None
            }
        }
    }
}

fn infer_world(exports: &[Interface]) -> Option<String> {
    const WORLDS: [(&str, &str); 2] = [
        ("wasi:cli/run@", "wasi:cli/command@"),
        ("wasi:http/incoming-handler@", "wasi:http/proxy@"),
    ];
    exports.iter().find_map(|g| {
        WORLDS.iter().find_map(|(export, world)| {
            g.name
                .strip_prefix(export)
                .map(|version| format!("{world}{version}"))
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed setup step should just fail the test
mod tests;
