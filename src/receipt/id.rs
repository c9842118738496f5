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

/// The key a stored id is filed under for `mode`.
pub fn canonical(id: &[u8], mode: IdMatch) -> String {
    canonical_key(id, mode).as_str().to_owned()
}

/// [`canonical`] without an allocation for any id SMPP allows: the receipt path makes several
/// per receipt (every form of both its ids, and the id of every correlation it removes).
pub fn canonical_key(id: &[u8], mode: IdMatch) -> IdKey {
    if id.is_ascii() {
        // Every id SMPP allows: octets in, octets out, no UTF-8 decoding on the receipt path.
        let id = match mode {
            IdMatch::Exact | IdMatch::IgnoreCase => id,
            IdMatch::Normalised | IdMatch::Numeric => match id.iter().position(|&b| b != b'0') {
                Some(first) => &id[first..],
                None => &id[id.len().saturating_sub(1)..],
            },
        };
        return IdKey::ascii(id, mode != IdMatch::Exact);
    }
    let text = String::from_utf8_lossy(id);
    let mut out = IdKey::default();
    match mode {
        IdMatch::Exact => out.push_str(&text),
        IdMatch::IgnoreCase => out.push_lowercase(&text),
        IdMatch::Normalised | IdMatch::Numeric => {
            let stripped = text.trim_start_matches('0');
            if stripped.is_empty() && !text.is_empty() {
                out.push_str("0");
            } else {
                out.push_lowercase(stripped);
            }
        }
    }
    out
}

/// Octets an [`IdKey`] holds inline: SMPP's message ids are at most 64, a 128-bit number in
/// decimal 39.
const INLINE: usize = 64;

/// One form of an id, as text: inline up to [`INLINE`] octets, on the heap beyond (only an
/// SMSC breaking the spec's limit sends such an id).
#[derive(Clone)]
pub enum IdKey {
    /// Its length and octets.
    Inline(u8, [u8; INLINE]),
    /// Longer than `INLINE`.
    Long(String),
}

impl Default for IdKey {
    fn default() -> IdKey {
        IdKey::Inline(0, [0; INLINE])
    }
}

impl IdKey {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            // Only whole `str`s are ever pushed: always UTF-8.
            IdKey::Inline(n, b) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or_default(),
            IdKey::Long(s) => s,
        }
    }

    /// The octets of the text: what equality and hashing compare (no UTF-8 check, which
    /// `as_str` makes every time, on the receipt path).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IdKey::Inline(n, b) => &b[..usize::from(*n)],
            IdKey::Long(s) => s.as_bytes(),
        }
    }

    /// `id` (ASCII), in lower case when `lower`.
    fn ascii(id: &[u8], lower: bool) -> IdKey {
        let mut b = [0; INLINE];
        let Some(room) = b.get_mut(..id.len()) else {
            let mut long = String::from_utf8_lossy(id).into_owned();
            if lower {
                long.make_ascii_lowercase();
            }
            return IdKey::Long(long);
        };
        room.copy_from_slice(id);
        if lower {
            room.make_ascii_lowercase();
        }
        IdKey::Inline(id.len() as u8, b)
    }

    fn push_str(&mut self, s: &str) {
        match self {
            IdKey::Inline(n, b) => {
                let len = usize::from(*n);
                match b.get_mut(len..len + s.len()) {
                    Some(room) => {
                        room.copy_from_slice(s.as_bytes());
                        *n += s.len() as u8;
                    }
                    None => {
                        let mut long = String::with_capacity(len + s.len());
                        long.push_str(std::str::from_utf8(&b[..len]).unwrap_or_default());
                        long.push_str(s);
                        *self = IdKey::Long(long);
                    }
                }
            }
            IdKey::Long(l) => l.push_str(s),
        }
    }

    fn push_lowercase(&mut self, s: &str) {
        for c in s.chars() {
            self.push_str(c.to_ascii_lowercase().encode_utf8(&mut [0; 4]));
        }
    }
}

