//! The proxy's main job end to end, over real sockets on 127.0.0.1: clients bind to the proxy,
//! submits go to simulated SMSCs, responses come back with the proxy's ids, receipts come back
//! to the right client with those ids.

mod support;

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{Body, CommandId, CommandStatus, Pdu};
use smpp_proxy::sim::{ReceiptVariant, SimConfig};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_are_answered_and_receipts_come_back_with_proxy_ids() {
    let sims = start_sims(2, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let report = bench::run(BenchConfig {
        window: 20,
        count: Some(500),
        receipts: true,
        keep_ids: true,
        ..shop_load(&proxy)
    })
    .await
    .unwrap();
    assert_eq!(
        (report.sent, report.acked, report.unanswered),
        (500, 500, 0),
        "{}",
        report.summary()
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.receipts_matched, 500, "{}", report.summary());
    assert_eq!((report.receipts_unmatched, report.receipts_duplicated), (0, 0));
    let unique: HashSet<&String> = report.ids.iter().collect();
    assert_eq!(unique.len(), 500, "ids are unique");
    assert!(report
        .ids
        .iter()
        .all(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())));
    // Both upstreams carried traffic, and every receipt was matched by the proxy.
    for s in &sims {
        assert!(s.stats().submits.load(Ordering::Relaxed) > 50);
    }
    assert_eq!(proxy.snapshot().counters.receipts_matched, 500);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_text_and_tlv_both_carry_the_client_id() {
    let sims = start_sims(
        1,
        SimConfig {
            receipt_variant: ReceiptVariant::DecimalTextHexTlv,
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    let (id, receipt) = submit_for_receipt(&mut esme).await;
    assert_eq!(receipt.tlv_id(), Some(id.as_bytes()));
    assert_eq!(receipt.text_id(), Some(id.as_bytes()), "decimal text id rewritten too");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_rules_and_auth_failures() {
    let sims = start_sims(1, SimConfig::default()).await;
    let clients =
        format!("{SHOP}max_binds = 2\n[[clients]]\nsystem_id = \"far\"\npassword = \"x\"\nallow = [\"10.0.0.0/8\"]\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let addr = proxy.local_addr();
    let status = |r: Result<Esme, smpp_proxy::esme::EsmeError>| match r {
        Err(smpp_proxy::esme::EsmeError::BindRefused(s)) => s,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        status(Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "nobody", "secret").await),
        CommandStatus::ESME_RBINDFAIL,
        "every refusal sounds the same"
    );
    assert_eq!(
        status(Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "shop", "wrong").await),
        CommandStatus::ESME_RBINDFAIL
    );
    assert_eq!(
        status(Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "far", "x").await),
        CommandStatus::ESME_RBINDFAIL
    );
    let a = bind_shop(addr, CommandId::BIND_TRANSMITTER).await;
    let mut b = bind_shop(addr, CommandId::BIND_RECEIVER).await;
    assert_eq!(
        status(Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "shop", "secret").await),
        CommandStatus::ESME_RBINDFAIL,
        "max_binds"
    );

    // A second bind on a bound session: ESME_RALYBND. A receiver may not submit.
    let resp = b.bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret").await.unwrap();
    assert_eq!(resp.command_status, CommandStatus::ESME_RALYBND);
    b.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    let resp = b.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RINVBNDSTS)
    );

    // Submit before bind: ESME_RINVBNDSTS; unknown command: generic_nack ESME_RINVCMDID, session goes on.
    let mut c = Esme::connect(addr).await.unwrap();
    c.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    assert_eq!(c.recv(T).await.unwrap().command_status, CommandStatus::ESME_RINVBNDSTS);
    c.write_bytes(&smpp_proxy::hex::decode("0000001000000110000000000000002a").unwrap())
        .await
        .unwrap();
    let nack = c.recv(T).await.unwrap();
    assert_eq!(
        (nack.command_id(), nack.command_status, nack.sequence_number),
        (CommandId::GENERIC_NACK, CommandStatus::ESME_RINVCMDID, 42)
    );
    c.send(Pdu::new(Body::EnquireLink)).await.unwrap();
    assert_eq!(c.recv(T).await.unwrap().command_id(), CommandId::ENQUIRE_LINK_RESP);
    // A framing error: generic_nack ESME_RINVCMDLEN, then the proxy closes.
    c.write_bytes(&smpp_proxy::hex::decode("0000000f000000150000000000000007").unwrap())
        .await
        .unwrap();
    let nack = c.recv(T).await.unwrap();
    assert_eq!(
        (nack.command_status, nack.sequence_number),
        (CommandStatus::ESME_RINVCMDLEN, 7)
    );
    assert!(c.recv(T).await.is_err(), "closed after a framing error");

    a.unbind().await.unwrap();
    // The freed place can be taken again.
    let again = Esme::bind(addr, CommandId::BIND_TRANSMITTER, "shop", "secret").await;
    assert!(again.is_ok() || wait_until(T, || true).await);
    proxy.shutdown().await;
}

