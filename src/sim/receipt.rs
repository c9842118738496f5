//! What the simulator writes for every message: the id it gives out and the delivery
//! receipt it sends later, in the forms real SMSCs use ([`SimIdFormat`], [`ReceiptVariant`]).
//! Both are written straight into bytes, with no allocation but the receipt's own buffer: the
//! simulator makes one of each per message and must stay far faster than what it measures.

use super::{ReceiptVariant, SimConfig, SimIdFormat};
use crate::pdu::{tag, CommandId, HEADER_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use std::time::{SystemTime, UNIX_EPOCH};

/// An id, on the stack (a UUID is the longest form: 36 characters).
#[derive(Clone, Copy)]
pub(crate) struct Id {
    buf: [u8; 40],
    len: usize,
}

impl Id {
    fn new() -> Id {
        Id { buf: [0; 40], len: 0 }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits, letters and dashes are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// `n` in `radix` (10 or 16, lower case), at least `width` digits.
    fn number(n: u64, radix: u64, width: usize) -> Id {
        let mut digits = [0u8; 20];
        let (mut n, mut i) = (n, digits.len());
        while n > 0 || digits.len() - i < width.max(1) {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n % radix) as usize];
            n /= radix;
        }
        let mut id = Id::new();
        id.len = digits.len() - i;
        id.buf[..id.len].copy_from_slice(&digits[i..]);
        id
    }
}

impl std::io::Write for Id {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The id of message `n` as given in submit_sm_resp (and the receipt's TLV), and as written
/// in the receipt's text.
pub(crate) fn ids(config: &SimConfig, n: u64) -> (Id, Id) {
    match (config.receipt_variant, config.id_format) {
        (ReceiptVariant::DecimalTextHexTlv, _) => (Id::number(n, 16, 1), Id::number(n % 10_000_000_000, 10, 10)),
        (_, SimIdFormat::Hex) => (Id::number(n, 16, 1), Id::number(n, 16, 1)),
        (_, SimIdFormat::Decimal) => (Id::number(n, 10, 1), Id::number(n, 10, 1)),
        (_, SimIdFormat::Uuid) => {
            let mut id = Id::new();
            let _ = std::io::Write::write_fmt(
                &mut id,
                format_args!(
                    "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                    n >> 32,
                    (n >> 16) & 0xffff,
                    n & 0xfff,
                    (n >> 4) & 0xfff,
                    n
                ),
            );
            (id, id)
        }
    }
}

/// The number an id given out was made from, if it is one.
pub(crate) fn number_of(config: &SimConfig, id: &str) -> Option<u64> {
    let digits = match (config.receipt_variant, config.id_format) {
        (ReceiptVariant::DecimalTextHexTlv, _) | (_, SimIdFormat::Hex) => u64::from_str_radix(id, 16).ok(),
        (_, SimIdFormat::Decimal) => id.parse().ok(),
        (_, SimIdFormat::Uuid) => id.rsplit('-').next().and_then(|n| u64::from_str_radix(n, 16).ok()),
    };
    digits.filter(|&n| ids(config, n).0.as_bytes() == id.as_bytes())
}

/// `YYMMDDhhmmss` for now (UTC), worked out once a second per thread.
fn now_date() -> [u8; 12] {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 12])> = const { std::cell::Cell::new((u64::MAX, [0; 12])) };
    }
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (at, date) = DATE.get();
    if at == secs {
        return date;
    }
    let date = civil_date(secs);
    DATE.set((secs, date));
    date
}

/// `YYMMDDhhmmss` of a Unix time.
fn civil_date(secs: u64) -> [u8; 12] {
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 12];
    for (i, v) in [year.rem_euclid(100) as u64, month as u64, day as u64, h, m, s]
        .into_iter()
        .enumerate()
    {
        out[2 * i] = b'0' + (v / 10) as u8;
        out[2 * i + 1] = b'0' + (v % 10) as u8;
    }
    out
}

/// What a receipt says about its message.
pub(crate) struct Message<'a> {
    /// The submit's source_addr (the receipt's destination).
    pub source: &'a [u8],
    /// The submit's destination_addr (the receipt's source).
    pub destination: &'a [u8],
    /// Its text (the receipt quotes the first 20 octets).
    pub text: &'a [u8],
}

