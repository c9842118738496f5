//! Property tests of the codec: generated PDUs round-trip, arbitrary bytes never panic, and the
//! framer yields the same PDUs however the stream is split into reads; a receipt's id rewritten
//! on its frame is the rewritten PDU's encoding.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use proptest::prelude::*;
use smpp_proxy::pdu::body::*;
use smpp_proxy::pdu::{tag, Body, COctetString, CommandStatus, DestAddress, Pdu, SmppCodec, Tlvs, UnsuccessSme};
use smpp_proxy::receipt::{rewrite_receipt_frame, rewrite_receipt_id, Receipt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead};

/// Values a body is filled from, in order: strings, integers, one octet string.
#[derive(Clone, Debug)]
struct Pool {
    strings: Vec<COctetString>,
    ints: Vec<u8>,
    short_message: Bytes,
    dests: Vec<DestAddress>,
    unsuccess: Vec<UnsuccessSme>,
}

impl Pool {
    fn s(&self, n: usize) -> COctetString {
        self.strings[n % self.strings.len()].clone()
    }
    fn i(&self, n: usize) -> u8 {
        self.ints[n % self.ints.len()]
    }
}

fn cstring() -> impl Strategy<Value = COctetString> {
    prop::collection::vec(1u8..=255, 0..24).prop_map(|v| COctetString::new(v).unwrap())
}

fn pool() -> impl Strategy<Value = Pool> {
    let dest = prop_oneof![
        (any::<u8>(), any::<u8>(), cstring()).prop_map(|(t, n, a)| DestAddress::Sme {
            dest_addr_ton: t,
            dest_addr_npi: n,
            destination_addr: a
        }),
        cstring().prop_map(|dl_name| DestAddress::DistributionList { dl_name }),
    ];
    let unsuccess = (any::<u8>(), any::<u8>(), cstring(), any::<u32>()).prop_map(|(t, n, a, e)| UnsuccessSme {
        dest_addr_ton: t,
        dest_addr_npi: n,
        destination_addr: a,
        error_status_code: e,
    });
    (
        prop::collection::vec(cstring(), 8),
        prop::collection::vec(any::<u8>(), 12),
        prop::collection::vec(any::<u8>(), 0..=255),
        prop::collection::vec(dest, 0..5),
        prop::collection::vec(unsuccess, 0..4),
    )
        .prop_map(|(strings, ints, sm, dests, unsuccess)| Pool {
            strings,
            ints,
            short_message: Bytes::from(sm),
            dests,
            unsuccess,
        })
}

fn sm_body(p: &Pool) -> SubmitSm {
    SubmitSm {
        service_type: p.s(0),
        source_addr_ton: p.i(0),
        source_addr_npi: p.i(1),
        source_addr: p.s(1),
        dest_addr_ton: p.i(2),
        dest_addr_npi: p.i(3),
        destination_addr: p.s(2),
        esm_class: p.i(4),
        protocol_id: p.i(5),
        priority_flag: p.i(6),
        schedule_delivery_time: p.s(3),
        validity_period: p.s(4),
        registered_delivery: p.i(7),
        replace_if_present_flag: p.i(8),
        data_coding: p.i(9),
        sm_default_msg_id: p.i(10),
        short_message: p.short_message.clone(),
    }
}

fn opt<T>(present: bool, body: T) -> Option<T> {
    present.then_some(body)
}

