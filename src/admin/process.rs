//! The process's own figures for `/metrics` (the names every Prometheus client uses:
//! `process_resident_memory_bytes`, `process_open_fds`...), read from `/proc/self` on Linux;
//! elsewhere none.

use serde::{Deserialize, Serialize};

/// Page size and clock ticks per second as Linux reports them to nearly every process; read
/// here without libc (the crate forbids `unsafe`).
const PAGE: u64 = 4096;
const TICKS: f64 = 100.0;

/// What `/proc/self` says now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessStatus {
    /// Resident memory, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors (sockets, the store's files, logs).
    pub open_fds: u64,
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// When the process started (Unix seconds).
    pub start_time_seconds: f64,
}

impl ProcessStatus {
    /// Reads them; `None` where `/proc` is not there.
    pub fn read() -> Option<ProcessStatus> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let mut pages = statm.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0));
        let (size, resident) = (pages.next()?, pages.next()?);
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from field 3 on.
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        Some(ProcessStatus {
            resident_memory_bytes: resident * PAGE,
            virtual_memory_bytes: size * PAGE,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            cpu_seconds: (field(14) + field(15)) / TICKS,
            start_time_seconds: boot + field(22) / TICKS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_descriptors_and_a_start() {
        let Some(p) = ProcessStatus::read() else {
            return; // not Linux
        };
        assert!(p.resident_memory_bytes > 0 && p.virtual_memory_bytes >= p.resident_memory_bytes);
        assert!(p.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
