//! `command_status`: the result code of a response (SMPP 3.4 §5.1.3, SMPP 5.0 §4.7.6).
//!
//! Carriers reuse reserved numbers and add vendor codes (0x400–0x4FF), so the value stays an
//! opaque `u32` on the wire; names exist only for logs, errors and the `pdu` command.

use std::fmt;

/// The `command_status` header field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($($konst:ident = $value:literal,)*) => {
        impl CommandStatus {
            $(#[doc = concat!("`", stringify!($konst), "`")] pub const $konst: CommandStatus = CommandStatus($value);)*

            /// The spec name (`"ESME_RTHROTTLED"`), or `None` for a value the specs do not define.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($konst)),)*
                    _ => None,
                }
            }

            /// The status whose spec name is `name` (3.4 names; 5.0 aliases for 0xC0–0xC4 too).
            pub fn from_name(name: &str) -> Option<CommandStatus> {
                match name {
                    $(stringify!($konst) => Some(CommandStatus($value)),)*
                    "ESME_RINVTLVSTREAM" => Some(CommandStatus(0xC0)),
                    "ESME_RTLVNOTALLWD" => Some(CommandStatus(0xC1)),
                    "ESME_RINVTLVLEN" => Some(CommandStatus(0xC2)),
                    "ESME_RMISSINGTLV" => Some(CommandStatus(0xC3)),
                    "ESME_RINVTLVVAL" => Some(CommandStatus(0xC4)),
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    ESME_ROK = 0x00,
    ESME_RINVMSGLEN = 0x01,
    ESME_RINVCMDLEN = 0x02,
    ESME_RINVCMDID = 0x03,
    ESME_RINVBNDSTS = 0x04,
    ESME_RALYBND = 0x05,
    ESME_RINVPRTFLG = 0x06,
    ESME_RINVREGDLVFLG = 0x07,
    ESME_RSYSERR = 0x08,
    ESME_RINVSRCADR = 0x0A,
    ESME_RINVDSTADR = 0x0B,
    ESME_RINVMSGID = 0x0C,
    ESME_RBINDFAIL = 0x0D,
    ESME_RINVPASWD = 0x0E,
    ESME_RINVSYSID = 0x0F,
    ESME_RCANCELFAIL = 0x11,
    ESME_RREPLACEFAIL = 0x13,
    ESME_RMSGQFUL = 0x14,
    ESME_RINVSERTYP = 0x15,
    ESME_RINVNUMDESTS = 0x33,
    ESME_RINVDLNAME = 0x34,
    ESME_RINVDESTFLAG = 0x40,
    ESME_RINVSUBREP = 0x42,
    ESME_RINVESMCLASS = 0x43,
    ESME_RCNTSUBDL = 0x44,
    ESME_RSUBMITFAIL = 0x45,
    ESME_RINVSRCTON = 0x48,
    ESME_RINVSRCNPI = 0x49,
    ESME_RINVDSTTON = 0x50,
    ESME_RINVDSTNPI = 0x51,
    ESME_RINVSYSTYP = 0x53,
    ESME_RINVREPFLAG = 0x54,
    ESME_RINVNUMMSGS = 0x55,
    ESME_RTHROTTLED = 0x58,
    ESME_RINVSCHED = 0x61,
    ESME_RINVEXPIRY = 0x62,
    ESME_RINVDFTMSGID = 0x63,
    ESME_RX_T_APPN = 0x64,
    ESME_RX_P_APPN = 0x65,
    ESME_RX_R_APPN = 0x66,
    ESME_RQUERYFAIL = 0x67,
    ESME_RINVOPTPARSTREAM = 0xC0,
    ESME_ROPTPARNOTALLWD = 0xC1,
    ESME_RINVPARLEN = 0xC2,
    ESME_RMISSINGOPTPARAM = 0xC3,
    ESME_RINVOPTPARAMVAL = 0xC4,
    ESME_RDELIVERYFAILURE = 0xFE,
    ESME_RUNKNOWNERR = 0xFF,
    ESME_RSERTYPUNAUTH = 0x100,
    ESME_RPROHIBITED = 0x101,
    ESME_RSERTYPUNAVAIL = 0x102,
    ESME_RSERTYPDENIED = 0x103,
    ESME_RINVDCS = 0x104,
    ESME_RINVSRCADDRSUBUNIT = 0x105,
    ESME_RINVDSTADDRSUBUNIT = 0x106,
    ESME_RINVBCASTFREQINT = 0x107,
    ESME_RINVBCASTALIAS_NAME = 0x108,
    ESME_RINVBCASTAREAFMT = 0x109,
    ESME_RINVNUMBCAST_AREAS = 0x10A,
    ESME_RINVBCASTCNTTYPE = 0x10B,
    ESME_RINVBCASTMSGCLASS = 0x10C,
    ESME_RBCASTFAIL = 0x10D,
    ESME_RBCASTQUERYFAIL = 0x10E,
    ESME_RBCASTCANCELFAIL = 0x10F,
    ESME_RINVBCAST_REP = 0x110,
    ESME_RINVBCASTSRVGRP = 0x111,
    ESME_RINVBCASTCHANIND = 0x112,
}

impl CommandStatus {
    /// `true` for `ESME_ROK`.
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:08x}", self.0),
        }
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
