//! Adds and removes the wasmpod runtime in containerd's `config.toml`,
//! keeping every other byte of the file (`toml_edit`).

use toml_edit::{value, DocumentMut, Item, Table};

use super::{InstallError, RUNTIME_TYPE};

/// Which CRI plugin table holds the runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// containerd 1.x, `version = 2`: `plugins."io.containerd.grpc.v1.cri"`.
    V2,
    /// containerd 2.x, `version = 3`: `plugins."io.containerd.cri.v1.runtime"`.
    V3,
    /// containerd 1.x, no `version` (= 1) with a `[plugins.cri]` table.
    V1,
}

impl Schema {
    /// The plugin id the runtimes live under.
    pub fn plugin(self) -> &'static str {
        match self {
            Schema::V2 => "io.containerd.grpc.v1.cri",
            Schema::V3 => "io.containerd.cri.v1.runtime",
            Schema::V1 => "cri",
        }
    }

    /// The TOML table header of a runtime named `handler`.
    pub fn header(self, handler: &str) -> String {
        let plugin = match self {
            Schema::V1 => "cri".to_string(),
            _ => format!("\"{}\"", self.plugin()),
        };
        format!("[plugins.{plugin}.containerd.runtimes.{handler}]")
    }
}

/// What an edit did to the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub schema: Schema,
    /// A note for the user (e.g. "file does not exist").
    pub note: Option<String>,
}

fn parse(path: &str, text: &str) -> Result<DocumentMut, InstallError> {
    text.parse::<DocumentMut>()
        .map_err(|err| InstallError::Parse {
            path: path.into(),
            message: err.to_string().trim_end().to_string(),
        })
}

/// Which schema `doc` uses, from its `version` key and plugin tables.
fn schema(path: &str, doc: &DocumentMut) -> Result<Option<Schema>, InstallError> {
    let plugins = doc.get("plugins").and_then(Item::as_table_like);
    let has = |plugin: &str| plugins.is_some_and(|p| p.contains_key(plugin));
    match doc.get("version").map(|v| v.as_integer()) {
        Some(Some(2)) => {
            if has(Schema::V3.plugin()) && !has(Schema::V2.plugin()) {
                return Err(InstallError::Unsupported {
                    path: path.into(),
                    message: "`version = 2` but only containerd 2.x (version 3) plugin tables"
                        .into(),
                });
            }
            Ok(Some(Schema::V2))
        }
        Some(Some(3)) => Ok(Some(Schema::V3)),
        Some(Some(1)) => Ok(Some(Schema::V1)),
        Some(_) => Err(InstallError::Unsupported {
            path: path.into(),
            message: "`version` is not 1, 2 or 3".into(),
        }),
        None if has("cri") => Ok(Some(Schema::V1)),
        None if doc.is_empty() => Ok(None),
        None => Err(InstallError::Unsupported {
            path: path.into(),
            message: "no `version` key: add `version = 2` (containerd 1.x) or `version = 3` \
                      (containerd 2.x) at the top"
                .into(),
        }),
    }
}

/// The child table `key` of `parent`, created (implicit, so no header of
/// its own) when missing.
fn child<'t>(
    path: &str,
    parent: &'t mut Table,
    key: &str,
    dotted: &str,
) -> Result<&'t mut Table, InstallError> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut table = Table::new();
        table.set_implicit(true);
        Item::Table(table)
    });
    item.as_table_mut()
        .ok_or_else(|| InstallError::Unsupported {
            path: path.into(),
            message: format!(
                "`{dotted}` is not a [table] (inline tables are not supported: edit by hand)"
            ),
        })
}

fn runtimes_mut<'d>(
    path: &str,
    doc: &'d mut DocumentMut,
    schema: Schema,
) -> Result<&'d mut Table, InstallError> {
    let mut table = doc.as_table_mut();
    let mut dotted = String::new();
    for key in ["plugins", schema.plugin(), "containerd", "runtimes"] {
        if !dotted.is_empty() {
            dotted.push('.');
        }
        dotted.push_str(key);
        table = child(path, table, key, &dotted)?;
    }
    Ok(table)
}

/// The `runtime_type` of runtime `handler`, if the table exists.
fn runtime_type(table: &Table) -> Option<String> {
    table
        .get("runtime_type")
        .and_then(Item::as_str)
        .map(str::to_string)
}

