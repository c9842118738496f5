//! The durable store's redb tables, shared by its readers ([`durable`](super::durable)) and its
//! writer ([`writer`](super::writer)). Keys are `name \0 rest`, so one client's or upstream's
//! entries are one range:
//! - `corr_up`: `upstream \0 canonical upstream id` → encoded correlation (stamped with the log
//!   row it is as new as);
//! - `corr_client`: `client \0 client id` → the `corr_up` key;
//! - `log`: row number → the correlation writes of one group commit not yet in the tables;
//! - `outbox`: `client \0 seq (u64 BE)` → the PDU to deliver, oldest first;
//! - `meta`: `outbox_seq` → the last outbox sequence number.

use redb::TableDefinition;

pub(super) const CORR_UP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("corr_up");
pub(super) const CORR_CLIENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("corr_client");
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(super) const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
