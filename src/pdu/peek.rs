//! Reading a frame without parsing it: the header, a response's message id, a deliver_sm's
//! `receipted_message_id`, and cutting whole frames off a read buffer. For the paths that
//! handle every message and need one or two fields of it (the load generator, the simulator,
//! the proxy's answers to its clients); anything these cannot read is left to
//! [`super::Pdu::parse`], which says why.

use super::{CommandId, CommandStatus, HEADER_LEN};

/// The header of a whole frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `command_length`: the frame's octets, header included.
    pub len: usize,
    /// `command_id`.
    pub id: CommandId,
    /// `command_status`.
    pub status: CommandStatus,
    /// `sequence_number`.
    pub seq: u32,
}

/// What [`next_frame`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame of `header.len` octets.
    Frame(Header),
    /// Not a whole frame yet.
    Partial,
    /// A `command_length` below 16 or above `max`: the stream cannot be resynchronised.
    BadLength {
        /// The length read.
        len: u32,
        /// The frame's sequence number, for the generic_nack.
        seq: u32,
    },
}

/// The big-endian `u32` at `at` (0 past the end: a header field of a frame is never there).
pub fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The frame at the start of `buf`, if it is whole.
pub fn next_frame(buf: &[u8], max: usize) -> Next {
    if buf.len() < HEADER_LEN {
        return Next::Partial;
    }
    let len = be32(buf, 0);
    if (len as usize) < HEADER_LEN || len as usize > max {
        return Next::BadLength {
            len,
            seq: be32(buf, 12),
        };
    }
    if buf.len() < len as usize {
        return Next::Partial;
    }
    Next::Frame(Header {
        len: len as usize,
        id: CommandId(be32(buf, 4)),
        status: CommandStatus(be32(buf, 8)),
        seq: be32(buf, 12),
    })
}

/// Splits a C-Octet String (up to its NUL) off the front of `b`.
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

fn skip(b: &[u8], n: usize) -> Option<&[u8]> {
    b.get(n..)
}

/// The message_id a submit_sm_resp / data_sm_resp body starts with (empty when the body is).
pub fn response_id(body: &[u8]) -> Option<&[u8]> {
    if body.is_empty() {
        return Some(b"");
    }
    cstr(body).map(|(id, _)| id)
}

/// The fields of a submit_sm / deliver_sm body (the two share a layout) that a simulator
/// answers from and a load generator reads a receipt from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortMessage<'a> {
    /// `source_addr`.
    pub source: &'a [u8],
    /// `destination_addr`.
    pub destination: &'a [u8],
    /// `esm_class`.
    pub esm_class: u8,
    /// `registered_delivery`.
    pub registered_delivery: u8,
    /// `short_message`.
    pub short_message: &'a [u8],
    /// The TLV area, checked to be whole TLVs.
    pub tlvs: &'a [u8],
}

/// Reads a submit_sm / deliver_sm body; `None` when it is not one [`super::Pdu::parse`]
/// would read the same way (a string without its NUL, a short body, a broken TLV area).
pub fn short_message(body: &[u8]) -> Option<ShortMessage<'_>> {
    let (_, b) = cstr(body)?; // service_type
    let (source, b) = cstr(skip(b, 2)?)?; // source ton, npi, source_addr
    let (destination, b) = cstr(skip(b, 2)?)?; // dest ton, npi, destination_addr
    let esm_class = *b.first()?;
    let (_, b) = cstr(skip(b, 3)?)?; // esm_class, protocol_id, priority_flag, schedule
    let (_, b) = cstr(b)?; // validity_period
    let registered_delivery = *b.first()?;
    let b = skip(b, 4)?; // registered_delivery, replace_if_present, data_coding, default id
    let (&sm_length, b) = b.split_first()?;
    let short_message = b.get(..usize::from(sm_length))?;
    let tlvs = &b[usize::from(sm_length)..];
    tlv_values(tlvs).try_for_each(|t| t.map(drop))?;
    Some(ShortMessage {
        source,
        destination,
        esm_class,
        registered_delivery,
        short_message,
        tlvs,
    })
}

