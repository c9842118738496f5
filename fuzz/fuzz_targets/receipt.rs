//! The receipt parser and id rewrite over any text, in short_message and in message_payload:
//! no panic, a rewrite changes the id and nothing the parser reads besides, and the rewrite on
//! the frame (the receipt path's) gives the same octets as the rewritten PDU encoded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use smpp_proxy::pdu::{tag, Body, DeliverSm, Pdu, Tlvs};
use smpp_proxy::receipt::{id, rewrite_id, rewrite_receipt_frame, rewrite_receipt_id, Receipt};

fuzz_target!(|data: &[u8]| {
    let text = &data[..data.len().min(255)];
    let in_short_message = Pdu::new(Body::DeliverSm(DeliverSm {
        esm_class: 0x04,
        short_message: Bytes::copy_from_slice(text),
        ..DeliverSm::default()
    }));
    let in_payload = Pdu::new(Body::DeliverSm(DeliverSm { esm_class: 0x04, ..DeliverSm::default() }))
        .with_tlvs(Tlvs::from_pairs([(tag::message_payload, data), (tag::message_state, &[2][..])]));
    for pdu in [in_short_message, in_payload] {
        let Some(before) = Receipt::from_pdu(&pdu) else { continue };
        if let Some(receipt_id) = before.id() {
            let _ = id::lookup_keys(receipt_id, id::IdMatch::Numeric);
        }
        let frame = pdu.to_bytes().unwrap();
        let parsed = Pdu::parse(frame.clone()).unwrap();
        let read = Receipt::from_pdu(&parsed).expect("still a receipt once encoded");
        let new_id = b"0123456789abcdef";
        let on_frame = rewrite_receipt_frame(&frame, &parsed, &read, new_id).expect("fields lie in the frame");
        let on_pdu = rewrite_receipt_id(&parsed, &read, new_id).map(|p| p.to_bytes().unwrap());
        assert_eq!(on_frame.ok(), on_pdu.ok());
        let Ok(rewritten) = rewrite_id(&pdu, new_id) else { continue };
        let after = Receipt::from_pdu(&rewritten).expect("still a receipt");
        if before.text_id().is_some() {
            assert_eq!(after.text_id(), Some(&b"0123456789abcdef"[..]));
            assert_eq!(after.stat(), before.stat());
            assert_eq!(after.err(), before.err());
        }
        let bytes = rewritten.to_bytes().unwrap();
        assert_eq!(Pdu::parse(bytes).unwrap(), rewritten);
    }
});
