//! Adds and removes the wasmpod runtime in Docker's `daemon.json` by editing
//! the text in place (other keys keep their order, spacing and bytes).

use serde_json::Value;

use super::{InstallError, RUNTIME_TYPE};

/// One `"key": value` of an object, as byte offsets into the text.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    /// Just after the `{` or `,` before this member.
    lead: usize,
    value_start: usize,
    value_end: usize,
    /// The `,` or `}` after the value.
    delim: usize,
}

/// The members of the object whose `{` is at `open`.
fn members(text: &str, open: usize) -> Vec<Member> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut pos = open + 1;
    loop {
        let lead = pos;
        pos = skip_ws(bytes, pos);
        if bytes[pos] == b'}' {
            return out;
        }
        let key_end = skip_value(bytes, pos);
        let key: String = serde_json::from_str(&text[pos..key_end]).unwrap_or_default();
        pos = skip_ws(bytes, key_end) + 1; // the ':'
        let value_start = skip_ws(bytes, pos);
        let value_end = skip_value(bytes, value_start);
        let delim = skip_ws(bytes, value_end);
        out.push(Member {
            key,
            lead,
            value_start,
            value_end,
            delim,
        });
        if bytes[delim] == b'}' {
            return out;
        }
        pos = delim + 1;
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// The end of the (valid) JSON value starting at `pos`.
fn skip_value(bytes: &[u8], mut pos: usize) -> usize {
    match bytes[pos] {
        b'"' => {
            pos += 1;
            while bytes[pos] != b'"' {
                pos += if bytes[pos] == b'\\' { 2 } else { 1 };
            }
            pos + 1
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes[pos] {
                    b'"' => {
                        pos = skip_value(bytes, pos);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return pos + 1;
                        }
                    }
                    _ => {}
                }
                pos += 1;
            }
        }
        _ => {
            while pos < bytes.len() && !b",}] \t\r\n".contains(&bytes[pos]) {
                pos += 1;
            }
            pos
        }
    }
}

/// Parses and checks that the top level is an object; returns its `{` offset.
fn parse(path: &str, text: &str) -> Result<(Value, usize), InstallError> {
    let json: Value = serde_json::from_str(text).map_err(|err| InstallError::Parse {
        path: path.into(),
        message: err.to_string(),
    })?;
    if !json.is_object() {
        return Err(InstallError::Unsupported {
            path: path.into(),
            message: "the top level is not a JSON object".into(),
        });
    }
    Ok((json, skip_ws(text.as_bytes(), 0)))
}

/// Refuses an object with a repeated key among `members`: Docker reads the last one, the
/// text edit would touch the first (and a non-object first `runtimes` has no members to
/// splice into).
fn unique(path: &str, members: &[Member], what: &str) -> Result<(), InstallError> {
    for (i, member) in members.iter().enumerate() {
        if members[..i].iter().any(|m| m.key == member.key) {
            return Err(InstallError::Unsupported {
                path: path.into(),
                message: format!("{what} has the key {:?} twice: edit by hand", member.key),
            });
        }
    }
    Ok(())
}

fn entry(indent: &str) -> String {
    format!("{{\n{indent}  \"runtimeType\": \"{RUNTIME_TYPE}\"\n{indent}}}")
}

/// `text` (None: no file) with the runtime `name` added. `Ok(None)`: already there.
pub fn add(
    path: &str,
    text: Option<&str>,
    name: &str,
    force: bool,
) -> Result<Option<String>, InstallError> {
    let text = match text {
        Some(text) if !text.trim().is_empty() => text,
        _ => "{}\n",
    };
    let (json, open) = parse(path, text)?;
    let key = serde_json::to_string(name).unwrap_or_default();
    let splice = |at: usize, insert: &str, nonempty: bool| {
        let comma = if nonempty { "," } else { "\n" };
        let tail = &text[at..];
        let tail = if nonempty { tail } else { tail.trim_start() };
        format!("{}{insert}{comma}{tail}", &text[..at])
    };
    let top = members(text, open);
    unique(path, &top, "the top level")?;
    let Some(runtimes) = top.iter().find(|m| m.key == "runtimes") else {
        let insert = format!("\n  \"runtimes\": {{\n    {key}: {}\n  }}", entry("    "));
        return Ok(Some(splice(open + 1, &insert, !top.is_empty())));
    };
    if !json["runtimes"].is_object() {
        return Err(InstallError::Unsupported {
            path: path.into(),
            message: "`runtimes` is not an object".into(),
        });
    }
    let inner = members(text, runtimes.value_start);
    unique(path, &inner, "`runtimes`")?;
    match inner.iter().find(|m| m.key == name) {
        Some(existing) => {
            let current = json["runtimes"][name]["runtimeType"].as_str();
            if current == Some(RUNTIME_TYPE) {
                return Ok(None);
            }
            if !force {
                return Err(InstallError::Conflict {
                    path: path.into(),
                    handler: name.into(),
                    existing: current.unwrap_or("(none)").into(),
                });
            }
            Ok(Some(format!(
                "{}{}{}",
                &text[..existing.value_start],
                entry("    "),
                &text[existing.value_end..]
            )))
        }
        None => {
            let insert = format!("\n    {key}: {}", entry("    "));
            Ok(Some(splice(
                runtimes.value_start + 1,
                &insert,
                !inner.is_empty(),
            )))
        }
    }
}

/// Removes member `index` of `members` from `text`.
fn cut(text: &str, all: &[Member], index: usize) -> String {
    let member = &all[index];
    let (from, to) = if index + 1 < all.len() {
        (member.lead, member.delim + 1)
    } else if index > 0 {
        (all[index - 1].delim, member.value_end)
    } else {
        // The only member: leave `{}`.
        (member.lead, member.delim)
    };
    format!("{}{}", &text[..from], &text[to..])
}

