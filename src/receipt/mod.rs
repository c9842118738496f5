//! Delivery receipts: reading them, rewriting their id, and matching ids.
//!
//! An SMSC reports the fate of a submitted message in a deliver_sm (or data_sm) whose
//! `esm_class` says "SMSC delivery receipt" (or "intermediate notification"). The facts come in
//! two places that real SMSCs fill inconsistently (`smpp-spec.md` §8): the TLVs
//! `receipted_message_id` / `message_state` / `network_error_code`, and the Appendix B text in
//! `short_message` or `message_payload`. [`Receipt::from_pdu`] reads both; [`rewrite_id`]
//! replaces the id in both, leaving every other octet as it was; [`id`] matches ids across the
//! hex/decimal forms. The proxy's receipt path uses these to find the client a receipt
//! belongs to and to hand it over with the client's own message id.

mod frame;
pub mod id;
mod text;

pub use frame::rewrite_receipt_frame;

use crate::pdu::json::{printable_text, JsonObject};
use crate::pdu::{tag, Body, NetworkErrorCode, Pdu};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use std::ops::Range;
use text::{Span, Spans};

/// `esm_class` message-type bits (SMPP 3.4 §5.2.12): SMSC delivery receipt.
pub const ESM_CLASS_RECEIPT: u8 = 0x04;
/// `esm_class` message-type bits: intermediate delivery notification.
pub const ESM_CLASS_INTERMEDIATE: u8 = 0x20;

/// `message_state` (SMPP 3.4 §5.2.28, 5.0 §4.7.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageState {
    /// 0 (5.0)
    Scheduled = 0,
    /// 1
    Enroute = 1,
    /// 2
    Delivered = 2,
    /// 3
    Expired = 3,
    /// 4
    Deleted = 4,
    /// 5
    Undeliverable = 5,
    /// 6
    Accepted = 6,
    /// 7
    Unknown = 7,
    /// 8
    Rejected = 8,
    /// 9 (5.0)
    Skipped = 9,
}

impl MessageState {
    /// From the TLV value.
    pub fn from_u8(v: u8) -> Option<MessageState> {
        use MessageState::*;
        Some(match v {
            0 => Scheduled,
            1 => Enroute,
            2 => Delivered,
            3 => Expired,
            4 => Deleted,
            5 => Undeliverable,
            6 => Accepted,
            7 => Unknown,
            8 => Rejected,
            9 => Skipped,
            _ => return None,
        })
    }

    /// From the `stat:` text: the 7-letter forms, the full words, or the number.
    pub fn from_stat(stat: &[u8]) -> Option<MessageState> {
        use MessageState::*;
        const NAMES: &[(&[u8], MessageState)] = &[
            (b"DELIVRD", Delivered),
            (b"DELIVERED", Delivered),
            (b"UNDELIV", Undeliverable),
            (b"UNDELIVERABLE", Undeliverable),
            (b"EXPIRED", Expired),
            (b"DELETED", Deleted),
            (b"REJECTD", Rejected),
            (b"REJECTED", Rejected),
            (b"ACCEPTD", Accepted),
            (b"ACCEPTED", Accepted),
            (b"ENROUTE", Enroute),
            (b"UNKNOWN", Unknown),
            (b"SCHEDLD", Scheduled),
            (b"SCHEDULED", Scheduled),
            (b"SKIPPED", Skipped),
        ];
        let stat = stat.trim_ascii();
        if let Some((_, state)) = NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(stat)) {
            return Some(*state);
        }
        match stat {
            [d @ b'0'..=b'9'] => MessageState::from_u8(d - b'0'),
            _ => None,
        }
    }

    /// The receipt text form (`DELIVRD`).
    pub fn stat_text(self) -> &'static str {
        use MessageState::*;
        match self {
            Scheduled => "SCHEDLD",
            Enroute => "ENROUTE",
            Delivered => "DELIVRD",
            Expired => "EXPIRED",
            Deleted => "DELETED",
            Undeliverable => "UNDELIV",
            Accepted => "ACCEPTD",
            Unknown => "UNKNOWN",
            Rejected => "REJECTD",
            Skipped => "SKIPPED",
        }
    }

    /// `true` when no further receipt will follow for the message. ACCEPTD counts as
    /// intermediate: most SMSCs send it for "accepted by the network", then a final one.
    pub fn is_final(self) -> bool {
        use MessageState::*;
        matches!(self, Delivered | Expired | Deleted | Undeliverable | Rejected | Skipped)
    }
}

