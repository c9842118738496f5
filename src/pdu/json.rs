//! The JSON form of a PDU, used by `smpp-proxy pdu decode|encode` and the fixtures.
//!
//! Mandatory fields appear under their spec names; C-Octet Strings as JSON strings (or
//! `{"hex": …}` when not UTF-8), integers as numbers, `short_message` as hex plus
//! `short_message_text` when printable. TLVs are a list of `{tag, name, value | value_hex}`.
//! Reading it back ([`pdu_from_json`]) gives the same bytes for every PDU that decoded.

use super::fields::{COctetString, DestAddress, UnsuccessSme};
use super::tlv::{tag_from_name, tag_info, TlvKind, Tlvs, MAX_VALUE_LEN};
use super::{Body, CommandId, CommandStatus, Pdu};
use crate::hex;
use bytes::Bytes;
use serde_json::{json, Value};

/// A JSON object with keys in insertion order.
pub type JsonObject = serde_json::Map<String, Value>;

/// How one field type appears in JSON. Implemented for every field type in `fields.rs`.
pub(crate) trait JsonField: Sized {
    fn to_json(&self, name: &str, out: &mut JsonObject);
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> Self;
}

fn require<'a>(obj: &'a JsonObject, name: &str, problems: &mut Vec<String>) -> Option<&'a Value> {
    let v = obj.get(name);
    if v.is_none() {
        problems.push(format!("body.{name}: missing"));
    }
    v
}

fn int_in_range(v: &Value, name: &str, max: u64, problems: &mut Vec<String>) -> u64 {
    match v.as_u64() {
        Some(n) if n <= max => n,
        _ => {
            problems.push(format!("{name}: expected an integer 0..={max}, got {v}"));
            0
        }
    }
}

impl JsonField for u8 {
    fn to_json(&self, name: &str, out: &mut JsonObject) {
        out.insert(name.to_owned(), json!(self));
    }
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> u8 {
        require(obj, name, problems).map_or(0, |v| int_in_range(v, &format!("body.{name}"), 255, problems) as u8)
    }
}

/// A string value, or `{"hex": "…"}` for octets that are not UTF-8.
fn octets_value(octets: &[u8]) -> Value {
    match std::str::from_utf8(octets) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "hex": hex::encode(octets) }),
    }
}

fn octets_from_value(v: &Value, name: &str, problems: &mut Vec<String>) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Object(o) => match o.get("hex").and_then(Value::as_str).map(hex::decode) {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                problems.push(format!("{name}.hex: {e}"));
                Vec::new()
            }
            None => {
                problems.push(format!("{name}: expected a string or {{\"hex\": …}}"));
                Vec::new()
            }
        },
        other => {
            problems.push(format!("{name}: expected a string, got {other}"));
            Vec::new()
        }
    }
}

fn cstring_from_value(v: &Value, name: &str, problems: &mut Vec<String>) -> COctetString {
    COctetString::new(octets_from_value(v, name, problems)).unwrap_or_else(|_| {
        problems.push(format!("{name}: a C-Octet String cannot contain NUL"));
        COctetString::empty()
    })
}

impl JsonField for COctetString {
    fn to_json(&self, name: &str, out: &mut JsonObject) {
        out.insert(name.to_owned(), octets_value(self.as_bytes()));
    }
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> COctetString {
        require(obj, name, problems).map_or_else(COctetString::empty, |v| {
            cstring_from_value(v, &format!("body.{name}"), problems)
        })
    }
}

/// Printable text of octets, if they are UTF-8 without control characters other than
/// CR, LF and TAB. Exact: text with a NUL or other control octet is shown as hex instead.
pub fn printable_text(octets: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(octets).ok()?;
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\r' | '\n' | '\t'))
        .then_some(s)
}

/// `short_message` with `sm_length`.
impl JsonField for Bytes {
    fn to_json(&self, name: &str, out: &mut JsonObject) {
        out.insert("sm_length".to_owned(), json!(self.len()));
        out.insert(name.to_owned(), json!(hex::encode(self)));
        if let Some(text) = printable_text(self) {
            out.insert(format!("{name}_text"), json!(text));
        }
    }
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> Bytes {
        let bytes = match (obj.get(name), obj.get(&format!("{name}_text"))) {
            (Some(Value::String(h)), _) => hex::decode(h).unwrap_or_else(|e| {
                problems.push(format!("body.{name}: {e}"));
                Vec::new()
            }),
            (Some(other), _) => {
                problems.push(format!("body.{name}: expected hex text, got {other}"));
                Vec::new()
            }
            (None, Some(Value::String(text))) => text.as_bytes().to_vec(),
            (None, _) => {
                problems.push(format!("body.{name}: missing (hex, or {name}_text)"));
                Vec::new()
            }
        };
        if let Some(declared) = obj.get("sm_length") {
            if declared.as_u64() != Some(bytes.len() as u64) {
                problems.push(format!(
                    "body.sm_length: {declared} but {name} has {} octets",
                    bytes.len()
                ));
            }
        }
        Bytes::from(bytes)
    }
}

