//! The message trail: one JSON line per submit and per receipt (proxy id, client, upstream,
//! SMSC id, status, latency) appended to `[log] messages`, for audits and for answering "what
//! happened to this message" from a file. Off unless configured.
//!
//! The data path only hands an event (an `Arc` of the correlation it already has) to a bounded
//! queue; one thread formats and writes, buffered, flushed when the queue runs dry and at
//! least every 200 ms. A full queue drops the event and counts it, so the trail can never slow
//! or stop traffic. [`Trail::reopen`] (SIGHUP, SIGUSR1) closes and opens the file again, for
//! logrotate.

use crate::pdu::CommandStatus;
use crate::store::Correlation;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Events queued for the writer at most.
const QUEUE: usize = 65_536;
/// The writer flushes at least this often while events come.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// What the trail records.
#[derive(Debug)]
pub enum TrailEvent {
    /// A submit answered: accepted (with its correlation), or refused by the upstream.
    Submit {
        /// The client's account.
        client: Arc<str>,
        /// The upstream that answered.
        upstream: Arc<str>,
        /// The accepted message (none when refused).
        correlation: Option<Arc<Correlation>>,
        /// The answer's status.
        status: CommandStatus,
        /// From the client's submit read to its answer.
        latency: Duration,
    },
    /// A receipt matched to its message and handed to the client's outbox.
    Receipt {
        /// The message.
        correlation: Arc<Correlation>,
        /// `stat:` of the receipt (`DELIVRD`...), if it says.
        state: Option<Bytes>,
        /// `err:` of the receipt, if it says.
        err: Option<Bytes>,
    },
}

enum Msg {
    Event(TrailEvent, SystemTime),
    /// Wakes the writer to look at `reopen` (the flag is what counts: this may be dropped).
    Reopen,
    /// Write out what is buffered, then say so.
    Flush(SyncSender<()>),
}

/// Where the data path hands events.
#[derive(Debug, Default)]
pub struct Trail {
    tx: Option<SyncSender<Msg>>,
    /// Events dropped because the writer was behind.
    pub dropped: AtomicU64,
    /// Lines the writer could not write (the disk full, the file gone).
    pub failed: Arc<AtomicU64>,
    /// Set to have the writer open the file again.
    reopen: Arc<AtomicBool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Event(..) => "Event",
            Msg::Reopen => "Reopen",
            Msg::Flush(_) => "Flush",
        })
    }
}

impl Trail {
    /// A trail appended to `path` (created if missing), written by a thread of its own.
    pub fn open(path: &Path) -> std::io::Result<Trail> {
        let file = append(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(64 * 1024, file),
            failed: failed.clone(),
            reopen: reopen.clone(),
        };
        std::thread::Builder::new()
            .name("smpp-proxy-trail".into())
            .spawn(move || writer.run(rx))?;
        Ok(Trail {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
            failed,
            reopen,
        })
    }

    /// Lines lost so far: dropped (the writer behind) or failed (the file).
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// Whether events are recorded at all (callers skip building them when not).
    pub fn on(&self) -> bool {
        self.tx.is_some()
    }

