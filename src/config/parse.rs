//! From TOML text to the raw configuration, reporting every problem serde meets, each with its
//! key: a value of the wrong type (`clients[0].window: invalid value: integer -5, expected
//! u32`), a value no variant has (`upstreams[0].bind: unknown variant "trx"`), a missing
//! required key (`clients[1].password: missing`). serde stops at the first; so each problem
//! is noted, its value taken out (the default applies) or a stand-in put in for a required key,
//! and deserialising goes on. Validation later skips the keys already reported: their values
//! are stand-ins.

use super::raw::RawConfig;
use serde_path_to_error::Segment;
use toml::value::{Table, Value};

/// Most problems reported before giving up (each costs a deserialisation or a few).
const MAX_PROBLEMS: usize = 64;
/// Most deserialisations tried (a problem may need up to four: the value out, then stand-ins).
const MAX_TRIES: usize = 4 * MAX_PROBLEMS;

/// What parsing found: the raw configuration (unless a problem could not be stepped over),
/// and every problem as `(key, what)`.
pub(super) struct Parsed {
    pub(super) raw: Option<RawConfig>,
    pub(super) problems: Vec<(String, String)>,
}

/// One step of a key path.
#[derive(Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path as the rest of the configuration's messages write keys: `clients[1].window`.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The value at `path`, and the table or array holding it.
fn slot<'a>(root: &'a mut Table, path: &[Step]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut at = root.get_mut(k)?;
    for step in rest {
        at = match (step, at) {
            (Step::Key(k), Value::Table(t)) => t.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Puts `value` at `path` (a key of a table, or an element of an array that has it).
fn set(root: &mut Table, path: &[Step], value: Value) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let holder = if parent.is_empty() {
        None
    } else {
        match slot(root, parent) {
            Some(v) => Some(v),
            None => return false,
        }
    };
    match (last, holder) {
        (Step::Key(k), None) => {
            root.insert(k.clone(), value);
            true
        }
        (Step::Key(k), Some(Value::Table(t))) => {
            t.insert(k.clone(), value);
            true
        }
        (Step::Index(i), Some(Value::Array(a))) if *i < a.len() => {
            a[*i] = value;
            true
        }
        _ => false,
    }
}

/// Takes the key at `path` out of its table; `false` when there is none.
fn remove(root: &mut Table, path: &[Step]) -> bool {
    match path.split_last() {
        Some((Step::Key(k), [])) => root.remove(k).is_some(),
        Some((Step::Key(k), parent)) => match slot(root, parent) {
            Some(Value::Table(t)) => t.remove(k).is_some(),
            _ => false,
        },
        _ => false,
    }
}

/// Stand-ins for a required key or an array element (which cannot be taken out without moving
/// the others' indexes), tried in turn until one has the right type.
fn stand_in(attempt: usize) -> Option<Value> {
    match attempt {
        0 => Some(Value::String(String::new())),
        1 => Some(Value::Array(Vec::new())),
        2 => Some(Value::Table(Table::new())),
        _ => None,
    }
}

/// serde's message in the configuration's words: the raw structs are tables to a reader.
fn plain(message: &str) -> String {
    let mut out = message.replace('\n', " ");
    while let Some(at) = out.find("struct Raw") {
        let end = out[at + 10..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |n| at + 10 + n);
        out.replace_range(at..end, "a table");
    }
    out
}

/// Deserialises `table`, noting every problem with its key.
pub(super) fn deserialize(mut table: Table) -> Parsed {
    let mut problems: Vec<(String, String)> = Vec::new();
    // The required key being given a stand-in, and which stand-in it has now.
    let mut standing_in: Option<(Vec<Step>, usize)> = None;
    for _ in 0..MAX_TRIES {
        let value = Value::Table(table.clone());
        let error = match serde_path_to_error::deserialize::<_, RawConfig>(value) {
            Ok(raw) => {
                return Parsed {
                    raw: Some(raw),
                    problems,
                }
            }
            Err(e) => e,
        };
        let mut path: Vec<Step> = error
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Map { key } => Some(Step::Key(key.clone())),
                Segment::Seq { index } => Some(Step::Index(*index)),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        let message = plain(error.inner().message());
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            .map(str::to_owned);
        if let Some(field) = &missing {
            path.push(Step::Key(field.clone()));
        }
        let key = render(&path);
        if problems.len() >= MAX_PROBLEMS {
            return Parsed { raw: None, problems };
        }
        // A stand-in of the wrong type comes back as a type error at the same key: try the next.
        let attempt = match &standing_in {
            Some((at, n)) if *at == path => n + 1,
            _ => 0,
        };
        if attempt == 0 && !problems.iter().any(|(k, _)| *k == key) {
            let what = match missing {
                Some(_) => "missing (it has no default)".to_owned(),
                None => message,
            };
            problems.push((key, what));
        }
        let in_array = matches!(path.last(), Some(Step::Index(_)));
        let stepped_over = if missing.is_none() && !in_array && attempt == 0 {
            // Taken out: its default applies, or it is reported missing next time round.
            remove(&mut table, &path)
        } else {
            let placed = stand_in(attempt).is_some_and(|v| set(&mut table, &path, v));
            if placed {
                standing_in = Some((path, attempt));
            }
            placed
        };
        if !stepped_over {
            return Parsed { raw: None, problems };
        }
    }
    Parsed { raw: None, problems }
}
