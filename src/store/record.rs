//! How the durable store writes things down: a correlation as a table value (stamped with the
//! log row it stands for), and a group commit's correlation writes as one log row (see `hot`),
//! read back on restart.

use super::{Correlation, StoreError};
use compact_str::CompactString;
use std::sync::Arc;

const VERSION: u8 = 1;
/// A table value: this, the log row (u64 BE) it is as new as, then the correlation. Values
/// written before the log existed start with `VERSION` and count as row 0.
const STAMPED: u8 = 2;
const LOG_PUT: u8 = 1;
const LOG_REMOVE: u8 = 2;

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Appends a correlation as stored: format version, then length-prefixed strings and integers.
pub(super) fn encode_into(out: &mut Vec<u8>, c: &Correlation) {
    out.push(VERSION);
    put_str(out, c.upstream.as_bytes());
    put_str(out, c.upstream_id.as_bytes());
    put_str(out, c.client.as_bytes());
    put_str(out, c.client_id.as_bytes());
    out.extend_from_slice(&c.submitted_at.to_be_bytes());
    out.push(c.registered_delivery);
    put_str(out, c.source_addr.as_bytes());
    put_str(out, c.destination_addr.as_bytes());
    match c.part {
        Some((part, of)) => out.extend_from_slice(&[1, part, of]),
        None => out.push(0),
    }
}

/// Appends a table value: the correlation as of log row `row`.
pub(super) fn encode_stamped(out: &mut Vec<u8>, c: &Correlation, row: u64) {
    out.push(STAMPED);
    out.extend_from_slice(&row.to_be_bytes());
    encode_into(out, c);
}

/// Stamps a value [`encode_stamped`] wrote (with any row) with log row `row`.
pub(super) fn restamp(value: &mut [u8], row: u64) {
    if let Some(slot) = value.get_mut(1..9) {
        slot.copy_from_slice(&row.to_be_bytes());
    }
}

/// The log row a table value is as new as, and the correlation record after it.
pub(super) fn unstamp(bytes: &[u8]) -> (u64, &[u8]) {
    match bytes.split_first() {
        Some((&STAMPED, rest)) if rest.len() >= 8 => {
            let (row, record) = rest.split_at(8);
            let mut a = [0; 8];
            a.copy_from_slice(row);
            (u64::from_be_bytes(a), record)
        }
        _ => (0, bytes),
    }
}

/// The log row a table value is as new as.
pub(super) fn stamp(bytes: &[u8]) -> u64 {
    unstamp(bytes).0
}

/// A table value's correlation.
pub(super) fn decode_stamped(bytes: &[u8]) -> Result<Correlation, StoreError> {
    decode(unstamp(bytes).1)
}

