//! decode -> encode gives back the input for every frame that decodes, and so does the JSON
//! form the `pdu` command prints.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use smpp_proxy::pdu::json::{pdu_from_json, pdu_to_json};
use smpp_proxy::pdu::Pdu;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 || data.len() > 65536 {
        return;
    }
    let mut frame = data.to_vec();
    let len = frame.len() as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let Ok(pdu) = Pdu::parse(Bytes::from(frame.clone())) else { return };
    assert_eq!(pdu.to_bytes().unwrap().as_ref(), &frame[..]);
    let json = serde_json::Value::Object(pdu_to_json(&pdu));
    let back = pdu_from_json(&json).expect("decoded JSON reads back");
    assert_eq!(back.to_bytes().unwrap().as_ref(), &frame[..]);
});
