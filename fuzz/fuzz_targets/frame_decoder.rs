//! The framer over any byte stream, read in pieces whose sizes come from the input: it must
//! never panic, never loop without progress, and every PDU it yields re-encodes to the octets
//! it consumed. The frame readers of `pdu::peek` see every frame too: no panic, the same
//! header as the parser, and where both read a short message, the same fields.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smpp_proxy::pdu::peek::{self, Next};
use smpp_proxy::pdu::{Body, SmppCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step % 32) + 1;
    let mut codec = SmppCodec::with_max_len(4096);
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(item)) => {
                    let taken = before - buf.len();
                    assert!(taken >= 16, "every item consumes a whole frame");
                    let frame = &stream[consumed..consumed + taken];
                    consumed += taken;
                    let Next::Frame(h) = peek::next_frame(frame, 4096) else {
                        panic!("peek reads the frame the codec cut")
                    };
                    assert_eq!(h.len, frame.len());
                    let body = &frame[16..];
                    let sm = peek::short_message(body);
                    let _ = (peek::receipted_message_id(body), peek::response_id(body));
                    match item {
                        Ok(pdu) => {
                            assert_eq!(pdu.to_bytes().unwrap().as_ref(), frame);
                            assert_eq!(
                                (h.id, h.status, h.seq),
                                (pdu.command_id(), pdu.command_status, pdu.sequence_number)
                            );
                            if let (Some(sm), Body::SubmitSm(b) | Body::DeliverSm(b)) = (sm, &pdu.body) {
                                assert_eq!(sm.source, b.source_addr.as_bytes());
                                assert_eq!(sm.destination, b.destination_addr.as_bytes());
                                assert_eq!(sm.short_message, b.short_message.as_ref());
                                assert_eq!(sm.registered_delivery, b.registered_delivery);
                                assert_eq!(sm.esm_class, b.esm_class);
                                let tlv = pdu.receipted_message_id();
                                if tlv.is_some() {
                                    assert_eq!(peek::receipted_message_id(body), tlv);
                                }
                            }
                        }
                        Err(e) => {
                            let _ = e.reply();
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.reply();
                    return;
                }
            }
        }
        assert!(buf.len() <= 4096 + 32, "never buffers beyond one frame");
    }
});
