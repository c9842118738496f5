//! smpp-proxy: a high-availability SMPP proxy.
//!
//! # Layout
//!
//! - [`pdu`]: the wire. Frames cut by `command_length` ([`pdu::SmppCodec`]), parsed with nom into
//!   [`pdu::Pdu`] (fields share the frame's bytes), encoded back byte for byte; errors typed by
//!   scope (one PDU vs the whole stream) and mapped to the SMPP status to answer with.
//! - [`receipt`]: delivery receipts: reading them out of deliver_sm / data_sm (text and TLVs,
//!   tolerant of what real SMSCs send), rewriting their message id, and matching ids across
//!   the hex/decimal/zero-padding variants SMSCs use.
//! - [`hex`]: hex text for octets, used by the `pdu` command and fixtures.
//!
//! The binary (`src/main.rs`, `src/cli/`) is a thin layer over these.

#![warn(missing_docs)]

pub mod account;
pub mod admin;
pub mod bench;
pub mod config;
pub mod context;
pub mod esme;
pub mod hex;
pub mod ids;
pub mod messages;
pub mod pdu;
pub mod proxy;
pub mod receipt;
pub mod routing;
pub mod server;
pub mod session;
pub mod sim;
pub mod store;
pub mod upstream;