/// A receipt date: `YYMMDDhhmm` (Appendix B), `YYMMDDhhmmss`, or `YYYYMMDDhhmmss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptDate {
    /// Four-digit year (two-digit years are taken as 20YY).
    pub year: u16,
    /// 1–12
    pub month: u8,
    /// 1–31
    pub day: u8,
    /// 0–23
    pub hour: u8,
    /// 0–59
    pub minute: u8,
    /// 0–59 when the form has seconds.
    pub second: Option<u8>,
}

impl ReceiptDate {
    /// Parses the three forms; `None` for anything else, including the all-zero "never".
    pub fn parse(text: &[u8]) -> Option<ReceiptDate> {
        if !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = |r: Range<usize>| text[r].iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        let (year, rest) = match text.len() {
            10 | 12 => (2000 + n(0..2), 2),
            14 => (n(0..4), 4),
            _ => return None,
        };
        let date = ReceiptDate {
            year,
            month: n(rest..rest + 2) as u8,
            day: n(rest + 2..rest + 4) as u8,
            hour: n(rest + 4..rest + 6) as u8,
            minute: n(rest + 6..rest + 8) as u8,
            second: (text.len() > 10).then(|| n(rest + 8..rest + 10) as u8),
        };
        let valid = (1..=12).contains(&date.month)
            && (1..=31).contains(&date.day)
            && date.hour < 24
            && date.minute < 60
            && date.second.is_none_or(|s| s < 60);
        valid.then_some(date)
    }

    /// `YYYY-MM-DDThh:mm[:ss]`, without a zone: receipts do not say which one.
    pub fn iso(&self) -> String {
        let base = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        );
        match self.second {
            Some(s) => format!("{base}:{s:02}"),
            None => base,
        }
    }
}

/// Where the receipt text travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// In `short_message`.
    ShortMessage,
    /// In the `message_payload` TLV (sm_length 0).
    MessagePayload,
    /// No parsable text: the facts come from TLVs only.
    TlvsOnly,
}

/// What a delivery receipt says. Its text fields are spans of the carrier's octets (shared
/// with the PDU, not copied): reading a receipt takes two reference counts, not one per field,
/// and every receipt from an SMSC is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Where the text was found.
    pub carried_in: Carrier,
    /// The text (`short_message` or `message_payload`); empty when `TlvsOnly`.
    source: Bytes,
    /// Where each field lies in `source`.
    spans: Spans,
    /// `receipted_message_id` TLV (without NUL).
    tlv_id: Option<Bytes>,
    /// `message_state` TLV, else the `stat:` text.
    pub state: Option<MessageState>,
    /// `network_error_code` TLV.
    pub network_error_code: Option<NetworkErrorCode>,
}

/// `true` when `esm_class` marks an SMSC delivery receipt or intermediate notification.
pub fn is_receipt_esm_class(esm_class: u8) -> bool {
    matches!(esm_class & 0x3C, ESM_CLASS_RECEIPT | ESM_CLASS_INTERMEDIATE)
}

/// `true` for a deliver_sm or data_sm whose `esm_class` marks a receipt.
pub fn is_receipt(pdu: &Pdu) -> bool {
    matches!(pdu.body, Body::DeliverSm(_) | Body::DataSm(_)) && pdu.esm_class().is_some_and(is_receipt_esm_class)
}

/// The receipt text of a deliver_sm / data_sm and where it is: `short_message` when it has
/// one, else `message_payload`.
fn text_source(pdu: &Pdu) -> Option<(Bytes, Carrier)> {
    match &pdu.body {
        Body::DeliverSm(b) if !b.short_message.is_empty() => Some((b.short_message.clone(), Carrier::ShortMessage)),
        Body::DeliverSm(_) | Body::DataSm(_) => pdu.message_payload().map(|p| (p, Carrier::MessagePayload)),
        _ => None,
    }
}

impl Receipt {
    /// Reads the receipt out of `pdu`; `None` unless it is a deliver_sm or data_sm whose
    /// `esm_class` marks a receipt. A plain MO that happens to carry `receipted_message_id`
    /// (OpenMarket does) is not a receipt.
    pub fn from_pdu(pdu: &Pdu) -> Option<Receipt> {
        if !is_receipt(pdu) {
            return None;
        }
        let (source, carried_in, spans) = text_source(pdu)
            .and_then(|(bytes, carrier)| text::parse(&bytes).map(|spans| (bytes, carrier, spans)))
            .unwrap_or((Bytes::new(), Carrier::TlvsOnly, Spans::default()));
        let state = pdu.message_state().and_then(MessageState::from_u8).or_else(|| {
            let stat = spans.stat?;
            MessageState::from_stat(&source[stat.range()])
        });
        Some(Receipt {
            carried_in,
            state,
            tlv_id: pdu.tlvs.get_bytes(tag::receipted_message_id).map(|v| {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                v.slice(..end)
            }),
            network_error_code: pdu.network_error_code(),
            source,
            spans,
        })
    }

