//! The SMPP wire format: PDUs of SMPP 3.4 and 5.0, parsed with nom and encoded back byte for
//! byte.
//!
//! Data flow: [`codec::SmppCodec`] cuts the byte stream into frames by `command_length` (and
//! nothing else), [`Pdu::parse`] turns one whole frame into a [`Pdu`] whose strings and octets
//! are `Bytes` slices of that frame, and the sessions act on the `Pdu`. A malformed body is a
//! [`PduError`] for that one PDU; only a broken stream is a [`FrameError`].
//!
//! Everything the specs leave open is tolerated and preserved: responses with or without body,
//! over-long strings, TLVs on any PDU, vendor TLVs, any sequence number.

pub mod body;
pub mod codec;
mod command_id;
pub mod error;
mod fields;
pub mod json;
pub mod peek;
mod status;
pub mod tlv;

pub use body::{Body, DeliverSm, SubmitSm};
pub use codec::SmppCodec;
pub use command_id::CommandId;
pub use error::{EncodeError, FrameError, PduError, PduErrorKind};
pub use fields::{COctetString, DestAddress, UnsuccessSme};
pub use status::CommandStatus;
pub use tlv::{tag, Tlv, Tlvs};

use bytes::{BufMut, Bytes, BytesMut};
use fields::{FieldError, PResult};
use nom::number::complete::be_u32;
use nom::Parser;
use tlv::TlvAreaError;

/// Octets in the header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// One PDU: header values, mandatory body and TLVs. `command_length` and `command_id` are not
/// stored: they follow from the body and TLVs, so they cannot disagree with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    /// `command_status`: 0 in requests, the result in responses.
    pub command_status: CommandStatus,
    /// `sequence_number`: an opaque `u32` (0 and values ≥ 2³¹ occur in the wild).
    pub sequence_number: u32,
    /// The mandatory fields.
    pub body: Body,
    /// The optional parameters, in wire order.
    pub tlvs: Tlvs,
}

/// `network_error_code` TLV (SMPP 3.4 §5.3.2.31): network type and error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkErrorCode {
    /// 1 ANSI-136, 2 IS-95, 3 GSM, 4 ANSI-136 cause, 5 IS-95 cause, 6 ANSI-41, 7 SMPP, 8 MC-specific.
    pub network_type: u8,
    /// The network's error code.
    pub error_code: u16,
}

/// Where a message part sits in its concatenated message, from the SAR TLVs or the UDH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concatenation {
    /// The reference shared by all parts (8- or 16-bit).
    pub reference: u16,
    /// How many parts.
    pub total: u8,
    /// This part's number, 1-based.
    pub seqnum: u8,
}

/// SAR concatenation TLVs (SMPP 3.4 §5.3.2.22–24), present only when all three are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sar {
    /// `sar_msg_ref_num`
    pub msg_ref_num: u16,
    /// `sar_total_segments`
    pub total_segments: u8,
    /// `sar_segment_seqnum`
    pub segment_seqnum: u8,
}

impl Pdu {
    /// A PDU with status 0, sequence number 0 and no TLVs.
    pub fn new(body: Body) -> Pdu {
        Pdu {
            command_status: CommandStatus::ESME_ROK,
            sequence_number: 0,
            body,
            tlvs: Tlvs::new(),
        }
    }

    /// Sets `command_status`.
    pub fn with_status(mut self, status: CommandStatus) -> Pdu {
        self.command_status = status;
        self
    }

    /// Sets `sequence_number`.
    pub fn with_sequence_number(mut self, sequence_number: u32) -> Pdu {
        self.sequence_number = sequence_number;
        self
    }

    /// Sets the TLVs.
    pub fn with_tlvs(mut self, tlvs: Tlvs) -> Pdu {
        self.tlvs = tlvs;
        self
    }

    /// The `command_id`, from the body.
    pub fn command_id(&self) -> CommandId {
        self.body.command_id()
    }

