//! Hex text for octets: what the `pdu` command and the fixtures read and write.

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Octets from hex text; white space, `:` and a leading `0x` are ignored.
/// The error names the offending character's position.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for (pos, c) in text.char_indices() {
        if c.is_ascii_whitespace() || c == ':' {
            continue;
        }
        let nibble = c
            .to_digit(16)
            .ok_or_else(|| format!("not a hex digit {c:?} at character {pos}"))? as u8;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    if high.is_some() {
        return Err("odd number of hex digits".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_errors() {
        assert_eq!(super::encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(super::decode("0x00 AB:7f").unwrap(), vec![0x00, 0xab, 0x7f]);
        assert!(super::decode("abc").unwrap_err().contains("odd"));
        assert!(super::decode("zz").unwrap_err().contains("character 0"));
    }
}
