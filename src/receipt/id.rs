//! Matching message ids across the forms SMSCs use for the same message: the id from
//! submit_sm_resp in hex while the receipt text has it in decimal, zero-padded to 10 digits,
//! or in another case (`smpp-spec.md` §8: 0059113978 = 0x38601fa in five independent captures).
//!
//! A store keys a correlation by [`canonical`] of the upstream's id; a receipt is looked up
//! with each of [`lookup_keys`] in turn.

use serde::Deserialize;

/// How tolerant matching is, configurable per upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdMatch {
    /// Octet for octet.
    Exact,
    /// ASCII case ignored.
    IgnoreCase,
    /// Case and leading zeros ignored.
    Normalised,
    /// As `Normalised`, and a decimal id equals the hex id of the same number (either way).
    #[default]
    Numeric,
}

/// The key a stored id is filed under for `mode`. Built in one allocation: it is made several
/// times per receipt.
pub fn canonical(id: &[u8], mode: IdMatch) -> String {
    let text = String::from_utf8_lossy(id);
    let mut out = String::with_capacity(text.len());
    match mode {
        IdMatch::Exact => out.push_str(&text),
        IdMatch::IgnoreCase => out.extend(text.chars().map(|c| c.to_ascii_lowercase())),
        IdMatch::Normalised | IdMatch::Numeric => {
            let stripped = text.trim_start_matches('0');
            if stripped.is_empty() && !text.is_empty() {
                out.push('0');
            } else {
                out.extend(stripped.chars().map(|c| c.to_ascii_lowercase()));
            }
        }
    }
    out
}

fn parse_radix(id: &[u8], radix: u32) -> Option<u128> {
    let text = std::str::from_utf8(id).ok()?;
    if text.is_empty() {
        return None;
    }
    u128::from_str_radix(text, radix).ok()
}

/// The keys to try, in order, to find the stored id that `receipt_id` refers to.
pub fn lookup_keys(receipt_id: &[u8], mode: IdMatch) -> Vec<String> {
    let mut keys = vec![canonical(receipt_id, mode)];
    if mode == IdMatch::Numeric {
        // Both already in canonical form: lower case, no leading zeros.
        let as_decimal = parse_radix(receipt_id, 10).map(|n| format!("{n:x}"));
        let as_hex = parse_radix(receipt_id, 16).map(|n| n.to_string());
        for key in [as_decimal, as_hex].into_iter().flatten() {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// `true` when `stored` (from submit_sm_resp) and `receipt_id` name the same message under `mode`.
pub fn ids_match(stored: &[u8], receipt_id: &[u8], mode: IdMatch) -> bool {
    let key = canonical(stored, mode);
    lookup_keys(receipt_id, mode).contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_hex_tlv_pairs_from_real_captures() {
        for (hex, dec) in [
            ("38601fa", "0059113978"),
            ("1d305b4c", "0489708364"),
            ("18d0e03a", "0416342074"),
            ("70BA8A69", "1891273321"),
            ("6aad5", "0000436949"),
        ] {
            assert!(
                ids_match(hex.as_bytes(), dec.as_bytes(), IdMatch::Numeric),
                "{hex} ~ {dec}"
            );
            assert!(
                ids_match(dec.as_bytes(), hex.as_bytes(), IdMatch::Numeric),
                "{dec} ~ {hex}"
            );
            assert!(!ids_match(hex.as_bytes(), dec.as_bytes(), IdMatch::Normalised));
        }
    }

    #[test]
    fn modes_are_ordered_by_tolerance() {
        assert!(ids_match(b"AbC", b"AbC", IdMatch::Exact));
        assert!(!ids_match(b"ABC", b"abc", IdMatch::Exact));
        assert!(ids_match(b"ABC", b"abc", IdMatch::IgnoreCase));
        assert!(!ids_match(b"0abc", b"abc", IdMatch::IgnoreCase));
        assert!(ids_match(b"000abc", b"ABC", IdMatch::Normalised));
        assert!(ids_match(b"0000", b"0", IdMatch::Normalised));
        assert!(!ids_match(b"10", b"16", IdMatch::Normalised));
        assert!(ids_match(b"10", b"16", IdMatch::Numeric));
        // A UUID is neither decimal nor hex: only its canonical form matches.
        let uuid = b"bc59b8aa-2fd2-4035-8113-19301e050079";
        assert_eq!(lookup_keys(uuid, IdMatch::Numeric).len(), 1);
        // 32 hex digits still fit.
        assert!(ids_match(
            b"126e85a6edeac1a02020099312479564",
            b"126E85A6EDEAC1A02020099312479564",
            IdMatch::Numeric
        ));
    }
}