/// `name \0 rest`: keys of one client or upstream are one range.
pub(super) fn key(name: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + rest.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Calls `f` with [`key`]`(name, rest)` built on the stack when it fits (lookups build one per
/// receipt, and per form of its ids).
pub(super) fn with_key<R>(name: &str, rest: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut room = [0u8; 192];
    let len = name.len() + 1 + rest.len();
    match room.get_mut(..len) {
        Some(k) => {
            k[..name.len()].copy_from_slice(name.as_bytes());
            k[name.len()] = 0;
            k[name.len() + 1..].copy_from_slice(rest);
            f(k)
        }
        None => f(&key(name, rest)),
    }
}

/// The `corr_client` key of a correlation.
pub(super) fn client_key(c: &Correlation) -> Vec<u8> {
    key(&c.client, c.client_id.as_bytes())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("record".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<usize, StoreError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Result<usize, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u32()?;
        self.take(len)
    }
    fn string(&mut self) -> Result<CompactString, StoreError> {
        Ok(CompactString::from_utf8_lossy(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// The submission time and `corr_client` key of a stored correlation, read without decoding the
/// rest (the expiry sweep reads many). `None` for a record it cannot read.
pub(super) fn time_and_client_key(bytes: &[u8]) -> Option<(u64, Vec<u8>)> {
    let mut r = Reader(unstamp(bytes).1);
    if r.take(1).ok()? != [VERSION] {
        return None;
    }
    r.bytes().ok()?;
    r.bytes().ok()?;
    let client = r.bytes().ok()?;
    let client_id = r.bytes().ok()?;
    let submitted_at = r.u64().ok()?;
    let mut k = Vec::with_capacity(client.len() + 1 + client_id.len());
    k.extend_from_slice(client);
    k.push(0);
    k.extend_from_slice(client_id);
    Some((submitted_at, k))
}

pub(super) fn decode(bytes: &[u8]) -> Result<Correlation, StoreError> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return Err(StoreError::Corrupt("correlation record (unknown version)".into()));
    }
    Ok(Correlation {
        upstream: Arc::from(r.string()?.as_str()),
        upstream_id: r.string()?,
        client: Arc::from(r.string()?.as_str()),
        client_id: r.string()?,
        submitted_at: r.u64()?,
        registered_delivery: r.take(1)?[0],
        source_addr: r.string()?,
        destination_addr: r.string()?,
        part: match r.take(1)? {
            [1] => {
                let p = r.take(2)?;
                Some((p[0], p[1]))
            }
            _ => None,
        },
    })
}

/// One correlation write as the log holds it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogOp<'a> {
    /// Recorded under `up_key`; `value` as [`encode_into`] wrote it.
    Put { up_key: &'a [u8], value: &'a [u8] },
    /// Forgotten.
    Remove { up_key: &'a [u8] },
}

/// Appends a put to a log row.
pub(super) fn log_put(out: &mut Vec<u8>, up_key: &[u8], record: &[u8]) {
    out.push(LOG_PUT);
    out.extend_from_slice(&(up_key.len() as u16).to_be_bytes());
    out.extend_from_slice(up_key);
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
}

/// Appends a removal to a log row.
pub(super) fn log_remove(out: &mut Vec<u8>, up_key: &[u8]) {
    out.push(LOG_REMOVE);
    out.extend_from_slice(&(up_key.len() as u16).to_be_bytes());
    out.extend_from_slice(up_key);
}

/// The writes of one log row, in order.
pub(super) fn log_ops(row: &[u8]) -> Result<Vec<LogOp<'_>>, StoreError> {
    let mut r = Reader(row);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let tag = r.take(1)?[0];
        let len = r.u16()?;
        let up_key = r.take(len)?;
        ops.push(match tag {
            LOG_PUT => LogOp::Put {
                up_key,
                value: r.bytes()?,
            },
            LOG_REMOVE => LogOp::Remove { up_key },
            other => return Err(StoreError::Corrupt(format!("log record (unknown kind {other})"))),
        });
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation() -> Correlation {
        Correlation {
            upstream: "smsc-a".into(),
            upstream_id: "2a".into(),
            client: "shop".into(),
            client_id: "c42".into(),
            submitted_at: 1_700_000_042,
            registered_delivery: 1,
            source_addr: "4477".into(),
            destination_addr: "447700900123".into(),
            part: Some((1, 3)),
        }
    }

    #[test]
    fn records_decode_what_they_encode_and_reject_garbage() {
        let c = correlation();
        let mut v = Vec::new();
        encode_into(&mut v, &c);
        assert_eq!(decode(&v).unwrap(), c);
        assert_eq!(time_and_client_key(&v), Some((1_700_000_042, b"shop\0c42".to_vec())));
        assert!(decode(&[1, 0, 0]).is_err());
        assert!(decode(&[9]).is_err());
        // Table values carry the log row they are as new as; unstamped ones count as row 0.
        let mut stamped = Vec::new();
        encode_stamped(&mut stamped, &c, 77);
        assert_eq!((stamp(&stamped), decode_stamped(&stamped).unwrap()), (77, c.clone()));
        assert_eq!((stamp(&v), decode_stamped(&v).unwrap()), (0, c));
        assert_eq!(
            time_and_client_key(&stamped),
            Some((1_700_000_042, b"shop\0c42".to_vec()))
        );
    }

    #[test]
    fn a_log_row_reads_back_its_writes_in_order() {
        let c = correlation();
        let mut row = Vec::new();
        let mut record = Vec::new();
        encode_into(&mut record, &c);
        log_put(&mut row, b"smsc-a\x002a", &record);
        log_remove(&mut row, b"smsc-a\x0029");
        let ops = log_ops(&row).unwrap();
        assert_eq!(ops.len(), 2);
        let LogOp::Put { up_key, value } = ops[0] else {
            panic!("a put first: {ops:?}")
        };
        assert_eq!((up_key, decode(value).unwrap()), (&b"smsc-a\x002a"[..], c));
        assert_eq!(
            ops[1],
            LogOp::Remove {
                up_key: b"smsc-a\x0029"
            }
        );
        // A torn or foreign row is an error, not a panic.
        assert!(log_ops(&row[..row.len() - 3]).is_err());
        assert!(log_ops(&[7, 0, 0]).is_err());
    }
}
