//! Optional parameters (TLVs): the bytes after a PDU's mandatory fields.
//!
//! The TLV area is kept as the one `Bytes` slice of the frame it came in, checked once at parse
//! time to split exactly into whole TLVs. That makes decoding allocation-free, keeps every TLV
//! (known, vendor or misplaced) in its original order, and makes re-encoding a copy. Typed
//! accessors ([`Tlvs::get_u8`] …, and the ones on [`crate::pdu::Pdu`]) read it on demand;
//! the rare rewrites ([`Tlvs::set`]) build a new area.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// The kind of value a tag carries, as far as the specs say (SMPP 3.4 §5.3.2, 5.0 §4.8.4).
/// Only used to present values; the wire form is always kept as raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlvKind {
    /// 1-octet integer.
    U8,
    /// 2-octet big-endian integer.
    U16,
    /// 4-octet big-endian integer.
    U32,
    /// NUL-terminated ASCII string.
    CStr,
    /// Raw octets.
    Octets,
}

macro_rules! tags {
    ($($konst:ident = $value:literal, $kind:ident;)*) => {
        /// TLV tags defined by SMPP 3.4 and 5.0.
        pub mod tag {
            $(#[doc = concat!("`", stringify!($konst), "`")]
            #[allow(non_upper_case_globals)]
            pub const $konst: u16 = $value;)*
        }

        /// The spec name and value kind of a tag; `None` for vendor and reserved tags.
        pub const fn tag_info(tag: u16) -> Option<(&'static str, TlvKind)> {
            match tag {
                $($value => Some((stringify!($konst), TlvKind::$kind)),)*
                _ => None,
            }
        }

        /// The tag whose spec name is `name`.
        pub fn tag_from_name(name: &str) -> Option<u16> {
            match name {
                $(stringify!($konst) => Some($value),)*
                _ => None,
            }
        }
    };
}

tags! {
    dest_addr_subunit = 0x0005, U8;
    dest_network_type = 0x0006, U8;
    dest_bearer_type = 0x0007, U8;
    dest_telematics_id = 0x0008, U16;
    source_addr_subunit = 0x000D, U8;
    source_network_type = 0x000E, U8;
    source_bearer_type = 0x000F, U8;
    source_telematics_id = 0x0010, U8;
    qos_time_to_live = 0x0017, U32;
    payload_type = 0x0019, U8;
    additional_status_info_text = 0x001D, CStr;
    receipted_message_id = 0x001E, CStr;
    ms_msg_wait_facilities = 0x0030, U8;
    privacy_indicator = 0x0201, U8;
    source_subaddress = 0x0202, Octets;
    dest_subaddress = 0x0203, Octets;
    user_message_reference = 0x0204, U16;
    user_response_code = 0x0205, U8;
    source_port = 0x020A, U16;
    destination_port = 0x020B, U16;
    sar_msg_ref_num = 0x020C, U16;
    language_indicator = 0x020D, U8;
    sar_total_segments = 0x020E, U8;
    sar_segment_seqnum = 0x020F, U8;
    sc_interface_version = 0x0210, U8;
    callback_num_pres_ind = 0x0302, U8;
    callback_num_atag = 0x0303, Octets;
    number_of_messages = 0x0304, U8;
    callback_num = 0x0381, Octets;
    dpf_result = 0x0420, U8;
    set_dpf = 0x0421, U8;
    ms_availability_status = 0x0422, U8;
    network_error_code = 0x0423, Octets;
    message_payload = 0x0424, Octets;
    delivery_failure_reason = 0x0425, U8;
    more_messages_to_send = 0x0426, U8;
    message_state = 0x0427, U8;
    congestion_state = 0x0428, U8;
    ussd_service_op = 0x0501, U8;
    broadcast_channel_indicator = 0x0600, U8;
    broadcast_content_type = 0x0601, Octets;
    broadcast_content_type_info = 0x0602, Octets;
    broadcast_message_class = 0x0603, U8;
    broadcast_rep_num = 0x0604, U16;
    broadcast_frequency_interval = 0x0605, Octets;
    broadcast_area_identifier = 0x0606, Octets;
    broadcast_error_status = 0x0607, U32;
    broadcast_area_success = 0x0608, U8;
    broadcast_end_time = 0x0609, CStr;
    broadcast_service_group = 0x060A, Octets;
    billing_identification = 0x060B, Octets;
    source_network_id = 0x060D, CStr;
    dest_network_id = 0x060E, CStr;
    source_node_id = 0x060F, Octets;
    dest_node_id = 0x0610, Octets;
    dest_addr_np_resolution = 0x0611, U8;
    dest_addr_np_information = 0x0612, Octets;
    dest_addr_np_country = 0x0613, Octets;
    display_time = 0x1201, U8;
    sms_signal = 0x1203, U16;
    ms_validity = 0x1204, Octets;
    alert_on_message_delivery = 0x130C, Octets;
    its_reply_type = 0x1380, U8;
    its_session_info = 0x1383, Octets;
}

