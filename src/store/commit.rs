//! The ticket a store write returns: it resolves once the write is durable (or failed), so a
//! session hands many writes to a group-committing store and waits for each without blocking.

use super::StoreError;
use tokio::sync::oneshot;

/// The waiting side of a write: resolves when the write is durable (or failed).
#[derive(Debug)]
pub struct Commit(CommitState);

#[derive(Debug)]
enum CommitState {
    Done(Option<Result<u64, StoreError>>),
    Pending(oneshot::Receiver<Result<u64, StoreError>>),
}

/// A `Commit` is also a future, so a session can keep serving while its writes are committed.
impl std::future::Future for Commit {
    type Output = Result<u64, StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            CommitState::Done(result) => {
                std::task::Poll::Ready(result.take().unwrap_or_else(|| Err(StoreError::TicketUsed)))
            }
            CommitState::Pending(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(StoreError::WriterStopped))),
        }
    }
}

impl Commit {
    /// A write that is already durable (stores without a writer, like the memory store).
    pub fn done(result: Result<u64, StoreError>) -> Commit {
        Commit(CommitState::Done(Some(result)))
    }

    /// A write handed to a writer, which answers on the other end of `rx`.
    pub(super) fn pending(rx: oneshot::Receiver<Result<u64, StoreError>>) -> Commit {
        Commit(CommitState::Pending(rx))
    }

    /// Waits until the write is durable; the value is the outbox sequence number where one was
    /// assigned (0 otherwise).
    pub async fn wait(self) -> Result<u64, StoreError> {
        self.await
    }

    /// Blocks the thread until the write is durable (for tools, not for async tasks).
    pub fn wait_blocking(self) -> Result<u64, StoreError> {
        match self.0 {
            CommitState::Done(r) => r.unwrap_or_else(|| Err(StoreError::TicketUsed)),
            CommitState::Pending(rx) => rx.blocking_recv().unwrap_or_else(|_| Err(StoreError::WriterStopped)),
        }
    }
}
