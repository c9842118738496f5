//! The mandatory body of every SMPP 3.4 and 5.0 PDU, field by field in wire order, named as in
//! the specs (SMPP 3.4 §4, SMPP 5.0 §4; `smpp-spec.md` §2).
//!
//! Each struct is declared once through `body!`, which derives its parser, encoder and JSON
//! form from the field list, so the three can never disagree on order.
//!
//! Responses hold `Option<T>`: `None` is a response that came with no body at all. SMSCs send
//! error responses without body and success responses without their `message_id`
//! (`smpp-spec.md` §3), and both must re-encode byte for byte.

use super::error::EncodeError;
use super::fields::{COctetString, DestAddress, Field, PResult, UnsuccessSme};
use super::json::{JsonField, JsonObject};
use super::CommandId;
use bytes::{Bytes, BytesMut};

macro_rules! body {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* #[doc = concat!("`", stringify!($field), "`")] pub $field: $ty,)*
        }

        impl $name {
            pub(crate) fn parse<'a>(frame: &Bytes, i: &'a [u8]) -> PResult<'a, $name> {
                $(let (i, $field) = <$ty as Field>::parse(frame, i, stringify!($field))?;)*
                Ok((i, $name { $($field,)* }))
            }

            pub(crate) fn encoded_len(&self) -> usize {
                0 $(+ Field::encoded_len(&self.$field))*
            }

            pub(crate) fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
                $(Field::encode(&self.$field, dst, stringify!($field))?;)*
                Ok(())
            }

            pub(crate) fn to_json(&self, out: &mut JsonObject) {
                $(JsonField::to_json(&self.$field, stringify!($field), out);)*
            }

            pub(crate) fn from_json(obj: &JsonObject, problems: &mut Vec<String>) -> $name {
                $name { $($field: JsonField::from_json(obj, stringify!($field), problems),)* }
            }

            /// The JSON keys this body accepts.
            pub(crate) const KEYS: &'static [&'static str] = &[$(stringify!($field),)*];
        }
    };
}

body! {
    /// bind_transmitter / bind_receiver / bind_transceiver (SMPP 3.4 §4.1.1).
    Bind {
        system_id: COctetString,
        password: COctetString,
        system_type: COctetString,
        interface_version: u8,
        addr_ton: u8,
        addr_npi: u8,
        address_range: COctetString,
    }
}

body! {
    /// bind_*_resp (SMPP 3.4 §4.1.2); `sc_interface_version` travels as a TLV.
    BindResp { system_id: COctetString, }
}

body! {
    /// outbind (SMPP 3.4 §4.1.7).
    Outbind { system_id: COctetString, password: COctetString, }
}

body! {
    /// A response whose body is one `message_id`: submit_sm_resp, deliver_sm_resp,
    /// data_sm_resp, broadcast_sm_resp, query_broadcast_sm_resp.
    MessageIdResp { message_id: COctetString, }
}

body! {
    /// submit_sm (SMPP 3.4 §4.4.1), and deliver_sm, whose layout is identical (§4.6.1).
    SubmitSm {
        service_type: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        dest_addr_ton: u8,
        dest_addr_npi: u8,
        destination_addr: COctetString,
        esm_class: u8,
        protocol_id: u8,
        priority_flag: u8,
        schedule_delivery_time: COctetString,
        validity_period: COctetString,
        registered_delivery: u8,
        replace_if_present_flag: u8,
        data_coding: u8,
        sm_default_msg_id: u8,
        /// `short_message`, preceded on the wire by `sm_length`.
        short_message: Bytes,
    }
}

/// deliver_sm has the submit_sm layout (SMPP 3.4 §4.6.1).
pub type DeliverSm = SubmitSm;

impl SubmitSm {
    /// A plain text message between two international numbers (TON 1, NPI 1), everything else
    /// default; `text` is cut to the 255 octets `short_message` can hold.
    pub fn text(source: &str, destination: &str, text: &[u8]) -> SubmitSm {
        SubmitSm {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: COctetString::from_text(source),
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: COctetString::from_text(destination),
            short_message: Bytes::copy_from_slice(&text[..text.len().min(255)]),
            ..SubmitSm::default()
        }
    }
}