fn list<'a>(obj: &'a JsonObject, name: &str, problems: &mut Vec<String>) -> &'a [Value] {
    match require(obj, name, problems) {
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push(format!("body.{name}: expected a list, got {other}"));
            &[]
        }
        None => &[],
    }
}

fn item_u8(item: &JsonObject, key: &str, at: &str, problems: &mut Vec<String>) -> u8 {
    match item.get(key) {
        Some(v) => int_in_range(v, &format!("{at}.{key}"), 255, problems) as u8,
        None => {
            problems.push(format!("{at}.{key}: missing"));
            0
        }
    }
}

fn item_cstring(item: &JsonObject, key: &str, at: &str, problems: &mut Vec<String>) -> COctetString {
    match item.get(key) {
        Some(v) => cstring_from_value(v, &format!("{at}.{key}"), problems),
        None => {
            problems.push(format!("{at}.{key}: missing"));
            COctetString::empty()
        }
    }
}

impl JsonField for Vec<DestAddress> {
    fn to_json(&self, name: &str, out: &mut JsonObject) {
        out.insert("number_of_dests".to_owned(), json!(self.len()));
        let items = self
            .iter()
            .map(|d| match d {
                DestAddress::Sme {
                    dest_addr_ton,
                    dest_addr_npi,
                    destination_addr,
                } => json!({
                    "dest_flag": 1,
                    "dest_addr_ton": dest_addr_ton,
                    "dest_addr_npi": dest_addr_npi,
                    "destination_addr": octets_value(destination_addr.as_bytes()),
                }),
                DestAddress::DistributionList { dl_name } => json!({
                    "dest_flag": 2,
                    "dl_name": octets_value(dl_name.as_bytes()),
                }),
            })
            .collect();
        out.insert(name.to_owned(), Value::Array(items));
    }
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> Self {
        let mut out = Vec::new();
        for (n, item) in list(obj, name, problems).iter().enumerate() {
            let at = format!("body.{name}[{n}]");
            let Some(item) = item.as_object() else {
                problems.push(format!("{at}: expected an object"));
                continue;
            };
            match item.get("dest_flag").and_then(Value::as_u64) {
                Some(1) => out.push(DestAddress::Sme {
                    dest_addr_ton: item_u8(item, "dest_addr_ton", &at, problems),
                    dest_addr_npi: item_u8(item, "dest_addr_npi", &at, problems),
                    destination_addr: item_cstring(item, "destination_addr", &at, problems),
                }),
                Some(2) => out.push(DestAddress::DistributionList {
                    dl_name: item_cstring(item, "dl_name", &at, problems),
                }),
                _ => problems.push(format!(
                    "{at}.dest_flag: expected 1 (SME address) or 2 (distribution list)"
                )),
            }
        }
        out
    }
}

impl JsonField for Vec<UnsuccessSme> {
    fn to_json(&self, name: &str, out: &mut JsonObject) {
        out.insert("no_unsuccess".to_owned(), json!(self.len()));
        let items = self
            .iter()
            .map(|s| {
                json!({
                    "dest_addr_ton": s.dest_addr_ton,
                    "dest_addr_npi": s.dest_addr_npi,
                    "destination_addr": octets_value(s.destination_addr.as_bytes()),
                    "error_status_code": s.error_status_code,
                })
            })
            .collect();
        out.insert(name.to_owned(), Value::Array(items));
    }
    fn from_json(obj: &JsonObject, name: &str, problems: &mut Vec<String>) -> Self {
        let mut out = Vec::new();
        for (n, item) in list(obj, name, problems).iter().enumerate() {
            let at = format!("body.{name}[{n}]");
            let Some(item) = item.as_object() else {
                problems.push(format!("{at}: expected an object"));
                continue;
            };
            let code = match item.get("error_status_code") {
                Some(v) => int_in_range(v, &format!("{at}.error_status_code"), u32::MAX.into(), problems) as u32,
                None => {
                    problems.push(format!("{at}.error_status_code: missing"));
                    0
                }
            };
            out.push(UnsuccessSme {
                dest_addr_ton: item_u8(item, "dest_addr_ton", &at, problems),
                dest_addr_npi: item_u8(item, "dest_addr_npi", &at, problems),
                destination_addr: item_cstring(item, "destination_addr", &at, problems),
                error_status_code: code,
            });
        }
        out
    }
}

