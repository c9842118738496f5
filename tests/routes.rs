//! `[[routes]]` choose the group per message; the parts of a concatenated message (UDH 8-bit
//! and 16-bit references, SAR TLVs) stay on one upstream, also out of order, interleaved, and
//! when that upstream dies between parts. The simulators record what they accepted.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{tag, Body, CommandId, CommandStatus, Pdu, Tlvs};
use smpp_proxy::sim::{SimConfig, SimHandle};
use std::collections::{BTreeMap, BTreeSet};
use support::*;

fn recording() -> SimConfig {
    SimConfig {
        receipts: false,
        record: true,
        ..SimConfig::default()
    }
}

fn destinations(sim: &SimHandle) -> Vec<String> {
    sim.received()
        .iter()
        .map(|p| match &p.body {
            Body::SubmitSm(b) => String::from_utf8_lossy(b.destination_addr.as_bytes()).into_owned(),
            _ => String::new(),
        })
        .collect()
}

/// Sends every PDU, then waits for every answer; gives the statuses in sending order.
async fn submit_all(esme: &mut Esme, pdus: Vec<Pdu>) -> Vec<CommandStatus> {
    let mut seqs = Vec::new();
    for pdu in pdus {
        seqs.push(esme.feed(pdu).await.unwrap());
    }
    esme.flush().await.unwrap();
    let mut statuses = BTreeMap::new();
    while statuses.len() < seqs.len() {
        let resp = esme.recv(T).await.unwrap();
        if resp.command_id() == CommandId::SUBMIT_SM_RESP {
            statuses.insert(resp.sequence_number, resp.command_status);
        }
    }
    seqs.iter().map(|s| statuses[s]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_the_group_by_client_prefix_source_and_service_type() {
    let sims = start_sims(4, recording()).await;
    let mut groups = String::new();
    for i in 0..4 {
        groups.push_str(&format!("[[groups]]\nname = \"g{i}\"\nmembers = [\"smsc-{i}\"]\n"));
    }
    let routes = "[[routes]]\ngroup = \"g1\"\ndestination_prefix = \"4479\"\n\
                  [[routes]]\ngroup = \"g2\"\ndestination_prefix = \"44791\"\n\
                  [[routes]]\ngroup = \"g3\"\nsystem_id = \"bank\"\n\
                  [[routes]]\ngroup = \"g3\"\nsource_addr = \"ALERTS\"\nservice_type = \"VMA\"\n";
    let clients = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\nroute = \"g0\"\n\
                   [[clients]]\nsystem_id = \"bank\"\npassword = \"secret\"\nroute = \"g0\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", clients, &format!("{groups}{routes}"))).await;
    let mut shop = shop(&proxy).await;
    let mut alert = submit_sm("ALERTS", "15550000003", b"x", false);
    if let Body::SubmitSm(b) = &mut alert.body {
        b.service_type = smpp_proxy::pdu::COctetString::new(b"VMA".to_vec()).unwrap();
    }
    let sent = vec![
        submit_sm("Shop", "15550000000", b"x", false), // no route: the client's own (g0)
        submit_sm("Shop", "447900000001", b"x", false), // 4479 -> g1
        submit_sm("Shop", "447910000002", b"x", false), // 44791 is longer -> g2
        alert,                                         // source + service type -> g3
        submit_sm("ALERTS", "15550000004", b"x", false), // source alone is not enough -> g0
    ];
    assert!(submit_all(&mut shop, sent).await.iter().all(|s| s.is_ok()));
    let mut bank = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "bank", "secret")
        .await
        .unwrap();
    // The client rule has no prefix; a longer matching prefix wins over it.
    let sent = vec![
        submit_sm("Bank", "15550000005", b"x", false),
        submit_sm("Bank", "447910000006", b"x", false),
    ];
    assert!(submit_all(&mut bank, sent).await.iter().all(|s| s.is_ok()));
    assert_eq!(destinations(&sims[0]), ["15550000000", "15550000004"]);
    assert_eq!(destinations(&sims[1]), ["447900000001"]);
    assert_eq!(destinations(&sims[2]), ["447910000002", "447910000006"]);
    assert_eq!(destinations(&sims[3]), ["15550000003", "15550000005"]);
    proxy.shutdown().await;
}

/// Part `seq` of 3 of message `n`: 8-bit UDH, 16-bit UDH or SAR TLVs by `n % 3`.
fn part(n: u16, seq: u8) -> Pdu {
    let destination = format!("4477009{:05}", n % 7);
    let mut pdu = submit_sm("Shop", &destination, b"", false);
    let text = format!("message {n} part {seq}");
    match n % 3 {
        0 | 1 => {
            if let Body::SubmitSm(b) = &mut pdu.body {
                b.esm_class = 0x40;
                let mut sm = if n.is_multiple_of(3) {
                    vec![0x05, 0x00, 0x03, n as u8, 3, seq]
                } else {
                    let [hi, lo] = n.to_be_bytes();
                    vec![0x06, 0x08, 0x04, hi, lo, 3, seq]
                };
                sm.extend_from_slice(text.as_bytes());
                b.short_message = bytes::Bytes::from(sm);
            }
            pdu
        }
        _ => {
            if let Body::SubmitSm(b) = &mut pdu.body {
                b.short_message = bytes::Bytes::from(text.into_bytes());
            }
            pdu.with_tlvs(Tlvs::from_pairs([
                (tag::sar_msg_ref_num, &n.to_be_bytes()[..]),
                (tag::sar_total_segments, &[3][..]),
                (tag::sar_segment_seqnum, &[seq][..]),
            ]))
        }
    }
}

