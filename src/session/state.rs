//! The SMPP session state machine from the MC's side (SMPP 3.4 §2.3, 5.0 §2.4; `smpp-spec.md` §7):
//!
//! ```text
//!  OPEN ──bind_transmitter──▶ BOUND_TX ─┐
//!   │  ──bind_receiver────▶ BOUND_RX ─┼──unbind──▶ UNBOUND ──▶ CLOSED
//!   │  ──bind_transceiver─▶ BOUND_TRX ┘
//!   └── no bind within bind_timeout ──▶ CLOSED
//! ```
//!
//! [`SessionState::check_request`] is the table of which requests an ESME may send in which
//! state, and with which status a request in the wrong state is refused.

use crate::pdu::{CommandId, CommandStatus};

/// Where a client session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Connected, not bound yet.
    Open,
    /// Bound as transmitter: may submit, gets no deliver_sm.
    BoundTx,
    /// Bound as receiver: gets deliver_sm, may not submit.
    BoundRx,
    /// Bound as transceiver: both.
    BoundTrx,
    /// unbind sent or received; waiting to close.
    Unbound,
}

impl SessionState {
    /// `true` when bound in any mode.
    pub const fn is_bound(self) -> bool {
        matches!(
            self,
            SessionState::BoundTx | SessionState::BoundRx | SessionState::BoundTrx
        )
    }

    /// May submit (transmitter or transceiver).
    pub const fn can_transmit(self) -> bool {
        matches!(self, SessionState::BoundTx | SessionState::BoundTrx)
    }

    /// May be sent deliver_sm (receiver or transceiver).
    pub const fn can_receive(self) -> bool {
        matches!(self, SessionState::BoundRx | SessionState::BoundTrx)
    }

    /// Whether an ESME may send request `id` now; the refusal status if not.
    pub const fn check_request(self, id: CommandId) -> Result<(), CommandStatus> {
        match id {
            CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER => match self {
                SessionState::Open => Ok(()),
                _ => Err(CommandStatus::ESME_RALYBND),
            },
            CommandId::ENQUIRE_LINK => Ok(()),
            CommandId::UNBIND => {
                if self.is_bound() {
                    Ok(())
                } else {
                    Err(CommandStatus::ESME_RINVBNDSTS)
                }
            }
            CommandId::SUBMIT_SM
            | CommandId::SUBMIT_MULTI
            | CommandId::DATA_SM
            | CommandId::QUERY_SM
            | CommandId::CANCEL_SM
            | CommandId::REPLACE_SM
            | CommandId::BROADCAST_SM
            | CommandId::QUERY_BROADCAST_SM
            | CommandId::CANCEL_BROADCAST_SM => {
                if self.can_transmit() {
                    Ok(())
                } else {
                    Err(CommandStatus::ESME_RINVBNDSTS)
                }
            }
            // MC-to-ESME requests (deliver_sm, outbind, alert_notification) from an ESME.
            _ => Err(CommandStatus::ESME_RINVBNDSTS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_table() {
        use SessionState::*;
        assert_eq!(
            Open.check_request(CommandId::SUBMIT_SM),
            Err(CommandStatus::ESME_RINVBNDSTS)
        );
        assert_eq!(Open.check_request(CommandId::BIND_TRANSCEIVER), Ok(()));
        assert_eq!(
            BoundTrx.check_request(CommandId::BIND_TRANSMITTER),
            Err(CommandStatus::ESME_RALYBND)
        );
        assert_eq!(
            BoundRx.check_request(CommandId::SUBMIT_SM),
            Err(CommandStatus::ESME_RINVBNDSTS)
        );
        assert_eq!(BoundTx.check_request(CommandId::SUBMIT_SM), Ok(()));
        assert_eq!(
            BoundTx.check_request(CommandId::DELIVER_SM),
            Err(CommandStatus::ESME_RINVBNDSTS)
        );
        assert_eq!(Open.check_request(CommandId::ENQUIRE_LINK), Ok(()));
        assert!(BoundTrx.can_receive() && BoundTrx.can_transmit() && !BoundTx.can_receive());
    }
}
