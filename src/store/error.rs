//! What can go wrong with a store, by cause. Every caller answers the same way whatever the
//! cause (the client gets ESME_RSYSERR, the SMSC ESME_RX_T_APPN, and nothing is acknowledged
//! without custody); the cause is for the log, `smpp-proxy` messages and tests.

use std::path::PathBuf;
use std::sync::Arc;

/// A store operation failed.
///
/// `Clone` because one failed group commit fails every write in it, and each of their tickets
/// gets the error; the sources are shared behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The embedded database (redb) failed: I/O, a full disk, a damaged file.
    #[error("store: {0}")]
    Redb(Arc<redb::Error>),
    /// The store's directory could not be created or read.
    #[error("store {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: Arc<std::io::Error>,
    },
    /// The shared store (Redis) failed or could not be reached in time.
    #[error("shared store: {0}")]
    Redis(Arc<redis::RedisError>),
    /// The shared store is known to be unreachable (since the last failed command or
    /// heartbeat): a new operation that can be refused is refused now, not held.
    #[error("shared store unreachable")]
    Down,
    /// The shared store answered something this version does not understand.
    #[error("shared store: unexpected answer to {0}")]
    Unexpected(&'static str),
    /// Another process has the store open: two proxies must not share one.
    #[error("another smpp-proxy holds {}; stop it or use `smpp-proxy status`", .0.display())]
    Locked(PathBuf),
    /// The store's file is empty or damaged: refused at start rather than replaced.
    #[error(
        "store file {} is damaged: {why}. It may hold receipts in custody: keep a copy, then \
         `smpp-proxy store reset --config FILE` moves it aside and the next start begins empty",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Something stored cannot be read back (written by an incompatible version, or damaged).
    #[error("store: corrupt {0}")]
    Corrupt(String),
    /// A PDU could not be encoded to be stored (it will not fit the wire format).
    #[error("store: PDU not encodable: {0}")]
    Encode(#[from] crate::pdu::EncodeError),
    /// The writer thread is gone: the store is closing, or the thread could not start.
    #[error("store writer stopped")]
    WriterStopped,
    /// A write failed at the file; the store refuses work until it has opened it again.
    #[error("store failed: refusing work until it opens again")]
    Failed,
    /// A [`Commit`](super::Commit) was awaited again after it resolved.
    #[error("store: commit ticket used twice")]
    TicketUsed,
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> StoreError {
        StoreError::Redis(Arc::new(e))
    }
}

/// redb reports each kind of operation with its own error type; every one of them is a
/// [`StoreError::Redb`], so `?` works on all of them.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Redb(Arc::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
