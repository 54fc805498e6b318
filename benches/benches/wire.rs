//! Frame decoding and encoding: one 1 KiB publish (method, header, body) in, one delivery out.

use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use bloodbank_broker::wire::{decode_frame, encode_content, encode_method, encode_properties};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn publish_frames() -> BytesMut {
    let mut buf = BytesMut::new();
    let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "bloodbank.events.v1".into(),
        routing_key: "theboard.meeting.created".into(),
        mandatory: false,
        immediate: false,
    }));
    encode_method(&mut buf, 1, &publish);
    let props = encode_properties(
        &BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2),
    );
    encode_content(&mut buf, 1, &props, &[b'x'; 1024], 131_072);
    buf
}

fn bench(c: &mut Criterion) {
    let frames = publish_frames();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode publish (3 frames, 1 KiB)", |b| {
        b.iter(|| {
            let mut buf = frames.clone();
            while let Ok(Some(frame)) = decode_frame(&mut buf, 131_072) {
                std::hint::black_box(frame);
            }
        })
    });
    let props = encode_properties(&BasicProperties::default().with_delivery_mode(2));
    let deliver = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: "amq.ctag-abcdefghijklmnopqrstuv".into(),
        delivery_tag: 123_456,
        redelivered: false,
        exchange: "bloodbank.events.v1".into(),
        routing_key: "theboard.meeting.created".into(),
    }));
    let body = vec![b'x'; 1024];
    let mut out = BytesMut::with_capacity(64 * 1024);
    group.bench_function("encode delivery (3 frames, 1 KiB)", |b| {
        b.iter(|| {
            out.clear();
            encode_method(&mut out, 1, &deliver);
            encode_content(&mut out, 1, &props, &body, 131_072);
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