    fn field(&self, span: Option<Span>) -> Option<&[u8]> {
        span.map(|s| &self.source[s.range()])
    }

    /// [`Receipt::field`] as a slice sharing the PDU's octets.
    fn shared(&self, span: Option<Span>) -> Option<Bytes> {
        span.map(|s| self.source.slice(s.range()))
    }

    /// `receipted_message_id` TLV (without NUL).
    pub fn tlv_id(&self) -> Option<&[u8]> {
        self.tlv_id.as_deref()
    }

    /// `id:` of the text.
    pub fn text_id(&self) -> Option<&[u8]> {
        self.field(self.spans.id)
    }

    /// Where `text_id` lies in the carrier's text, for [`rewrite_receipt_id`].
    pub(crate) fn text_id_span(&self) -> Option<Range<usize>> {
        self.spans.id.map(Span::range)
    }

    /// `stat:` as written.
    pub fn stat(&self) -> Option<&[u8]> {
        self.field(self.spans.stat)
    }

    /// `stat:` as written, sharing the PDU's octets (for what outlives the receipt).
    pub fn stat_shared(&self) -> Option<Bytes> {
        self.shared(self.spans.stat)
    }

    /// `err:` as written (may be empty or alphanumeric).
    pub fn err(&self) -> Option<&[u8]> {
        self.field(self.spans.err)
    }

    /// `err:` as written, sharing the PDU's octets.
    pub fn err_shared(&self) -> Option<Bytes> {
        self.shared(self.spans.err)
    }

    /// `sub:`
    pub fn sub(&self) -> Option<&[u8]> {
        self.field(self.spans.sub)
    }

    /// `dlvrd:`
    pub fn dlvrd(&self) -> Option<&[u8]> {
        self.field(self.spans.dlvrd)
    }

    /// `submit date:` as written.
    pub fn submit_date(&self) -> Option<&[u8]> {
        self.field(self.spans.submit_date)
    }

    /// `done date:` as written.
    pub fn done_date(&self) -> Option<&[u8]> {
        self.field(self.spans.done_date)
    }

    /// `text:` (the rest of the message, as written).
    pub fn text(&self) -> Option<&[u8]> {
        self.field(self.spans.text)
    }

    /// The id to correlate on: the TLV first (it is the machine-readable one), else the text.
    pub fn id(&self) -> Option<&[u8]> {
        self.tlv_id().filter(|id| !id.is_empty()).or(self.text_id())
    }

    /// The receipt as JSON for the `pdu` command.
    pub fn to_json(&self) -> JsonObject {
        let mut o = JsonObject::new();
        let text = |b: Option<&[u8]>| -> Value {
            match b {
                None => Value::Null,
                Some(b) => match printable_text(b) {
                    Some(s) => json!(s),
                    None => json!({ "hex": crate::hex::encode(b) }),
                },
            }
        };
        let carrier = match self.carried_in {
            Carrier::ShortMessage => "short_message",
            Carrier::MessagePayload => "message_payload",
            Carrier::TlvsOnly => "tlvs",
        };
        o.insert("carried_in".into(), json!(carrier));
        o.insert("id".into(), text(self.id()));
        o.insert("receipted_message_id".into(), text(self.tlv_id()));
        o.insert("text_id".into(), text(self.text_id()));
        o.insert("state".into(), json!(self.state.map(|s| s.stat_text())));
        o.insert("final".into(), json!(self.state.map(|s| s.is_final())));
        o.insert("stat".into(), text(self.stat()));
        o.insert("err".into(), text(self.err()));
        o.insert("sub".into(), text(self.sub()));
        o.insert("dlvrd".into(), text(self.dlvrd()));
        for (key, value) in [("submit_date", self.submit_date()), ("done_date", self.done_date())] {
            o.insert(key.into(), text(value));
            let iso = value.and_then(ReceiptDate::parse).map(|d| d.iso());
            o.insert(format!("{key}_iso"), json!(iso));
        }
        o.insert("text".into(), text(self.text()));
        if let Some(nec) = self.network_error_code {
            o.insert(
                "network_error_code".into(),
                json!({ "network_type": nec.network_type, "error_code": nec.error_code }),
            );
        }
        o
    }
}

