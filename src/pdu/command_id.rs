//! `command_id`: which PDU a frame holds (SMPP 3.4 §5.1.2.1, SMPP 5.0 §4.7.5).
//!
//! Kept as an opaque `u32` newtype so an id this crate does not know still travels through
//! logs and errors with its value; [`CommandId::name`] gives the spec name for the known ones.

use std::fmt;

/// The `command_id` header field. Bit 31 set marks a response.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u32);

macro_rules! command_ids {
    ($($konst:ident = $value:literal => $name:literal,)*) => {
        impl CommandId {
            $(#[doc = concat!("`", $name, "`")] pub const $konst: CommandId = CommandId($value);)*

            /// The spec name (`"submit_sm"`), or `None` for an id neither 3.4 nor 5.0 defines.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($name),)*
                    _ => None,
                }
            }

            /// The id whose spec name is `name`.
            pub fn from_name(name: &str) -> Option<CommandId> {
                match name {
                    $($name => Some(CommandId($value)),)*
                    _ => None,
                }
            }
        }
    };
}

command_ids! {
    GENERIC_NACK = 0x8000_0000 => "generic_nack",
    BIND_RECEIVER = 0x0000_0001 => "bind_receiver",
    BIND_RECEIVER_RESP = 0x8000_0001 => "bind_receiver_resp",
    BIND_TRANSMITTER = 0x0000_0002 => "bind_transmitter",
    BIND_TRANSMITTER_RESP = 0x8000_0002 => "bind_transmitter_resp",
    QUERY_SM = 0x0000_0003 => "query_sm",
    QUERY_SM_RESP = 0x8000_0003 => "query_sm_resp",
    SUBMIT_SM = 0x0000_0004 => "submit_sm",
    SUBMIT_SM_RESP = 0x8000_0004 => "submit_sm_resp",
    DELIVER_SM = 0x0000_0005 => "deliver_sm",
    DELIVER_SM_RESP = 0x8000_0005 => "deliver_sm_resp",
    UNBIND = 0x0000_0006 => "unbind",
    UNBIND_RESP = 0x8000_0006 => "unbind_resp",
    REPLACE_SM = 0x0000_0007 => "replace_sm",
    REPLACE_SM_RESP = 0x8000_0007 => "replace_sm_resp",
    CANCEL_SM = 0x0000_0008 => "cancel_sm",
    CANCEL_SM_RESP = 0x8000_0008 => "cancel_sm_resp",
    BIND_TRANSCEIVER = 0x0000_0009 => "bind_transceiver",
    BIND_TRANSCEIVER_RESP = 0x8000_0009 => "bind_transceiver_resp",
    OUTBIND = 0x0000_000B => "outbind",
    ENQUIRE_LINK = 0x0000_0015 => "enquire_link",
    ENQUIRE_LINK_RESP = 0x8000_0015 => "enquire_link_resp",
    SUBMIT_MULTI = 0x0000_0021 => "submit_multi",
    SUBMIT_MULTI_RESP = 0x8000_0021 => "submit_multi_resp",
    ALERT_NOTIFICATION = 0x0000_0102 => "alert_notification",
    DATA_SM = 0x0000_0103 => "data_sm",
    DATA_SM_RESP = 0x8000_0103 => "data_sm_resp",
    BROADCAST_SM = 0x0000_0111 => "broadcast_sm",
    BROADCAST_SM_RESP = 0x8000_0111 => "broadcast_sm_resp",
    QUERY_BROADCAST_SM = 0x0000_0112 => "query_broadcast_sm",
    QUERY_BROADCAST_SM_RESP = 0x8000_0112 => "query_broadcast_sm_resp",
    CANCEL_BROADCAST_SM = 0x0000_0113 => "cancel_broadcast_sm",
    CANCEL_BROADCAST_SM_RESP = 0x8000_0113 => "cancel_broadcast_sm_resp",
}

impl CommandId {
    /// Responses have bit 31 set.
    pub const fn is_response(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }

    /// The response id for a request id (`id | 0x80000000`); `None` for the PDUs that
    /// have no response (outbind, alert_notification, generic_nack and responses).
    pub const fn response(self) -> Option<CommandId> {
        match self {
            CommandId::OUTBIND | CommandId::ALERT_NOTIFICATION => None,
            id if id.is_response() => None,
            id => Some(CommandId(id.0 | 0x8000_0000)),
        }
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown(0x{:08x})", self.0),
        }
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
