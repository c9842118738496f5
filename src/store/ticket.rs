//! What a store operation returns: a ticket that resolves once the write is durable, or the
//! read has its answer (or either failed). A session hands many operations to a batching
//! store (a group-committing writer thread, a pipelining Redis connection) and waits for each
//! without blocking; stores that answer at once give tickets that are already resolved, which
//! callers may take on the spot ([`Ticket::now`]).

use super::{Correlation, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The waiting side of a store operation.
#[derive(Debug)]
pub struct Ticket<T>(State<T>);

#[derive(Debug)]
enum State<T> {
    Done(Option<Result<T, StoreError>>),
    Pending(oneshot::Receiver<Result<T, StoreError>>),
}

/// A write: the value is the outbox sequence number where one was assigned, or a count (0
/// otherwise).
pub type Commit = Ticket<u64>;

/// A correlation looked up.
pub type Found = Ticket<Option<Arc<Correlation>>>;

/// Where the store answers a ticket.
pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

// Nothing in a ticket is ever pinned in place: the answer is moved out when it comes.
impl<T> Unpin for Ticket<T> {}

/// A `Ticket` is a future, so a session can keep serving while its operations complete.
impl<T> Future for Ticket<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `State` holds nothing pinned: the receiver is `Unpin`.
        match &mut self.get_mut().0 {
            State::Done(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::TicketUsed))),
            State::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::WriterStopped))),
        }
    }
}

impl<T> Ticket<T> {
    /// An operation already done (stores without a writer, like the memory store).
    pub fn done(result: Result<T, StoreError>) -> Ticket<T> {
        Ticket(State::Done(Some(result)))
    }

    /// A ticket and where the store answers it.
    pub fn channel() -> (Ticket<T>, Reply<T>) {
        let (tx, rx) = oneshot::channel();
        (Ticket(State::Pending(rx)), tx)
    }

    /// The answer if there is one already; the ticket back if not.
    pub fn now(mut self) -> Result<Result<T, StoreError>, Ticket<T>> {
        self.ready().ok_or(self)
    }

    /// The answer if it has come, without registering for a wake-up (a poll with a no-op
    /// waker would replace the waker of the task that awaits this ticket); `None` if not yet.
    pub fn ready(&mut self) -> Option<Result<T, StoreError>> {
        match &mut self.0 {
            State::Done(result) => Some(result.take().unwrap_or(Err(StoreError::TicketUsed))),
            State::Pending(rx) => match rx.try_recv() {
                Ok(result) => Some(result),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(Err(StoreError::WriterStopped)),
            },
        }
    }

    /// Waits for the answer.
    pub async fn wait(self) -> Result<T, StoreError> {
        self.await
    }

    /// Blocks the thread until the answer comes (for tools, not for async tasks).
    pub fn wait_blocking(self) -> Result<T, StoreError> {
        match self.0 {
            State::Done(r) => r.unwrap_or(Err(StoreError::TicketUsed)),
            State::Pending(rx) => rx.blocking_recv().unwrap_or(Err(StoreError::WriterStopped)),
        }
    }
}
