//! Decoding allocates nothing beyond what `Bytes` shares: fields are slices of the frame.
//! Counted with a global allocator wrapper, in a test binary of its own so that no other test's
//! allocations are counted.
#![allow(unsafe_code)]

use bytes::{Bytes, BytesMut};
use smpp_proxy::pdu::{tag, Body, Pdu, SmppCodec, Tlvs};
use smpp_proxy::receipt::Receipt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::codec::Decoder;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

mod support;

fn shared(bytes: Bytes) -> Bytes {
    // The first clone of a Vec-backed Bytes moves it to a shared buffer (one allocation, as
    // when the codec first splits its read buffer); take that before counting.
    drop(bytes.clone());
    bytes
}

fn submit_sm_frame() -> Bytes {
    let body = smpp_proxy::pdu::SubmitSm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: "40404".into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: "44951361920".into(),
        registered_delivery: 1,
        short_message: Bytes::from_static(b"hello from smpp-proxy"),
        ..Default::default()
    };
    let tlvs = Tlvs::from_pairs([
        (tag::sar_msg_ref_num, &[0x12, 0x34][..]),
        (tag::sar_total_segments, &[3]),
        (tag::sar_segment_seqnum, &[2]),
        (tag::user_message_reference, &[0, 7]),
    ]);
    shared(
        Pdu::new(Body::SubmitSm(body))
            .with_sequence_number(20456)
            .with_tlvs(tlvs)
            .to_bytes()
            .unwrap(),
    )
}

fn receipt_frame() -> Bytes {
    let f = support::fixtures("public")
        .into_iter()
        .find(|f| f.name() == "ch_deliver_sm_receipt_dec_text_hex_tlv")
        .unwrap();
    shared(Bytes::from(f.bytes()))
}

#[test]
fn decoding_allocates_nothing_per_pdu() {
    let submit = submit_sm_frame();
    let receipt = receipt_frame();
    // Warm up (lazy statics, thread-locals) and check the frames are what we think.
    let parsed = Pdu::parse(submit.clone()).unwrap();
    assert_eq!(parsed.command_id().name(), Some("submit_sm"));
    assert_eq!(parsed.sar().unwrap().total_segments, 3);
    let parsed = Pdu::parse(receipt.clone()).unwrap();
    assert!(Receipt::from_pdu(&parsed).is_some());

    let n = allocations_during(|| {
        for _ in 0..1000 {
            let pdu = Pdu::parse(submit.clone()).unwrap();
            assert_eq!(pdu.user_message_reference(), Some(7));
        }
    });
    assert_eq!(n, 0, "submit_sm decode allocated {n} times in 1000 decodes");

    let n = allocations_during(|| {
        for _ in 0..1000 {
            let pdu = Pdu::parse(receipt.clone()).unwrap();
            let r = Receipt::from_pdu(&pdu).unwrap();
            assert_eq!(r.id().map(|b| b.len()), Some(7));
        }
    });
    assert_eq!(n, 0, "receipt decode + receipt parse allocated {n} times in 1000 runs");

    // Through the framer: one read buffer holding 1000 PDUs.
    let mut buf = BytesMut::new();
    for _ in 0..1000 {
        buf.extend_from_slice(&submit);
    }
    let mut codec = SmppCodec::default();
    let n = allocations_during(|| {
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            item.unwrap();
        }
    });
    assert!(
        n <= 1,
        "framing 1000 PDUs allocated {n} times (one shared-buffer promotion allowed)"
    );
}
