//! What can go wrong with bytes from the wire, typed by scope (SMPP 3.4 §5.1.3, §3 of
//! `smpp-spec.md`):
//!
//! - [`PduError`]: one well-framed PDU whose body is malformed or whose `command_id` is unknown.
//!   The session answers that one `sequence_number` ([`PduError::reply`]) and goes on.
//! - [`FrameError`]: the stream itself is unusable (`command_length` out of range, I/O). The session
//!   answers `generic_nack` when it can ([`FrameError::reply`]) and closes; there is no resync.
//!
//! [`PduErrorKind::status`] is the one place that maps a malformed body to a `command_status`.

use super::{Body, CommandId, CommandStatus, Pdu};
use std::io;

/// What is wrong inside a well-framed PDU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PduErrorKind {
    /// Neither SMPP 3.4 nor 5.0 defines this `command_id`.
    #[error("unknown command_id 0x{0:08x}")]
    UnknownCommandId(u32),
    /// A C-Octet String has no NUL before the end of the PDU.
    #[error("{field}: no NUL terminator before the end of the PDU")]
    MissingNul {
        /// The mandatory field's spec name.
        field: &'static str,
    },
    /// The PDU ends before this mandatory field.
    #[error("{field}: the PDU ends before this field")]
    Truncated {
        /// The mandatory field's spec name.
        field: &'static str,
    },
    /// `sm_length` (or a list count) promises more octets than the PDU holds.
    #[error("sm_length {declared} but only {available} octets remain")]
    SmLengthOverrun {
        /// The declared length.
        declared: u8,
        /// Octets left in the PDU.
        available: usize,
    },
    /// Fewer than 4 octets left where a TLV header should start.
    #[error("TLV header cut short: {available} octets left after the mandatory fields")]
    TlvHeaderTruncated {
        /// Octets left in the PDU.
        available: usize,
    },
    /// A TLV's length runs past the end of the PDU.
    #[error("TLV 0x{tag:04x} declares length {declared} but only {available} octets remain")]
    TlvLengthOverrun {
        /// The TLV tag.
        tag: u16,
        /// The declared value length.
        declared: u16,
        /// Octets left in the PDU after the TLV header.
        available: usize,
    },
    /// A submit_multi `dest_flag` other than 1 (SME address) or 2 (distribution list).
    #[error("invalid dest_flag {0} (1 = SME address, 2 = distribution list)")]
    InvalidDestFlag(u8),
}

impl PduErrorKind {
    /// The `command_status` the answer to this PDU carries.
    pub const fn status(&self) -> CommandStatus {
        match self {
            PduErrorKind::UnknownCommandId(_) => CommandStatus::ESME_RINVCMDID,
            PduErrorKind::MissingNul { .. } | PduErrorKind::Truncated { .. } | PduErrorKind::SmLengthOverrun { .. } => {
                CommandStatus::ESME_RINVMSGLEN
            }
            PduErrorKind::TlvHeaderTruncated { .. } => CommandStatus::ESME_RINVOPTPARSTREAM,
            PduErrorKind::TlvLengthOverrun { .. } => CommandStatus::ESME_RINVPARLEN,
            PduErrorKind::InvalidDestFlag(_) => CommandStatus::ESME_RINVDESTFLAG,
        }
    }
}

/// A well-framed PDU that could not be parsed. The header was readable, so the answer can be
/// addressed to its `sequence_number`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{command_id} seq {sequence_number}: {kind} (at byte {offset})")]
pub struct PduError {
    /// The PDU's `command_id`.
    pub command_id: CommandId,
    /// The PDU's `sequence_number`.
    pub sequence_number: u32,
    /// Offset inside the PDU (0 = first octet of `command_length`) where the problem starts.
    pub offset: usize,
    /// What is wrong.
    pub kind: PduErrorKind,
}

impl PduError {
    /// The `command_status` of the answer.
    pub const fn status(&self) -> CommandStatus {
        self.kind.status()
    }

    /// The PDU to send back: the request's own response with the error status, or
    /// `generic_nack` when the id is unknown or has no response type. `None` for a malformed
    /// response or generic_nack: those are never answered (SMPP 3.4 §3.3).
    pub fn reply(&self) -> Option<Pdu> {
        if self.command_id.is_response() {
            return None;
        }
        Some(Pdu::error_response_to(
            self.command_id,
            self.sequence_number,
            self.status(),
        ))
    }
}

/// The byte stream cannot be cut into PDUs any more; the session must close.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// `command_length` below 16 or above the configured maximum.
    #[error("command_length {command_length} outside 16..={max}")]
    InvalidLength {
        /// The declared length.
        command_length: u32,
        /// The configured maximum.
        max: usize,
        /// The header's `sequence_number`, echoed in the `generic_nack`.
        sequence_number: u32,
    },
    /// A PDU given to the encoder cannot be put on the wire.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// `generic_nack ESME_RINVCMDLEN` for a bad length; nothing for I/O (the peer is gone).
    pub fn reply(&self) -> Option<Pdu> {
        match self {
            FrameError::InvalidLength { sequence_number, .. } => Some(
                Pdu::new(Body::GenericNack)
                    .with_status(CommandStatus::ESME_RINVCMDLEN)
                    .with_sequence_number(*sequence_number),
            ),
            FrameError::Encode(_) | FrameError::Io(_) => None,
        }
    }
}

/// A PDU value that the wire format cannot carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `short_message` is limited to 255 octets by its 1-octet `sm_length`.
    #[error("short_message of {0} octets: sm_length is one octet (max 255); use message_payload")]
    ShortMessageTooLong(usize),
    /// A list count (`number_of_dests`, `no_unsuccess`) is one octet.
    #[error("{field}: {len} entries, at most 255")]
    ListTooLong {
        /// The count field's name.
        field: &'static str,
        /// The list length.
        len: usize,
    },
    /// A C-Octet String may not contain NUL.
    #[error("{0}: contains a NUL octet")]
    NulInString(&'static str),
}