/// Why a receipt's id could not be rewritten.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The PDU is not a receipt.
    #[error("not a delivery receipt")]
    NotAReceipt,
    /// The new id is empty or contains NUL or white space.
    #[error("the new id must be non-empty, without NUL or white space")]
    BadId,
    /// The longer id pushes `short_message` past 255 octets.
    #[error("the rewritten short_message would be {0} octets (max 255)")]
    ShortMessageTooLong(usize),
    /// The longer id pushes `message_payload` past 65 535 octets.
    #[error("the rewritten message_payload would be {0} octets (max 65535)")]
    PayloadTooLong(usize),
}

fn splice(bytes: &[u8], span: Range<usize>, new: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(bytes.len() - span.len() + new.len());
    out.extend_from_slice(&bytes[..span.start]);
    out.extend_from_slice(new);
    out.extend_from_slice(&bytes[span.end..]);
    out.freeze()
}

/// Replaces the message id of a receipt with `new_id`, in the `receipted_message_id` TLV and in
/// the text's `id:` (whichever are present), and nothing else. `sm_length` and
/// `command_length` follow on encode.
pub fn rewrite_id(pdu: &Pdu, new_id: &[u8]) -> Result<Pdu, RewriteError> {
    let receipt = Receipt::from_pdu(pdu).ok_or(RewriteError::NotAReceipt)?;
    rewrite_receipt_id(pdu, &receipt, new_id)
}

