//! `smpp-proxy pdu decode|encode` as a user runs it: every fixture through the real binary.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn smpp_proxy(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn decode_then_encode_gives_back_every_valid_fixture() {
    for f in support::all_fixtures().iter().filter(|f| f.valid()) {
        let hex = f.json["hex"].as_str().unwrap();
        let (code, json, err) = smpp_proxy(&["pdu", "decode", hex], None);
        assert_eq!(code, 0, "{}: {err}", f.name());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["command"], f.json["expect"]["command"], "{}", f.name());
        assert_eq!(
            v["receipt"].is_object(),
            f.json["expect"]["receipt"].is_object(),
            "{}",
            f.name()
        );
        let (code, out, err) = smpp_proxy(&["pdu", "encode"], Some(&json));
        assert_eq!(code, 0, "{}: {err}", f.name());
        assert_eq!(out.trim(), hex, "{}", f.name());
    }
}

#[test]
fn malformed_input_exits_1_with_one_line_naming_the_byte() {
    for f in support::all_fixtures().iter().filter(|f| !f.valid()) {
        let (code, out, err) = smpp_proxy(&["pdu", "decode", f.json["hex"].as_str().unwrap()], None);
        assert_eq!(code, 1, "{}", f.name());
        assert!(out.is_empty(), "{}: {out}", f.name());
        assert_eq!(err.lines().count(), 1, "{}: {err}", f.name());
        assert!(err.contains("at byte"), "{}: {err}", f.name());
    }
    let (code, _, err) = smpp_proxy(&["pdu", "decode", "00000010000000150000000000000001ff"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 octets after the PDU") && err.contains("at byte 16"),
        "{err}"
    );
    let (code, _, err) = smpp_proxy(&["pdu", "decode", "xyz"], None);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
}

#[test]
fn decode_shows_receipt_and_reads_stdin() {
    // The cloudhopper capture: decimal id in the text, hex id in the TLV.
    let f = support::fixtures("public")
        .into_iter()
        .find(|f| f.name() == "ch_deliver_sm_receipt_dec_text_hex_tlv")
        .unwrap();
    let (code, json, _) = smpp_proxy(&["pdu", "decode"], Some(f.json["hex"].as_str().unwrap()));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["command"], "deliver_sm");
    assert_eq!(v["command_id"], 5);
    assert_eq!(v["status"], "ESME_ROK");
    assert_eq!(v["receipt"]["id"], "38601fa");
    assert_eq!(v["receipt"]["text_id"], "0059113978");
    assert_eq!(v["receipt"]["state"], "DELIVRD");
    assert_eq!(v["receipt"]["submit_date_iso"], "2010-02-10T17:30");
    assert_eq!(
        v["body"]["short_message_text"].as_str().unwrap().get(..13),
        Some("id:0059113978")
    );
    assert_eq!(v["tlvs"][2]["name"], "receipted_message_id");
}

#[test]
fn encode_lists_every_problem_with_its_key() {
    let json = r#"{"command": "submit_sm", "sequence_number": 1, "body": {"service_type": "", "source_addr_ton": 999,
        "colour": "red"}, "tlvs": [{"tag": "0xzz", "value_hex": "00"}]}"#;
    let (code, out, err) = smpp_proxy(&["pdu", "encode"], Some(json));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    for key in [
        "body.source_addr_ton",
        "body.colour",
        "body.destination_addr: missing",
        "tlvs[0].tag",
    ] {
        assert!(err.contains(key), "{key} not in {err}");
    }
}
