//! Every PDU in `pdu-fixtures/` decodes to the fields its file states (written by an independent
//! decoder for the public vectors, by an independent encoder for our own), re-encodes to the
//! identical bytes, and survives the JSON round trip; every malformed one gives its error class.

mod support;

use bytes::BytesMut;
use serde_json::Value;
use smpp_proxy::hex;
use smpp_proxy::pdu::json::{pdu_from_json, pdu_to_json};
use smpp_proxy::pdu::{decode_exact, DecodeError, FrameError, Pdu, SmppCodec};
use smpp_proxy::receipt::{Carrier, Receipt};
use support::{all_fixtures, Fixture};
use tokio_util::codec::Decoder;

fn check_valid(f: &Fixture) {
    let bytes = f.bytes();
    let expect = &f.json["expect"];
    let pdu = decode_exact(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name()));
    let name = f.name();
    assert_eq!(pdu.command_id().name(), expect["command"].as_str(), "{name}: command");
    assert_eq!(
        Some(u64::from(pdu.command_status.0)),
        expect["command_status"].as_u64(),
        "{name}: status"
    );
    assert_eq!(
        Some(u64::from(pdu.sequence_number)),
        expect["sequence_number"].as_u64(),
        "{name}: seq"
    );

    let json = pdu_to_json(&pdu);
    match (&expect["body"], &json["body"]) {
        (Value::Null, got) => assert!(got.is_null(), "{name}: expected no body, got {got}"),
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                assert_eq!(got.get(key), Some(value), "{name}: body.{key}");
            }
            if f.path.to_string_lossy().contains("/own/") {
                let extra: Vec<_> = got
                    .keys()
                    .filter(|k| !want.contains_key(*k) && *k != "short_message_text")
                    .collect();
                assert!(extra.is_empty(), "{name}: fields the fixture does not list: {extra:?}");
            }
        }
        (want, got) => panic!("{name}: body {got} but expected {want}"),
    }

    let want_tlvs: Vec<(String, String)> = expect["tlvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_owned(),
                t["value_hex"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let got_tlvs: Vec<(String, String)> = pdu
        .tlvs
        .iter()
        .map(|t| (format!("0x{:04x}", t.tag), hex::encode(t.value)))
        .collect();
    assert_eq!(got_tlvs, want_tlvs, "{name}: TLVs in order");

    let receipt = Receipt::from_pdu(&pdu);
    match (&expect["receipt"], &receipt) {
        (Value::Null, None) => {}
        (Value::Object(want), Some(r)) => {
            let field = |b: Option<&[u8]>| b.map(hex::encode);
            for (key, value) in want {
                let got = match key.as_str() {
                    "text_id" => field(r.text_id()),
                    "sub" => field(r.sub()),
                    "dlvrd" => field(r.dlvrd()),
                    "submit_date" => field(r.submit_date()),
                    "done_date" => field(r.done_date()),
                    "stat" => field(r.stat()),
                    "err" => field(r.err()),
                    "text" => field(r.text()),
                    "carried_in" => Some(
                        match r.carried_in {
                            Carrier::ShortMessage => "short_message",
                            Carrier::MessagePayload => "message_payload",
                            Carrier::TlvsOnly => "tlvs",
                        }
                        .to_owned(),
                    ),
                    other => panic!("{name}: unknown receipt key {other}"),
                };
                assert_eq!(got.as_deref(), value.as_str(), "{name}: receipt.{key}");
            }
        }
        (want, got) => panic!("{name}: receipt expected {want}, parsed {got:?}"),
    }

    assert_eq!(
        pdu.to_bytes().unwrap().as_ref(),
        &bytes[..],
        "{name}: re-encodes byte for byte"
    );
    let back = pdu_from_json(&Value::Object(json)).unwrap_or_else(|p| panic!("{name}: JSON back: {p:?}"));
    assert_eq!(back.to_bytes().unwrap().as_ref(), &bytes[..], "{name}: JSON round trip");
}

fn check_invalid(f: &Fixture) {
    let name = f.name();
    let bytes = f.bytes();
    let error = &f.json["error"];
    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = SmppCodec::default().decode(&mut buf);
    match error["class"].as_str().unwrap() {
        "pdu" => {
            let err = match decoded {
                Ok(Some(Err(e))) => e,
                other => panic!("{name}: expected a per-PDU error, got {other:?}"),
            };
            assert_eq!(err.status().name(), error["status"].as_str(), "{name}: {err}");
            assert!(decode_exact(&bytes).is_err(), "{name}");
            if let Some(reply) = err.reply() {
                assert_eq!(reply.command_status, err.status(), "{name}");
                assert_eq!(reply.sequence_number, err.sequence_number, "{name}");
            }
        }
        "frame" => match decoded {
            Err(e @ FrameError::InvalidLength { .. }) => {
                let reply = e.reply().unwrap();
                assert_eq!(reply.command_status.name(), error["status"].as_str(), "{name}");
            }
            other => panic!("{name}: expected a framing error, got {other:?}"),
        },
        "truncated" => {
            assert!(
                matches!(decoded, Ok(None)),
                "{name}: the framer must wait for more, got {decoded:?}"
            );
            assert!(
                matches!(decode_exact(&bytes), Err(DecodeError::Truncated { .. })),
                "{name}"
            );
        }
        other => panic!("{name}: unknown error class {other}"),
    }
}

#[test]
fn every_fixture_decodes_as_stated_and_round_trips() {
    let fixtures = all_fixtures();
    let public = fixtures
        .iter()
        .filter(|f| f.path.to_string_lossy().contains("/public/"))
        .count();
    assert_eq!(
        public, 74,
        "all vectors of ../shared/pdu-vectors/public.jsonl are fixtures"
    );
    let (mut valid, mut invalid) = (0, 0);
    for f in &fixtures {
        if f.valid() {
            check_valid(f);
            valid += 1;
        } else {
            check_invalid(f);
            invalid += 1;
        }
    }
    assert!(valid >= 100 && invalid >= 15, "{valid} valid, {invalid} malformed");
}

#[test]
fn own_fixtures_cover_every_command() {
    let commands: std::collections::BTreeSet<String> = support::fixtures("own")
        .iter()
        .filter(|f| f.valid())
        .map(|f| f.json["expect"]["command"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(commands.len(), 33, "{commands:?}");
}

#[test]
fn pdus_of_a_fixture_stream_come_out_of_the_framer_in_order() {
    // All valid fixtures back to back in one buffer: the framer cuts each exactly.
    let fixtures: Vec<Fixture> = all_fixtures().into_iter().filter(Fixture::valid).collect();
    let mut buf = BytesMut::new();
    for f in &fixtures {
        buf.extend_from_slice(&f.bytes());
    }
    let mut codec = SmppCodec::default();
    for f in &fixtures {
        let pdu: Pdu = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(pdu.to_bytes().unwrap().as_ref(), &f.bytes()[..], "{}", f.name());
    }
    assert!(buf.is_empty());
}

#[test]
fn concatenation_is_read_from_udh_and_sar() {
    let find = |name: &str| support::all_fixtures().into_iter().find(|f| f.name() == name).unwrap();
    let pdu = decode_exact(&find("cu_deliver_sm_china_unicom_concat").bytes()).unwrap();
    let c = pdu.concatenation().unwrap();
    assert_eq!((c.reference, c.total, c.seqnum), (5, 3, 1));
    let pdu = decode_exact(&find("own_submit_sm_udh_concat16").bytes()).unwrap();
    let c = pdu.concatenation().unwrap();
    assert_eq!((c.reference, c.total, c.seqnum), (0xabcd, 3, 1));
    let pdu = decode_exact(&find("own_submit_sm_sar").bytes()).unwrap();
    let c = pdu.concatenation().unwrap();
    assert_eq!((c.reference, c.total, c.seqnum), (0x1234, 3, 2));
    // Ports in the UDH are not concatenation; no UDHI, no UDH.
    assert!(decode_exact(&find("mz_submit_sm_ringtone_udh_ports").bytes())
        .unwrap()
        .concatenation()
        .is_none());
    assert!(decode_exact(&find("ch_submit_sm").bytes())
        .unwrap()
        .concatenation()
        .is_none());
    // The UK MO with a concat UDH but without UDHI: not trusted.
    assert!(decode_exact(&find("rb_mo_concat_part2").bytes())
        .unwrap()
        .concatenation()
        .is_none());
}
