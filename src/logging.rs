//! Logging that can neither stop nor slow the data path.
//!
//! Events are formatted where they happen and handed, as whole lines, to one writer thread
//! through a bounded queue ([`init`]). A task never waits for stderr: when the queue is full the
//! line is dropped and counted; when stderr fails (its reader gone, a full disk, a file-size
//! limit) the writer counts the line as failed and goes on. Nothing here panics or prints
//! about itself (tracing-subscriber's own error report would: it uses `eprintln!`).
//!
//! [`Limiter`] caps how many lines one call site writes per second: what unauthenticated peers
//! can make the proxy log (refused binds, bind timeouts, refused connections) stays bounded,
//! and the next line written says how many were left out.

use crate::session::{SharedBucket, TokenBucket};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines queued for the writer at most; beyond, lines are dropped.
const QUEUE: usize = 4096;

/// Lines handed to the queue, written, failed by stderr, and dropped because the queue was full.
static SENT: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

static QUEUE_TX: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// Log lines lost so far: dropped because the writer was behind, or failed by stderr.
pub fn lines_lost() -> u64 {
    DROPPED.load(Ordering::Relaxed) + FAILED.load(Ordering::Relaxed)
}

/// Starts the writer thread (once; later calls change nothing) and gives the `MakeWriter`
/// for tracing-subscriber.
pub fn init() -> MakeQueued {
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        // Without its thread the receiver is gone, and every line counts as dropped.
        let _ = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            let stderr = std::io::stderr();
            for line in rx {
                let mut out = stderr.lock();
                match out.write_all(&line).and_then(|()| out.flush()) {
                    Ok(()) => WRITTEN.fetch_add(1, Ordering::Relaxed),
                    Err(_) => FAILED.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        tx
    });
    MakeQueued
}

/// Waits (at most `limit`) until every line queued so far is written or failed: for the end
/// of the process, so its last lines are not lost.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let target = SENT.load(Ordering::Acquire);
    while WRITTEN.load(Ordering::Acquire) + FAILED.load(Ordering::Acquire) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Gives tracing-subscriber a [`QueuedLine`] per event.
#[derive(Debug, Clone, Copy)]
pub struct MakeQueued;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeQueued {
    type Writer = QueuedLine;

    fn make_writer(&'a self) -> QueuedLine {
        QueuedLine(Vec::with_capacity(256))
    }
}

/// One event's text, queued for the writer thread when dropped.
#[derive(Debug)]
pub struct QueuedLine(Vec<u8>);

impl Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let Some(tx) = QUEUE_TX.get() else {
            return;
        };
        match tx.try_send(std::mem::take(&mut self.0)) {
            Ok(()) => SENT.fetch_add(1, Ordering::Release),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => DROPPED.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// At most `per_second` lines a second from one call site (a [`TokenBucket`] of that rate,
/// made at first use); the rest are counted.
///
/// ```ignore
/// static REFUSED: Limiter = Limiter::new(10);
/// if let Some(suppressed) = REFUSED.allow() {
///     info!(suppressed, peer = %peer, "bind refused");
/// }
/// ```
#[derive(Debug)]
pub struct Limiter {
    per_second: u32,
    bucket: OnceLock<SharedBucket>,
    /// Lines left out since the last one let through.
    suppressed: AtomicU64,
}

impl Limiter {
    /// A limiter letting `per_second` lines through a second.
    pub const fn new(per_second: u32) -> Limiter {
        Limiter {
            per_second,
            bucket: OnceLock::new(),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when this line may be written.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let bucket = self
            .bucket
            .get_or_init(|| SharedBucket::new(TokenBucket::per_second(self.per_second, now)));
        if bucket.try_take(|| now) {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_lets_its_share_through_each_second_and_reports_the_rest() {
        let l = Limiter::new(3);
        let t0 = Instant::now();
        let first: Vec<Option<u64>> = (0..10).map(|_| l.allow_at(t0)).collect();
        assert_eq!(
            first,
            [Some(0), Some(0), Some(0), None, None, None, None, None, None, None]
        );
        // A second later, the first line carries the seven left out.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.allow_at(t1), Some(7));
        assert_eq!(l.allow_at(t1), Some(0));
    }

    #[test]
    fn lines_go_through_the_queue_and_are_counted() {
        let make = init();
        let before = SENT.load(Ordering::Relaxed) + DROPPED.load(Ordering::Relaxed);
        let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(&make);
        line.write_all(b"logging test line\n").unwrap();
        drop(line);
        assert_eq!(
            SENT.load(Ordering::Relaxed) + DROPPED.load(Ordering::Relaxed),
            before + 1
        );
        flush(Duration::from_secs(5));
    }
}
