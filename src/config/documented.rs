//! Every default is stated once, in the code (the serde defaults of `raw`); the documentation
//! and the example configuration say the same. Defaults are read back from a configuration
//! that sets only what is required, so nothing here restates them.

use super::raw::{self, RawConfig};
use std::collections::BTreeMap;
use std::path::Path;
use toml::Value;

/// One of each section and array element, with only the keys that have no default.
fn required_only() -> String {
    // `[cluster]` is optional as a whole: present and empty, it shows its defaults.
    let rest = "[[groups]]\nname = \"g\"\nmembers = [\"smsc-a\"]\n[[routes]]\ngroup = \"g\"\n\
                [[mo_routes]]\ndestination_prefix = \"44\"\nclient = \"shop\"\n[cluster]\n";
    format!("{}{rest}", super::tests::MINIMAL)
}

/// A value as one writes it in TOML, on one line.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", ")),
        Value::Table(t) if t.is_empty() => "{}".to_owned(),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{k:?} = {}", render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// What the documentation says each key defaults to: a TOML value, `required`, or `none`.
fn code_defaults() -> BTreeMap<String, String> {
    let text = required_only();
    let required: Value = toml::from_str(&text).unwrap();
    let parsed: RawConfig = toml::from_str(&text).unwrap();
    let full = Value::try_from(&parsed).unwrap();
    let mut out = BTreeMap::new();
    for (section, keys) in raw::SECTIONS {
        let pick = |v: &Value| -> Option<Value> {
            let v = if section.is_empty() {
                Some(v.clone())
            } else {
                v.get(section).cloned()
            };
            match v {
                Some(Value::Array(items)) => items.into_iter().next(),
                other => other,
            }
        };
        let (given, all) = (pick(&required), pick(&full));
        for key in *keys {
            if section.is_empty() && raw::SECTIONS.iter().any(|(s, _)| s == key) {
                continue;
            }
            let name = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            let default = if given.as_ref().and_then(|g| g.get(key)).is_some() {
                "required".to_owned()
            } else {
                match all.as_ref().and_then(|a| a.get(key)) {
                    Some(v) => render(v),
                    None => "none".to_owned(),
                }
            };
            out.insert(name, default);
        }
    }
    out
}

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

#[test]
fn the_configuration_page_lists_every_key_with_the_default_the_code_has() {
    let code = code_defaults();
    assert!(code.len() > 40, "{code:?}");
    let mut documented = BTreeMap::new();
    for line in read("docs/configuration.md").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `key` | default | meaning |
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        let default = cells[2].trim_matches('`').to_owned();
        assert!(
            documented.insert(key.clone(), default).is_none(),
            "{key} documented twice"
        );
    }
    for (key, default) in &code {
        assert_eq!(documented.get(key), Some(default), "docs/configuration.md on `{key}`");
    }
    let extra: Vec<&String> = documented.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(extra.is_empty(), "documented but not in the code: {extra:?}");
}

/// Where the example sets a key to something other than its default, its comment gives the
/// default (`default 1`), so a reader never takes an example value for the default.
#[test]
fn the_example_configuration_names_the_default_wherever_it_differs() {
    let code = code_defaults();
    let mut section = String::new();
    let mut checked = 0;
    for line in read("config/smpp-proxy.toml").lines() {
        let (body, comment) = match line.split_once(" # ") {
            Some((b, c)) => (b.trim(), c),
            None => (line.trim(), ""),
        };
        if body.starts_with('#') || body.is_empty() {
            continue;
        }
        if body.starts_with('[') {
            section = body.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        let Some((key, value)) = body.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let name = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        let default = code.get(&name).unwrap_or_else(|| panic!("{name} is not a key"));
        let value: Value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim())).unwrap()["v"].clone();
        checked += 1;
        if default == "required" || default == "none" || render(&value) == *default {
            continue;
        }
        assert!(
            comment.contains(&format!("default {default}")),
            "config/smpp-proxy.toml: {name} = {} differs from the default; its comment must say \"default {default}\"",
            render(&value)
        );
    }
    assert!(checked > 40, "{checked} keys checked");
}