/// Keys a body's JSON may hold besides its fields: the derived counts and texts.
const DERIVED_KEYS: &[&str] = &["sm_length", "short_message_text", "number_of_dests", "no_unsuccess"];

/// One TLV as JSON: the value by the tag's kind when it has that shape, else `value_hex`.
pub fn tlv_to_json(tag: u16, value: &[u8]) -> Value {
    let mut o = JsonObject::new();
    o.insert("tag".to_owned(), json!(format!("0x{tag:04x}")));
    let (name, kind) = tag_info(tag).unwrap_or(("vendor-specific", TlvKind::Octets));
    o.insert("name".to_owned(), json!(name));
    let typed = match (kind, value) {
        (TlvKind::U8, [v]) => Some(json!(v)),
        (TlvKind::U16, [a, b]) => Some(json!(u16::from_be_bytes([*a, *b]))),
        (TlvKind::U32, [a, b, c, d]) => Some(json!(u32::from_be_bytes([*a, *b, *c, *d]))),
        (TlvKind::CStr, [text @ .., 0]) if !text.contains(&0) => std::str::from_utf8(text).ok().map(|s| json!(s)),
        _ => None,
    };
    match typed {
        Some(v) => o.insert("value".to_owned(), v),
        None => o.insert("value_hex".to_owned(), json!(hex::encode(value))),
    };
    Value::Object(o)
}

fn tlv_from_json(v: &Value, at: &str, problems: &mut Vec<String>) -> Option<(u16, Vec<u8>)> {
    let o = v.as_object().or_else(|| {
        problems.push(format!("{at}: expected an object"));
        None
    })?;
    let tag = match (o.get("tag"), o.get("name").and_then(Value::as_str)) {
        (Some(Value::String(t)), _) => {
            let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
            u16::from_str_radix(digits, 16).ok()
        }
        (Some(Value::Number(n)), _) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        (None, Some(name)) => tag_from_name(name),
        _ => None,
    };
    let Some(tag) = tag else {
        problems.push(format!("{at}.tag: expected \"0xNNNN\", a number, or a known name"));
        return None;
    };
    let kind = tag_info(tag).map(|(_, k)| k);
    let value = match (o.get("value_hex"), o.get("value")) {
        (Some(Value::String(h)), _) => match hex::decode(h) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(format!("{at}.value_hex: {e}"));
                return None;
            }
        },
        (None, Some(Value::Number(n))) => {
            let width = match kind {
                Some(TlvKind::U8) => 1,
                Some(TlvKind::U16) => 2,
                Some(TlvKind::U32) => 4,
                _ => {
                    problems.push(format!(
                        "{at}.value: tag 0x{tag:04x} is not an integer TLV; use value_hex"
                    ));
                    return None;
                }
            };
            let max = if width == 4 {
                u64::from(u32::MAX)
            } else {
                (1u64 << (8 * width)) - 1
            };
            let n = int_in_range(&Value::Number(n.clone()), &format!("{at}.value"), max, problems);
            n.to_be_bytes()[8 - width..].to_vec()
        }
        (None, Some(Value::String(s))) if kind == Some(TlvKind::CStr) => {
            let mut bytes = s.as_bytes().to_vec();
            bytes.push(0);
            bytes
        }
        _ => {
            problems.push(format!(
                "{at}: expected value (integer, or string for C-string tags) or value_hex"
            ));
            return None;
        }
    };
    if value.len() > MAX_VALUE_LEN {
        problems.push(format!(
            "{at}: value of {} octets, at most {MAX_VALUE_LEN}",
            value.len()
        ));
        return None;
    }
    Some((tag, value))
}

