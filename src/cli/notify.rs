//! systemd's readiness protocol (`sd_notify`), for `Type=notify` units: `READY=1` once the proxy
//! serves, `RELOADING=1` then `READY=1` around a SIGHUP, `STOPPING=1` when it begins to stop,
//! and `WATCHDOG=1` at half of `WATCHDOG_USEC` for as long as the runtime runs tasks (a stuck
//! runtime stops the pings and systemd restarts it). Without `NOTIFY_SOCKET` (not under
//! systemd, or another `Type=`) every call is nothing. The protocol is one datagram per message
//! to a Unix socket, which is all this writes: no crate needed for it.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where the states go, if anywhere.
pub(crate) struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
    pub(crate) fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                #[cfg(target_os = "linux")]
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                #[cfg(not(target_os = "linux"))]
                Some(_) => return None,
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier { socket }
    }

    /// Tells systemd `state` (`READY=1`, `STATUS=...`: one per line). A failure is ignored:
    /// the proxy serves whether its supervisor hears or not.
    pub(crate) fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            let _ = socket.send_to_addr(state.as_bytes(), addr);
        }
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, when it is meant for this
    /// process (`WATCHDOG_PID`, if set, is ours).
    pub(crate) fn watchdog(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
            if pid.to_string_lossy().parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
