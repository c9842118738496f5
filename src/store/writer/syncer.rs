//! The fsync of `sync = "periodic"`: every `sync_interval`, on a thread of its own, the
//! write-ahead file is fsynced if anything was appended since the last time. The writer appends
//! and answers and never waits for the disk. (It used to make the database itself durable every
//! `sync_interval`, and every answer queued behind that commit waited for it: most of the
//! durable store's p99.) The database is made durable much less often, see `Writer::apply`;
//! then the writer turns to a new file, and this thread removes the old one (`Wal::clear`).

use super::WriterStats;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The thread, stopped (after one last fsync) when this is dropped.
#[derive(Debug)]
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Records the writer has appended (written to the file) so far.
    appended: AtomicU64,
    /// The file the writer appends to since it emptied the last one, and the last one's name:
    /// to fsync from now on, and to remove (see `Wal::clear`).
    rotated: Mutex<Option<(File, PathBuf)>>,
    closing: Mutex<bool>,
    wake: Condvar,
}

impl Syncer {
    /// Fsyncs `file` (a handle of the write-ahead file) every `every`; a failed fsync marks the
    /// store failed in `stats` (it refuses work until it is opened again: after a failed fsync
    /// the kernel may have dropped the pages, and a second fsync would not say so).
    pub(super) fn start(file: File, dir: PathBuf, every: Duration, stats: Arc<WriterStats>) -> std::io::Result<Syncer> {
        let shared = Arc::new(Shared {
            appended: AtomicU64::new(0),
            rotated: Mutex::new(None),
            closing: Mutex::new(false),
            wake: Condvar::new(),
        });
        let run = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-wal-sync".into())
            .spawn(move || run.run(file, &dir, every, &stats))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// A record was written to the file: the next round fsyncs it.
    pub(super) fn appended(&self) {
        self.shared.appended.fetch_add(1, Ordering::Release);
    }

    /// The writer appends to `file` now; `old` (renamed aside, all of it durable in the
    /// database) is to be removed.
    pub(super) fn rotated(&self, file: File, old: PathBuf) {
        *self.shared.rotated.lock().unwrap_or_else(|p| p.into_inner()) = Some((file, old));
    }
}

impl Shared {
    fn run(&self, mut file: File, dir: &Path, every: Duration, stats: &WriterStats) {
        let mut synced = 0;
        // The directory holds a new file's name that a power loss could still take.
        let mut dir_unsynced = false;
        loop {
            let closing = {
                let closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
                if *closing {
                    true
                } else {
                    *self
                        .wake
                        .wait_timeout(closing, every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            let taken = self.rotated.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((new, old)) = taken {
                file = new;
                dir_unsynced = true;
                // The old one's blocks are freed here, not on the writer's thread.
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(error = %e, file = %old.display(), "store: removing the emptied write-ahead file failed");
                }
            }
            let target = self.appended.load(Ordering::Acquire);
            if target != synced || dir_unsynced {
                // A new file's name must survive a power loss before what it holds counts as
                // fsynced.
                let dir_synced = match dir_unsynced {
                    true => File::open(dir).and_then(|d| d.sync_all()),
                    false => Ok(()),
                };
                match dir_synced.and_then(|()| file.sync_data()) {
                    Ok(()) => {
                        dir_unsynced = false;
                        // A file the writer turned to during this fsync holds records it did
                        // not cover: the next round takes that file and fsyncs them.
                        if self.rotated.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                            synced = target;
                        }
                        stats.wal_syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Counted and logged once per failure, like the writer's: it goes on
                        // trying every round until the store is opened again.
                        if !stats.failed.swap(true, Ordering::AcqRel) {
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, "store: fsync of the write-ahead file failed; refusing new work until the store opens again");
                        } else {
                            tracing::debug!(error = %e, "store: fsync of the write-ahead file failed again");
                        }
                    }
                }
            }
            if closing {
                return;
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        *self.shared.closing.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