    /// Parses one whole frame (`frame.len()` is taken as `command_length`; the framer checked
    /// the declared value). Fields borrow from `frame`; nothing is copied.
    pub fn parse(frame: Bytes) -> Result<Pdu, PduError> {
        let input: &[u8] = &frame;
        let header: PResult<'_, (u32, u32, u32, u32)> = (be_u32, be_u32, be_u32, be_u32).parse(input);
        let Ok((rest, (_len, id, status, seq))) = header else {
            // The framer never hands out less than a header; say so anyway for direct callers.
            return Err(PduError {
                command_id: CommandId(0),
                sequence_number: 0,
                offset: 0,
                kind: PduErrorKind::Truncated { field: "header" },
            });
        };
        let command_id = CommandId(id);
        let error = |at: &[u8], kind| PduError {
            command_id,
            sequence_number: seq,
            offset: input.len() - at.len(),
            kind,
        };
        let (rest, body) = match Body::parse(command_id, &frame, rest) {
            None => return Err(error(rest, PduErrorKind::UnknownCommandId(id))),
            Some(Ok(parsed)) => parsed,
            Some(Err(
                nom::Err::Error(FieldError { input: at, kind }) | nom::Err::Failure(FieldError { input: at, kind }),
            )) => return Err(error(at, kind)),
            Some(Err(nom::Err::Incomplete(_))) => return Err(error(rest, PduErrorKind::Truncated { field: "body" })),
        };
        let area_start = input.len() - rest.len();
        let tlvs = Tlvs::from_area(frame.slice_ref(rest)).map_err(|e| match e {
            TlvAreaError::HeaderTruncated { at } => PduError {
                command_id,
                sequence_number: seq,
                offset: area_start + at,
                kind: PduErrorKind::TlvHeaderTruncated {
                    available: rest.len() - at,
                },
            },
            TlvAreaError::LengthOverrun {
                at,
                tag,
                declared,
                available,
            } => PduError {
                command_id,
                sequence_number: seq,
                offset: area_start + at,
                kind: PduErrorKind::TlvLengthOverrun {
                    tag,
                    declared,
                    available,
                },
            },
        })?;
        Ok(Pdu {
            command_status: CommandStatus(status),
            sequence_number: seq,
            body,
            tlvs,
        })
    }

    /// Octets this PDU takes on the wire (its `command_length`).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len() + self.tlvs.as_bytes().len()
    }

    /// Appends the PDU's wire form to `dst`. On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        // command_length is patched in at the end: one pass over the fields instead of two.
        dst.reserve(HEADER_LEN + 64 + self.tlvs.as_bytes().len());
        let mut header = [0u8; HEADER_LEN];
        header[4..8].copy_from_slice(&self.command_id().0.to_be_bytes());
        header[8..12].copy_from_slice(&self.command_status.0.to_be_bytes());
        header[12..16].copy_from_slice(&self.sequence_number.to_be_bytes());
        dst.put_slice(&header);
        if let Err(e) = self.body.encode(dst) {
            dst.truncate(start);
            return Err(e);
        }
        dst.put_slice(self.tlvs.as_bytes());
        let len = (dst.len() - start) as u32;
        dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The PDU's wire form.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// The response to a `command` request numbered `seq`, with `status` and an empty body
    /// (generic_nack for a command that has no response of its own): how a request known by
    /// its header alone is refused.
    pub fn error_response_to(command: CommandId, seq: u32, status: CommandStatus) -> Pdu {
        command
            .response()
            .and_then(Body::empty_response)
            .map_or_else(|| Pdu::new(Body::GenericNack), Pdu::new)
            .with_status(status)
            .with_sequence_number(seq)
    }

    /// The response to this request with `status` and an empty body, e.g. to refuse it.
    /// `None` for PDUs that have no response.
    pub fn error_response(&self, status: CommandStatus) -> Option<Pdu> {
        let id = self.command_id().response()?;
        Some(
            Pdu::new(Body::empty_response(id)?)
                .with_status(status)
                .with_sequence_number(self.sequence_number),
        )
    }

    /// `short_message` of submit_sm, deliver_sm, submit_multi and replace_sm.
    pub fn short_message(&self) -> Option<&Bytes> {
        match &self.body {
            Body::SubmitSm(b) | Body::DeliverSm(b) => Some(&b.short_message),
            Body::SubmitMulti(b) => Some(&b.short_message),
            Body::ReplaceSm(b) => Some(&b.short_message),
            _ => None,
        }
    }

    /// `esm_class` of the PDUs that have one.
    pub fn esm_class(&self) -> Option<u8> {
        match &self.body {
            Body::SubmitSm(b) | Body::DeliverSm(b) => Some(b.esm_class),
            Body::SubmitMulti(b) => Some(b.esm_class),
            Body::DataSm(b) => Some(b.esm_class),
            _ => None,
        }
    }

    /// `message_id` of the PDUs that carry one (responses with no body give `None`).
    pub fn message_id(&self) -> Option<&COctetString> {
        match &self.body {
            Body::SubmitSmResp(Some(b))
            | Body::DeliverSmResp(Some(b))
            | Body::DataSmResp(Some(b))
            | Body::BroadcastSmResp(Some(b))
            | Body::QueryBroadcastSmResp(Some(b)) => Some(&b.message_id),
            Body::SubmitMultiResp(Some(b)) => Some(&b.message_id),
            Body::QuerySmResp(Some(b)) => Some(&b.message_id),
            Body::QuerySm(b) => Some(&b.message_id),
            Body::CancelSm(b) => Some(&b.message_id),
            Body::ReplaceSm(b) => Some(&b.message_id),
            Body::BroadcastSm(b) => Some(&b.message_id),
            Body::QueryBroadcastSm(b) => Some(&b.message_id),
            Body::CancelBroadcastSm(b) => Some(&b.message_id),
            _ => None,
        }
    }

    /// `receipted_message_id` TLV, without its NUL.
    pub fn receipted_message_id(&self) -> Option<&[u8]> {
        self.tlvs.get_cstr(tag::receipted_message_id)
    }

    /// `message_state` TLV (SMPP 3.4 §5.2.28 values).
    pub fn message_state(&self) -> Option<u8> {
        self.tlvs.get_u8(tag::message_state)
    }

    /// `network_error_code` TLV when it has its 3-octet form.
    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        match *self.tlvs.get(tag::network_error_code)? {
            [network_type, a, b] => Some(NetworkErrorCode {
                network_type,
                error_code: u16::from_be_bytes([a, b]),
            }),
            _ => None,
        }
    }

    /// `sar_msg_ref_num` TLV.
    pub fn sar_msg_ref_num(&self) -> Option<u16> {
        self.tlvs.get_u16(tag::sar_msg_ref_num)
    }

    /// `sar_total_segments` TLV.
    pub fn sar_total_segments(&self) -> Option<u8> {
        self.tlvs.get_u8(tag::sar_total_segments)
    }

    /// `sar_segment_seqnum` TLV.
    pub fn sar_segment_seqnum(&self) -> Option<u8> {
        self.tlvs.get_u8(tag::sar_segment_seqnum)
    }

    /// The three SAR TLVs together.
    pub fn sar(&self) -> Option<Sar> {
        Some(Sar {
            msg_ref_num: self.sar_msg_ref_num()?,
            total_segments: self.sar_total_segments()?,
            segment_seqnum: self.sar_segment_seqnum()?,
        })
    }

    /// Where this PDU sits in a concatenated message: the SAR TLVs, else a concatenation
    /// information element (8-bit IEI 0x00 or 16-bit IEI 0x08) in the UDH of `short_message`
    /// when `esm_class` has UDHI (SMPP 3.4 §5.2.12, 3GPP TS 23.040 §9.2.3.24.1).
    pub fn concatenation(&self) -> Option<Concatenation> {
        if let Some(sar) = self.sar() {
            return Some(Concatenation {
                reference: sar.msg_ref_num,
                total: sar.total_segments,
                seqnum: sar.segment_seqnum,
            });
        }
        if self.esm_class()? & 0x40 == 0 {
            return None;
        }
        let sm = self.short_message()?;
        let udhl = usize::from(*sm.first()?);
        let mut ies = sm.get(1..1 + udhl)?;
        while let [iei, len, rest @ ..] = ies {
            let len = usize::from(*len);
            let data = rest.get(..len)?;
            match (*iei, data) {
                (0x00, [r, total, seq]) => {
                    return Some(Concatenation {
                        reference: u16::from(*r),
                        total: *total,
                        seqnum: *seq,
                    })
                }
                (0x08, [a, b, total, seq]) => {
                    return Some(Concatenation {
                        reference: u16::from_be_bytes([*a, *b]),
                        total: *total,
                        seqnum: *seq,
                    })
                }
                _ => ies = &rest[len..],
            }
        }
        None
    }

    /// `message_payload` TLV, shared with the frame.
    pub fn message_payload(&self) -> Option<Bytes> {
        self.tlvs.get_bytes(tag::message_payload)
    }

    /// `user_message_reference` TLV.
    pub fn user_message_reference(&self) -> Option<u16> {
        self.tlvs.get_u16(tag::user_message_reference)
    }
}