body! {
    /// submit_multi (SMPP 3.4 §4.5.1).
    SubmitMulti {
        service_type: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        /// `dest_address` entries, preceded on the wire by `number_of_dests`.
        dest_addresses: Vec<DestAddress>,
        esm_class: u8,
        protocol_id: u8,
        priority_flag: u8,
        schedule_delivery_time: COctetString,
        validity_period: COctetString,
        registered_delivery: u8,
        replace_if_present_flag: u8,
        data_coding: u8,
        sm_default_msg_id: u8,
        /// `short_message`, preceded on the wire by `sm_length`.
        short_message: Bytes,
    }
}

body! {
    /// submit_multi_resp (SMPP 3.4 §4.5.2).
    SubmitMultiResp {
        message_id: COctetString,
        /// `unsuccess_sme` entries, preceded on the wire by `no_unsuccess`.
        unsuccess_smes: Vec<UnsuccessSme>,
    }
}

body! {
    /// data_sm (SMPP 3.4 §4.7.1); the text travels in the message_payload TLV.
    DataSm {
        service_type: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        dest_addr_ton: u8,
        dest_addr_npi: u8,
        destination_addr: COctetString,
        esm_class: u8,
        registered_delivery: u8,
        data_coding: u8,
    }
}

body! {
    /// query_sm (SMPP 3.4 §4.8.1).
    QuerySm {
        message_id: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
    }
}

body! {
    /// query_sm_resp (SMPP 3.4 §4.8.2).
    QuerySmResp {
        message_id: COctetString,
        final_date: COctetString,
        message_state: u8,
        error_code: u8,
    }
}

body! {
    /// cancel_sm (SMPP 3.4 §4.9.1).
    CancelSm {
        service_type: COctetString,
        message_id: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        dest_addr_ton: u8,
        dest_addr_npi: u8,
        destination_addr: COctetString,
    }
}

body! {
    /// replace_sm (SMPP 3.4 §4.10.1).
    ReplaceSm {
        message_id: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        schedule_delivery_time: COctetString,
        validity_period: COctetString,
        registered_delivery: u8,
        sm_default_msg_id: u8,
        /// `short_message`, preceded on the wire by `sm_length`.
        short_message: Bytes,
    }
}

body! {
    /// alert_notification (SMPP 3.4 §4.12.1).
    AlertNotification {
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        esme_addr_ton: u8,
        esme_addr_npi: u8,
        esme_addr: COctetString,
    }
}

body! {
    /// broadcast_sm (SMPP 5.0 §4.4.1); its mandatory TLVs travel in the PDU's TLVs.
    BroadcastSm {
        service_type: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
        message_id: COctetString,
        priority_flag: u8,
        schedule_delivery_time: COctetString,
        validity_period: COctetString,
        replace_if_present_flag: u8,
        data_coding: u8,
        sm_default_msg_id: u8,
    }
}

body! {
    /// query_broadcast_sm (SMPP 5.0 §4.4.3).
    QueryBroadcastSm {
        message_id: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
    }
}

body! {
    /// cancel_broadcast_sm (SMPP 5.0 §4.4.2).
    CancelBroadcastSm {
        service_type: COctetString,
        message_id: COctetString,
        source_addr_ton: u8,
        source_addr_npi: u8,
        source_addr: COctetString,
    }
}

