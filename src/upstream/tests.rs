//! The in-flight count of a session goes back to zero whichever way its requests end:
//! answered, sent back to be routed again (throttled), timed out, failed with their session,
//! never written (session not bound, or gone). Real sessions over 127.0.0.1 to the simulator.

use super::*;
use crate::config::Config;
use crate::messages::{ClientEvent, Outcome};
use crate::pdu::{CommandId, CommandStatus, Pdu, HEADER_LEN};
use crate::sim::{self, SimConfig, SimHandle};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct NoInbound;

impl InboundSink for NoInbound {
    fn inbound(&self, _: &Arc<UpstreamInfo>, _: Bytes, _: Pdu, ack: DeliverAck) {
        ack.send(CommandStatus::ESME_ROK);
    }
}

fn config(addr: SocketAddr, response_timeout: &str) -> UpstreamConfig {
    config_window(addr, response_timeout, 20)
}

fn config_window(addr: SocketAddr, response_timeout: &str, window: u32) -> UpstreamConfig {
    let text = format!(
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"pw\"\n\
         [[upstreams]]\nname = \"smsc\"\naddress = \"{addr}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\n\
         window = {window}\nresponse_timeout = \"{response_timeout}\"\n"
    );
    Config::from_toml(&text).unwrap().upstreams.remove(0)
}

/// One session to `addr`, running until the token is cancelled.
fn session(addr: SocketAddr, response_timeout: &str) -> (Arc<SessionHandle>, CancellationToken) {
    let (handle, rx) = build_sessions(&[config(addr, response_timeout)], |u, _| own_bucket(u)).remove(0);
    let stop = CancellationToken::new();
    tokio::spawn(session::run(handle.clone(), rx, Arc::new(NoInbound), stop.clone()));
    (handle, stop)
}

async fn bound_session(sim: &SimHandle, response_timeout: &str) -> (Arc<SessionHandle>, CancellationToken) {
    let (handle, stop) = session(sim.local_addr(), response_timeout);
    let deadline = tokio::time::Instant::now() + T;
    while !handle.is_bound() {
        assert!(tokio::time::Instant::now() < deadline, "session did not bind");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (handle, stop)
}

/// Submit `n` as a client session forwards it: its frame, and what its correlation needs.
fn submit(n: u32, reply: &mpsc::Sender<ClientEvent>) -> Forward {
    let pdu = crate::esme::submit_sm("4477", "447700900123", b"hi", false).with_sequence_number(n);
    Forward {
        frame: pdu.to_bytes().unwrap(),
        info: crate::messages::RequestInfo::of(&pdu),
        reply: reply.clone(),
        attempt: 0,
        received: std::time::Instant::now(),
    }
}

/// Offers `n` submits and collects how each ended.
async fn offer_all(handle: &Arc<SessionHandle>, n: u32) -> (Vec<Outcome>, mpsc::Receiver<ClientEvent>) {
    let (reply, mut events) = mpsc::channel(1024);
    for k in 1..=n {
        let fwd = submit(k, &reply);
        assert!(handle.offer(fwd).is_ok(), "the session took request {k}");
    }
    let mut outcomes = Vec::new();
    while outcomes.len() < n as usize {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Some(ClientEvent::Answer(outcome))) => outcomes.push(outcome),
            other => panic!("{} of {n} requests ended, then {other:?}", outcomes.len()),
        }
    }
    (outcomes, events)
}

