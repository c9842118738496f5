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
