//! Decode and encode of typical PDUs, side by side with the `rusmpp` crate on the same bytes.
//! Both sides go through their tokio-util codec (framing + parse), from a `BytesMut` holding
//! one PDU; building that buffer is outside the timed part.
//!
//! Run: `cargo bench --bench codec` (figures in the README).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use smpp_proxy::pdu::{tag, Body, Pdu, SmppCodec, SubmitSm, Tlvs};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

fn submit_sm() -> Bytes {
    let body = SubmitSm {
        source_addr_ton: 5,
        source_addr_npi: 0,
        source_addr: "MyShop".into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: "447700900123".into(),
        registered_delivery: 1,
        short_message: Bytes::from_static(b"Your verification code is 493021. It expires in 10 minutes."),
        ..Default::default()
    };
    Pdu::new(Body::SubmitSm(body))
        .with_sequence_number(4711)
        .to_bytes()
        .unwrap()
}

fn deliver_sm_receipt() -> Bytes {
    let text = b"id:0059113978 sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 text:Your verification";
    let body = SubmitSm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: "447700900123".into(),
        dest_addr_ton: 5,
        destination_addr: "MyShop".into(),
        esm_class: 0x04,
        short_message: Bytes::from_static(text),
        ..Default::default()
    };
    let tlvs = Tlvs::from_pairs([
        (tag::receipted_message_id, &b"38601fa\0"[..]),
        (tag::message_state, &[2]),
    ]);
    Pdu::new(Body::DeliverSm(body))
        .with_sequence_number(99)
        .with_tlvs(tlvs)
        .to_bytes()
        .unwrap()
}

fn submit_sm_resp() -> Bytes {
    let body = smpp_proxy::pdu::body::MessageIdResp {
        message_id: "5f3a9c21d0e4b7a1".into(),
    };
    Pdu::new(Body::SubmitSmResp(Some(body)))
        .with_sequence_number(4711)
        .to_bytes()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    for (name, bytes) in [
        ("submit_sm", submit_sm()),
        ("deliver_sm_receipt", deliver_sm_receipt()),
        ("submit_sm_resp", submit_sm_resp()),
    ] {
        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.bench_function("smpp-proxy", |b| {
            let mut codec = SmppCodec::default();
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(codec.decode(buf).unwrap().unwrap().unwrap()),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("rusmpp", |b| {
            let mut codec = rusmpp::tokio_codec::CommandCodec::new();
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(codec.decode(buf).unwrap().unwrap()),
                BatchSize::SmallInput,
            )
        });
        group.finish();

        let ours = Pdu::parse(bytes.clone()).unwrap();
        let theirs = rusmpp::tokio_codec::CommandCodec::new()
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        // Both encoders must produce the same bytes, or the comparison means nothing.
        let mut check = BytesMut::new();
        rusmpp::tokio_codec::CommandCodec::new()
            .encode(&theirs, &mut check)
            .unwrap();
        assert_eq!(&check[..], &bytes[..], "rusmpp re-encodes {name} identically");
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.bench_function("smpp-proxy", |b| {
            let mut codec = SmppCodec::default();
            let mut dst = BytesMut::with_capacity(1024);
            b.iter(|| {
                dst.clear();
                codec.encode(black_box(&ours), &mut dst).unwrap();
            })
        });
        group.bench_function("rusmpp", |b| {
            let mut codec = rusmpp::tokio_codec::CommandCodec::new();
            let mut dst = BytesMut::with_capacity(1024);
            b.iter(|| {
                dst.clear();
                codec.encode(black_box(&theirs), &mut dst).unwrap();
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