macro_rules! bodies {
    (@parse none, $frame:ident, $i:ident, $v:ident) => { Ok(($i, Body::$v)) };
    (@parse req $t:ident, $frame:ident, $i:ident, $v:ident) => {
        $t::parse($frame, $i).map(|(i, b)| (i, Body::$v(b)))
    };
    (@parse resp $t:ident, $frame:ident, $i:ident, $v:ident) => {{
        if $i.is_empty() {
            Ok(($i, Body::$v(None)))
        } else {
            $t::parse($frame, $i).map(|(i, b)| (i, Body::$v(Some(b))))
        }
    }};

    ($($(#[$meta:meta])* $variant:ident = $id:ident, $kind:ident $($t:ident)?;)*) => {
        /// The mandatory part of a PDU; the variant decides the `command_id`.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Body {
            $($(#[$meta])* $variant $( (bodies!(@wrap $kind $t)) )?,)*
        }

        impl Body {
            /// The `command_id` this body is sent with.
            pub const fn command_id(&self) -> CommandId {
                match self {
                    $(Body::$variant { .. } => CommandId::$id,)*
                }
            }

            /// Parses the body of a PDU with `command_id` from `i` (a suffix of `frame`);
            /// `None` when the id is unknown.
            pub(crate) fn parse<'a>(id: CommandId, frame: &Bytes, i: &'a [u8]) -> Option<PResult<'a, Body>> {
                Some(match id {
                    $(CommandId::$id => bodies!(@parse $kind $($t)?, frame, i, $variant),)*
                    _ => return None,
                })
            }

            pub(crate) fn encoded_len(&self) -> usize {
                match self {
                    $(bodies!(@pat $kind $variant b) => bodies!(@len $kind b),)*
                }
            }

            pub(crate) fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
                match self {
                    $(bodies!(@pat $kind $variant b) => bodies!(@enc $kind b, dst),)*
                }
            }

            /// The body as a JSON object of its fields; `None` when there is no body.
            pub(crate) fn to_json(&self) -> Option<JsonObject> {
                match self {
                    $(bodies!(@pat $kind $variant b) => bodies!(@json $kind b),)*
                }
            }

            /// Builds the body for `id` from JSON (`None` = no body); problems are collected.
            pub(crate) fn from_json(id: CommandId, obj: Option<&JsonObject>, problems: &mut Vec<String>) -> Option<Body> {
                Some(match id {
                    $(CommandId::$id => bodies!(@from $kind $($t)?, obj, problems, $variant),)*
                    _ => return None,
                })
            }

            /// The JSON keys accepted for `id`'s body.
            pub(crate) fn json_keys(id: CommandId) -> &'static [&'static str] {
                match id {
                    $(CommandId::$id => bodies!(@keys $kind $($t)?),)*
                    _ => &[],
                }
            }
        }
    };

    (@wrap req $t:ident) => { $t };
    (@wrap resp $t:ident) => { Option<$t> };
    (@pat none $v:ident $b:ident) => { Body::$v };
    (@pat req $v:ident $b:ident) => { Body::$v($b) };
    (@pat resp $v:ident $b:ident) => { Body::$v($b) };
    (@len none $b:ident) => { 0 };
    (@len req $b:ident) => { $b.encoded_len() };
    (@len resp $b:ident) => { $b.as_ref().map_or(0, |b| b.encoded_len()) };
    (@enc none $b:ident, $dst:ident) => { Ok(()) };
    (@enc req $b:ident, $dst:ident) => { $b.encode($dst) };
    (@enc resp $b:ident, $dst:ident) => { $b.as_ref().map_or(Ok(()), |b| b.encode($dst)) };
    (@json none $b:ident) => { None };
    (@json req $b:ident) => {{ let mut o = JsonObject::new(); $b.to_json(&mut o); Some(o) }};
    (@json resp $b:ident) => { $b.as_ref().map(|b| { let mut o = JsonObject::new(); b.to_json(&mut o); o }) };
    (@from none, $obj:ident, $p:ident, $v:ident) => { Body::$v };
    (@from req $t:ident, $obj:ident, $p:ident, $v:ident) => {{
        let empty = JsonObject::new();
        Body::$v($t::from_json($obj.unwrap_or(&empty), $p))
    }};
    (@from resp $t:ident, $obj:ident, $p:ident, $v:ident) => { Body::$v($obj.map(|o| $t::from_json(o, $p))) };
    (@keys none) => { &[] };
    (@keys req $t:ident) => { $t::KEYS };
    (@keys resp $t:ident) => { $t::KEYS };
}