    /// Records `event` (dropped and counted if the writer is behind).
    pub fn record(&self, event: TrailEvent) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Event(event, SystemTime::now())) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the file and opens it again (after logrotate moved it), before the next line
    /// is written. Never waits: a signal handler calls it.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            self.reopen.store(true, Ordering::Release);
            // A full queue wakes the writer anyway.
            let _ = tx.try_send(Msg::Reopen);
        }
    }

    /// Waits (at most `within`) until what was recorded so far is written to the file: the
    /// last thing a stopping proxy does with it.
    pub async fn flush(&self, within: Duration) {
        let Some(tx) = self.tx.clone() else { return };
        let wait = tokio::task::spawn_blocking(move || {
            let (ack, done) = sync_channel(1);
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv_timeout(within);
            }
        });
        let _ = wait.await;
    }
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    failed: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut line = String::with_capacity(512);
        let mut last_flush = std::time::Instant::now();
        loop {
            let msg = rx.recv_timeout(FLUSH_EVERY);
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.flush();
                match append(&self.path) {
                    Ok(file) => self.out = std::io::BufWriter::with_capacity(64 * 1024, file),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), error = %e, "message trail not reopened; writing on to the old file")
                    }
                }
            }
            match msg {
                Ok(Msg::Event(event, at)) => {
                    line.clear();
                    format_line(&mut line, &event, at);
                    if self.out.write_all(line.as_bytes()).is_err() {
                        self.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    if last_flush.elapsed() >= FLUSH_EVERY {
                        self.flush();
                        last_flush = std::time::Instant::now();
                    }
                }
                Ok(Msg::Reopen) => {}
                Ok(Msg::Flush(ack)) => {
                    self.flush();
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    last_flush = std::time::Instant::now();
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn flush(&mut self) {
        if self.out.flush().is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Appends `"key":"value",` with the value escaped as JSON asks (no allocation: the writer
/// formats tens of thousands of lines a second).
fn field(line: &mut String, key: &str, value: &str) {
    use std::fmt::Write as _;
    line.push('"');
    line.push_str(key);
    line.push_str("\":\"");
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push_str("\",");
}

/// One event as one JSON line.
pub fn format_line(line: &mut String, event: &TrailEvent, at: SystemTime) {
    use std::fmt::Write as _;
    line.push_str("{\"ts\":\"");
    write_timestamp(line, at);
    line.push_str("\",");
    match event {
        TrailEvent::Submit {
            client,
            upstream,
            correlation,
            status,
            latency,
        } => {
            field(line, "event", "submit");
            if let Some(c) = correlation {
                field(line, "id", &c.client_id);
            }
            field(line, "client", client);
            field(line, "upstream", upstream);
            if let Some(c) = correlation {
                field(line, "smsc_id", &c.upstream_id);
                field(line, "source", &c.source_addr);
                field(line, "destination", &c.destination_addr);
                if let Some((part, of)) = c.part {
                    let _ = write!(line, "\"part\":\"{part}/{of}\",");
                }
            }
            // Its name, or its number: nothing JSON would need escaped.
            let _ = write!(line, "\"status\":\"{status}\",");
            let _ = write!(line, "\"latency_ms\":{:.3}", latency.as_secs_f64() * 1e3);
        }
        TrailEvent::Receipt {
            correlation: c,
            state,
            err,
        } => {
            field(line, "event", "receipt");
            field(line, "id", &c.client_id);
            field(line, "client", &c.client);
            field(line, "upstream", &c.upstream);
            field(line, "smsc_id", &c.upstream_id);
            if let Some(state) = state {
                field(line, "state", &String::from_utf8_lossy(state));
            }
            if let Some(err) = err {
                field(line, "err", &String::from_utf8_lossy(err));
            }
            let now = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let _ = write!(line, "\"delay_s\":{}", now.saturating_sub(c.submitted_at));
        }
    }
    line.push_str("}\n");
}

/// `2026-11-30T08:20:01.123Z` (UTC).
pub fn timestamp(at: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_timestamp(&mut out, at);
    out
}

/// [`timestamp`], appended to `out`.
fn write_timestamp(out: &mut String, at: SystemTime) {
    use std::fmt::Write as _;
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    );
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_491_001_123);
        assert_eq!(timestamp(at), "2025-11-30T08:23:21.123Z");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn each_event_is_one_line_of_json() {
        let c = Arc::new(Correlation {
            upstream: Arc::from("smsc-a"),
            upstream_id: "abc\"1".into(),
            client: Arc::from("shop"),
            client_id: "0001".into(),
            submitted_at: 1_764_491_000,
            registered_delivery: 1,
            source_addr: "4477".into(),
            destination_addr: "447700900123".into(),
            part: Some((1, 2)),
        });
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_491_012);
        let mut line = String::new();
        format_line(
            &mut line,
            &TrailEvent::Receipt {
                correlation: c.clone(),
                state: Some(Bytes::from_static(b"DELIVRD")),
                err: Some(Bytes::from_static(b"000")),
            },
            at,
        );
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["smsc_id"].as_str()),
            (Some("receipt"), Some("abc\"1"))
        );
        assert_eq!(v["delay_s"], 12);
        line.clear();
        let submit = TrailEvent::Submit {
            client: c.client.clone(),
            upstream: c.upstream.clone(),
            correlation: Some(c),
            status: CommandStatus::ESME_ROK,
            latency: Duration::from_micros(1500),
        };
        format_line(&mut line, &submit, at);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["part"].as_str()),
            (Some("ESME_ROK"), Some("1/2"))
        );
        assert_eq!(v["latency_ms"], 1.5);
        line.clear();
        field(&mut line, "k", "a\"b\\c\u{1}d");
        let v: serde_json::Value = serde_json::from_str(&format!("{{{}}}", line.trim_end_matches(','))).unwrap();
        assert_eq!(v["k"], "a\"b\\c\u{1}d");
    }
}