/// Which simulator got each part of each message: message text "message N part P" -> sim.
fn placement(sims: &[SimHandle]) -> BTreeMap<u16, BTreeMap<u8, usize>> {
    let mut out: BTreeMap<u16, BTreeMap<u8, usize>> = BTreeMap::new();
    for (i, sim) in sims.iter().enumerate() {
        for pdu in sim.received() {
            let Some(sm) = pdu.short_message() else { continue };
            let text = String::from_utf8_lossy(sm);
            let Some(at) = text.find("message ") else { continue };
            let mut words = text[at..].split_whitespace().skip(1);
            let n: u16 = words.next().unwrap().parse().unwrap();
            let p: u8 = words.nth(1).unwrap().parse().unwrap();
            out.entry(n).or_default().insert(p, i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_a_message_land_whole_on_one_upstream_in_any_order() {
    let sims = start_sims(3, recording()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    // 100 messages of 3 parts, ten at a time: all second parts, then the thirds, then the
    // firsts, interleaved with single messages.
    for batch in 0..10u16 {
        let mut pdus = Vec::new();
        for seq in [2u8, 3, 1] {
            for n in batch * 10..batch * 10 + 10 {
                pdus.push(part(n, seq));
            }
            pdus.push(submit_sm("Shop", "15550000000", b"single", false));
        }
        assert!(submit_all(&mut esme, pdus).await.iter().all(|s| s.is_ok()));
    }
    let placed = placement(&sims);
    assert_eq!(placed.len(), 100);
    let mut used = BTreeSet::new();
    for (n, parts) in &placed {
        assert_eq!(parts.len(), 3, "message {n}: {parts:?}");
        let on: BTreeSet<usize> = parts.values().copied().collect();
        assert_eq!(on.len(), 1, "message {n} split across upstreams: {parts:?}");
        used.extend(on);
    }
    assert_eq!(used.len(), 3, "messages still spread over every upstream");
    proxy.shutdown().await;
}

/// Part 1 of messages 500..520, then the upstream that took message 500 dies, then parts 2
/// and 3 of all of them and part 1 of message 600: the statuses of the latter.
async fn part_one_then_kill(policy: &str) -> (Vec<CommandStatus>, Vec<SimHandle>, Vec<u16>, smpp_proxy::proxy::Proxy) {
    let sims = start_sims(3, recording()).await;
    let extra = format!("[routing]\nconcat_failover = \"{policy}\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, &extra)).await;
    let mut esme = shop(&proxy).await;
    let firsts = (500..520).map(|n| part(n, 1)).collect();
    assert!(submit_all(&mut esme, firsts).await.iter().all(|s| s.is_ok()));
    let before = placement(&sims);
    let dead = before[&500][&1];
    let orphans: Vec<u16> = (500..520).filter(|n| before[n][&1] == dead).collect();
    let mut sims = sims;
    sims.remove(dead).stop().await;
    let ctx = proxy.context().clone();
    assert!(wait_until(T, || !ctx.live().sessions[dead].is_bound()).await);
    let mut rest: Vec<Pdu> = (500..520).flat_map(|n| [part(n, 2), part(n, 3)]).collect();
    rest.push(part(600, 1));
    let statuses = submit_all(&mut esme, rest).await;
    (statuses, sims, orphans, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_a_message_follows_together_when_its_upstream_dies() {
    let (statuses, sims, orphans, proxy) = part_one_then_kill("reroute").await;
    assert!(statuses.iter().all(|s| s.is_ok()), "{statuses:?}");
    let placed = placement(&sims);
    for n in 500..520u16 {
        let parts = &placed[&n];
        if orphans.contains(&n) {
            assert_eq!(parts.len(), 2, "message {n}: parts 2 and 3 on a survivor: {parts:?}");
        } else {
            assert_eq!(parts.len(), 3, "message {n}: {parts:?}");
        }
        let on: BTreeSet<usize> = parts.values().copied().collect();
        assert_eq!(on.len(), 1, "message {n} together: {parts:?}");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn or_are_refused_so_the_client_resends_the_whole_message() {
    let (statuses, sims, orphans, proxy) = part_one_then_kill("reject").await;
    for (k, n) in (500..520u16).enumerate() {
        let want = if orphans.contains(&n) {
            CommandStatus::ESME_RSUBMITFAIL
        } else {
            CommandStatus::ESME_ROK
        };
        assert_eq!((statuses[2 * k], statuses[2 * k + 1]), (want, want), "message {n}");
    }
    assert_eq!(statuses[40], CommandStatus::ESME_ROK, "a new message goes through");
    let placed = placement(&sims);
    assert!(orphans.iter().all(|n| !placed.contains_key(n)));
    proxy.shutdown().await;
}