impl std::fmt::Write for IdKey {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &IdKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IdKey {}

impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

fn parse_radix(id: &[u8], radix: u32) -> Option<u128> {
    let text = std::str::from_utf8(id).ok()?;
    if text.is_empty() {
        return None;
    }
    u128::from_str_radix(text, radix).ok()
}

/// The forms of a receipt id to look for, in order (at most three, none allocated), each made
/// only when asked for: the first usually finds the correlation, and the other two are a
/// 128-bit parse and print each.
#[derive(Debug)]
pub struct LookupKeys<'a> {
    id: &'a [u8],
    mode: IdMatch,
    /// The next form to make: 0 canonical, 1 decimal read as hex, 2 hex read as decimal.
    stage: u8,
    /// The forms given so far (a later one equal to one of them is skipped).
    given: [Option<IdKey>; 2],
}

impl Iterator for LookupKeys<'_> {
    type Item = IdKey;

    fn next(&mut self) -> Option<IdKey> {
        use std::fmt::Write;
        loop {
            let stage = self.stage;
            self.stage = self.stage.saturating_add(1);
            let key = match stage {
                0 => canonical_key(self.id, self.mode),
                1 | 2 if self.mode == IdMatch::Numeric => {
                    // Written in canonical form: lower case, no leading zeros.
                    let Some(n) = parse_radix(self.id, if stage == 1 { 10 } else { 16 }) else {
                        continue;
                    };
                    let mut key = IdKey::default();
                    let _ = if stage == 1 {
                        write!(key, "{n:x}")
                    } else {
                        write!(key, "{n}")
                    };
                    key
                }
                _ => return None,
            };
            if self.given.iter().flatten().any(|g| *g == key) {
                continue;
            }
            if let Some(slot) = self.given.iter_mut().find(|g| g.is_none()) {
                *slot = Some(key.clone());
            }
            return Some(key);
        }
    }
}

/// The keys to try, in order, to find the stored id that `receipt_id` refers to.
pub fn lookup_keys(receipt_id: &[u8], mode: IdMatch) -> LookupKeys<'_> {
    LookupKeys {
        id: receipt_id,
        mode,
        stage: 0,
        given: [None, None],
    }
}

/// `true` when `stored` (from submit_sm_resp) and `receipt_id` name the same message under `mode`.
pub fn ids_match(stored: &[u8], receipt_id: &[u8], mode: IdMatch) -> bool {
    let key = canonical_key(stored, mode);
    lookup_keys(receipt_id, mode).any(|k| k == key)
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
    fn canonical_forms() {
        for (id, mode, want) in [
            ("00AbC", IdMatch::Exact, "00AbC"),
            ("00AbC", IdMatch::IgnoreCase, "00abc"),
            ("00AbC", IdMatch::Normalised, "abc"),
            ("00AbC", IdMatch::Numeric, "abc"),
            ("000", IdMatch::Numeric, "0"),
            ("0", IdMatch::Normalised, "0"),
            ("", IdMatch::Numeric, ""),
            // Not ASCII: decoded, then the same rules.
            ("00\u{e9}A", IdMatch::Numeric, "\u{e9}a"),
            ("\u{e9}A", IdMatch::Exact, "\u{e9}A"),
        ] {
            assert_eq!(canonical(id.as_bytes(), mode), want, "{id:?} {mode:?}");
        }
        let long = "0".repeat(10) + &"B".repeat(70);
        assert_eq!(canonical(long.as_bytes(), IdMatch::Numeric), "b".repeat(70));
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
        assert_eq!(lookup_keys(uuid, IdMatch::Numeric).count(), 1);
        // Longer than SMPP allows: still matched, kept on the heap.
        let long = [b'A'; 100];
        assert!(matches!(canonical_key(&long, IdMatch::IgnoreCase), IdKey::Long(_)));
        assert!(ids_match(&long, &[b'a'; 100], IdMatch::Numeric));
        assert!(!ids_match(&long, &[b'a'; 99], IdMatch::Numeric));
        // 32 hex digits still fit.
        assert!(ids_match(
            b"126e85a6edeac1a02020099312479564",
            b"126E85A6EDEAC1A02020099312479564",
            IdMatch::Numeric
        ));
    }
}
