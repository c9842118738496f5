//! The framer over any byte stream, read in pieces whose sizes come from the input: it must
//! never panic, never loop without progress, and every PDU it yields re-encodes to the octets
//! it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use smpp_proxy::pdu::SmppCodec;
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
                    match item {
                        Ok(pdu) => assert_eq!(pdu.to_bytes().unwrap().as_ref(), frame),
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
