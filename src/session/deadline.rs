//! A socket whose writes cannot wait forever.
//!
//! A session writes its answers inside its event loop; a peer that stops reading fills the
//! socket buffer and the write would wait, and with it every timer of the session (bind
//! timeout, keep-alive). [`Deadlined`] fails a write that has made no progress for
//! `write_timeout`, or that is still waiting at the hard deadline (an unbound connection's
//! `bind_timeout`), with `TimedOut`: the session ends as on any write error.
//!
//! The clock is read and the timer armed only when a write has to wait, so the common path
//! (the kernel takes the bytes at once) costs nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `S` with write deadlines (reads pass through).
#[derive(Debug)]
pub struct Deadlined<S> {
    inner: S,
    write_timeout: Duration,
    /// No write may be waiting past this.
    hard: Option<Instant>,
    /// Armed while a write waits; kept between waits so arming again does not allocate.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> Deadlined<S> {
    /// `inner`, whose writes fail once they have waited `write_timeout`.
    pub fn new(inner: S, write_timeout: Duration) -> Deadlined<S> {
        Deadlined {
            inner,
            write_timeout,
            hard: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// From now on no write waits past `at` (`None`: only `write_timeout` applies).
    pub fn set_hard_deadline(&mut self, at: Option<std::time::Instant>) {
        self.hard = at.map(Instant::from_std);
        self.armed = false;
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Called with what the inner write returned: waiting too long turns `Pending` into an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            let mut at = Instant::now() + self.write_timeout;
            if let Some(hard) = self.hard {
                at = at.min(hard);
            }
            self.timer.as_mut().reset(at);
            self.armed = true;
        }
        ready!(self.timer.as_mut().poll(cx));
        self.armed = false;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer has not read what was sent to it in time",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const WAIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout() {
        // A pipe of 64 bytes whose other end never reads.
        let (near, _far) = tokio::io::duplex(64);
        let mut s = Deadlined::new(near, WAIT);
        s.write_all(&[0; 64]).await.unwrap();
        let started = Instant::now();
        let e = s.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= WAIT);
    }

    #[tokio::test]
    async fn the_hard_deadline_comes_first_when_it_is_sooner() {
        let (near, _far) = tokio::io::duplex(64);
        let mut s = Deadlined::new(near, Duration::from_secs(3600));
        let at = std::time::Instant::now() + WAIT;
        s.set_hard_deadline(Some(at));
        let e = tokio::time::timeout(Duration::from_secs(60), s.write_all(&[0; 65]))
            .await
            .expect("the hour-long write timeout applied, not the hard deadline")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(std::time::Instant::now() >= at);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_up_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(64);
        let mut s = Deadlined::new(near, WAIT);
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 640 {
                tokio::time::sleep(WAIT / 3).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        // Ten buffers' worth, each drained within a third of the timeout: no wait reaches it.
        s.write_all(&[7; 640]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 640);
    }
}