/// The TLVs of a TLV area as (tag, value); an item `None` where the area breaks off.
fn tlv_values(mut area: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    std::iter::from_fn(move || {
        if area.is_empty() {
            return None;
        }
        let Some(head) = area.get(..4) else {
            area = &[];
            return Some(None);
        };
        let tag = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(value) = area.get(4..4 + len) else {
            area = &[];
            return Some(None);
        };
        area = &area[4 + len..];
        Some(Some((tag, value)))
    })
}

/// The `receipted_message_id` TLV of a deliver_sm body, up to its NUL; `None` when the
/// body has none or cannot be read this way.
pub fn receipted_message_id(body: &[u8]) -> Option<&[u8]> {
    let sm = short_message(body)?;
    tlv_values(sm.tlvs).flatten().find_map(|(tag, value)| {
        // Up to the first NUL, as the parser reads a C-Octet String.
        (tag == super::tag::receipted_message_id).then(|| value.split(|&c| c == 0).next().unwrap_or(value))
    })
}

/// Writes a header for a frame of `len` octets.
pub fn put_header(out: &mut impl bytes::BufMut, len: usize, id: CommandId, status: CommandStatus, seq: u32) {
    out.put_u32(len as u32);
    out.put_u32(id.0);
    out.put_u32(status.0);
    out.put_u32(seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, DeliverSm, Pdu, Tlvs};

    #[test]
    fn reads_what_the_parser_reads() {
        let pdu = Pdu::new(Body::DeliverSm(DeliverSm::text("4477", "4478", b"id:abc stat:DELIVRD")))
            .with_sequence_number(7)
            .with_tlvs(Tlvs::from_pairs([(0x0427u16, &[2u8][..]), (0x001E, b"abc\0")]));
        let frame = pdu.to_bytes().unwrap();
        let Next::Frame(h) = next_frame(&frame, 1024) else {
            panic!()
        };
        assert_eq!((h.len, h.id, h.seq), (frame.len(), CommandId::DELIVER_SM, 7));
        assert_eq!(receipted_message_id(&frame[HEADER_LEN..]), Some(&b"abc"[..]));
        assert_eq!(next_frame(&frame[..20], 1024), Next::Partial);
        assert!(matches!(next_frame(&frame, 20), Next::BadLength { seq: 7, .. }));
        // Cut anywhere, it is never read past its end.
        for cut in HEADER_LEN..frame.len() {
            let _ = receipted_message_id(&frame[HEADER_LEN..cut]);
        }
        let without = Pdu::new(Body::DeliverSm(DeliverSm::text("1", "2", b"x")))
            .to_bytes()
            .unwrap();
        assert_eq!(receipted_message_id(&without[HEADER_LEN..]), None);
        let sm = short_message(&frame[HEADER_LEN..]).unwrap();
        assert_eq!(
            (sm.source, sm.destination, sm.esm_class, sm.short_message),
            (&b"4477"[..], &b"4478"[..], 0, &b"id:abc stat:DELIVRD"[..])
        );
        // Read up to the first NUL, as the parser reads it.
        let early_nul = Pdu::new(Body::DeliverSm(DeliverSm::text("1", "2", b"x")))
            .with_tlvs(Tlvs::from_pairs([(0x001Eu16, &b"ab\0cd\0"[..])]))
            .to_bytes()
            .unwrap();
        assert_eq!(receipted_message_id(&early_nul[HEADER_LEN..]), Some(&b"ab"[..]));
        // A TLV running past the end: not read this way.
        let mut broken = frame.to_vec();
        let n = broken.len();
        broken[n - 5] = 9; // the last TLV's length
        assert_eq!(short_message(&broken[HEADER_LEN..]), None);
    }

    #[test]
    fn a_response_id() {
        assert_eq!(response_id(b"12ab\0"), Some(&b"12ab"[..]));
        assert_eq!(response_id(b""), Some(&b""[..]));
        assert_eq!(response_id(b"12ab"), None);
    }
}