/// `text` (None: no file) with runtime `handler` added. `Ok(None)`: already there.
pub fn add(
    path: &str,
    text: Option<&str>,
    handler: &str,
    force: bool,
) -> Result<Option<Edited>, InstallError> {
    let mut doc = parse(path, text.unwrap_or(""))?;
    let mut note = None;
    let schema = match schema(path, &doc)? {
        Some(schema) => schema,
        None => {
            note = Some(if text.is_none() {
                format!(
                    "{path} does not exist: it gets a minimal version 2 (containerd 1.x) config"
                )
            } else {
                format!("{path} had no settings: made it a version 2 (containerd 1.x) config")
            });
            doc.insert("version", value(2));
            Schema::V2
        }
    };
    let runtimes = runtimes_mut(path, &mut doc, schema)?;
    match runtimes.get_mut(handler) {
        Some(item) => {
            let table = item
                .as_table_mut()
                .ok_or_else(|| InstallError::Unsupported {
                    path: path.into(),
                    message: format!("runtime `{handler}` is not a [table]"),
                })?;
            match runtime_type(table) {
                Some(existing) if existing == RUNTIME_TYPE => return Ok(None),
                existing if !force => {
                    return Err(InstallError::Conflict {
                        path: path.into(),
                        handler: handler.into(),
                        existing: existing.unwrap_or_else(|| "(none)".into()),
                    })
                }
                _ => table["runtime_type"] = value(RUNTIME_TYPE),
            }
        }
        None => {
            let mut table = Table::new();
            table["runtime_type"] = value(RUNTIME_TYPE);
            runtimes.insert(handler, Item::Table(table));
        }
    }
    Ok(Some(Edited {
        text: doc.to_string(),
        schema,
        note,
    }))
}

/// `text` without runtime `handler`, if it is ours. `Ok(None)`: nothing to do.
pub fn remove(path: &str, text: &str, handler: &str) -> Result<Option<Edited>, InstallError> {
    let mut doc = parse(path, text)?;
    let Some(schema) = schema(path, &doc)? else {
        return Ok(None);
    };
    let runtimes = doc
        .get_mut("plugins")
        .and_then(|p| p.get_mut(schema.plugin()))
        .and_then(|p| p.get_mut("containerd"))
        .and_then(|p| p.get_mut("runtimes"))
        .and_then(Item::as_table_mut);
    let Some(runtimes) = runtimes else {
        return Ok(None);
    };
    let Some(table) = runtimes.get(handler).and_then(Item::as_table) else {
        return Ok(None);
    };
    if runtime_type(table).as_deref() != Some(RUNTIME_TYPE) {
        return Ok(Some(Edited {
            text: text.to_string(),
            schema,
            note: Some(format!(
                "{path}: runtime `{handler}` is not wasmpod's (runtime_type {}): left alone",
                runtime_type(table).unwrap_or_else(|| "(none)".into())
            )),
        }));
    }
    runtimes.remove(handler);
    Ok(Some(Edited {
        text: doc.to_string(),
        schema,
        note: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "version = 2\n\n# keep me\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"pause\"   # comment\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n\n[metrics]\n  address = \"\"\n";

    #[test]
    fn adds_after_existing_runtimes_and_removes_back() {
        let added = add("c.toml", Some(V2), "wasmpod", false).unwrap().unwrap();
        assert_eq!(added.schema, Schema::V2);
        let table = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmpod]\nruntime_type = \"io.containerd.wasmpod.v1\"\n";
        assert!(added.text.contains(table), "{}", added.text);
        assert_eq!(added.text.replace(&format!("\n{table}"), ""), V2);
        assert_eq!(
            add("c.toml", Some(&added.text), "wasmpod", false).unwrap(),
            None
        );
        let removed = remove("c.toml", &added.text, "wasmpod").unwrap().unwrap();
        assert_eq!(removed.text, V2);
        assert_eq!(remove("c.toml", V2, "wasmpod").unwrap(), None);
    }

    #[test]
    fn missing_file_gets_a_minimal_v2_config() {
        let added = add("c.toml", None, "wasmpod", false).unwrap().unwrap();
        assert_eq!(
            added.text,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmpod]\nruntime_type = \"io.containerd.wasmpod.v1\"\n"
        );
        assert!(added.note.unwrap().contains("does not exist"));
        let removed = remove("c.toml", &added.text, "wasmpod").unwrap().unwrap();
        assert_eq!(removed.text, "version = 2\n");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = add(
            "/x/c.toml",
            Some("version = 2\n[plugins\n"),
            "wasmpod",
            false,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("/x/c.toml") && message.contains("line 2"),
            "{message}"
        );
        let other = V2.replace("runtimes.runc]", "runtimes.wasmpod]");
        let err = add("/x/c.toml", Some(&other), "wasmpod", false).unwrap_err();
        assert!(err.to_string().contains("io.containerd.runc.v2"), "{err}");
        let forced = add("/x/c.toml", Some(&other), "wasmpod", true)
            .unwrap()
            .unwrap();
        assert!(forced
            .text
            .contains("runtime_type = \"io.containerd.wasmpod.v1\""));
        // Not ours: uninstall leaves it.
        let kept = remove("/x/c.toml", &other, "wasmpod").unwrap().unwrap();
        assert_eq!(kept.text, other);
        let err = add(
            "c.toml",
            Some("[debug]\nlevel = \"info\"\n"),
            "wasmpod",
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no `version` key"), "{err}");
    }
}
