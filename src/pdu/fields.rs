//! The primitive field types of a PDU body and their wire form (SMPP 3.4 §3.1): 1-octet
//! integers, C-Octet Strings, the `sm_length`-prefixed `short_message`, and the submit_multi
//! lists. Each implements [`Field`]; `body.rs` strings them together per PDU.
//!
//! Parsing uses nom's `complete` combinators over the frame's bytes: a frame is always whole,
//! so running out of input is a malformed PDU, never "need more data". Strings and octets are
//! `Bytes` slices of the frame (no copy).

use super::error::{EncodeError, PduErrorKind};
use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::{take, take_until};
use nom::number::complete::{be_u32, be_u8};
use nom::{IResult, Parser};
use std::fmt;

/// A parse failure inside a frame: where (`input` is the rest of the frame from that point)
/// and what.
#[derive(Debug)]
pub(crate) struct FieldError<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) kind: PduErrorKind,
}

impl<'a> nom::error::ParseError<&'a [u8]> for FieldError<'a> {
    fn from_error_kind(input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        FieldError {
            input,
            kind: PduErrorKind::Truncated { field: "body" },
        }
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, FieldError<'a>>;

pub(crate) fn fail<T>(input: &[u8], kind: PduErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Error(FieldError { input, kind }))
}

/// A C-Octet String: ASCII octets terminated by NUL on the wire. The value excludes the NUL and
/// never contains one (every constructor checks), so encoding needs no check.
///
/// The spec's maximum sizes are not enforced: real SMSCs exceed them (11-octet passwords,
/// 8-octet service types) and a transparent proxy must carry such values unchanged.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct COctetString(Bytes);

impl COctetString {
    /// The empty string (a single NUL on the wire).
    pub const fn empty() -> COctetString {
        COctetString(Bytes::new())
    }

    /// A string from octets that must not contain NUL.
    pub fn new(octets: impl Into<Bytes>) -> Result<COctetString, EncodeError> {
        let octets = octets.into();
        if octets.contains(&0) {
            return Err(EncodeError::NulInString("C-Octet String"));
        }
        Ok(COctetString(octets))
    }

    /// A string copied from text, cut at the first NUL if there is one (NUL ends a C string).
    pub fn from_text(text: &str) -> COctetString {
        let bytes = text.as_bytes();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        COctetString(Bytes::copy_from_slice(&bytes[..end]))
    }

    /// A string from a static literal. Panics if it contains NUL (a programming error).
    pub fn from_static(s: &'static str) -> COctetString {
        assert!(!s.as_bytes().contains(&0), "C-Octet String literal with NUL: {s:?}");
        COctetString(Bytes::from_static(s.as_bytes()))
    }

    /// The octets, without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The octets as a shared `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The value as `&str` when it is UTF-8 (ASCII in the spec).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// `true` for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for COctetString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&'static str> for COctetString {
    fn from(s: &'static str) -> Self {
        COctetString::from_static(s)
    }
}

/// How one field type is read from and written to the wire.
pub(crate) trait Field: Sized {
    /// Reads the field from `i`, a suffix of `frame`; `name` is the spec name for errors.
    fn parse<'a>(frame: &Bytes, i: &'a [u8], name: &'static str) -> PResult<'a, Self>;
    /// Octets on the wire.
    fn encoded_len(&self) -> usize;
    /// Appends the wire form; the caller reserved `encoded_len`.
    fn encode(&self, dst: &mut BytesMut, name: &'static str) -> Result<(), EncodeError>;
}

pub(crate) fn c_octets<'a>(i: &'a [u8], field: &'static str) -> PResult<'a, &'a [u8]> {
    let found: PResult<'a, &'a [u8]> = take_until(&b"\0"[..]).parse(i);
    match found {
        Ok((rest, value)) => Ok((&rest[1..], value)),
        Err(_) => fail(i, PduErrorKind::MissingNul { field }),
    }
}

pub(crate) fn octet<'a>(i: &'a [u8], field: &'static str) -> PResult<'a, u8> {
    be_u8(i).map_err(|_: nom::Err<FieldError<'a>>| {
        nom::Err::Error(FieldError {
            input: i,
            kind: PduErrorKind::Truncated { field },
        })
    })
}

impl Field for u8 {
    fn parse<'a>(_frame: &Bytes, i: &'a [u8], name: &'static str) -> PResult<'a, u8> {
        octet(i, name)
    }
    fn encoded_len(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        dst.put_u8(*self);
        Ok(())
    }
}

impl Field for u32 {
    fn parse<'a>(_frame: &Bytes, i: &'a [u8], field: &'static str) -> PResult<'a, u32> {
        be_u32(i).map_err(|_: nom::Err<FieldError<'a>>| {
            nom::Err::Error(FieldError {
                input: i,
                kind: PduErrorKind::Truncated { field },
            })
        })
    }
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        dst.put_u32(*self);
        Ok(())
    }
}

impl Field for COctetString {
    fn parse<'a>(frame: &Bytes, i: &'a [u8], name: &'static str) -> PResult<'a, COctetString> {
        let (rest, value) = c_octets(i, name)?;
        Ok((rest, COctetString(frame.slice_ref(value))))
    }
    fn encoded_len(&self) -> usize {
        self.0.len() + 1
    }
    #[inline(always)]
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        // No NUL check: every constructor guarantees there is none.
        dst.put_slice(&self.0);
        dst.put_u8(0);
        Ok(())
    }
}

