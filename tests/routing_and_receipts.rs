//! Several clients and upstreams at once, receipts crossing binds, MO routing, id formats,
//! query/cancel/replace through the proxy.

mod support;

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::body::QuerySm;
use smpp_proxy::pdu::{Body, COctetString, CommandId, CommandStatus, Pdu};
use smpp_proxy::receipt::Receipt;
use smpp_proxy::sim::SimConfig;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

fn clients(n: usize, extra: &str) -> String {
    (0..n)
        .map(|i| format!("[[clients]]\nsystem_id = \"c{i}\"\npassword = \"pw{i}\"\n{extra}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_clients_three_upstreams_every_receipt_to_its_own_client() {
    let sims = start_sims(3, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "sessions = 2", &clients(4, ""), "")).await;
    let runs = (0..4).map(|i| {
        bench::run(BenchConfig {
            connect: proxy.local_addr(),
            system_id: format!("c{i}"),
            password: format!("pw{i}"),
            binds: 2,
            window: 10,
            count: Some(300),
            receipts: true,
            keep_ids: true,
            ..BenchConfig::default()
        })
    });
    let reports = futures_util::future::join_all(runs).await;
    let mut all_ids = HashSet::new();
    for r in reports {
        let r = r.unwrap();
        // Each client got exactly its own receipts: any other client's id would be unmatched.
        assert_eq!((r.acked, r.receipts_matched), (300, 300), "{}", r.summary());
        assert_eq!(
            (r.receipts_unmatched, r.receipts_duplicated, r.unanswered),
            (0, 0, 0),
            "{}",
            r.summary()
        );
        assert!(r.errors.is_empty());
        for id in r.ids {
            assert!(all_ids.insert(id), "ids unique across clients");
        }
    }
    for s in &sims {
        assert!(
            s.stats().submits.load(Ordering::Relaxed) >= 100,
            "every upstream carried traffic"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_arrives_on_the_receiver_bind_of_the_same_account() {
    let sims = start_sims(1, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut ids = HashSet::new();
    for i in 0..5 {
        tx.send(submit_sm("4477", "447700900123", format!("m{i}").as_bytes(), true))
            .await
            .unwrap();
        let resp = tx.recv(T).await.unwrap();
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
        ids.insert(resp.message_id().unwrap().as_str().unwrap().to_owned());
    }
    for _ in 0..5 {
        let pdu = rx.recv(T).await.unwrap();
        assert_eq!(pdu.command_id(), CommandId::DELIVER_SM);
        rx.ack(&pdu).await.unwrap();
        let id = String::from_utf8(Receipt::from_pdu(&pdu).unwrap().tlv_id().unwrap().to_vec()).unwrap();
        assert!(ids.remove(&id), "receipt {id} for a message of this account");
    }
    // The transmitter got no deliver_sm.
    assert!(tx.recv(Duration::from_millis(300)).await.is_err());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_id_formats_per_client() {
    let sims = start_sims(1, SimConfig::default()).await;
    let clients = "[[clients]]\nsystem_id = \"dec\"\npassword = \"x\"\nmessage_id_format = \"decimal\"\n\
                   [[clients]]\nsystem_id = \"uuid\"\npassword = \"x\"\nmessage_id_format = \"uuid\"\n\
                   [[clients]]\nsystem_id = \"pass\"\npassword = \"x\"\nmessage_id_format = \"passthrough\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", clients, "")).await;
    for (client, check) in [
        (
            "dec",
            (|id: &str| id.chars().all(|c| c.is_ascii_digit())) as fn(&str) -> bool,
        ),
        ("uuid", |id: &str| id.len() == 36 && id.matches('-').count() == 4),
        ("pass", |id: &str| {
            id.chars().all(|c| c.is_ascii_hexdigit()) && id.len() < 16
        }),
    ] {
        let mut esme = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, client, "x")
            .await
            .unwrap();
        let (id, receipt) = submit_for_receipt(&mut esme).await;
        let receipt_id = receipt.text_id().map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert!(check(&id), "{client}: {id}");
        assert_eq!(
            receipt_id.as_deref(),
            Some(id.as_str()),
            "{client}: receipt carries the same id"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_cancel_replace_go_to_the_upstream_that_took_the_message() {
    let sims = start_sims_without_receipts(2).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        esme.send(submit_sm("1", "447700900123", b"x", false)).await.unwrap();
        ids.push(
            esme.recv(T)
                .await
                .unwrap()
                .message_id()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        query_replace_cancel(&mut esme, id).await;
    }
    // Each upstream got queries only for its own messages (a foreign id would be ESME_RQUERYFAIL).
    let queries: u64 = sims.iter().map(|s| s.stats().queries.load(Ordering::Relaxed)).sum();
    assert_eq!(queries, 18);
    let query = QuerySm {
        message_id: COctetString::from_text("not-ours"),
        ..QuerySm::default()
    };
    esme.send(Pdu::new(Body::QuerySm(query))).await.unwrap();
    assert_eq!(
        esme.recv(T).await.unwrap().command_status,
        CommandStatus::ESME_RINVMSGID
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_goes_by_longest_prefix_with_a_default() {
    let sims = start_sims(1, SimConfig::default()).await;
    let routes = "[[mo_routes]]\ndestination_prefix = \"44\"\nclient = \"c0\"\n\
                  [[mo_routes]]\ndestination_prefix = \"4477\"\nclient = \"c1\"\n\
                  [[mo_routes]]\ndestination_prefix = \"\"\nclient = \"c2\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients(3, ""), routes)).await;
    let mut rx = Vec::new();
    for i in 0..3 {
        rx.push(
            Esme::bind(
                proxy.local_addr(),
                CommandId::BIND_RECEIVER,
                &format!("c{i}"),
                &format!("pw{i}"),
            )
            .await
            .unwrap(),
        );
    }
    // The simulator sends MO on its session to the proxy; the proxy routes it by destination.
    for (destination, client) in [("447700900001", 1), ("442000000000", 0), ("15550000000", 2)] {
        assert!(wait_until(T, || sims[0].send_mo(None, "447700900999", destination, b"hello")).await);
        let pdu = rx[client].recv(T).await.unwrap();
        rx[client].ack(&pdu).await.unwrap();
        match &pdu.body {
            Body::DeliverSm(b) => assert_eq!(b.destination_addr.as_str(), Some(destination)),
            other => panic!("{other:?}"),
        }
        assert!(Receipt::from_pdu(&pdu).is_none());
    }
    assert_eq!(proxy.snapshot().counters.mo_routed, 3);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_receipts_all_first_or_last_per_client() {
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await;
    let clients = "[[clients]]\nsystem_id = \"all\"\npassword = \"x\"\n\
                   [[clients]]\nsystem_id = \"first\"\npassword = \"x\"\nmultipart_receipts = \"first\"\n\
                   [[clients]]\nsystem_id = \"last\"\npassword = \"x\"\nmultipart_receipts = \"last\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", clients, "")).await;
    for (client, want) in [("all", vec![1, 2, 3]), ("first", vec![1]), ("last", vec![3])] {
        let mut esme = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, client, "x")
            .await
            .unwrap();
        let mut part_ids = Vec::new();
        let mut receipts = Vec::new();
        for part in 1..=3u8 {
            let mut pdu = submit_sm("4477", "447700900123", b"", true);
            if let Body::SubmitSm(b) = &mut pdu.body {
                b.esm_class = 0x40;
                let mut sm = vec![0x05, 0x00, 0x03, 0x2a, 3, part];
                sm.extend_from_slice(b"part text");
                b.short_message = bytes::Bytes::from(sm);
            }
            esme.send(pdu).await.unwrap();
            // A part's receipt may come before the next part's answer.
            loop {
                let pdu = esme.recv(T).await.unwrap();
                if pdu.command_id() == CommandId::SUBMIT_SM_RESP {
                    part_ids.push(pdu.message_id().unwrap().as_str().unwrap().to_owned());
                    break;
                }
                esme.ack(&pdu).await.unwrap();
                receipts.push(pdu);
            }
        }
        while let Ok(pdu) = esme.recv(Duration::from_millis(500)).await {
            esme.ack(&pdu).await.unwrap();
            receipts.push(pdu);
        }
        let mut got = Vec::new();
        for pdu in &receipts {
            let id = String::from_utf8(Receipt::from_pdu(pdu).unwrap().tlv_id().unwrap().to_vec()).unwrap();
            got.push(part_ids.iter().position(|p| *p == id).unwrap() + 1);
        }
        got.sort_unstable();
        assert_eq!(got, want, "{client}");
    }
    assert_eq!(proxy.snapshot().counters.part_receipts_suppressed, 4);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_receipts_keep_the_correlation_and_the_final_one_ends_it() {
    let sims = start_sims(
        1,
        SimConfig {
            intermediate_receipts: true,
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    esme.send(submit_sm("4477", "447700900123", b"hi", true)).await.unwrap();
    let id = esme
        .recv(T)
        .await
        .unwrap()
        .message_id()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let mut states = Vec::new();
    while states.len() < 2 {
        let pdu = esme.recv(T).await.unwrap();
        esme.ack(&pdu).await.unwrap();
        let r = Receipt::from_pdu(&pdu).unwrap();
        assert_eq!(r.tlv_id(), Some(id.as_bytes()));
        states.push(r.state.unwrap().stat_text());
        if states.len() == 1 {
            // After ENROUTE the mapping is still there for the final receipt.
            assert_eq!(proxy.snapshot().correlations, Some(1));
        }
    }
    assert_eq!(states, ["ENROUTE", "DELIVRD"]);
    assert!(
        wait_until(T, || proxy.snapshot().correlations == Some(0)).await,
        "the final receipt ends the correlation"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_receipts_are_acknowledged_counted_and_routed() {
    use smpp_proxy::pdu::{tag, DeliverSm, Tlvs};
    let sims = start_sims(1, SimConfig::default()).await;
    let clients = format!("{SHOP}[[clients]]\nsystem_id = \"ops\"\npassword = \"x\"\n");
    let extra = "unmatched_receipts_to = \"ops\"\nearly_receipt_wait = \"200ms\"\n";
    let proxy = start_proxy(&format!("{extra}{}", proxy_toml(&sims, "", &clients, ""))).await;
    let mut ops = Esme::bind(proxy.local_addr(), CommandId::BIND_RECEIVER, "ops", "x")
        .await
        .unwrap();
    let text =
        b"id:nobody-knows sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 text:";
    let pdu = Pdu::new(Body::DeliverSm(DeliverSm {
        esm_class: 0x04,
        ..DeliverSm::text("1", "2", text)
    }))
    .with_tlvs(Tlvs::from_pairs([(tag::receipted_message_id, &b"nobody-knows\0"[..])]));
    assert!(sims[0].send_pdu(Some("proxy"), pdu));
    // Held for early_receipt_wait in case its submit_sm_resp is late, then given up on.
    let got = ops.recv(T).await.unwrap();
    ops.ack(&got).await.unwrap();
    assert_eq!(
        Receipt::from_pdu(&got).unwrap().text_id(),
        Some(&b"nobody-knows"[..]),
        "delivered as received"
    );
    assert_eq!(proxy.snapshot().counters.receipts_unmatched, 1);
    proxy.shutdown().await;
}

/// A memory store whose tickets resolve only the given time after each write, and whose
/// writes can be found, as [`Late`] says: a store that publishes a write before it answers
/// for it (the durable store's writer, a Redis), or one slow to publish, with the gap made
/// wide.
#[derive(Debug)]
struct LateTickets(std::sync::Arc<smpp_proxy::store::MemoryStore>, Duration, Late);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Late {
    /// Found at once, answered for later.
    Ticket,
    /// Found only when answered for.
    Record,
    /// Never found: the write fails when answered for.
    Failure,
}

impl smpp_proxy::store::Store for LateTickets {
    fn record(
        &self,
        c: std::sync::Arc<smpp_proxy::store::Correlation>,
        id_match: smpp_proxy::receipt::id::IdMatch,
    ) -> smpp_proxy::store::Commit {
        let (ticket, reply) = smpp_proxy::store::Ticket::channel();
        let (late, how, store) = (self.1, self.2, self.0.clone());
        let done = (how == Late::Ticket).then(|| store.record(c.clone(), id_match));
        std::thread::spawn(move || {
            std::thread::sleep(late);
            let outcome = match (how, done) {
                (_, Some(done)) => done.wait_blocking(),
                (Late::Record, None) => store.record(c, id_match).wait_blocking(),
                _ => Err(smpp_proxy::store::StoreError::Down),
            };
            let _ = reply.send(outcome);
        });
        ticket
    }
    fn find_by_upstream(
        &self,
        upstream: &str,
        ids: &[&[u8]],
        id_match: smpp_proxy::receipt::id::IdMatch,
    ) -> smpp_proxy::store::Found {
        self.0.find_by_upstream(upstream, ids, id_match)
    }
    fn find_by_client(&self, client: &str, client_id: &str) -> smpp_proxy::store::Found {
        self.0.find_by_client(client, client_id)
    }
    fn remove(&self, c: &smpp_proxy::store::Correlation, id_match: smpp_proxy::receipt::id::IdMatch) {
        self.0.remove(c, id_match)
    }
    fn correlations(&self) -> Option<u64> {
        self.0.correlations()
    }
    fn outbox_push(
        &self,
        client: &str,
        pdu: &[u8],
        dedup: Option<&str>,
    ) -> smpp_proxy::store::Ticket<smpp_proxy::store::Pushed> {
        self.0.outbox_push(client, pdu, dedup)
    }
    fn outbox_remove(&self, client: &str, id: smpp_proxy::store::OutboxId) -> smpp_proxy::store::Commit {
        self.0.outbox_remove(client, id)
    }
    fn expire(&self, now: u64) -> smpp_proxy::store::Commit {
        self.0.expire(now)
    }
    fn outbox_load(
        &self,
        client: &str,
        limit: usize,
    ) -> Result<Vec<smpp_proxy::store::OutboxEntry>, smpp_proxy::store::StoreError> {
        self.0.outbox_load(client, limit)
    }
}

/// A receipt the SMSC sends at once is matched as soon as its correlation can be found, which
/// here is 300 ms before the store answers for it: the client still reads each message's
/// submit_sm_resp before its receipt, on the bind it submitted on (a client that files its ids
/// from the answers would not know the receipt's id otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_never_reaches_the_client_before_its_messages_answer() {
    let (proxy, _sims) = proxy_with_late_tickets(Duration::from_millis(300), Duration::from_millis(100)).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    five_answers_each_before_its_receipt(&mut esme).await;
    assert!(
        proxy.context().answers_due.parked() > 0,
        "no receipt came before its answer was written: the case was not staged"
    );
    assert!(
        proxy.context().answers_due.is_empty(),
        "every answer written is filed no more"
    );
    drop(esme);
    proxy.shutdown().await;
}

/// A receipt that comes before the store can find its message (its correlation recorded 800 ms
/// after the answer came, the receipt sent 200 ms after it) is matched to the submit whose
/// answer is on its way to the client, and waits with it: the client reads the answer first,
/// and no receipt was held as early (held, it would be looked up again once its correlation
/// is recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_the_store_cannot_find_yet_waits_with_its_messages_answer() {
    let (proxy, _sims) =
        proxy_with_late_store(Duration::from_millis(800), Late::Record, Duration::from_millis(200)).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    five_answers_each_before_its_receipt(&mut esme).await;
    let ctx = proxy.context();
    assert_eq!(ctx.answers_due.parked(), 5, "each receipt waited for its answer");
    assert_eq!(ctx.early.held_total(), 0, "none was held as early");
    let counters = proxy.snapshot().counters;
    assert_eq!((counters.receipts_matched, counters.receipts_unmatched), (5, 0));
    assert_eq!(counters.receipts_waited_for_answer, 5);
    assert!(ctx.answers_due.is_empty(), "every answer written is filed no more");
    drop(esme);
    proxy.shutdown().await;
}

/// An SMSC that sends a receipt before its submit_sm_resp (some do, on another session): the
/// receipt is held until the answer is mapped and the correlation recorded, then delivered with
/// the client's id in its text and TLV, after the client has its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_sent_before_its_submits_answer_is_held_then_delivered_with_the_clients_id() {
    use smpp_proxy::pdu::{tag, DeliverSm, Tlvs};
    let sims = start_sims(
        1,
        SimConfig {
            latency: Duration::from_millis(300),
            ..quiet()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    let upstream_id = sims[0].next_message_id();
    esme.send(submit_sm("4477", "447700900123", b"hello", true))
        .await
        .unwrap();
    let text = format!("id:{upstream_id} sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 text:hello");
    let tlv = format!("{upstream_id}\0");
    let receipt = Pdu::new(Body::DeliverSm(DeliverSm {
        esm_class: 0x04,
        ..DeliverSm::text("447700900123", "4477", text.as_bytes())
    }))
    .with_tlvs(Tlvs::from_pairs([(tag::receipted_message_id, tlv.as_bytes())]));
    assert!(sims[0].send_pdu(Some("proxy"), receipt));
    assert!(
        wait_until(T, || proxy.context().early.held_total() == 1).await,
        "held, its submit not answered yet"
    );
    let answer = esme.recv(T).await.unwrap();
    assert_eq!(answer.command_id(), CommandId::SUBMIT_SM_RESP);
    let client_id = answer.message_id().unwrap().as_str().unwrap().to_owned();
    assert_ne!(client_id, upstream_id, "the proxy's own id");
    let got = esme.recv(T).await.unwrap();
    assert_eq!(got.command_id(), CommandId::DELIVER_SM);
    let parsed = Receipt::from_pdu(&got).unwrap();
    assert_eq!(parsed.text_id(), Some(client_id.as_bytes()), "text id rewritten");
    assert_eq!(parsed.tlv_id(), Some(client_id.as_bytes()), "TLV id rewritten");
    assert!(
        std::str::from_utf8(got.short_message().unwrap())
            .unwrap()
            .ends_with("stat:DELIVRD err:000 text:hello"),
        "the rest of the text as the SMSC wrote it"
    );
    esme.ack(&got).await.unwrap();
    let counters = proxy.snapshot().counters;
    assert_eq!((counters.receipts_matched, counters.receipts_unmatched), (1, 0));
    assert_eq!(
        proxy.context().answers_due.parked(),
        0,
        "it came before the answer was mapped"
    );
    drop(esme);
    proxy.shutdown().await;
}

/// A submit whose correlation the store failed to record is answered ESME_RSYSERR: the client
/// has no id for it, so a receipt that came for it meanwhile is unmatched (the SMSC gets its
/// answer), never delivered under an id the client was not given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_a_submit_whose_correlation_failed_is_never_delivered() {
    let (proxy, _sims) =
        proxy_with_late_store(Duration::from_millis(800), Late::Failure, Duration::from_millis(200)).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    esme.send(submit_sm("4477", "447700900123", b"hello", true))
        .await
        .unwrap();
    let answer = esme.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (answer.command_id(), answer.command_status),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RSYSERR),
        "the answer, before any receipt"
    );
    let counters = || proxy.snapshot().counters;
    assert!(
        wait_until(T, || counters().receipts_unmatched == 1).await,
        "{:?}",
        counters()
    );
    assert_eq!(counters().receipts_matched, 0);
    assert_eq!(proxy.context().answers_due.parked(), 1, "it waited for the answer");
    assert!(proxy.context().answers_due.is_empty() && proxy.context().answers_due.parked_now() == 0);
    // Nothing else comes: the next PDU is the answer to this enquire_link.
    let probe = Pdu::new(Body::EnquireLink).with_sequence_number(77);
    esme.send(probe).await.unwrap();
    let next = esme.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(next.command_id(), CommandId::ENQUIRE_LINK_RESP);
    drop(esme);
    proxy.shutdown().await;
}

/// The same with a transmitter bind for the submits and a receiver bind for the receipts (as
/// many legacy clients bind): the receipt comes only once the transmitter has its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_on_the_receiver_bind_comes_after_the_transmitters_answer() {
    let late = Duration::from_secs(2);
    let (proxy, _sims) = proxy_with_late_tickets(late, Duration::from_millis(500)).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let sent = std::time::Instant::now();
    tx.send(submit_sm("4477", "447700900123", b"hello", true))
        .await
        .unwrap();
    let receipt = rx.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(receipt.command_id(), CommandId::DELIVER_SM);
    // The SMSC sent it 0.5 s after the answer; the answer is written once its ticket
    // resolves, 2 s after the submit at the earliest, and the receipt only after that.
    assert!(
        sent.elapsed() >= late,
        "receipt after {:?}, before the answer could be written",
        sent.elapsed()
    );
    let answer = tx.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(answer.command_id(), CommandId::SUBMIT_SM_RESP);
    assert_eq!(
        receipt_id(&receipt),
        answer.message_id().unwrap().as_str().unwrap(),
        "the receipt of the message answered"
    );
    assert_eq!(
        proxy.context().answers_due.parked(),
        1,
        "the receipt waited for the answer"
    );
    rx.ack(&receipt).await.unwrap();
    drop((tx, rx));
    proxy.shutdown().await;
}

/// A client that closes while a receipt waits for its message's answer (see above) does not
/// lose it: the answer is never written, but its commit still releases the receipt (the task
/// a leaving session hands its commits to), which comes to the client's next bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_held_behind_its_answer_goes_to_the_next_bind_when_the_client_closes() {
    let (proxy, _sims) = proxy_with_late_tickets(Duration::from_secs(2), Duration::from_millis(500)).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    esme.send(submit_sm("4477", "447700900123", b"hello", true))
        .await
        .unwrap();
    // Matched, and waiting for the answer, whose ticket resolves 2 s after the submit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.context().answers_due.parked() == 0 {
        assert!(std::time::Instant::now() < deadline, "receipt not matched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(esme);
    let mut again = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let pdu = again.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(pdu.command_id(), CommandId::DELIVER_SM);
    assert!(Receipt::from_pdu(&pdu).is_some(), "the receipt");
    // The releasing task removes the entry once it has handed on what was parked.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy.context().answers_due.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the entry stays");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    again.ack(&pdu).await.unwrap();
    drop(again);
    proxy.shutdown().await;
}

/// Sends five submits asking for receipts and reads until their five receipts: each answered
/// ESME_ROK before its receipt comes, each receipt once.
async fn five_answers_each_before_its_receipt(esme: &mut Esme) {
    for _ in 0..5 {
        esme.send(submit_sm("4477", "447700900123", b"hello", true))
            .await
            .unwrap();
    }
    let (mut answered, mut receipts) = (HashSet::new(), HashSet::new());
    while receipts.len() < 5 {
        let pdu = esme.recv(Duration::from_secs(10)).await.unwrap();
        match pdu.command_id() {
            CommandId::SUBMIT_SM_RESP => {
                assert_eq!(pdu.command_status, CommandStatus::ESME_ROK);
                answered.insert(pdu.message_id().unwrap().as_str().unwrap().to_owned());
            }
            CommandId::DELIVER_SM => {
                let id = receipt_id(&pdu);
                assert!(answered.contains(&id), "receipt of {id} before its submit_sm_resp");
                assert!(receipts.insert(id), "a receipt twice");
                esme.ack(&pdu).await.unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answered, receipts);
}

/// A proxy with a [`LateTickets`] store whose tickets resolve `late` after, and a simulator
/// that sends each receipt `receipt_delay` after its answer (well inside `late`: the
/// correlation is found, and the answer not written yet).
async fn proxy_with_late_tickets(
    late: Duration,
    receipt_delay: Duration,
) -> (smpp_proxy::proxy::Proxy, Vec<smpp_proxy::sim::SimHandle>) {
    proxy_with_late_store(late, Late::Ticket, receipt_delay).await
}

/// [`proxy_with_late_tickets`], with the store's writes found as `how` says.
async fn proxy_with_late_store(
    late: Duration,
    how: Late,
    receipt_delay: Duration,
) -> (smpp_proxy::proxy::Proxy, Vec<smpp_proxy::sim::SimHandle>) {
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay,
            ..SimConfig::default()
        },
    )
    .await;
    let toml = proxy_toml(&sims, "", SHOP, "");
    let config = smpp_proxy::config::Config::from_toml(&toml).unwrap();
    let store = LateTickets(std::sync::Arc::default(), late, how);
    let proxy = smpp_proxy::proxy::Proxy::start_with_store(config, std::sync::Arc::new(store))
        .await
        .unwrap();
    assert!(
        proxy.wait_bound(Duration::from_secs(10)).await,
        "upstreams did not bind"
    );
    (proxy, sims)
}