/// Body number `variant` (0..33) filled from `p`; `present` decides whether a response has a body.
fn body(variant: usize, p: &Pool, present: bool) -> Body {
    let bind = || Bind {
        system_id: p.s(0),
        password: p.s(1),
        system_type: p.s(2),
        interface_version: p.i(0),
        addr_ton: p.i(1),
        addr_npi: p.i(2),
        address_range: p.s(3),
    };
    let id_resp = || opt(present, MessageIdResp { message_id: p.s(5) });
    match variant {
        0 => Body::GenericNack,
        1 => Body::BindReceiver(bind()),
        2 => Body::BindTransmitter(bind()),
        3 => Body::BindTransceiver(bind()),
        4 => Body::BindReceiverResp(opt(present, BindResp { system_id: p.s(0) })),
        5 => Body::BindTransmitterResp(opt(present, BindResp { system_id: p.s(1) })),
        6 => Body::BindTransceiverResp(opt(present, BindResp { system_id: p.s(2) })),
        7 => Body::Outbind(Outbind {
            system_id: p.s(0),
            password: p.s(1),
        }),
        8 => Body::Unbind,
        9 => Body::UnbindResp,
        10 => Body::EnquireLink,
        11 => Body::EnquireLinkResp,
        12 => Body::SubmitSm(sm_body(p)),
        13 => Body::SubmitSmResp(id_resp()),
        14 => Body::SubmitMulti(SubmitMulti {
            service_type: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
            dest_addresses: p.dests.clone(),
            esm_class: p.i(2),
            protocol_id: p.i(3),
            priority_flag: p.i(4),
            schedule_delivery_time: p.s(2),
            validity_period: p.s(3),
            registered_delivery: p.i(5),
            replace_if_present_flag: p.i(6),
            data_coding: p.i(7),
            sm_default_msg_id: p.i(8),
            short_message: p.short_message.clone(),
        }),
        15 => Body::SubmitMultiResp(opt(
            present,
            SubmitMultiResp {
                message_id: p.s(4),
                unsuccess_smes: p.unsuccess.clone(),
            },
        )),
        16 => Body::DeliverSm(sm_body(p)),
        17 => Body::DeliverSmResp(id_resp()),
        18 => Body::DataSm(DataSm {
            service_type: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
            dest_addr_ton: p.i(2),
            dest_addr_npi: p.i(3),
            destination_addr: p.s(2),
            esm_class: p.i(4),
            registered_delivery: p.i(5),
            data_coding: p.i(6),
        }),
        19 => Body::DataSmResp(id_resp()),
        20 => Body::QuerySm(QuerySm {
            message_id: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
        }),
        21 => Body::QuerySmResp(opt(
            present,
            QuerySmResp {
                message_id: p.s(0),
                final_date: p.s(1),
                message_state: p.i(0),
                error_code: p.i(1),
            },
        )),
        22 => Body::CancelSm(CancelSm {
            service_type: p.s(0),
            message_id: p.s(1),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(2),
            dest_addr_ton: p.i(2),
            dest_addr_npi: p.i(3),
            destination_addr: p.s(3),
        }),
        23 => Body::CancelSmResp,
        24 => Body::ReplaceSm(ReplaceSm {
            message_id: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
            schedule_delivery_time: p.s(2),
            validity_period: p.s(3),
            registered_delivery: p.i(2),
            sm_default_msg_id: p.i(3),
            short_message: p.short_message.clone(),
        }),
        25 => Body::ReplaceSmResp,
        26 => Body::AlertNotification(AlertNotification {
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(0),
            esme_addr_ton: p.i(2),
            esme_addr_npi: p.i(3),
            esme_addr: p.s(1),
        }),
        27 => Body::BroadcastSm(BroadcastSm {
            service_type: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
            message_id: p.s(2),
            priority_flag: p.i(2),
            schedule_delivery_time: p.s(3),
            validity_period: p.s(4),
            replace_if_present_flag: p.i(3),
            data_coding: p.i(4),
            sm_default_msg_id: p.i(5),
        }),
        28 => Body::BroadcastSmResp(id_resp()),
        29 => Body::QueryBroadcastSm(QueryBroadcastSm {
            message_id: p.s(0),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(1),
        }),
        30 => Body::QueryBroadcastSmResp(id_resp()),
        31 => Body::CancelBroadcastSm(CancelBroadcastSm {
            service_type: p.s(0),
            message_id: p.s(1),
            source_addr_ton: p.i(0),
            source_addr_npi: p.i(1),
            source_addr: p.s(2),
        }),
        _ => Body::CancelBroadcastSmResp,
    }
}

fn tlvs() -> impl Strategy<Value = Tlvs> {
    prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)), 0..5)
        .prop_map(|pairs| Tlvs::from_pairs(pairs.iter().map(|(t, v)| (*t, v.as_slice()))))
}