/// `short_message` with its `sm_length` prefix (SMPP 3.4 §5.2.21–22).
impl Field for Bytes {
    fn parse<'a>(frame: &Bytes, i: &'a [u8], _name: &'static str) -> PResult<'a, Bytes> {
        let (rest, declared) = octet(i, "sm_length")?;
        let taken: PResult<'a, &'a [u8]> = take(declared).parse(rest);
        match taken {
            Ok((rest, message)) => Ok((rest, frame.slice_ref(message))),
            Err(_) => fail(
                i,
                PduErrorKind::SmLengthOverrun {
                    declared,
                    available: rest.len(),
                },
            ),
        }
    }
    fn encoded_len(&self) -> usize {
        1 + self.len()
    }
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        let len = u8::try_from(self.len()).map_err(|_| EncodeError::ShortMessageTooLong(self.len()))?;
        dst.put_u8(len);
        dst.put_slice(self);
        Ok(())
    }
}

/// One destination of a submit_multi (SMPP 3.4 §5.2.25).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAddress {
    /// `dest_flag` 1: an SME address.
    Sme {
        /// `dest_addr_ton`
        dest_addr_ton: u8,
        /// `dest_addr_npi`
        dest_addr_npi: u8,
        /// `destination_addr`
        destination_addr: COctetString,
    },
    /// `dest_flag` 2: a distribution list held by the SMSC.
    DistributionList {
        /// `dl_name`
        dl_name: COctetString,
    },
}

/// `number_of_dests` followed by that many `dest_address` entries.
impl Field for Vec<DestAddress> {
    fn parse<'a>(frame: &Bytes, i: &'a [u8], _name: &'static str) -> PResult<'a, Self> {
        let (mut i, count) = octet(i, "number_of_dests")?;
        let mut dests = Vec::with_capacity(usize::from(count).min(i.len() / 2));
        for _ in 0..count {
            let (rest, flag) = octet(i, "dest_flag")?;
            let (rest, dest) = match flag {
                1 => {
                    let (rest, dest_addr_ton) = octet(rest, "dest_addr_ton")?;
                    let (rest, dest_addr_npi) = octet(rest, "dest_addr_npi")?;
                    let (rest, destination_addr) = COctetString::parse(frame, rest, "destination_addr")?;
                    (
                        rest,
                        DestAddress::Sme {
                            dest_addr_ton,
                            dest_addr_npi,
                            destination_addr,
                        },
                    )
                }
                2 => {
                    let (rest, dl_name) = COctetString::parse(frame, rest, "dl_name")?;
                    (rest, DestAddress::DistributionList { dl_name })
                }
                other => return fail(i, PduErrorKind::InvalidDestFlag(other)),
            };
            dests.push(dest);
            i = rest;
        }
        Ok((i, dests))
    }
    fn encoded_len(&self) -> usize {
        1 + self
            .iter()
            .map(|d| match d {
                DestAddress::Sme { destination_addr, .. } => 3 + destination_addr.encoded_len(),
                DestAddress::DistributionList { dl_name } => 1 + dl_name.encoded_len(),
            })
            .sum::<usize>()
    }
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        let count = u8::try_from(self.len()).map_err(|_| EncodeError::ListTooLong {
            field: "number_of_dests",
            len: self.len(),
        })?;
        dst.put_u8(count);
        for d in self {
            match d {
                DestAddress::Sme {
                    dest_addr_ton,
                    dest_addr_npi,
                    destination_addr,
                } => {
                    dst.put_slice(&[1, *dest_addr_ton, *dest_addr_npi]);
                    destination_addr.encode(dst, "destination_addr")?;
                }
                DestAddress::DistributionList { dl_name } => {
                    dst.put_u8(2);
                    dl_name.encode(dst, "dl_name")?;
                }
            }
        }
        Ok(())
    }
}

/// One destination a submit_multi could not reach (SMPP 3.4 §4.5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsuccessSme {
    /// `dest_addr_ton`
    pub dest_addr_ton: u8,
    /// `dest_addr_npi`
    pub dest_addr_npi: u8,
    /// `destination_addr`
    pub destination_addr: COctetString,
    /// `error_status_code`: a `command_status` value.
    pub error_status_code: u32,
}

/// `no_unsuccess` followed by that many `unsuccess_sme` entries.
impl Field for Vec<UnsuccessSme> {
    fn parse<'a>(frame: &Bytes, i: &'a [u8], _name: &'static str) -> PResult<'a, Self> {
        let (mut i, count) = octet(i, "no_unsuccess")?;
        let mut smes = Vec::with_capacity(usize::from(count).min(i.len() / 2));
        for _ in 0..count {
            let (rest, dest_addr_ton) = octet(i, "dest_addr_ton")?;
            let (rest, dest_addr_npi) = octet(rest, "dest_addr_npi")?;
            let (rest, destination_addr) = COctetString::parse(frame, rest, "destination_addr")?;
            let (rest, error_status_code) = u32::parse(frame, rest, "error_status_code")?;
            smes.push(UnsuccessSme {
                dest_addr_ton,
                dest_addr_npi,
                destination_addr,
                error_status_code,
            });
            i = rest;
        }
        Ok((i, smes))
    }
    fn encoded_len(&self) -> usize {
        1 + self.iter().map(|s| 6 + s.destination_addr.encoded_len()).sum::<usize>()
    }
    fn encode(&self, dst: &mut BytesMut, _name: &'static str) -> Result<(), EncodeError> {
        let count = u8::try_from(self.len()).map_err(|_| EncodeError::ListTooLong {
            field: "no_unsuccess",
            len: self.len(),
        })?;
        dst.put_u8(count);
        for s in self {
            dst.put_slice(&[s.dest_addr_ton, s.dest_addr_npi]);
            s.destination_addr.encode(dst, "destination_addr")?;
            dst.put_u32(s.error_status_code);
        }
        Ok(())
    }
}