/// The whole PDU as JSON (without a receipt; the caller adds one).
pub fn pdu_to_json(pdu: &Pdu) -> JsonObject {
    let id = pdu.command_id();
    let mut o = JsonObject::new();
    o.insert("command".to_owned(), json!(id.name()));
    o.insert("command_id".to_owned(), json!(id.0));
    o.insert("command_status".to_owned(), json!(pdu.command_status.0));
    o.insert("status".to_owned(), json!(pdu.command_status.name()));
    o.insert("sequence_number".to_owned(), json!(pdu.sequence_number));
    let body = match pdu.body.to_json() {
        Some(b) => Value::Object(b),
        None if Body::json_keys(id).is_empty() => Value::Object(JsonObject::new()),
        None => Value::Null,
    };
    o.insert("body".to_owned(), body);
    let tlvs = pdu.tlvs.iter().map(|t| tlv_to_json(t.tag, t.value)).collect();
    o.insert("tlvs".to_owned(), Value::Array(tlvs));
    o
}

/// Builds a PDU from its JSON form; every problem found is listed, each with its key.
pub fn pdu_from_json(v: &Value) -> Result<Pdu, Vec<String>> {
    let mut problems = Vec::new();
    let Some(o) = v.as_object() else {
        return Err(vec!["expected a JSON object".to_owned()]);
    };
    for key in o.keys() {
        if !matches!(
            key.as_str(),
            "command"
                | "command_id"
                | "command_status"
                | "status"
                | "sequence_number"
                | "body"
                | "tlvs"
                | "receipt"
                | "command_length"
        ) {
            problems.push(format!("{key}: unknown key"));
        }
    }
    let id = match (
        o.get("command").and_then(Value::as_str),
        o.get("command_id").and_then(Value::as_u64),
    ) {
        (Some(name), _) => CommandId::from_name(name).ok_or_else(|| format!("command: unknown command {name:?}")),
        (None, Some(n)) => u32::try_from(n)
            .map(CommandId)
            .map_err(|_| format!("command_id: {n} does not fit in 32 bits")),
        (None, None) => Err("command: missing (a spec name such as \"submit_sm\")".to_owned()),
    };
    let id = match id {
        Ok(id) if id.name().is_some() => Some(id),
        Ok(id) => {
            problems.push(format!("command_id: {id} is not a PDU this codec knows"));
            None
        }
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let status = match (o.get("command_status"), o.get("status").and_then(Value::as_str)) {
        (Some(v), _) => CommandStatus(int_in_range(v, "command_status", u32::MAX.into(), &mut problems) as u32),
        (None, Some(name)) => CommandStatus::from_name(name).unwrap_or_else(|| {
            problems.push(format!(
                "status: unknown status name {name:?}; give command_status as a number"
            ));
            CommandStatus::ESME_ROK
        }),
        (None, None) => CommandStatus::ESME_ROK,
    };
    let sequence_number = match o.get("sequence_number") {
        Some(v) => int_in_range(v, "sequence_number", u32::MAX.into(), &mut problems) as u32,
        None => {
            problems.push("sequence_number: missing".to_owned());
            0
        }
    };
    let body_obj = match o.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::Object(b)) => Some(b),
        Some(other) => {
            problems.push(format!("body: expected an object or null, got {other}"));
            None
        }
    };
    let mut pairs = Vec::new();
    match o.get("tlvs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (n, item) in items.iter().enumerate() {
                if let Some(pair) = tlv_from_json(item, &format!("tlvs[{n}]"), &mut problems) {
                    pairs.push(pair);
                }
            }
        }
        Some(other) => problems.push(format!("tlvs: expected a list, got {other}")),
    }
    let body = id.and_then(|id| {
        let keys = Body::json_keys(id);
        // A header-only PDU given `{}` means "no body", like `null`.
        let body_obj = body_obj.filter(|b| !(keys.is_empty() && b.is_empty()));
        if let Some(b) = body_obj {
            for key in b.keys() {
                if !keys.contains(&key.as_str()) && !DERIVED_KEYS.contains(&key.as_str()) {
                    problems.push(format!("body.{key}: not a field of {id}"));
                }
            }
        }
        if keys.is_empty() && body_obj.is_some() {
            return None;
        }
        if body_obj.is_none() && !id.is_response() && !keys.is_empty() {
            problems.push(format!("body: {id} needs its mandatory fields"));
            return None;
        }
        Body::from_json(id, body_obj, &mut problems)
    });
    match body {
        Some(body) if problems.is_empty() => Ok(Pdu {
            command_status: status,
            sequence_number,
            body,
            tlvs: Tlvs::from_pairs(pairs.iter().map(|(t, v)| (*t, v.as_slice()))),
        }),
        _ => {
            if problems.is_empty() {
                problems.push("body: does not fit the command".to_owned());
            }
            Err(problems)
        }
    }
}