/// One TLV as it stands in the area.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: u16,
    /// The value octets (`length` of them).
    pub value: &'a [u8],
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = tag_info(self.tag).map_or("vendor", |(n, _)| n);
        write!(f, "{name}(0x{:04x})={:02x?}", self.tag, self.value)
    }
}

/// Why a TLV area does not split into whole TLVs. `at` is the offset inside the area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlvAreaError {
    /// Fewer than 4 octets left for a tag and length.
    HeaderTruncated { at: usize },
    /// The declared length runs past the end of the PDU.
    LengthOverrun {
        at: usize,
        tag: u16,
        declared: u16,
        available: usize,
    },
}

/// The TLVs of one PDU, in wire order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tlvs {
    raw: Bytes,
}

impl Tlvs {
    /// No TLVs.
    pub const fn new() -> Tlvs {
        Tlvs { raw: Bytes::new() }
    }

    /// Checks that `raw` splits exactly into whole TLVs and keeps it.
    pub(crate) fn from_area(raw: Bytes) -> Result<Tlvs, TlvAreaError> {
        let mut at = 0;
        while at < raw.len() {
            let rest = &raw[at..];
            if rest.len() < 4 {
                return Err(TlvAreaError::HeaderTruncated { at });
            }
            let tag = u16::from_be_bytes([rest[0], rest[1]]);
            let declared = u16::from_be_bytes([rest[2], rest[3]]);
            if rest.len() - 4 < declared as usize {
                return Err(TlvAreaError::LengthOverrun {
                    at,
                    tag,
                    declared,
                    available: rest.len() - 4,
                });
            }
            at += 4 + declared as usize;
        }
        Ok(Tlvs { raw })
    }