/// A delivery receipt (`enroute`: the intermediate ENROUTE one, else DELIVRD), encoded with
/// sequence number 0 (the session sending it writes its own). It is written at the end of
/// `arena` and split off it: the receipts of a turn share one allocation.
pub(crate) fn receipt(
    arena: &mut BytesMut,
    config: &SimConfig,
    (id, text_id): (&Id, &Id),
    message: &Message<'_>,
    enroute: bool,
) -> Bytes {
    let (stat, state) = if enroute {
        (&b"ENROUTE"[..], 1u8)
    } else {
        (&b"DELIVRD"[..], 2u8)
    };
    let variant = config.receipt_variant;
    let dates12 = variant == ReceiptVariant::Dates12;
    let date = now_date();
    let date = if dates12 { &date[..] } else { &date[..10] };
    let label = if dates12 { &b"Text"[..] } else { &b"text"[..] };
    let put_text = |out: &mut BytesMut| {
        let start = out.len();
        for part in [
            &b"id:"[..],
            text_id.as_bytes(),
            b" sub:001 dlvrd:001 submit date:",
            date,
            b" done date:",
            date,
            b" stat:",
            stat,
            b" err:000 ",
            label,
            b":",
            &message.text[..message.text.len().min(20)],
        ] {
            out.put_slice(part);
        }
        out.len() - start
    };
    let (source, destination) = (message.destination, message.source);
    let out = arena;
    if out.capacity() < 1024 {
        // A fresh block for the next receipts (the last one's are still in flight).
        *out = BytesMut::with_capacity(64 * 1024);
    }
    out.put_bytes(0, HEADER_LEN);
    out.put_u8(0); // service_type
    out.put_slice(&[1, 1]);
    out.put_slice(source);
    out.put_u8(0);
    out.put_slice(&[1, 1]);
    out.put_slice(destination);
    out.put_u8(0);
    // esm_class (a receipt), protocol_id, priority_flag, schedule and validity (empty),
    // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id.
    out.put_slice(&[0x04, 0, 0, 0, 0, 0, 0, 0, 0]);
    let sm_length = out.len();
    out.put_u8(0);
    if variant != ReceiptVariant::Payload {
        let len = put_text(out).min(255);
        out.truncate(sm_length + 1 + len);
        out[sm_length] = len as u8;
    }
    if variant != ReceiptVariant::TextOnly {
        out.put_u16(tag::receipted_message_id);
        out.put_u16(id.len as u16 + 1);
        out.put_slice(id.as_bytes());
        out.put_u8(0);
        out.put_u16(tag::message_state);
        out.put_u16(1);
        out.put_u8(state);
    }
    if variant == ReceiptVariant::Payload {
        out.put_u16(tag::message_payload);
        let at = out.len();
        out.put_u16(0);
        let len = put_text(out) as u16;
        out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4..8].copy_from_slice(&CommandId::DELIVER_SM.0.to_be_bytes());
    out.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, Pdu};
    use crate::receipt::Receipt;

    #[test]
    fn ids_in_every_form() {
        let config = |receipt_variant, id_format| SimConfig {
            receipt_variant,
            id_format,
            ..SimConfig::default()
        };
        let n = 0x1234_5678_9abc;
        let hex = config(ReceiptVariant::Standard, SimIdFormat::Hex);
        assert_eq!(ids(&hex, n).0.as_str(), "123456789abc");
        assert_eq!(ids(&hex, 0).0.as_str(), "0");
        let dec = config(ReceiptVariant::Standard, SimIdFormat::Decimal);
        assert_eq!(ids(&dec, n).0.as_str(), n.to_string());
        let mixed = config(ReceiptVariant::DecimalTextHexTlv, SimIdFormat::Hex);
        let (tlv, text) = ids(&mixed, 42);
        assert_eq!((tlv.as_str(), text.as_str()), ("2a", "0000000042"));
        let uuid = config(ReceiptVariant::Standard, SimIdFormat::Uuid);
        assert_eq!(ids(&uuid, n).0.as_str(), "00001234-5678-4abc-a9ab-123456789abc");
        for c in [hex, dec, mixed, uuid] {
            assert_eq!(number_of(&c, ids(&c, n).0.as_str()), Some(n));
            assert_eq!(number_of(&c, "zz"), None);
        }
    }

    #[test]
    fn a_receipt_parses_back_in_every_variant() {
        use ReceiptVariant::*;
        for variant in [Standard, DecimalTextHexTlv, Dates12, TextOnly, Payload] {
            let config = SimConfig {
                receipt_variant: variant,
                ..SimConfig::default()
            };
            let ids = ids(&config, 0xabcdef);
            let message = Message {
                source: b"4477",
                destination: b"447700900123",
                text: b"hello, this is longer than twenty octets",
            };
            let mut arena = BytesMut::new();
            let frame = receipt(&mut arena, &config, (&ids.0, &ids.1), &message, false);
            let pdu = Pdu::parse(frame.clone()).expect("parses");
            let Body::DeliverSm(b) = &pdu.body else { panic!() };
            assert_eq!(b.esm_class, 0x04);
            assert_eq!(
                (b.source_addr.as_bytes(), b.destination_addr.as_bytes()),
                (&b"447700900123"[..], &b"4477"[..])
            );
            let r = Receipt::from_pdu(&pdu).expect("a receipt");
            assert_eq!(r.text_id(), Some(ids.1.as_bytes()), "{variant:?}");
            assert_eq!(r.stat(), Some(&b"DELIVRD"[..]));
            let text = pdu.message_payload().unwrap_or_else(|| b.short_message.clone());
            assert!(text.ends_with(b"text:hello, this is longe") || text.ends_with(b"Text:hello, this is longe"));
            if variant != TextOnly {
                assert_eq!(pdu.receipted_message_id(), Some(ids.0.as_bytes()));
                assert_eq!(pdu.message_state(), Some(2));
            }
        }
    }

    #[test]
    fn dates() {
        // 2026-11-30 10:53:05 UTC
        assert_eq!(&civil_date(1_796_035_985), b"261130105305");
    }
}