fn pdu() -> impl Strategy<Value = Pdu> {
    (0usize..33, pool(), any::<bool>(), any::<u32>(), any::<u32>(), tlvs()).prop_map(
        |(variant, pool, present, status, seq, tlvs)| {
            let body = body(variant, &pool, present);
            // A response sent without its body has nothing after the header (TLVs there would be
            // read as the body), so it gets none.
            let bodiless = !present && body.command_id().is_response() && Pdu::new(body.clone()).encoded_len() == 16;
            Pdu {
                command_status: CommandStatus(status),
                sequence_number: seq,
                body,
                tlvs: if bodiless { Tlvs::new() } else { tlvs },
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_pdus_round_trip(pdu in pdu()) {
        let bytes = pdu.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), pdu.encoded_len());
        let back = Pdu::parse(bytes.clone()).unwrap();
        prop_assert_eq!(&back, &pdu);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
        let json = serde_json::Value::Object(smpp_proxy::pdu::json::pdu_to_json(&pdu));
        let from_json = smpp_proxy::pdu::json::pdu_from_json(&json).unwrap();
        prop_assert_eq!(from_json, pdu);
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 16..400), id in prop::sample::select(vec![
        1u32, 2, 3, 4, 5, 6, 7, 8, 9, 0xB, 0x15, 0x21, 0x102, 0x103, 0x111, 0x112, 0x113, 0x8000_0004, 0x8000_0021, 0x8000_0003,
    ])) {
        // A valid header over a random body reaches every field parser.
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        bytes[4..8].copy_from_slice(&id.to_be_bytes());
        if let Ok(pdu) = Pdu::parse(Bytes::from(bytes.clone())) {
            let again = pdu.to_bytes().unwrap();
            prop_assert_eq!(again.as_ref(), &bytes[..], "whatever parses re-encodes exactly");
            let _ = smpp_proxy::receipt::Receipt::from_pdu(&pdu);
        }
    }

    #[test]
    fn random_streams_never_panic_or_overread(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut codec = SmppCodec::with_max_len(256);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut consumed = 0;
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {
                    prop_assert!(buf.len() < before, "progress on every item");
                    consumed += before - buf.len();
                }
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(consumed <= bytes.len());
        prop_assert!(buf.capacity() <= 256.max(bytes.len()) + 64, "no allocation beyond the frame limit");
    }

    #[test]
    fn framer_output_does_not_depend_on_read_sizes(pdus in prop::collection::vec(pdu(), 1..12), cuts in prop::collection::vec(1usize..64, 1..50)) {
        let mut stream = BytesMut::new();
        for p in &pdus {
            p.encode(&mut stream).unwrap();
        }
        let stream = stream.freeze();
        for sizes in [vec![1usize], vec![3], cuts] {
            let mut codec = SmppCodec::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let (mut at, mut n) = (0, 0);
            while at < stream.len() {
                let take = sizes[n % sizes.len()].min(stream.len() - at);
                buf.extend_from_slice(&stream[at..at + take]);
                at += take;
                n += 1;
                while let Some(item) = codec.decode(&mut buf).unwrap() {
                    out.push(item.unwrap());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&out, &pdus);
        }
    }
}

/// The same through tokio's `FramedRead` over a pipe that moves 1 or 3 octets at a time.
#[tokio::test]
async fn framed_read_over_tiny_pipes() {
    let fixtures: Vec<Pdu> = (0..33)
        .map(|v| {
            let pool = Pool {
                strings: vec![
                    COctetString::from("abc"),
                    COctetString::from(""),
                    COctetString::from("4477009"),
                ],
                ints: vec![1, 2, 3],
                short_message: Bytes::from_static(b"hello"),
                dests: vec![DestAddress::DistributionList {
                    dl_name: COctetString::from("staff"),
                }],
                unsuccess: vec![],
            };
            Pdu::new(body(v, &pool, true)).with_sequence_number(v as u32)
        })
        .collect();
    let mut wire = BytesMut::new();
    for p in &fixtures {
        p.encode(&mut wire).unwrap();
    }
    for pipe in [1, 3, 7] {
        let (mut tx, rx) = tokio::io::duplex(pipe);
        let data = wire.clone().freeze();
        let writer = tokio::spawn(async move { tx.write_all(&data).await });
        let got: Vec<Pdu> = FramedRead::new(rx, SmppCodec::default())
            .map(|r| r.unwrap().unwrap())
            .collect()
            .await;
        writer.await.unwrap().unwrap();
        assert_eq!(got, fixtures, "pipe of {pipe} octets");
    }
}

/// A delivery receipt as SMSCs send them: the Appendix B text (its id of any length, text
/// around it; or no `id:` at all) in short_message, or in message_payload (deliver_sm or
/// data_sm), with or without a `receipted_message_id` TLV (empty, as some send it, before or
/// after the payload), other TLVs before and after.
fn receipt_frame() -> impl Strategy<Value = Bytes> {
    let id = "[0-9A-Za-z]{1,70}";
    let text = (
        id,
        "(DELIVRD|UNDELIV|EXPIRED|ACCEPTD)",
        "[0-9]{3}",
        "[ -~]{0,40}",
        0u8..3,
    )
        .prop_map(|(id, stat, err, rest, form)| {
            // Some SMSCs glue the next field to the id; the rewrite keeps what follows. Some
            // leave the id out of the text (the TLV carries it).
            let id = match form {
                0 => format!("id:{id} "),
                1 => format!("id:{id}"),
                _ => String::new(),
            };
            format!(
                "{id}sub:001 dlvrd:001 submit date:2411291200 done date:2411291201 stat:{stat} err:{err} text:{rest}"
            )
        });
    (
        text,
        0u8..3,
        prop::option::of("[0-9a-f]{0,64}"),
        any::<bool>(),
        tlvs(),
        tlvs(),
        any::<u32>(),
    )
        .prop_map(|(text, carrier, tlv_id, id_first, before, after, seq)| {
            let known = [tag::receipted_message_id, tag::message_payload];
            let others = |t: &Tlvs| -> Vec<(u16, Vec<u8>)> {
                t.iter()
                    .filter(|t| !known.contains(&t.tag))
                    .map(|t| (t.tag, t.value.to_vec()))
                    .collect()
            };
            let in_payload = carrier != 0 || text.len() > 255;
            let mut ours = Vec::new();
            if let Some(id) = tlv_id {
                ours.push((tag::receipted_message_id, format!("{id}\0").into_bytes()));
            }
            if in_payload {
                ours.push((tag::message_payload, text.clone().into_bytes()));
            }
            if !id_first {
                ours.reverse();
            }
            let tlvs: Vec<(u16, Vec<u8>)> = [others(&before), ours, others(&after)].concat();
            let tlvs = Tlvs::from_pairs(tlvs.iter().map(|(t, v)| (*t, v.as_slice())));
            let body = match carrier {
                2 => Body::DataSm(DataSm {
                    esm_class: 0x04,
                    ..DataSm::default()
                }),
                _ => Body::DeliverSm(DeliverSm {
                    esm_class: 0x04,
                    short_message: if in_payload {
                        Bytes::new()
                    } else {
                        Bytes::from(text.into_bytes())
                    },
                    ..DeliverSm::default()
                }),
            };
            Pdu::new(body)
                .with_tlvs(tlvs)
                .with_sequence_number(seq)
                .to_bytes()
                .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The receipt path rewrites ids on the SMSC's frame: the same octets (or the same error)
    /// as rewriting the parsed PDU and encoding it again.
    #[test]
    fn a_receipt_rewritten_on_its_frame_is_the_rewritten_pdu_encoded(frame in receipt_frame(), new_id in "[0-9A-Za-z]{1,64}") {
        let pdu = Pdu::parse(frame.clone()).unwrap();
        let receipt = Receipt::from_pdu(&pdu).expect("a receipt");
        let had_id = receipt.id().is_some();
        let on_frame = rewrite_receipt_frame(&frame, &pdu, &receipt, new_id.as_bytes())
            .expect("a parsed PDU's fields lie in its frame");
        let on_pdu = rewrite_receipt_id(&pdu, &receipt, new_id.as_bytes()).map(|p| p.to_bytes().unwrap());
        match (on_frame, on_pdu) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a, &b);
                let again = Receipt::from_pdu(&Pdu::parse(a).unwrap()).unwrap();
                if had_id {
                    prop_assert_eq!(again.id(), Some(new_id.as_bytes()));
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "frame: {a:?}, pdu: {b:?}"),
        }
    }
}