/// Why a byte string is not exactly one PDU (for tools that take one PDU, like `pdu decode`).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 16 octets.
    #[error("{0} octets, less than the 16-octet header (at byte {0})")]
    ShortHeader(usize),
    /// command_length below 16.
    #[error("command_length {0} is less than 16 (at byte 0)")]
    LengthTooSmall(u32),
    /// command_length promises more octets than given.
    #[error("PDU truncated: command_length {declared} but only {supplied} octets given (at byte {supplied})")]
    Truncated {
        /// command_length
        declared: u32,
        /// octets given
        supplied: usize,
    },
    /// The frame is malformed.
    #[error("{0}")]
    Pdu(#[from] PduError),
    /// Octets after the PDU.
    #[error("{extra} octets after the PDU's command_length {declared} (at byte {declared})")]
    Trailing {
        /// command_length
        declared: u32,
        /// octets after it
        extra: usize,
    },
}

/// Decodes exactly one PDU from `bytes` (command_length must match the byte count).
pub fn decode_exact(bytes: &[u8]) -> Result<Pdu, DecodeError> {
    let declared = match bytes.get(..4) {
        Some(b) if bytes.len() >= HEADER_LEN => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        _ => return Err(DecodeError::ShortHeader(bytes.len())),
    };
    if (declared as usize) < HEADER_LEN {
        return Err(DecodeError::LengthTooSmall(declared));
    }
    if declared as usize > bytes.len() {
        return Err(DecodeError::Truncated {
            declared,
            supplied: bytes.len(),
        });
    }
    let pdu = Pdu::parse(Bytes::copy_from_slice(&bytes[..declared as usize]))?;
    if bytes.len() > declared as usize {
        return Err(DecodeError::Trailing {
            declared,
            extra: bytes.len() - declared as usize,
        });
    }
    Ok(pdu)
}