/// `text` without the runtime `name`, if it is wasmpod's. `Ok(None)`: nothing to do.
pub fn remove(path: &str, text: &str, name: &str) -> Result<Option<String>, InstallError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (json, open) = parse(path, text)?;
    if json["runtimes"][name]["runtimeType"].as_str() != Some(RUNTIME_TYPE) {
        return Ok(None);
    }
    let top = members(text, open);
    unique(path, &top, "the top level")?;
    let Some(r) = top.iter().position(|m| m.key == "runtimes") else {
        return Ok(None);
    };
    let inner = members(text, top[r].value_start);
    unique(path, &inner, "`runtimes`")?;
    let Some(i) = inner.iter().position(|m| m.key == name) else {
        return Ok(None);
    };
    if inner.len() == 1 {
        // Only ours: drop `runtimes` altogether.
        return Ok(Some(cut(text, &top, r)));
    }
    Ok(Some(cut(text, &inner, i)))
}

/// Whether Docker uses the containerd image store (needed to run wasm images).
pub fn has_containerd_snapshotter(text: Option<&str>) -> bool {
    text.and_then(|t| serde_json::from_str::<Value>(t).ok())
        .is_some_and(|json| json["features"]["containerd-snapshotter"] == Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keeping_other_keys() {
        for original in [
            "{}\n",
            "{\n  \"log-level\": \"warn\",\n  \"features\": {\"containerd-snapshotter\": true}\n}\n",
            "{\"runtimes\": {\"crun\": {\"path\": \"/usr/bin/crun\"}}, \"debug\": true}",
            "{ \"b\": [1, {\"x\": \"}\\\"\"}], \"runtimes\": {} }\n",
        ] {
            let added = add("d.json", Some(original), "wasmpod", false).unwrap().unwrap();
            let json: Value = serde_json::from_str(&added).unwrap();
            assert_eq!(json["runtimes"]["wasmpod"]["runtimeType"], RUNTIME_TYPE, "{added}");
            let before: Value = serde_json::from_str(original).unwrap();
            for (key, value) in before.as_object().unwrap() {
                if key != "runtimes" {
                    assert_eq!(&json[key], value);
                }
            }
            assert_eq!(add("d.json", Some(&added), "wasmpod", false).unwrap(), None);
            let removed = remove("d.json", &added, "wasmpod").unwrap().unwrap();
            if original.contains("\"runtimes\": {}") {
                // An empty `runtimes` we filled is dropped with our entry.
                let json: Value = serde_json::from_str(&removed).unwrap();
                assert_eq!(json["b"], before["b"]);
            } else {
                assert_eq!(removed, original, "{added}");
            }
            assert_eq!(remove("d.json", &removed, "wasmpod").unwrap(), None);
        }
        assert!(add("d.json", None, "wasmpod", false).unwrap().is_some());
    }

    #[test]
    fn refuses_another_runtime_of_the_same_name() {
        let other = "{\"runtimes\": {\"wasmpod\": {\"runtimeType\": \"io.containerd.other.v1\"}}}";
        let err = add("/d.json", Some(other), "wasmpod", false).unwrap_err();
        assert!(err.to_string().contains("/d.json"), "{err}");
        let forced = add("/d.json", Some(other), "wasmpod", true)
            .unwrap()
            .unwrap();
        let json: Value = serde_json::from_str(&forced).unwrap();
        assert_eq!(json["runtimes"]["wasmpod"]["runtimeType"], RUNTIME_TYPE);
        assert_eq!(remove("/d.json", other, "wasmpod").unwrap(), None);
        let err = add("/d.json", Some("{\"a\": }"), "wasmpod", false).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    /// Found by fuzz/fuzz_targets/install_config.rs (fuzz/regressions/install_config/): JSON
    /// allows a key twice and Docker takes the last, while the edit went to the first: a
    /// panic (`runtimes` first not an object), an entry Docker never reads, or uninstall
    /// cutting another runtime of the same name and keeping ours.
    #[test]
    fn refuses_repeated_keys_instead_of_editing_the_wrong_one() {
        let ours = "{\"runtimeType\": \"io.containerd.wasmpod.v1\"}";
        let other = "{\"runtimeType\": \"io.containerd.other.v1\"}";
        for text in [
            "{\"runtimes\": 1, \"runtimes\": {}}".to_owned(),
            format!("{{\"runtimes\": {{}}, \"runtimes\": {{\"wasmpod\": {ours}}}}}"),
            format!("{{\"runtimes\": {{\"wasmpod\": {other}, \"wasmpod\": {ours}}}}}"),
            format!("{{\"runtimes\": {{\"wasmpod\": {ours}, \"a\": {{}}, \"wasmpod\": {{}}}}}}"),
        ] {
            for force in [false, true] {
                let err = add("/d.json", Some(&text), "wasmpod", force).unwrap_err();
                assert!(err.to_string().contains("twice"), "{text}: {err}");
            }
            if let Err(err) = remove("/d.json", &text, "wasmpod") {
                assert!(err.to_string().contains("twice"), "{text}: {err}");
            } else {
                assert_eq!(remove("/d.json", &text, "wasmpod").unwrap(), None, "{text}");
            }
        }
        // The same key in different objects is fine.
        let text = "{\"a\": {\"runtimes\": 1}, \"runtimes\": {\"a\": {}}}";
        assert!(add("/d.json", Some(text), "wasmpod", false)
            .unwrap()
            .is_some());
    }
}