/// Several PDUs in one write reach the proxy in one read, and each is handled as if it had
/// come alone: answered in kind, a malformed one nacked with the session going on, and a
/// framing error among them answered and the session closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdus_that_arrive_together_are_each_answered() {
    let sims = start_sims_without_receipts(1).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    let frame = |pdu: Pdu, seq: u32| pdu.with_sequence_number(seq).to_bytes().unwrap().to_vec();
    let unknown = smpp_proxy::hex::decode("0000001000000110000000000000002a").unwrap();
    let together = [
        frame(submit_sm("1", "2", b"a", false), 1),
        unknown,
        frame(Pdu::new(Body::EnquireLink), 3),
        frame(submit_sm("1", "2", b"b", false), 4),
    ]
    .concat();
    esme.write_bytes(&together).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..4 {
        let pdu = esme.recv(T).await.unwrap();
        answers.push((pdu.command_id(), pdu.command_status, pdu.sequence_number));
    }
    answers.sort_by_key(|a| a.2);
    assert_eq!(
        answers,
        [
            (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_ROK, 1),
            (CommandId::ENQUIRE_LINK_RESP, CommandStatus::ESME_ROK, 3),
            (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_ROK, 4),
            (CommandId::GENERIC_NACK, CommandStatus::ESME_RINVCMDID, 42),
        ]
    );
    let bad_length = smpp_proxy::hex::decode("0000000f000000150000000000000007").unwrap();
    esme.write_bytes(&[frame(Pdu::new(Body::EnquireLink), 5), bad_length].concat())
        .await
        .unwrap();
    let link = esme.recv(T).await.unwrap();
    assert_eq!(
        (link.command_id(), link.sequence_number),
        (CommandId::ENQUIRE_LINK_RESP, 5)
    );
    let nack = esme.recv(T).await.unwrap();
    assert_eq!(
        (nack.command_status, nack.sequence_number),
        (CommandStatus::ESME_RINVCMDLEN, 7)
    );
    assert!(esme.recv(T).await.is_err(), "closed after a framing error");
    assert_eq!(sims[0].stats().submits.load(Ordering::Relaxed), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_statuses_reach_the_client_unchanged() {
    let reject = Some(("999".to_owned(), CommandStatus::ESME_RINVDSTADR));
    let sims = start_sims(
        2,
        SimConfig {
            reject,
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    esme.send(submit_sm("1", "999123", b"x", false)).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RINVDSTADR)
    );
    // Not retried on the other upstream: a refusal is an answer.
    let rejected: u64 = sims.iter().map(|s| s.stats().rejected.load(Ordering::Relaxed)).sum();
    assert_eq!(rejected, 1);
    proxy.shutdown().await;
}

/// A request goes upstream as the octets the client sent, only its sequence number the
/// proxy's: fields beyond the spec's sizes, an unknown vendor TLV, a sequence number past
/// 2^31, all carried unchanged; the client's answer has its own sequence number back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_reaches_the_smsc_as_the_client_sent_it_but_for_its_sequence_number() {
    let sims = start_sims(
        1,
        SimConfig {
            record: true,
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    let mut pdu = submit_sm("4477", "447700900123", b"as sent", true).with_sequence_number(0x8000_0005);
    if let Body::SubmitSm(b) = &mut pdu.body {
        b.service_type = smpp_proxy::pdu::COctetString::new(b"LONGSERVICE".to_vec()).unwrap();
        b.esm_class = 0x40;
        b.data_coding = 0x08;
    }
    pdu.tlvs.set(0x1403, b"vendor value");
    let sent = pdu.to_bytes().unwrap();
    esme.write_bytes(&sent).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status, resp.sequence_number),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_ROK, 0x8000_0005)
    );
    let received = sims[0].received();
    assert_eq!(received.len(), 1);
    let upstream = received[0].to_bytes().unwrap();
    assert_eq!(upstream.len(), sent.len());
    assert_eq!(upstream[..12], sent[..12], "header but the sequence number");
    assert_ne!(
        upstream[12..16],
        sent[12..16],
        "the proxy's own sequence number upstream"
    );
    assert_eq!(upstream[16..], sent[16..], "body and TLVs");
    proxy.shutdown().await;
}

/// The load generator counts what the peer said before it hung up: a flaky SMSC that answers
/// its 50th submit and closes leaves exactly 50 acknowledged, the rest unanswered; and the
/// receipts it sent before closing are matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_counts_answers_that_came_just_before_a_hang_up() {
    let sims = start_sims(
        1,
        SimConfig {
            drop_after: Some(50),
            receipt_delay: std::time::Duration::ZERO,
            ..SimConfig::default()
        },
    )
    .await;
    let report = bench::run(BenchConfig {
        connect: sims[0].local_addr(),
        system_id: "any".into(),
        password: "any".into(),
        binds: 1,
        window: 100,
        count: Some(100),
        receipts: false,
        ..BenchConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(report.acked, 50, "{}", report.summary());
    assert_eq!(report.sent, report.acked + report.unanswered, "{}", report.summary());
}
