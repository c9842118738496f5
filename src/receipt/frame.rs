//! The receipt path's id rewrite, done on the frame the SMSC sent: one copy of its octets with
//! the id replaced in place (and the lengths that count it: `sm_length`, the TLVs' lengths,
//! `command_length`), instead of a rewritten [`Pdu`] encoded again. Same octets as
//! [`rewrite_receipt_id`](super::rewrite_receipt_id) followed by an encode (a property test
//! holds them equal); one allocation instead of four.

use super::{Body, Carrier, Receipt, RewriteError};
use crate::pdu::tlv::MAX_VALUE_LEN;
use crate::pdu::{tag, Pdu, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use std::ops::Range;

/// Where `part` lies in `frame`, when it is a slice of it (a parsed PDU's fields are).
fn offset_in(frame: &[u8], part: &[u8]) -> Option<usize> {
    let (start, at) = (frame.as_ptr() as usize, part.as_ptr() as usize);
    let offset = at.checked_sub(start)?;
    (offset + part.len() <= frame.len()).then_some(offset)
}

/// Where the TLV value `value` lies in `frame`, and its length field; `None` unless the two
/// octets before it hold its length.
fn tlv_value_in(frame: &[u8], value: &[u8]) -> Option<(usize, Range<usize>)> {
    let at = offset_in(frame, value)?;
    let len_at = at.checked_sub(2)?..at;
    (frame[len_at.clone()] == (value.len() as u16).to_be_bytes()).then_some((at, len_at))
}

/// Octets `at` of the frame replaced by `with` then `then`.
struct Edit<'a> {
    at: Range<usize>,
    with: &'a [u8],
    then: &'a [u8],
}

impl<'a> Edit<'a> {
    fn new(at: Range<usize>, with: &'a [u8]) -> Edit<'a> {
        Edit { at, with, then: &[] }
    }
}

/// `frame` (what `pdu` and `receipt` were read from) with its receipt id replaced by
/// `new_id`: `None` when `pdu`'s fields are not slices of `frame` (then rewrite the PDU).
pub fn rewrite_receipt_frame(
    frame: &[u8],
    pdu: &Pdu,
    receipt: &Receipt,
    new_id: &[u8],
) -> Option<Result<Bytes, RewriteError>> {
    if new_id.is_empty() || new_id.iter().any(|&b| b == 0 || b.is_ascii_whitespace()) {
        return Some(Err(RewriteError::BadId));
    }
    let (sm_len, payload_len, id_len);
    // At most two places change, each with the length field that counts it.
    let mut edits: [Option<Edit<'_>>; 4] = Default::default();
    if let Some(span) = receipt.text_id_span() {
        // The span and the lengths must be where `receipt` and `pdu` say, in `frame`: else
        // they were not read from it.
        let replace = |at: usize, len: usize| {
            (span.end <= len).then(|| (at + span.start..at + span.end, len - span.len() + new_id.len()))
        };
        match (receipt.carried_in, &pdu.body) {
            (Carrier::ShortMessage, Body::DeliverSm(b)) => {
                let at = offset_in(frame, &b.short_message)?;
                let (id_at, new_len) = replace(at, b.short_message.len())?;
                if new_len > 255 {
                    return Some(Err(RewriteError::ShortMessageTooLong(new_len)));
                }
                let len_at = at.checked_sub(1)?;
                if usize::from(frame[len_at]) != b.short_message.len() {
                    return None;
                }
                sm_len = [new_len as u8];
                edits[0] = Some(Edit::new(len_at..at, &sm_len));
                edits[1] = Some(Edit::new(id_at, new_id));
            }
            (Carrier::MessagePayload, Body::DeliverSm(_) | Body::DataSm(_)) => {
                let value = pdu.tlvs.get(tag::message_payload)?;
                let (at, len_at) = tlv_value_in(frame, value)?;
                let (id_at, new_len) = replace(at, value.len())?;
                if new_len > MAX_VALUE_LEN {
                    return Some(Err(RewriteError::PayloadTooLong(new_len)));
                }
                payload_len = (new_len as u16).to_be_bytes();
                edits[0] = Some(Edit::new(len_at, &payload_len));
                edits[1] = Some(Edit::new(id_at, new_id));
            }
            _ => return None,
        }
    }
    if let Some(value) = pdu.tlvs.get(tag::receipted_message_id) {
        let (at, len_at) = tlv_value_in(frame, value)?;
        // With its NUL.
        let new_len = u16::try_from(new_id.len() + 1).ok()?;
        id_len = new_len.to_be_bytes();
        edits[2] = Some(Edit::new(len_at, &id_len));
        edits[3] = Some(Edit {
            at: at..at + value.len(),
            with: new_id,
            then: b"\0",
        });
    }
    edits.sort_unstable_by_key(|e| e.as_ref().map_or(usize::MAX, |e| e.at.start));
    // In order, apart, after the header: else not a layout this function knows.
    let mut from = HEADER_LEN;
    for e in edits.iter().flatten() {
        if e.at.start < from {
            return None;
        }
        from = e.at.end;
    }
    let removed: usize = edits.iter().flatten().map(|e| e.at.len()).sum();
    let added: usize = edits.iter().flatten().map(|e| e.with.len() + e.then.len()).sum();
    let len = frame.len() - removed + added;
    let command_length = u32::try_from(len).ok()?;
    let mut out = BytesMut::with_capacity(len);
    let mut from = 0;
    for e in edits.iter().flatten() {
        out.extend_from_slice(&frame[from..e.at.start]);
        out.extend_from_slice(e.with);
        out.extend_from_slice(e.then);
        from = e.at.end;
    }
    out.extend_from_slice(&frame[from..]);
    if out.len() < HEADER_LEN {
        return None;
    }
    out[..4].copy_from_slice(&command_length.to_be_bytes());
    Some(Ok(out.freeze()))
}