    /// Builds an area from `(tag, value)` pairs in the given order.
    ///
    /// Panics if a value is longer than 65 535 octets (the length field is 2 octets);
    /// callers that take untrusted input check [`MAX_VALUE_LEN`] first.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (u16, &'a [u8])>) -> Tlvs {
        let mut buf = BytesMut::new();
        for (tag, value) in pairs {
            put_tlv(&mut buf, tag, value);
        }
        Tlvs { raw: buf.freeze() }
    }

    /// The encoded area (what follows the mandatory fields on the wire).
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// `true` when the PDU carries no TLV.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every TLV in wire order.
    pub fn iter(&self) -> TlvIter<'_> {
        TlvIter { rest: &self.raw }
    }

    /// The value of the first TLV with `tag`.
    pub fn get(&self, tag: u16) -> Option<&[u8]> {
        self.iter().find(|t| t.tag == tag).map(|t| t.value)
    }

    /// The value of the first `tag` as a shared slice of the frame (no copy).
    pub fn get_bytes(&self, tag: u16) -> Option<Bytes> {
        self.get(tag).map(|v| self.raw.slice_ref(v))
    }

    /// A 1-octet value; `None` when absent or of another length.
    pub fn get_u8(&self, tag: u16) -> Option<u8> {
        match self.get(tag)? {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// A 2-octet value; `None` when absent or of another length.
    pub fn get_u16(&self, tag: u16) -> Option<u16> {
        let v: [u8; 2] = self.get(tag)?.try_into().ok()?;
        Some(u16::from_be_bytes(v))
    }

    /// A C-octet-string value without its NUL (a missing NUL is tolerated).
    pub fn get_cstr(&self, tag: u16) -> Option<&[u8]> {
        let v = self.get(tag)?;
        Some(v.iter().position(|&b| b == 0).map_or(v, |nul| &v[..nul]))
    }

    /// Replaces the value of the first `tag` in place (order kept), or appends the TLV.
    pub fn set(&mut self, tag: u16, value: &[u8]) {
        let mut buf = BytesMut::with_capacity(self.raw.len() + value.len() + 4);
        let mut replaced = false;
        for t in self.iter() {
            let v = if t.tag == tag && !replaced {
                replaced = true;
                value
            } else {
                t.value
            };
            put_tlv(&mut buf, t.tag, v);
        }
        if !replaced {
            put_tlv(&mut buf, tag, value);
        }
        self.raw = buf.freeze();
    }

    /// Removes every TLV with `tag`.
    pub fn remove(&mut self, tag: u16) {
        if self.get(tag).is_some() {
            let kept: Vec<Tlv<'_>> = self.iter().filter(|t| t.tag != tag).collect();
            let rebuilt = Tlvs::from_pairs(kept.iter().map(|t| (t.tag, t.value)));
            self.raw = rebuilt.raw;
        }
    }
}

/// The largest TLV value: its length field is 2 octets.
pub const MAX_VALUE_LEN: usize = u16::MAX as usize;

fn put_tlv(buf: &mut BytesMut, tag: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("TLV value longer than 65535 octets");
    buf.reserve(4 + value.len());
    buf.put_u16(tag);
    buf.put_u16(len);
    buf.put_slice(value);
}

impl fmt::Debug for Tlvs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over a checked TLV area.
#[derive(Clone, Debug)]
pub struct TlvIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        // The area was checked by `from_area`/`from_pairs`; `get` keeps a corrupt area from panicking.
        let head = self.rest.get(..4)?;
        let tag = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let value = self.rest.get(4..4 + len)?;
        self.rest = &self.rest[4 + len..];
        Some(Tlv { tag, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_keeps_order() {
        let mut tlvs = Tlvs::from_pairs([
            (0x1400, &b"ab"[..]),
            (tag::receipted_message_id, b"12\0"),
            (0x0427, &[2]),
        ]);
        tlvs.set(tag::receipted_message_id, b"abcdef\0");
        let tags: Vec<u16> = tlvs.iter().map(|t| t.tag).collect();
        assert_eq!(tags, [0x1400, tag::receipted_message_id, 0x0427]);
        assert_eq!(tlvs.get_cstr(tag::receipted_message_id), Some(&b"abcdef"[..]));
        tlvs.set(tag::sar_msg_ref_num, &[0, 7]);
        assert_eq!(tlvs.get_u16(tag::sar_msg_ref_num), Some(7));
        tlvs.remove(0x1400);
        assert_eq!(tlvs.iter().count(), 3);
    }

    #[test]
    fn area_errors_say_where() {
        let e = Tlvs::from_area(Bytes::from_static(&[0x02, 0x10, 0x00])).unwrap_err();
        assert_eq!(e, TlvAreaError::HeaderTruncated { at: 0 });
        let e = Tlvs::from_area(Bytes::from_static(&[0, 5, 0, 1, 9, 0x02, 0x10, 0x00, 0x02, 0x34])).unwrap_err();
        assert_eq!(
            e,
            TlvAreaError::LengthOverrun {
                at: 5,
                tag: 0x0210,
                declared: 2,
                available: 1
            }
        );
    }
}