/// [`rewrite_id`] for a receipt already read with [`Receipt::from_pdu`] from `pdu`: the text is
/// not parsed a second time (the receipt path does this for every receipt).
pub fn rewrite_receipt_id(pdu: &Pdu, receipt: &Receipt, new_id: &[u8]) -> Result<Pdu, RewriteError> {
    if new_id.is_empty() || new_id.iter().any(|&b| b == 0 || b.is_ascii_whitespace()) {
        return Err(RewriteError::BadId);
    }
    let mut out = pdu.clone();
    if pdu.tlvs.get(tag::receipted_message_id).is_some() {
        let mut value = Vec::with_capacity(new_id.len() + 1);
        value.extend_from_slice(new_id);
        value.push(0);
        out.tlvs.set(tag::receipted_message_id, &value);
    }
    if let (Some((bytes, carrier)), Some(span)) = (text_source(pdu), receipt.text_id_span()) {
        let rewritten = splice(&bytes, span, new_id);
        match (carrier, &mut out.body) {
            (Carrier::ShortMessage, Body::DeliverSm(b)) => {
                if rewritten.len() > 255 {
                    return Err(RewriteError::ShortMessageTooLong(rewritten.len()));
                }
                b.short_message = rewritten;
            }
            _ => {
                if rewritten.len() > crate::pdu::tlv::MAX_VALUE_LEN {
                    return Err(RewriteError::PayloadTooLong(rewritten.len()));
                }
                out.tlvs.set(tag::message_payload, &rewritten);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{DeliverSm, Tlvs};

    fn receipt_pdu(text: &[u8], tlvs: Tlvs) -> Pdu {
        Pdu::new(Body::DeliverSm(DeliverSm {
            esm_class: ESM_CLASS_RECEIPT,
            short_message: Bytes::copy_from_slice(text),
            ..DeliverSm::default()
        }))
        .with_tlvs(tlvs)
    }

    #[test]
    fn stat_text_in_every_form() {
        assert_eq!(MessageState::from_stat(b"DELIVRD"), Some(MessageState::Delivered));
        assert_eq!(
            MessageState::from_stat(b" undeliverable "),
            Some(MessageState::Undeliverable)
        );
        assert_eq!(MessageState::from_stat(b"2"), Some(MessageState::Delivered));
        assert_eq!(MessageState::from_stat(b"DELIV"), None);
        assert!(!MessageState::Accepted.is_final() && !MessageState::Enroute.is_final());
        assert!(MessageState::Rejected.is_final());
    }

    #[test]
    fn dates_in_every_form() {
        let d = ReceiptDate::parse(b"1002191630").unwrap();
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute, d.second),
            (2010, 2, 19, 16, 30, None)
        );
        assert_eq!(
            ReceiptDate::parse(b"141016003650").unwrap().iso(),
            "2014-10-16T00:36:50"
        );
        assert_eq!(
            ReceiptDate::parse(b"20101216125959").unwrap().iso(),
            "2010-12-16T12:59:59"
        );
        assert_eq!(ReceiptDate::parse(b"000000000000"), None);
        assert_eq!(ReceiptDate::parse(b"1013191630"), None, "month 13");
        assert_eq!(ReceiptDate::parse(b"10021916"), None);
    }

    #[test]
    fn tlv_state_wins_and_text_fills_the_rest() {
        let tlvs = Tlvs::from_pairs([
            (tag::receipted_message_id, &b"38601fa\0"[..]),
            (tag::message_state, &[5]),
        ]);
        let pdu = receipt_pdu(
            b"id:0059113978 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 stat:DELIVRD err:000 text:x",
            tlvs,
        );
        let r = Receipt::from_pdu(&pdu).unwrap();
        assert_eq!(r.id(), Some(&b"38601fa"[..]));
        assert_eq!(r.text_id(), Some(&b"0059113978"[..]));
        assert_eq!(r.state, Some(MessageState::Undeliverable));
        assert_eq!(r.stat(), Some(&b"DELIVRD"[..]));
        assert_eq!(r.carried_in, Carrier::ShortMessage);
    }

    #[test]
    fn rewrite_changes_only_the_ids() {
        let text = b"id:0059113978 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 stat:DELIVRD err:000 text:hello";
        let tlvs = Tlvs::from_pairs([
            (0x1454, &b"\x00\x00\x00\x01"[..]),
            (tag::receipted_message_id, b"38601fa\0"),
            (tag::message_state, &[2]),
        ]);
        let pdu = receipt_pdu(text, tlvs).with_sequence_number(9);
        let out = rewrite_id(&pdu, b"a1b2c3d4e5f60718").unwrap();
        let expected_text = b"id:a1b2c3d4e5f60718 sub:001 dlvrd:001 submit date:1002101730 done date:1002101731 stat:DELIVRD err:000 text:hello";
        assert_eq!(out.short_message().unwrap().as_ref(), &expected_text[..]);
        assert_eq!(out.receipted_message_id(), Some(&b"a1b2c3d4e5f60718"[..]));
        let tags: Vec<u16> = out.tlvs.iter().map(|t| t.tag).collect();
        assert_eq!(tags, [0x1454, tag::receipted_message_id, tag::message_state]);
        // The encoded PDU grows by exactly the id growth in both places, lengths fixed up.
        let before = pdu.to_bytes().unwrap();
        let after = out.to_bytes().unwrap();
        assert_eq!(after.len(), before.len() + (16 - 10) + (16 - 7));
        let reparsed = Pdu::parse(after).unwrap();
        assert_eq!(reparsed, out);
        assert!(rewrite_id(&Pdu::new(Body::EnquireLink), b"1").is_err());
        assert_eq!(rewrite_id(&pdu, b"a b"), Err(RewriteError::BadId));
    }

    #[test]
    fn rewrite_keeps_what_follows_a_glued_id() {
        // Fuzz crash: `$err:` glued to the id must stay part of what follows the id.
        let pdu = receipt_pdu(b"stat:DELIVRD id:AB12 do_\x00\x000000100$err:0", Tlvs::new());
        let out = rewrite_id(&pdu, b"0123456789abcdef").unwrap();
        assert_eq!(
            out.short_message().unwrap().as_ref(),
            b"stat:DELIVRD id:0123456789abcdef do_\x00\x000000100$err:0"
        );
        assert_eq!(
            Receipt::from_pdu(&out).unwrap().text_id(),
            Some(&b"0123456789abcdef"[..])
        );
    }

    #[test]
    fn rewrite_in_message_payload() {
        let payload = b"id:0489708364 sub:001 dlvrd:001 submit date:1810151907 done date:1810151907 stat:DELIVRD err:000 text:\x04\x1f";
        let pdu = receipt_pdu(b"", Tlvs::from_pairs([(tag::message_payload, &payload[..])]));
        let out = rewrite_id(&pdu, b"77").unwrap();
        assert_eq!(&out.message_payload().unwrap()[..17], b"id:77 sub:001 dlv");
        assert!(out.message_payload().unwrap().ends_with(b"text:\x04\x1f"));
        assert_eq!(Receipt::from_pdu(&out).unwrap().carried_in, Carrier::MessagePayload);
    }

    #[test]
    fn plain_mo_with_receipted_id_is_not_a_receipt() {
        let mut pdu = receipt_pdu(
            b"Help",
            Tlvs::from_pairs([(tag::receipted_message_id, &b"1618Z\0"[..])]),
        );
        if let Body::DeliverSm(b) = &mut pdu.body {
            b.esm_class = 0;
        }
        assert!(Receipt::from_pdu(&pdu).is_none());
    }
}