async fn sim(config: SimConfig) -> SimHandle {
    let config = SimConfig {
        receipts: false,
        ..config
    };
    sim::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_requests_leave_nothing_in_flight() {
    let sim = sim(SimConfig::default()).await;
    let (handle, _stop) = bound_session(&sim, "5s").await;
    let (outcomes, _) = offer_all(&handle, 20).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Answered { .. })));
    assert_eq!(handle.inflight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_go_back_to_be_routed_and_leave_nothing_in_flight() {
    // One token, then ESME_RTHROTTLED: the rest come back to be routed again.
    let sim = sim(SimConfig {
        tps: 1,
        ..SimConfig::default()
    })
    .await;
    let (handle, _stop) = bound_session(&sim, "5s").await;
    let (outcomes, _) = offer_all(&handle, 10).await;
    let retried = outcomes.iter().filter(|o| matches!(o, Outcome::Retry(_))).count();
    assert!(retried >= 8, "{retried} of 10 sent back");
    assert_eq!(handle.inflight(), 0);
    let load = &handle.upstream.load.counters;
    assert_eq!(load.throttled.load(Ordering::Relaxed), retried as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_fail_and_leave_nothing_in_flight() {
    let sim = sim(SimConfig {
        latency: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let (handle, _stop) = bound_session(&sim, "1s").await;
    let (reply, mut events) = mpsc::channel(16);
    for k in 1..=5 {
        let fwd = submit(k, &reply);
        handle.offer(fwd).unwrap();
    }
    // Counted while they wait.
    assert_eq!(handle.inflight(), 5);
    for _ in 0..5 {
        let event = tokio::time::timeout(T, events.recv()).await.unwrap().unwrap();
        assert!(
            matches!(
                event,
                ClientEvent::Answer(Outcome::Failed {
                    status: CommandStatus::ESME_RSYSERR,
                    ..
                })
            ),
            "{event:?}"
        );
    }
    assert_eq!(handle.inflight(), 0);
    assert_eq!(handle.upstream.load.counters.link_errors.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_a_session_that_dies_leave_nothing_in_flight() {
    // Answers held back, then the SMSC hangs up after the first submit: everything written is
    // failed (never re-sent), anything not yet written goes back to be routed.
    let sim = sim(SimConfig {
        latency: Duration::from_secs(30),
        drop_after: Some(1),
        ..SimConfig::default()
    })
    .await;
    let (handle, _stop) = bound_session(&sim, "30s").await;
    let (outcomes, _) = offer_all(&handle, 10).await;
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Failed { .. } | Outcome::Retry(_))));
    assert_eq!(handle.inflight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_written_leave_nothing_in_flight() {
    // Nobody listens there: the session is between connection attempts, and sends what it is
    // handed back to be routed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (handle, stop) = session(closed, "5s");
    let (outcomes, _) = offer_all(&handle, 5).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Retry(_))));
    assert_eq!(handle.inflight(), 0);
    stop.cancel();

    // A session whose task is gone: the channel takes a window's worth, refuses the next (given
    // back, not counted), and the count falls to zero when the channel goes.
    let (handle, rx) = build_sessions(&[config(closed, "5s")], |u, _| own_bucket(u)).remove(0);
    let (reply, _events) = mpsc::channel(64);
    let offer = |k| handle.offer(submit(k, &reply));
    for k in 1..=20 {
        assert!(offer(k).is_ok());
    }
    assert!(offer(21).is_err());
    assert_eq!(handle.inflight(), 20);
    drop(rx);
    assert_eq!(handle.inflight(), 0);
}

/// An SMSC that binds the session, then stops reading and resets the connection while the
/// session is blocked writing: the requests none of whose octets had left the proxy go back to
/// be routed again (never on the wire, so never twice); those that went into the socket fail
/// (they may have reached the SMSC). One thread, so that the session takes all the requests
/// in one turn and none is left in its channel (those are sent back by another path).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_flush_sends_back_what_never_left_and_fails_what_did() {
    use crate::pdu::peek::{next_frame, put_header, Next};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let window = 64;
    let (handle, rx) = build_sessions(
        &[config_window(listener.local_addr().unwrap(), "60s", window)],
        |u, _| own_bucket(u),
    )
    .remove(0);
    let stop = CancellationToken::new();
    tokio::spawn(session::run(handle.clone(), rx, Arc::new(NoInbound), stop.clone()));
    let (mut smsc, _) = tokio::time::timeout(T, listener.accept()).await.unwrap().unwrap();
    let mut read = bytes::BytesMut::new();
    let bind = loop {
        if let Next::Frame(h) = next_frame(&read, 1 << 16) {
            break h;
        }
        assert!(
            tokio::time::timeout(T, smsc.read_buf(&mut read))
                .await
                .unwrap()
                .unwrap()
                > 0
        );
    };
    let mut resp = bytes::BytesMut::new();
    put_header(
        &mut resp,
        HEADER_LEN + 1,
        CommandId::BIND_TRANSCEIVER_RESP,
        CommandStatus::ESME_ROK,
        bind.seq,
    );
    resp.extend_from_slice(&[0]);
    smsc.write_all(&resp).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while !handle.is_bound() {
        assert!(tokio::time::Instant::now() < deadline, "session did not bind");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 64 submits of together twice what the kernel may buffer on the proxy's side (its largest
    // send buffer, from /proc) and more: the flush cannot finish while the SMSC does not read.
    // Offered without yielding: the session's next turn takes them all.
    let send_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let tlvs_per_frame = (2 * send_max + (1 << 20)).div_ceil(window as usize * 60_000).max(1);
    let (reply, mut events) = mpsc::channel(1024);
    for k in 1..=window {
        let mut pdu = crate::esme::submit_sm("4477", "447700900123", b"", false).with_sequence_number(k);
        for t in 0..tlvs_per_frame {
            pdu.tlvs.set(0x1400 + t as u16, &[b'x'; 60_000]);
        }
        let fwd = Forward {
            frame: pdu.to_bytes().unwrap(),
            info: crate::messages::RequestInfo::of(&pdu),
            reply: reply.clone(),
            attempt: 0,
            received: std::time::Instant::now(),
        };
        assert!(handle.offer(fwd).is_ok(), "the session took request {k}");
    }
    // The session is blocked in its flush once what the SMSC's socket holds stops growing.
    let mut peek = vec![0; 8 << 20];
    let mut held = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never filled the socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = tokio::time::timeout(T, smsc.peek(&mut peek)).await.unwrap().unwrap();
        if now > 0 && now == held {
            break;
        }
        held = now;
    }
    // A reset, not a close: the session's pending write fails.
    smsc.set_zero_linger().unwrap();
    drop(smsc);
    let (mut retried, mut failed) = (0, 0);
    while retried + failed < window {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Some(ClientEvent::Answer(Outcome::Retry(_)))) => retried += 1,
            Ok(Some(ClientEvent::Answer(Outcome::Failed { status, .. }))) => {
                assert_eq!(status, CommandStatus::ESME_RSYSERR);
                failed += 1;
            }
            other => panic!("{retried} sent back, {failed} failed, then {other:?}"),
        }
    }
    assert!(failed >= 1, "what went into the socket fails: {failed}");
    assert!(retried >= 1, "what never left goes back: {retried} of {window}");
    assert_eq!(handle.inflight(), 0);
    stop.cancel();
}