bodies! {
    /// generic_nack: header only.
    GenericNack = GENERIC_NACK, none;
    /// bind_receiver
    BindReceiver = BIND_RECEIVER, req Bind;
    /// bind_receiver_resp
    BindReceiverResp = BIND_RECEIVER_RESP, resp BindResp;
    /// bind_transmitter
    BindTransmitter = BIND_TRANSMITTER, req Bind;
    /// bind_transmitter_resp
    BindTransmitterResp = BIND_TRANSMITTER_RESP, resp BindResp;
    /// bind_transceiver
    BindTransceiver = BIND_TRANSCEIVER, req Bind;
    /// bind_transceiver_resp
    BindTransceiverResp = BIND_TRANSCEIVER_RESP, resp BindResp;
    /// outbind
    Outbind = OUTBIND, req Outbind;
    /// unbind
    Unbind = UNBIND, none;
    /// unbind_resp
    UnbindResp = UNBIND_RESP, none;
    /// enquire_link
    EnquireLink = ENQUIRE_LINK, none;
    /// enquire_link_resp
    EnquireLinkResp = ENQUIRE_LINK_RESP, none;
    /// submit_sm
    SubmitSm = SUBMIT_SM, req SubmitSm;
    /// submit_sm_resp
    SubmitSmResp = SUBMIT_SM_RESP, resp MessageIdResp;
    /// submit_multi
    SubmitMulti = SUBMIT_MULTI, req SubmitMulti;
    /// submit_multi_resp
    SubmitMultiResp = SUBMIT_MULTI_RESP, resp SubmitMultiResp;
    /// deliver_sm
    DeliverSm = DELIVER_SM, req SubmitSm;
    /// deliver_sm_resp
    DeliverSmResp = DELIVER_SM_RESP, resp MessageIdResp;
    /// data_sm
    DataSm = DATA_SM, req DataSm;
    /// data_sm_resp
    DataSmResp = DATA_SM_RESP, resp MessageIdResp;
    /// query_sm
    QuerySm = QUERY_SM, req QuerySm;
    /// query_sm_resp
    QuerySmResp = QUERY_SM_RESP, resp QuerySmResp;
    /// cancel_sm
    CancelSm = CANCEL_SM, req CancelSm;
    /// cancel_sm_resp
    CancelSmResp = CANCEL_SM_RESP, none;
    /// replace_sm
    ReplaceSm = REPLACE_SM, req ReplaceSm;
    /// replace_sm_resp
    ReplaceSmResp = REPLACE_SM_RESP, none;
    /// alert_notification
    AlertNotification = ALERT_NOTIFICATION, req AlertNotification;
    /// broadcast_sm (5.0)
    BroadcastSm = BROADCAST_SM, req BroadcastSm;
    /// broadcast_sm_resp (5.0)
    BroadcastSmResp = BROADCAST_SM_RESP, resp MessageIdResp;
    /// query_broadcast_sm (5.0)
    QueryBroadcastSm = QUERY_BROADCAST_SM, req QueryBroadcastSm;
    /// query_broadcast_sm_resp (5.0); its mandatory TLVs travel in the PDU's TLVs.
    QueryBroadcastSmResp = QUERY_BROADCAST_SM_RESP, resp MessageIdResp;
    /// cancel_broadcast_sm (5.0)
    CancelBroadcastSm = CANCEL_BROADCAST_SM, req CancelBroadcastSm;
    /// cancel_broadcast_sm_resp (5.0)
    CancelBroadcastSmResp = CANCEL_BROADCAST_SM_RESP, none;
}

impl Body {
    /// A response body with no mandatory fields (`None` bodies, header-only responses): what an
    /// error response carries. `None` if `id` is not a response id.
    pub fn empty_response(id: CommandId) -> Option<Body> {
        if !id.is_response() {
            return None;
        }
        let mut problems = Vec::new();
        Body::from_json(id, None, &mut problems)
    }
}
